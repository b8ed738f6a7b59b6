"""`persona-runner ticks`: list recorded ticks to pick one, and show one as the persona lived it."""

from __future__ import annotations

from collections.abc import Callable
from enum import StrEnum
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table
from sqlalchemy.engine import Engine

from persona_runner.commands.atomic_files import write_atomic
from persona_runner.commands.options import DbOption, OutOption, store_from
from persona_runner.reporting.aggregate import runs_scope, store_name
from persona_runner.reporting.formatting import utc_minute
from persona_runner.reporting.tick_html import render_tick_html
from persona_runner.reporting.tick_text import render_tick_text
from persona_runner.store.recorded import RecordedDay, TickListing, list_ticks, load_day
from persona_runner.store.views import persona_ids
from persona_runner.util.errors import UserError
from persona_runner.util.text import one_line

ticks_app = typer.Typer(
    help="Recorded ticks: list them to pick one, show one as the persona lived it (text, HTML or JSON).",
    no_args_is_help=True,
)
#: Characters of a tick's error shown in the list; `ticks show` has it whole.
REASON_CELL = 100


class Status(StrEnum):
    """How a tick ended (`store.models.Tick.status`)."""

    running = "running"
    ok = "ok"
    failed = "failed"
    timeout = "timeout"
    aborted = "aborted"
    interrupted = "interrupted"
    rating_unparsed = "rating_unparsed"


class Format(StrEnum):
    text = "text"
    html = "html"
    json = "json"


def _ratings(listing: TickListing) -> str:
    return " ".join(f"{module} {rating}" for module, rating in listing.ratings.items()) or "-"


def _check_filters(engine: Engine, run: str | None, persona: str | None) -> None:
    """An unknown run or persona is a mistake to say so, not a list that happens to be empty."""
    if run is not None:
        with engine.connect() as conn:
            runs_scope(conn, [run])
    if persona is not None and not persona_ids(engine, [persona]):
        raise UserError(f"no persona named {persona!r} in the results store; `persona-runner personas list` shows them")


@ticks_app.command("list")
def list_recorded(
    run: Annotated[
        str | None, typer.Option("--run", metavar="RUN_ID", help="Only the ticks of this run.", show_default=False)
    ] = None,
    persona: Annotated[
        str | None,
        typer.Option("--persona", metavar="NAME", help="Only the ticks of this persona.", show_default=False),
    ] = None,
    status: Annotated[
        list[Status] | None,
        typer.Option(
            "--status",
            metavar="STATUS",
            help="Only ticks that ended so (repeatable): running, ok, failed, timeout, aborted, interrupted, "
            "rating_unparsed.",
            show_default=False,
        ),
    ] = None,
    limit: Annotated[int, typer.Option(min=1, metavar="N", help="Show at most this many ticks, newest first.")] = 50,
    db: DbOption = None,
) -> None:
    """Show ticks, newest first: time, persona, status, calls, errors, ratings and the id `ticks show` takes.

    Example: persona-runner ticks list --persona maya --status failed
    """
    engine = store_from(db, create=False)
    ticks = list_ticks(engine, run_id=run, persona=persona, statuses=[s.value for s in status or []], limit=limit)
    if not ticks:
        _check_filters(engine, run, persona)
        typer.echo("no ticks match: `persona-runner ticks list` without filters shows the latest")
        return
    table = Table(title="Ticks")
    table.add_column("time (UTC)", min_width=10)
    table.add_column("persona", min_width=7)
    table.add_column("status", min_width=6)
    table.add_column("calls", justify="right", min_width=5)
    table.add_column("errors", justify="right", min_width=6)
    table.add_column("ratings", min_width=8)
    # What `ticks show` takes, so kept on one line to be copied whole; the other columns wrap first.
    table.add_column("tick id", no_wrap=True, min_width=max(len(tick.tick_id) for tick in ticks), overflow="fold")
    for tick in ticks:
        ended = f"{tick.status}: {one_line(tick.error, REASON_CELL)}" if tick.error else tick.status
        table.add_row(
            utc_minute(tick.started_at),
            tick.persona,
            ended,
            str(tick.tool_calls),
            str(tick.errors),
            _ratings(tick),
            tick.tick_id,
        )
    Console(markup=False).print(table)  # persona names and errors are text, never markup


RENDERERS: dict[Format, Callable[[RecordedDay], str]] = {
    Format.text: render_tick_text,
    Format.html: render_tick_html,
    Format.json: lambda day: day.model_dump_json(indent=2) + "\n",
}


@ticks_app.command("show")
def show(
    tick_id: Annotated[
        str, typer.Argument(metavar="TICK_ID", help="The tick, as `ticks list` shows it.", show_default=False)
    ],
    output_format: Annotated[
        Format,
        typer.Option(
            "--format", help="text (for a terminal), html (one self-contained page, read as a conversation) or json."
        ),
    ] = Format.text,
    out: OutOption = None,
    db: DbOption = None,
) -> None:
    """One tick as the persona lived it: every call in order, the model's messages, its ratings and how it ended.

    Also its space and the tools offered; each call with its arguments, the product's answer, latency and outcome.

    Example: persona-runner ticks show 20261120-090000-1a2b3c:maya:2026-11-20 --format html --out maya.html
    """
    engine = store_from(db, create=False)
    day = load_day(engine, tick_id)
    if day is None:
        raise UserError(
            f"no tick {tick_id!r} in {store_name(engine)}; `persona-runner ticks list` shows the recorded ticks"
        )
    text = RENDERERS[output_format](day)
    if out is None:
        typer.echo(text, nl=False)
        return
    write_atomic(out, text)
    typer.echo(f"wrote {out}", err=True)
