"""Reports open with the ticks that did not finish, grouped by reason, and fold notes said again and again."""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path

from sqlmodel import Session

from persona_runner.reporting.aggregate import build_report, runs_scope, window_scope
from persona_runner.reporting.failures import failure_groups
from persona_runner.reporting.html import render_html
from persona_runner.reporting.markdown import render_markdown
from persona_runner.reporting.model import FailureGroup, Scope
from persona_runner.store.models import Tick
from tests.test_report import NOW, Call, StoreBuilder, parse_html, render_as_github, run_report

LOGIN_REFUSED = "login refused for {}@personas.test: invalid credentials (was the persona seeded?)"
#: The reason shown for refused logins of several personas.
REFUSED = LOGIN_REFUSED.replace("{}@personas.test", "EMAIL")
TIMED_OUT = "tick exceeded its timeout of 120 s while waiting for todo.list"


def ended(
    store: StoreBuilder,
    run_id: str,
    persona: str,
    at: datetime,
    status: str,
    error: str | None,
    calls: Sequence[Call] = (),
) -> str:
    """A tick that ended in `status` for the reason `error`, after `calls`, without ratings."""
    tick_id = store.tick(run_id, persona, at, calls, {}, status=status)
    with Session(store.engine) as session:
        tick = session.get(Tick, tick_id)
        assert tick is not None
        tick.error = error
        session.add(tick)
        session.commit()
    return tick_id


def groups(store: StoreBuilder, scope: Scope) -> list[FailureGroup]:
    with store.engine.connect() as conn:
        return failure_groups(conn, scope)


def failing_store(url: str) -> tuple[StoreBuilder, dict[str, list[str]]]:
    """Run r0 a day ago (one refused login); run r1 an hour ago, its ticks failing in every way, a few finishing."""
    store = StoreBuilder(url)
    store.run("r0", NOW - timedelta(days=1))
    ended(store, "r0", "zed", NOW - timedelta(days=1), "failed", LOGIN_REFUSED.format("zed"))
    start = NOW - timedelta(hours=1)
    store.run("r1", start)
    ticks: dict[str, list[str]] = {"refused": [], "503": [], "timeout": [], "gone": []}
    for i in range(7):  # one reason, seven e-mail addresses
        at = start + timedelta(minutes=i)
        ticks["refused"].append(ended(store, "r1", f"p{i}", at, "failed", LOGIN_REFUSED.format(f"p{i}")))
    for _ in range(2):
        ticks["503"].append(
            ended(store, "r1", "eve", start, "failed", "login for eve@personas.test answered 503: down")
        )
        ticks["timeout"].append(ended(store, "r1", "eve", start, "timeout", TIMED_OUT))
    ticks["gone"] += [
        ended(store, "r1", "ann", start, "interrupted", f"its process (worker-{n} pid {pid}) ended: {calls} calls")
        for n, pid, calls in ((3, 4242, 3), (7, 99, 0))
    ]
    ended(store, "r1", "eve", start, "failed", "login for eve@personas.test answered 500: down")
    ended(store, "r1", "eve", start, "aborted", None)
    for status in ("ok", "running", "rating_unparsed"):
        ended(store, "r1", "bob", start, status, None)
    return store, ticks


def test_failures_group_by_status_and_reason_most_first(store_url: str) -> None:
    store, ticks = failing_store(store_url)
    with store.engine.connect() as conn:
        found = failure_groups(conn, runs_scope(conn, ["r1"]))
    assert [(group.status, group.reason, group.count) for group in found] == [
        ("failed", REFUSED, 7),
        ("failed", "login for eve@personas.test answered 503: down", 2),  # one address: shown as it is
        ("timeout", TIMED_OUT, 2),
        ("interrupted", "its process (worker-N pid N) ended: N calls", 2),
        ("failed", "login for eve@personas.test answered 500: down", 1),  # another status: another failure
        ("aborted", "no reason recorded", 1),
    ]
    assert found[0].tick_ids == ticks["refused"][::-1][:5]  # the latest five
    assert sorted(found[1].tick_ids) == sorted(ticks["503"]) and sorted(found[3].tick_ids) == sorted(ticks["gone"])


def test_failures_keep_to_the_scope(tmp_path: Path) -> None:
    store, _ = failing_store(f"sqlite:///{tmp_path / 'results.db'}")
    with store.engine.connect() as conn:
        earlier = failure_groups(conn, runs_scope(conn, ["r0"]))
    assert [(group.reason, group.count) for group in earlier] == [(LOGIN_REFUSED.format("zed"), 1)]
    recent = groups(store, window_scope(timedelta(hours=2), until=NOW))
    assert (recent[0].reason, recent[0].count, len(recent)) == (REFUSED, 7, 6)
    both = groups(store, window_scope(timedelta(days=3), until=NOW))
    assert (both[0].reason, both[0].count) == (REFUSED, 8)
    assert groups(store, window_scope(timedelta(hours=2), until=NOW - timedelta(hours=3))) == []


