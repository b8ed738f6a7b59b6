"""`persona-runner personas`: who the personas are and what they have been doing."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from persona_runner.commands.options import DbOption, store_from
from persona_runner.reporting.formatting import utc_minute
from persona_runner.run.cadence import HISTORY_DEPTH, PastTick, is_cadence, next_due
from persona_runner.store.models import Persona, utcnow
from persona_runner.store.views import RECENT_DAYS, activity, recent_actions, recent_ticks
from persona_runner.util.errors import UserError
from persona_runner.util.text import counted, one_line

personas_app = typer.Typer(
    help="List personas and inspect one: activity, ratings, recent actions.", no_args_is_help=True
)
#: Characters of a recorded error message shown in the recent actions table.
ERROR_CELL = 80


def _console() -> Console:
    """The terminal as it is when the command runs (its width is read now, not when this module is
    imported). Everything shown comes from the catalog, the store or the product: text, never markup."""
    return Console(markup=False)


def _when(moment: datetime | None) -> str:
    return utc_minute(moment) if moment else "never"


def _next_due(persona: Persona, history: list[PastTick], now: datetime) -> str:
    """When the persona's cadence has it tick next ("now" when it is due), and the failures it is
    backing off after, so an operator sees a broken product being spared rather than forgotten."""
    if not is_cadence(persona.tick_cadence):
        return "-"
    due = next_due(persona.tick_cadence, history, now)
    when = "now" if due.due else utc_minute(due.at)
    if due.reason != "backoff":
        return when
    failures = f"{due.failures} failure{'s' if due.failures != 1 else ''}"
    return f"{when}, retry after {failures}" if due.due else f"{when}, backing off after {failures}"


def _ratings(ratings: dict[str, tuple[float, int]]) -> str:
    return " ".join(f"{module} {mean:.1f}" for module, (mean, _n) in ratings.items()) or "-"


@personas_app.command("list")
def list_personas(db: DbOption = None) -> None:
    """Every persona in the results store with cadence, last activity, when it is next due and mean rating per module.

    Example: persona-runner personas list --db persona-runner.db
    """
    engine = store_from(db, create=False)
    rows = activity(engine)
    if not rows:
        # An empty store is a state, not a failure: exit 0 like `runs list`, so scripts can list before the first run.
        typer.echo("no personas in the results store yet: run `persona-runner run` or `persona-runner seed`")
        return
    histories = recent_ticks(engine, [row.persona.user_id for row in rows], HISTORY_DEPTH)
    now = utcnow()
    table = Table(title="Personas")
    table.add_column("name", no_wrap=True)  # what `personas show NAME` takes: kept whole on a narrow terminal
    for column in (
        "archetype",
        "cadence",
        "last active",
        "next due",
        f"actions {RECENT_DAYS}d",
        f"errors {RECENT_DAYS}d",
        "mean rating per module",
    ):
        table.add_column(column)
    for row in rows:
        p = row.persona
        table.add_row(
            p.name,
            p.archetype,
            p.tick_cadence,
            _when(p.last_active_at),
            _next_due(p, histories.get(p.user_id, []), now),
            str(row.actions_recent),
            str(row.errors_recent),
            _ratings(row.ratings),
        )
    _console().print(table)


@personas_app.command("show")
def show(
    name: Annotated[str, typer.Argument(metavar="NAME", help="The persona, by its catalog name.", show_default=False)],
    db: DbOption = None,
) -> None:
    """One persona in detail: profile, activity, ratings per module and its latest actions.

    Example: persona-runner personas show maya
    """
    engine = store_from(db, create=False)
    rows = activity(engine, [name])
    if not rows:
        known = ", ".join(r.persona.name for r in activity(engine)) or "none yet"
        raise UserError(f"no persona named {name!r} in the results store (known: {known})")
    row = rows[0]
    p = row.persona
    out = _console()
    out.print(
        Text(p.name, style="bold")
        + f" <{p.email}> · {p.archetype} · cadence {p.tick_cadence} · style {p.style or '-'} · locale {p.locale or '-'}"
    )
    history = recent_ticks(engine, [p.user_id], HISTORY_DEPTH).get(p.user_id, [])
    out.print(
        f"last active {_when(p.last_active_at)} · next due {_next_due(p, history, utcnow())}"
        f" · {counted(row.actions_recent, 'action')} and {counted(row.errors_recent, 'error')}"
        f" in the last {RECENT_DAYS} days"
    )
    mix = ", ".join(f"{module} {weight:g}" for module, weight in p.module_mix.items())
    out.print(f"module mix: {mix}")
    if row.ratings:
        ratings = Table(title="Mean rating per module")
        for column in ("module", "mean", "ratings"):
            ratings.add_column(column)
        for module, (mean, count) in row.ratings.items():
            ratings.add_row(module, f"{mean:.2f}", str(count))
        out.print(ratings)
    actions = Table(title="Recent actions")
    for column in ("when", "tool", "result", "latency ms", "error"):
        actions.add_column(column)
    for action in recent_actions(engine, p.user_id):
        actions.add_row(
            _when(action.created_at),
            action.tool_name,
            action.result,
            f"{action.latency_ms:.0f}",
            one_line(action.error_message or "", ERROR_CELL),
        )
    out.print(actions)
