"""The pages of the ticks a report links, written beside its HTML file.

A report read in a browser, or attached to a CI run, is far from the store
its `ticks show` commands need; the day behind each tick it sends its reader
to is then one click away, in a folder named after the report
(`r.html` -> `r-ticks/`), linked by a relative URL that still works when the
report and its folder are moved or archived together.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

from sqlalchemy.engine import Engine

from persona_runner.reporting.html import safe_name
from persona_runner.reporting.model import Report
from persona_runner.reporting.tick_html import render_tick_html
from persona_runner.store.recorded import load_day


def pages_folder(report_path: Path) -> Path:
    """Where the tick pages of the report at `report_path` go: `DIR/r.html` -> `DIR/r-ticks`."""
    return report_path.with_name(f"{report_path.stem}-ticks")


def tick_pages(engine: Engine, report: Report, report_path: Path) -> tuple[dict[str, str], list[tuple[Path, str]]]:
    """Each linked tick's page: its URL relative to the report (by tick id), and the files to write."""
    folder = pages_folder(report_path)
    links: dict[str, str] = {}
    files: list[tuple[Path, str]] = []
    for tick in report.look_at.ticks:
        day = load_day(engine, tick.tick_id)
        if day is None:  # deleted from the store since the report read it
            continue
        name = f"{safe_name(tick.tick_id)}.html"
        links[tick.tick_id] = f"{quote(folder.name)}/{name}"
        files.append((folder / name, render_tick_html(day)))
    return links, files
