"""`persona-runner personas`: who the personas are and what they have been doing."""

from __future__ import annotations

from datetime import datetime

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from persona_runner.commands.options import DbOption, store_from
from persona_runner.reporting.formatting import utc_minute
from persona_runner.store.views import RECENT_DAYS, activity, recent_actions
from persona_runner.util.errors import UserError
from persona_runner.util.text import one_line

personas_app = typer.Typer(
    help="List personas and inspect one: activity, ratings, recent actions.", no_args_is_help=True
)
# Everything shown comes from the catalog, the store or the product: text, never markup.
out = Console(markup=False)
#: Characters of a recorded error message shown in the recent actions table.
ERROR_CELL = 80


def _when(moment: datetime | None) -> str:
    return utc_minute(moment) if moment else "never"


def _ratings(ratings: dict[str, tuple[float, int]]) -> str:
    return " ".join(f"{module} {mean:.1f}" for module, (mean, _n) in ratings.items()) or "-"


@personas_app.command("list")
def list_personas(db: DbOption = None) -> None:
    """Every persona in the results store with cadence, last activity and mean rating per module.

    Example: persona-runner personas list --db persona-runner.db
    """
    rows = activity(store_from(db, create=False))
    if not rows:
        # An empty store is a state, not a failure: exit 0 like `runs list`, so scripts can list before the first run.
        typer.echo("no personas in the results store yet: run `persona-runner run` or `persona-runner seed`")
        return
    table = Table(title="Personas")
    for column in (
        "name",
        "archetype",
        "cadence",
        "last active",
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
            str(row.actions_recent),
            str(row.errors_recent),
            _ratings(row.ratings),
        )
    out.print(table)


@personas_app.command("show")
def show(name: str, db: DbOption = None) -> None:
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
    out.print(
        Text(p.name, style="bold")
        + f" <{p.email}> · {p.archetype} · cadence {p.tick_cadence} · style {p.style or '-'} · locale {p.locale or '-'}"
    )
    out.print(
        f"last active {_when(p.last_active_at)} · {row.actions_recent} actions and {row.errors_recent} errors"
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
