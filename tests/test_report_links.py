"""Reports send their reader to the ticks behind their figures: every tick that did not finish and every
rating of 1 or 2, each with the `ticks show` command that works as printed, and, beside an HTML report
written to a file, the tick's own page, linked."""

from __future__ import annotations

import json
import shlex
from datetime import timedelta
from pathlib import Path
from urllib.parse import unquote

import pytest
from sqlmodel import Session

from persona_runner.reporting.look_at import LIMIT
from persona_runner.reporting.markdown import render_markdown
from persona_runner.store.models import Tick
from tests.cli_helpers import cli
from tests.test_report import NOW, StoreBuilder, parse_html, run_report


def build(db: Path) -> tuple[StoreBuilder, dict[str, str]]:
    """Run r0: a tick that rated notes 2 and todo 1, one that failed at login, and one that went well."""
    store = StoreBuilder(f"sqlite:///{db}")
    store.persona("ann", "ann", {"todo": 1, "notes": 1})
    store.run("r0", NOW - timedelta(hours=1))
    low = store.tick(
        "r0",
        "ann",
        NOW - timedelta(minutes=50),
        [("notes.search", 900, "index offline"), ("todo.create", 10)],
        {"notes": (2, "search lost my note"), "todo": (1, "gone"), "calendar": 5},
    )
    failed = store.tick("r0", "ann", NOW - timedelta(minutes=40), [], {}, status="failed")
    fine = store.tick("r0", "ann", NOW - timedelta(minutes=30), [("todo.list", 10)], {"todo": 4})
    with Session(store.engine) as session:
        tick = session.get(Tick, failed)
        assert tick is not None
        tick.error = "login refused (HTTP 401)"
        session.commit()
    return store, {"low": low, "failed": failed, "fine": fine}


def test_a_report_lists_failed_ticks_first_then_low_ratings_with_their_commands(tmp_path: Path) -> None:
    db = tmp_path / "results.db"
    store, ticks = build(db)
    look_at = run_report(store, "r0").look_at
    assert [tick.tick_id for tick in look_at.ticks] == [ticks["failed"], ticks["low"]] and look_at.left_out == 0
    failed, low = look_at.ticks
    assert (failed.status, failed.reason, failed.low_ratings) == ("failed", "login refused (HTTP 401)", [])
    assert [(r.module, r.rating, r.notes) for r in low.low_ratings] == [
        ("todo", 1, "gone"),
        ("notes", 2, "search lost my note"),
    ]
    assert low.command == f"persona-runner ticks show {low.tick_id} --db {db}"
    text = render_markdown(run_report(store, "r0"))
    assert (
        "### Ticks to look at\n"
        f"- ann, {NOW - timedelta(minutes=40):%Y-%m-%d %H:%M} UTC: failed `{failed.command}`\n"
        f"- ann, {NOW - timedelta(minutes=50):%Y-%m-%d %H:%M} UTC: rated todo 1/5, notes 2/5 `{low.command}`\n"
    ) in text


def test_the_command_works_as_printed_and_leaves_out_the_default_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    build(tmp_path / "elsewhere.db")
    figures = cli("report", "--db", "elsewhere.db", "--run", "r0", "--format", "json", "--out", "r.json")
    assert figures.returncode == 0, figures.stderr
    command = json.loads((tmp_path / "r.json").read_text())["look_at"]["ticks"][1]["command"]
    shown = cli(*shlex.split(command)[1:], cwd=tmp_path.parent)  # from another directory
    assert (shown.returncode, shown.stderr) == (0, "") and "notes     2/5  search lost my note" in shown.stdout

    store, ticks = build(tmp_path / "persona-runner.db")  # the store a command opens by default
    assert run_report(store, "r0").look_at.ticks[0].command == f"persona-runner ticks show {ticks['failed']}"


def test_an_html_report_written_to_a_file_has_the_ticks_pages_beside_it_linked(tmp_path: Path) -> None:
    db = tmp_path / "results.db"
    _, ticks = build(db)
    out = tmp_path / "out dir" / "r.html"
    done = cli("report", "--db", str(db), "--run", "r0", "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"wrote {out} and 2 tick pages in {out.parent / 'r-ticks'}\n"
    parsed = parse_html(out.read_text())
    assert "look-at" in parsed.ids
    pages = [link for link in parsed.links if not link.startswith("#")]
    # Each failed or low-rated tick once in the list, the failed one again in the failures table.
    assert len(set(pages)) == 2 and all(link.startswith("r-ticks/") for link in pages)
    for tick in (ticks["failed"], ticks["low"]):
        [page] = [out.parent / unquote(link) for link in set(pages) if tick.replace(":", "_3a_") in link] or [None]
        assert page is not None and page.exists()
        assert f"tick {tick}" in page.read_text()
    assert sorted(path.name for path in (out.parent / "r-ticks").iterdir()) == sorted(
        unquote(link).removeprefix("r-ticks/") for link in set(pages)
    )
    assert ticks["fine"] not in out.read_text()


def test_at_most_the_limit_is_listed_and_the_rest_counted(tmp_path: Path) -> None:
    store = StoreBuilder(f"sqlite:///{tmp_path / 'results.db'}")
    store.run("r0", NOW - timedelta(hours=2))
    for minute in range(LIMIT + 5):
        store.tick("r0", "ann", NOW - timedelta(minutes=minute), [], {}, status="timeout")
    look_at = run_report(store, "r0").look_at
    assert (len(look_at.ticks), look_at.left_out) == (LIMIT, 5)
    assert look_at.ticks[0].started_at > look_at.ticks[-1].started_at  # the newest
    text = render_markdown(run_report(store, "r0"))
    assert text.count("persona-runner ticks show") == 20 and "- _…and 35 more._" in text
