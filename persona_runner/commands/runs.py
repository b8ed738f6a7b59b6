"""`persona-runner runs`: list recorded runs to pick ids, and export one as a gate baseline."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table
from sqlalchemy import func, select

from persona_runner.commands.atomic_files import write_atomic
from persona_runner.commands.options import DbOption, OutOption, store_from
from persona_runner.reporting.aggregate import RUNS, TICKS, build_report, runs_scope, store_name
from persona_runner.reporting.formatting import utc_minute

runs_app = typer.Typer(
    help="Recorded runs: list them to pick ids, export one as a gate baseline.", no_args_is_help=True
)


@runs_app.command("list")
def list_runs(
    limit: Annotated[int, typer.Option(min=1, metavar="N", help="Show at most this many runs, newest first.")] = 50,
    db: DbOption = None,
) -> None:
    """Show runs, newest first, with label, start time, driver, ticks and status."""
    engine = store_from(db, create=False)
    ticks = select(TICKS.c.run_id, func.count().label("ticks")).group_by(TICKS.c.run_id).subquery()
    stmt = (
        select(
            RUNS.c.run_id,
            RUNS.c.label,
            RUNS.c.started_at,
            RUNS.c.driver,
            RUNS.c.model,
            RUNS.c.status,
            func.coalesce(ticks.c.ticks, 0).label("ticks"),
        )
        .outerjoin(ticks, ticks.c.run_id == RUNS.c.run_id)
        .order_by(RUNS.c.started_at.desc())
        .limit(limit)
    )
    with engine.connect() as conn:
        rows = conn.execute(stmt).all()
    if not rows:
        typer.echo(f"no runs recorded in {store_name(engine)}")
        return
    table = Table(title="Runs")
    for column in ("run id", "label", "started (UTC)", "driver", "ticks", "status"):
        table.add_column(column, no_wrap=column != "label", justify="right" if column == "ticks" else "left")
    for row in rows:
        driver = f"{row.driver} ({row.model})" if row.model else row.driver
        table.add_row(row.run_id, row.label or "-", utc_minute(row.started_at), driver, str(row.ticks), row.status)
    Console(markup=False).print(table)  # labels are the user's text, never markup


@runs_app.command("export")
def export(
    run_id: Annotated[str, typer.Argument(metavar="RUN_ID", help="The run to export.", show_default=False)],
    out: OutOption = None,
    db: DbOption = None,
) -> None:
    """Write a run's figures as JSON, to keep in a repository and pass to `gate --baseline FILE.json`."""
    engine = store_from(db, create=False)
    with engine.connect() as conn:
        scope = runs_scope(conn, [run_id])
    text = build_report(engine, scope, compare=False).model_dump_json(indent=2) + "\n"
    if out is None:
        typer.echo(text, nl=False)
        return
    write_atomic(out, text)
    typer.echo(f"wrote {out}", err=True)