def test_ids_and_times_are_alike_but_quoted_messages_are_not(tmp_path: Path) -> None:
    store = StoreBuilder(f"sqlite:///{tmp_path / 'results.db'}")
    store.run("r0", NOW)
    for session_id, seen in (
        ("0b8e6c1e-1234-4abc-8def-0123456789ab", "12:00"),
        ("9f0e6c1e-aaaa-4abc-8def-fedcba987654", "13:30"),
    ):
        ended(store, "r0", "ann", NOW, "failed", f"MCP session {session_id} closed; last heartbeat 2026-11-20 {seen}")
    for detail in ("disk full", "database down"):
        ended(store, "r0", "ann", NOW, "failed", f'GET /api/v1/me/spaces answered 500: {{"detail": "{detail}"}}')
    with store.engine.connect() as conn:
        found = failure_groups(conn, runs_scope(conn, ["r0"]))
    assert [(group.reason, group.count) for group in found] == [
        ("MCP session ID closed; last heartbeat TIME", 2),
        ('GET /api/v1/me/spaces answered 500: {"detail": "database down"}', 1),
        ('GET /api/v1/me/spaces answered 500: {"detail": "disk full"}', 1),
    ]


def all_failed_store(url: str) -> StoreBuilder:
    """Run r0 went well; in run r1 no persona could log in, and two timed out."""
    store = StoreBuilder(url)
    store.run("r0", NOW - timedelta(days=1))
    for _ in range(3):
        store.tick("r0", "ann", NOW - timedelta(days=1), [("todo.create", 10)], {"todo": 4})
    store.run("r1", NOW - timedelta(hours=1))
    for i in range(10):
        ended(store, "r1", f"p{i}", NOW - timedelta(hours=1), "failed", LOGIN_REFUSED.format(f"p{i}"))
    for _ in range(2):
        ended(store, "r1", "ann", NOW - timedelta(hours=1), "timeout", TIMED_OUT)
    return store


def test_markdown_opens_with_the_failures_and_never_calls_an_all_failed_run_calm(tmp_path: Path) -> None:
    store = all_failed_store(f"sqlite:///{tmp_path / 'results.db'}")
    text = render_markdown(run_report(store, "r1"))
    assert text.index("### Ticks that did not finish") < text.index("### What changed")
    assert (
        "**12 of 12 ticks did not finish**: failed: login refused for EMAIL: invalid credentials"
        " (was the persona seeded?) (10); timeout: tick exceeded its timeout of 120 s while waiting for todo.list (2)"
    ) in text
    assert "| timeout | tick exceeded its timeout of 120 s while waiting for todo.list | 2 | `r1-" in text
    assert "Nothing moved beyond noise" not in text
    assert "None of the 12 ticks finished; only the calls recorded until then were compared with run r0:" in text
    assert "run failed ticks: failed ticks 0% -> 100%" in text


def test_html_opens_with_the_failures_and_never_calls_an_all_failed_run_calm(tmp_path: Path) -> None:
    store = all_failed_store(f"sqlite:///{tmp_path / 'results.db'}")
    parsed = parse_html(render_html(run_report(store, "r1")))
    assert parsed.ids.index("failures") < parsed.ids.index("changes")
    text = "".join(parsed.text)
    assert "12 of 12 ticks did not finish: failed: login refused for EMAIL" in text
    assert "Nothing moved beyond noise" not in text
    assert "None of the 12 ticks finished; only the calls recorded until then were compared with run r0:" in text
    assert "run failed ticks: failed ticks 0% -> 100%" in text


def test_changes_in_the_calls_of_ticks_that_all_failed_are_shown_as_such(tmp_path: Path) -> None:
    store = StoreBuilder(f"sqlite:///{tmp_path / 'results.db'}")
    store.run("r0", NOW - timedelta(days=1))
    for _ in range(3):
        store.tick("r0", "ann", NOW - timedelta(days=1), [("todo.create", 10)] * 10, {"todo": 4})
    store.run("r1", NOW - timedelta(hours=1))
    for _ in range(3):
        ended(store, "r1", "ann", NOW - timedelta(hours=1), "failed", "MindError: no plan", [("todo.create", 10, "x")])
    text = render_markdown(run_report(store, "r1"))
    assert (
        "### What changed\n"
        "None of the 3 ticks finished; only the calls recorded until then were compared with run r0:\n\n"
        "- todo: error rate 0% -> 100% since run r0\n"
    ) in text


