"""`persona-runner report`: what the personas did and thought, as HTML, Markdown or JSON."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from persona_runner.commands.atomic_files import write_all_atomic, write_atomic
from persona_runner.commands.options import DbOption, store_from
from persona_runner.reporting.aggregate import build_report, runs_scope, window_scope
from persona_runner.reporting.html import render_html
from persona_runner.reporting.markdown import render_markdown
from persona_runner.reporting.model import Report
from persona_runner.reporting.tick_pages import pages_folder, tick_pages
from persona_runner.util.errors import UserError

REPORTS_DIR = Path("reports")
DEFAULT_SINCE = "7d"
_DURATION = re.compile(r"^(?P<count>[0-9]+)(?P<unit>[mhdw])$")
_UNIT_MINUTES = {"m": 1, "h": 60, "d": 24 * 60, "w": 7 * 24 * 60}
#: Ten years: longer than any store holds, and short enough that the window
#: before it, which "what changed" compares against, still has dates.
MAX_SINCE_DAYS = 3650


class Format(StrEnum):
    html = "html"
    md = "md"
    json = "json"


RENDERERS: dict[Format, Callable[[Report], str]] = {
    Format.html: render_html,
    Format.md: render_markdown,
    Format.json: lambda report: report.model_dump_json(indent=2) + "\n",
}


def parse_since(text: str) -> timedelta:
    """`30m`, `24h`, `7d`, `2w`: a window ending now, of at most MAX_SINCE_DAYS."""
    match = _DURATION.match(text.strip())
    if not match or not match["count"].lstrip("0"):
        raise UserError(f"--since {text!r}: expected a positive count and a unit m, h, d or w, e.g. --since 7d")
    try:
        length = timedelta(minutes=int(match["count"]) * _UNIT_MINUTES[match["unit"]])
    except (OverflowError, ValueError):  # more days than a timedelta holds, or more digits than int() reads
        length = None
    if length is None or length > timedelta(days=MAX_SINCE_DAYS):
        raise UserError(
            f"--since {text!r}: the window can be at most {MAX_SINCE_DAYS} days (--since {MAX_SINCE_DAYS}d)"
        )
    return length


def report(
    since: Annotated[
        str | None,
        typer.Option(
            "--since",
            metavar="DURATION",
            help="Time window ending now: 30m, 24h, 7d, 2w. Default: 7d.",
            show_default=False,
        ),
    ] = None,
    run: Annotated[
        list[str] | None,
        typer.Option(
            "--run",
            metavar="RUN_ID",
            help="Report on this run (repeatable) instead of a time window.",
            show_default=False,
        ),
    ] = None,
    output_format: Annotated[
        Format,
        typer.Option("--format", help="html (one self-contained page), md (fits a PR comment) or json (every figure)."),
    ] = Format.html,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            metavar="PATH",
            help="Output file. Default: reports/<UTC timestamp>.<format>, also copied to reports/latest.<format>.",
            show_default=False,
        ),
    ] = None,
    label: Annotated[
        str | None,
        typer.Option(
            "--label", metavar="TEXT", help="Only the runs of this label (a window only).", show_default=False
        ),
    ] = None,
    target_url: Annotated[
        str | None,
        typer.Option(
            "--target", metavar="URL", help="Only the runs against this target URL (a window only).", show_default=False
        ),
    ] = None,
    db: DbOption = None,
) -> None:
    """Turn recorded actions and ratings into a report, module by module, with what changed at the top.

    It says which runs it covers, and warns when it mixes runs with injected faults (--fault,
    --delay) and runs without: keep to one kind with --label, --target or --run.

    Example: persona-runner report --since 24h --label nightly --format md --out nightly.md
    """
    if run and since:
        raise UserError("--since and --run exclude each other: report on a time window or on runs, not both")
    if run and (label or target_url):
        raise UserError(
            "--label and --target filter a time window; --run names its runs already: give one or the other"
        )
    window = None if run else parse_since(since or DEFAULT_SINCE)
    engine = store_from(db, create=False)
    if window is None:
        with engine.connect() as conn:
            scope = runs_scope(conn, run or [])
    else:
        scope = window_scope(window, run_label=label, target=target_url)
    result = build_report(engine, scope)
    suffix = output_format.value
    target = out or REPORTS_DIR / f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}.{suffix}"
    pages: list[tuple[Path, str]] = []
    if output_format is Format.html and out is not None:
        # A report written where the user asked has its ticks' pages beside it; the dated reports of
        # reports/ do not, or each would leave a folder behind.
        links, pages = tick_pages(engine, result, out)
        text = render_html(result, links)
    else:
        text = RENDERERS[output_format](result)
    write_all_atomic([(target, text), *pages])
    beside = f" and {len(pages)} tick page{'s' if len(pages) != 1 else ''} in {pages_folder(target)}" if pages else ""
    if out is None:
        latest = REPORTS_DIR / f"latest.{suffix}"
        write_atomic(latest, text)
        typer.echo(f"wrote {target} (and {latest}){beside}")
    else:
        typer.echo(f"wrote {target}{beside}")
    if result.mixes_injected_runs:
        typer.echo(
            "note: this report mixes runs with injected faults and runs without; keep to one kind with --label,"
            " --target or --run",
            err=True,
        )
    if result.failures and result.is_empty:
        ticks = result.totals.ticks
        typer.echo(f"note: none of the {ticks} ticks in {scope.label} finished; see the top of the report", err=True)
    elif result.is_empty:
        typer.echo(f"note: nothing was recorded in {scope.label}", err=True)