def test_a_run_that_finished_has_no_failure_section_and_an_empty_one_is_not_calm(tmp_path: Path) -> None:
    store = all_failed_store(f"sqlite:///{tmp_path / 'results.db'}")
    finished = run_report(store, "r0")
    assert "did not finish" not in render_markdown(finished) and 'id="failures"' not in render_html(finished)
    # A window in which nothing ran, after one in which something did.
    empty = build_report(store.engine, window_scope(timedelta(hours=12), until=NOW - timedelta(hours=2)))
    for text in (render_markdown(empty), "".join(parse_html(render_html(empty)).text)):
        assert "Nothing moved beyond noise" not in text
        assert "No ticks in the last 12 hours, so nothing could be compared with the previous 12 hours." in text


def test_a_run_in_which_no_module_was_used_says_so_instead_of_an_empty_table(tmp_path: Path) -> None:
    store = StoreBuilder(f"sqlite:///{tmp_path / 'results.db'}")
    store.run("r0", NOW)
    for persona in ("ann", "bob"):  # refused at login: no tool listed, none called, nothing rated
        store.tick("r0", persona, NOW, [], {}, offered=None, status="failed")
    report = run_report(store, "r0")
    assert report.modules == [] and report.personas
    text = render_markdown(report)
    assert "### Modules\nNo module was used or rated in this scope.\n" in text and "| Module |" not in text
    parsed = parse_html(render_html(report))
    assert "No module was used or rated in this scope." in "".join(parsed.text)
    assert "modules" in parsed.ids and not {"details", "grid"} & set(parsed.ids)
    modules = re.search(r'<section id="modules">.*?</section>', render_html(report), flags=re.S)
    assert modules and "<table" not in modules[0]


def test_failure_reasons_are_shown_as_text(tmp_path: Path) -> None:
    store = StoreBuilder(f"sqlite:///{tmp_path / 'results.db'}")
    store.run("r0", NOW)
    hostile = "<img src=https://tracker.test/p.png> | ![x](https://tracker.test/y.png) `x`"
    ended(store, "r0", "ann", NOW, "failed", hostile)
    report = run_report(store, "r0")
    page = render_as_github(render_markdown(report))
    assert "<img" not in page and page.count("&lt;img src=https://tracker.test/p.png&gt; | ![x]") == 2
    assert hostile in "".join(parse_html(render_html(report)).text)


def test_identical_notes_are_folded_with_a_count(tmp_path: Path) -> None:
    store = StoreBuilder(f"sqlite:///{tmp_path / 'results.db'}")
    for user_id, name in (("ann", "Ann"), ("bob", "Bob"), ("cy", "Cy"), ("dee", "Dee")):
        store.persona(user_id, name, {"notes": 1})
    store.run("r0", NOW - timedelta(hours=1))
    slow = "slow, p95 1.4 s on notes.search"
    for minute, (persona, note) in enumerate(
        [("ann", slow), ("bob", slow), ("ann", slow), ("cy", " slow,  p95 1.4 s\non notes.search"), ("dee", slow)]
    ):
        at = NOW - timedelta(minutes=50 - minute)
        store.tick("r0", persona, at, [("notes.search", 1400)], {"notes": (2, note)})
    store.tick("r0", "bob", NOW, [("notes.search", 10)], {"notes": (1, "lost my note")})
    store.tick("r0", "bob", NOW, [("notes.search", 10)], {"notes": (2, "slow")})
    report = run_report(store, "r0")
    text = render_markdown(report)
    assert (
        "- rated 1 by Bob: lost my note\n"
        "- rated 2 by Bob: slow\n"
        f"- rated 2 by Ann, Bob, Dee and 1 other: {slow} (×5)\n"  # who gave it, by name
    ) in text
    html_text = "".join(parse_html(render_html(report)).text)
    assert f"2/5 Ann, Bob, Dee and 1 other: {slow} (×5)" in html_text and html_text.count(slow) == 1


def test_one_complaint_said_every_tick_does_not_crowd_out_the_others(tmp_path: Path) -> None:
    store = StoreBuilder(f"sqlite:///{tmp_path / 'results.db'}")
    store.run("r0", NOW - timedelta(hours=1))
    for minute in range(15):
        store.tick("r0", "ann", NOW - timedelta(minutes=minute), [("notes.search", 1400)], {"notes": (2, "slow")})
    store.tick("r0", "bob", NOW - timedelta(hours=2), [("notes.search", 10)], {"notes": (3, "search misses tags")})
    notes = run_report(store, "r0").module("notes")
    assert notes is not None
    assert [(note.rating, note.notes, note.count) for note in notes.notes] == [
        (2, "slow", 15),
        (3, "search misses tags", 1),
    ]
