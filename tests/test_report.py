"""Reports on stores with known content: every figure checked against values worked out by hand."""

from __future__ import annotations

import json
import math
import random
import re
import sqlite3
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta, timezone
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from markdown_it import MarkdownIt
from sqlalchemy import create_engine, delete
from sqlalchemy.engine import Engine, make_url
from sqlmodel import Session, col

from persona_runner.reporting.aggregate import build_report, runs_scope, window_scope
from persona_runner.reporting.formatting import utc_minute
from persona_runner.reporting.gate import Thresholds, compare
from persona_runner.reporting.html import render_html
from persona_runner.reporting.markdown import MAX_CELL, cell, code, render_markdown
from persona_runner.reporting.model import (
    RatingStats,
    Report,
    rating_noise,
    ratings_differ,
    t_quantile_975,
)
from persona_runner.store.db import open_store
from persona_runner.store.models import Persona, PersonaAction, PersonaFeedback, Run, Tick, Transcript
from persona_runner.util.canonical import canonical_json
from tests.cli_helpers import cli

NOW = datetime.now(UTC).replace(microsecond=0)
OFFERED = ["todo.create", "todo.list", "todo.delete", "calendar.add", "calendar.list"]

# A call: (tool, latency ms) or (tool, latency ms, error message).
Call = tuple[str, float] | tuple[str, float, str]


class StoreBuilder:
    """Writes rows the way a tick does, so tests state the content a report must summarise."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine: Engine = open_store(url)
        self._ticks = 0

    def persona(self, user_id: str, name: str, mix: dict[str, float]) -> None:
        with Session(self.engine) as session:
            session.add(
                Persona(
                    user_id=user_id,
                    email=f"{user_id}@personas.test",
                    name=name,
                    archetype="tester",
                    system_prompt="",
                    module_mix=mix,
                )
            )
            session.commit()

    def run(
        self,
        run_id: str,
        at: datetime,
        label: str | None = None,
        *,
        target: str = "http://127.0.0.1/mcp",
        injected: Sequence[str] = (),
    ) -> None:
        config = {"injected": list(injected)} if injected else {}
        with Session(self.engine) as session:
            session.add(Run(run_id=run_id, label=label, started_at=at, target=target, driver="scripted", config=config))
            session.commit()

    def tick(
        self,
        run_id: str,
        persona_id: str,
        at: datetime,
        calls: Sequence[Call],
        ratings: Mapping[str, int | tuple[int, str]],
        offered: Sequence[str] | None = OFFERED,
        probes: frozenset[int] = frozenset(),
        status: str = "ok",
        offered_on_row: bool = True,
    ) -> str:
        """`offered_on_row=False` writes the tools offered to the transcript only, as an earlier version did."""
        self._ticks += 1
        tick_id = f"{run_id}-{self._ticks}"
        rows: list[Any] = [
            Tick(
                tick_id=tick_id,
                run_id=run_id,
                persona_id=persona_id,
                persona_name=persona_id,
                tick_date=at.date().isoformat(),
                started_at=at,
                status=status,
                driver="scripted",
                tool_calls=len(calls),
                tools_offered=canonical_json(sorted(offered)) if offered is not None and offered_on_row else None,
            )
        ]
        if offered is not None:
            rows.append(Transcript(tick_id=tick_id, body={"tools_offered": list(offered), "calls": []}))
        for seq, (tool, latency, *error) in enumerate(calls):
            rows.append(
                PersonaAction(
                    id=f"{tick_id}:{seq}",
                    persona_id=persona_id,
                    tick_id=tick_id,
                    run_id=run_id,
                    seq=seq,
                    tool_name=tool,
                    module=tool.split(".")[0],
                    input_hash="0" * 64,
                    result="error" if error else "ok",
                    error_message=error[0] if error else None,
                    latency_ms=latency,
                    created_at=at,
                    probe=seq in probes,
                )
            )
        for module, given in ratings.items():
            rating, notes = given if isinstance(given, tuple) else (given, "")
            rows.append(
                PersonaFeedback(
                    id=f"{tick_id}:{module}",
                    persona_id=persona_id,
                    tick_id=tick_id,
                    run_id=run_id,
                    module=module,
                    rating=rating,
                    notes=notes,
                    created_at=at,
                )
            )
        with Session(self.engine) as session:
            session.add_all(rows)
            session.commit()
        return tick_id


def build_known_store(url: str) -> StoreBuilder:
    """Run r0 (a day ago, calendar healthy) and run r1 (now, calendar failing half its calls)."""
    store = StoreBuilder(url)
    store.persona("ann", "Ann", {"todo": 3, "calendar": 1})
    store.persona("bob", "Bob", {"todo": 1, "calendar": 1})
    earlier = NOW - timedelta(days=1, hours=1)
    store.run("r0", earlier, label="baseline")
    for ratings in (
        {"todo": 4, "calendar": 5},
        {"todo": 4, "calendar": 5},
        {"todo": 5, "calendar": 4},
        {"todo": 4, "calendar": 5},
    ):
        store.tick(
            "r0",
            "ann",
            earlier,
            [("todo.create", 15), ("calendar.add", 90), ("calendar.add", 110), ("calendar.list", 40)],
            ratings,
        )
    now = NOW - timedelta(hours=1)
    store.run("r1", now)
    store.tick(
        "r1",
        "ann",
        now,
        [("todo.create", 10), ("todo.create", 20), ("todo.list", 30), ("calendar.add", 100, "slot taken")],
        {"todo": (4, "fine"), "calendar": (2, "double booked")},
    )
    store.tick(
        "r1",
        "ann",
        now,
        [("todo.create", 40), ("calendar.add", 200, "slot taken"), ("calendar.list", 50)],
        {"todo": 5, "calendar": (1, "lost my <b>meeting</b> | twice")},
    )
    store.tick(
        "r1", "bob", now, [("todo.list", 60), ("calendar.add", 300)], {"todo": (3, "slow"), "calendar": (3, "ok")}
    )
    return store


def run_report(store: StoreBuilder, *run_ids: str) -> Report:
    with store.engine.connect() as conn:
        scope = runs_scope(conn, list(run_ids))
    return build_report(store.engine, scope)


def test_t_quantiles_match_the_printed_table_and_interpolate_between_rows() -> None:
    assert t_quantile_975(1) == pytest.approx(12.7062)
    assert t_quantile_975(2) == pytest.approx(4.3027)
    assert t_quantile_975(10) == pytest.approx(2.2281)
    assert t_quantile_975(22) == pytest.approx(2.0739, abs=0.001)  # between the rows for 20 and 25
    assert t_quantile_975(50) == pytest.approx(2.0086, abs=0.001)
    assert t_quantile_975(2.7557) == pytest.approx(3.3482, rel=0.002)  # a Welch df between the rows for 2.5 and 3
    assert t_quantile_975(1.1) == pytest.approx(10.2768, rel=0.004)  # the table is within 0.4% of the exact value
    assert t_quantile_975(1e9) == pytest.approx(1.96, abs=0.001)


def ratings(*values: int) -> RatingStats:
    return RatingStats.from_sums(len(values), sum(values), sum(v * v for v in values))


def test_ratings_differ_by_welchs_t_test() -> None:
    # 4.0 (sd 2/3) -> 3.2 (sd 0.789), ten ratings each: spreads s²/n = 0.04444 and 0.06222, se = 0.3266,
    # Welch df = 0.10667² / ((0.04444² + 0.06222²) / 9) = 17.51, t(17.51) = 2.1051, noise = 2.1051 * 0.3266 = 0.6875.
    # 0.8 > 0.6875: beyond noise (Welch p = 0.025), though the two 95% intervals [3.52, 4.48] and [2.64, 3.76] overlap.
    before, after = ratings(3, 3, 4, 4, 4, 4, 4, 4, 5, 5), ratings(2, 2, 3, 3, 3, 3, 4, 4, 4, 4)
    assert (before.mean, after.mean) == (4.0, 3.2) and before.ci_low is not None and after.ci_high is not None
    assert after.ci_high > before.ci_low
    assert rating_noise(before, after) == pytest.approx(0.6875, abs=0.0005)
    assert ratings_differ(before, after) is True
    # 4.5 (sd 0.577) -> 3.5 (sd 1.732), four each: se = 0.9129, df = 3.66, t = 2.8817, noise 2.6306 > 1.0 (p = 0.34).
    assert rating_noise(ratings(4, 5, 4, 5), ratings(4, 5, 4, 1)) == pytest.approx(2.6306, rel=0.002)
    assert ratings_differ(ratings(4, 5, 4, 5), ratings(4, 5, 4, 1)) is False
    assert ratings_differ(ratings(5, 5), ratings(4, 4)) is True  # no spread on either side: any difference is real
    assert ratings_differ(ratings(4), ratings(1, 1, 1)) is None


def test_rating_interval_is_the_t_interval_of_the_mean() -> None:
    ratings = [2, 3, 3, 4]
    stats = RatingStats.from_sums(len(ratings), sum(ratings), sum(r * r for r in ratings))
    sd = math.sqrt(2 / 3)
    assert (stats.n, stats.mean, stats.sd) == (4, 3.0, pytest.approx(sd))
    half = 3.1824 * sd / 2
    assert (stats.ci_low, stats.ci_high) == (pytest.approx(3 - half), pytest.approx(3 + half))
    single = RatingStats.from_sums(1, 4, 16)
    assert (single.mean, single.ci_low, single.ci_high) == (4.0, None, None)


def test_module_figures_match_hand_computed_values(store_url: str) -> None:
    report = run_report(build_known_store(store_url), "r1")
    assert [m.module for m in report.modules] == ["calendar", "todo"]
    todo, calendar = report.module("todo"), report.module("calendar")
    assert todo and calendar

    # Ratings: todo 4, 5, 3 and calendar 2, 1, 3: both sd 1, half-width t(2) / sqrt(3), clamped to the 1..5 scale.
    half = 4.3027 / math.sqrt(3)
    assert (todo.rating.n, todo.rating.mean, todo.rating.sd) == (3, 4.0, pytest.approx(1.0))
    assert (todo.rating.ci_low, todo.rating.ci_high) == (pytest.approx(4 - half), 5.0)
    assert (calendar.rating.mean, calendar.rating.ci_low, calendar.rating.ci_high) == (
        2.0,
        1.0,
        pytest.approx(2 + half),
    )

    assert (todo.calls, todo.errors, todo.error_rate) == (5, 0, 0.0)
    assert (calendar.calls, calendar.errors, calendar.error_rate) == (4, 2, 0.5)
    tools = {t.tool: t for m in report.modules for t in m.tools}
    # Linear interpolation at position (n - 1) * p of the sorted latencies.
    assert (tools["todo.create"].p50_ms, tools["todo.create"].p95_ms, tools["todo.create"].p99_ms) == (
        20,
        pytest.approx(38),
        pytest.approx(39.6),
    )
    assert (tools["todo.list"].p50_ms, tools["todo.list"].p95_ms, tools["todo.list"].p99_ms) == (
        45,
        pytest.approx(58.5),
        pytest.approx(59.7),
    )
    assert (tools["calendar.add"].p50_ms, tools["calendar.add"].p95_ms) == (200, pytest.approx(290))
    assert tools["calendar.add"].error_rate == pytest.approx(2 / 3)
    assert tools["calendar.list"].p99_ms == 50

    assert (todo.tools_offered, todo.tools_used, todo.coverage) == (
        ["todo.create", "todo.delete", "todo.list"],
        ["todo.create", "todo.list"],
        pytest.approx(2 / 3),
    )
    assert (calendar.coverage, calendar.coverage_basis) == (1.0, "offered")
    # Ann made 7 calls with mix 3:1, Bob 2 with 1:1: intended todo = (7 * 3/4 + 2 * 1/2) / 9.
    assert (todo.actual_share, todo.intended_share) == (pytest.approx(5 / 9), pytest.approx(6.25 / 9))
    assert (calendar.actual_share, calendar.intended_share) == (pytest.approx(4 / 9), pytest.approx(2.75 / 9))

    assert [(e.message, e.count) for e in calendar.top_errors] == [("slot taken", 2)]
    assert [(n.rating, n.persona) for n in calendar.notes] == [(1, "Ann"), (2, "Ann"), (3, "Bob")]
    assert [n.notes for n in todo.notes] == ["slow", "fine"]  # lowest first; empty notes left out
    assert report.trend_by == "run" and [p.bucket for p in calendar.trend] == ["r1"]


def test_refused_probes_are_not_product_errors(store_url: str) -> None:
    store = StoreBuilder(store_url)
    store.persona("gremlin", "Gremlin", {"todo": 1})
    store.run("r0", NOW - timedelta(hours=1))
    calls: list[Call] = [
        ("todo.create", 10, "invalid arguments for todo.create: title: too long"),
        ("todo.create", 10, "invalid arguments for todo.create: due: not a date"),
        ("todo.create", 10, "database is down"),
        ("todo.create", 10),
    ]
    store.tick("r0", "gremlin", NOW - timedelta(hours=1), calls, {"todo": 4}, probes=frozenset({0, 1}))
    module = next(m for m in run_report(store, "r0").modules if m.module == "todo")
    assert (module.calls, module.errors, module.error_rate) == (4, 1, 0.25)
    assert [e.message for e in module.top_errors] == ["database is down"]


def test_persona_figures_and_rating_grid(store_url: str) -> None:
    report = run_report(build_known_store(store_url), "r1")
    assert report.totals.model_dump() == {
        "ticks": 3,
        "calls": 9,
        "errors": 2,
        "ratings": 6,
        "personas": 2,
        "tick_statuses": {"ok": 3},
    }
    ann, bob = report.personas
    assert (ann.name, ann.ticks, ann.calls, ann.errors) == ("Ann", 2, 7, 2)
    assert (bob.name, bob.ticks, bob.calls, bob.errors) == ("Bob", 1, 2, 0)
    assert {m: s.mean for m, s in ann.ratings.items()} == {"calendar": 1.5, "todo": 4.5}
    assert {m: (s.mean, s.n) for m, s in bob.ratings.items()} == {"calendar": (3.0, 1), "todo": (3.0, 1)}


def test_what_changed_names_modules_that_moved_beyond_noise(store_url: str) -> None:
    report = run_report(build_known_store(store_url), "r1")
    assert report.previous and report.previous.run_ids == ["r0"]
    # Calendar ratings 4.75 (sd 0.5, n 4) -> 2.0 (sd 1, n 3): se = 0.629, Welch df = 2.76, t = 3.348,
    # noise 2.107 < 2.75.
    # Calendar errors 0/12 -> 2/4: pooled 1/8, spread 1/3, (0.5 - 0.1667) / 0.191 = 1.75 < 1.96. Todo did not move.
    [change] = report.changes
    assert change.summary == "calendar: mean rating 4.8 -> 2.0, error rate 0% -> 50% since run r0"
    assert (change.error_rate_moved, change.rating_moved, change.worse) == (False, True, True)
    first = run_report(StoreBuilder(store_url), "r0")
    assert first.previous is None and first.changes == []


def test_window_report_trends_per_day_and_compares_with_the_previous_window(store_url: str) -> None:
    store = build_known_store(store_url)
    report = build_report(store.engine, window_scope(timedelta(days=7)))
    assert (report.totals.calls, report.totals.ticks, report.trend_by) == (25, 7, "day")
    calendar = report.module("calendar")
    assert calendar is not None
    days = [(NOW - timedelta(days=1, hours=1)).date().isoformat(), (NOW - timedelta(hours=1)).date().isoformat()]
    assert [(p.bucket, p.rating.mean, p.error_rate) for p in calendar.trend] == [
        (days[0], 4.75, 0.0),
        (days[1], 2.0, 0.5),
    ]
    assert report.previous and report.previous.label == "the previous 7 days" and report.changes == []
    empty = build_report(store.engine, window_scope(timedelta(hours=1), until=NOW - timedelta(days=3)))
    assert empty.is_empty and empty.modules == []


def zoned_engine(pg_url: str, zone: str) -> Engine:
    """An engine whose sessions run in the given TimeZone, as a server configured for that zone would,
    keeping the options (the schema to use) the URL already has."""
    url = make_url(pg_url)
    options = f"{url.query.get('options', '')} -c timezone={zone}".strip()
    return create_engine(url.update_query_dict({"options": options}))


@pytest.mark.postgres
def test_day_buckets_are_utc_days_whatever_the_server_time_zone(pg_url: str) -> None:
    store = StoreBuilder(pg_url)
    store.engine = zoned_engine(
        pg_url, "Pacific/Kiritimati"
    )  # rows written at UTC+14, where both moments fall on Nov 21
    late, early = datetime(2026, 11, 20, 23, 30, tzinfo=UTC), datetime(2026, 11, 21, 0, 30, tzinfo=UTC)
    store.run("r0", late)
    store.tick("r0", "ann", late, [("todo.create", 10)], {"todo": 4})
    store.tick("r0", "ann", early, [("todo.create", 10), ("todo.list", 10)], {"todo": 2})
    store.engine.dispose()
    scope = window_scope(timedelta(days=3), until=datetime(2026, 11, 22, 12, tzinfo=UTC))
    # Read at UTC-8 a session's own date of both moments is Nov 20, at UTC+9 Nov 21: only UTC splits them.
    for zone in ("America/Los_Angeles", "Asia/Tokyo"):
        engine = zoned_engine(pg_url, zone)
        todo = build_report(engine, scope).module("todo")
        engine.dispose()
        assert todo and [(p.bucket, p.calls, p.rating.mean) for p in todo.trend] == [
            ("2026-11-20", 1, 4.0),
            ("2026-11-21", 2, 2.0),
        ], zone


def test_the_store_hands_back_aware_utc_times_and_they_show_in_utc(store_url: str) -> None:
    store = StoreBuilder(store_url)
    store.run("r0", datetime(2026, 11, 20, 15, 30, tzinfo=timezone(timedelta(hours=-8))))
    with Session(store.engine) as session:
        started = session.get_one(Run, "r0").started_at
    assert started == datetime(2026, 11, 20, 23, 30, tzinfo=UTC) and started.utcoffset() == timedelta(0)
    assert utc_minute(started) == utc_minute(started.astimezone(timezone(timedelta(hours=-8)))) == "2026-11-20 23:30"


def test_report_over_several_runs_trends_per_run_in_start_order(store_url: str) -> None:
    report = run_report(build_known_store(store_url), "r1", "r0")
    assert (report.scope.run_ids, report.scope.label, report.previous) == (["r0", "r1"], "runs r0, r1", None)
    calendar = report.module("calendar")
    assert calendar and [(p.bucket, p.calls, p.errors, p.rating.mean) for p in calendar.trend] == [
        ("r0", 12, 0, 4.75),
        ("r1", 4, 2, 2.0),
    ]


def test_coverage_falls_back_to_tools_seen_when_no_transcript_lists_them(tmp_path: Path) -> None:
    store = StoreBuilder(f"sqlite:///{tmp_path / 'results.db'}")
    store.run("r0", NOW - timedelta(hours=2))
    store.tick("r0", "ann", NOW - timedelta(hours=2), [("todo.create", 5), ("todo.list", 5)], {}, offered=None)
    store.run("r1", NOW)
    store.tick("r1", "ann", NOW, [("todo.create", 5)], {"todo": 4}, offered=None)
    todo = run_report(store, "r1").module("todo")
    assert todo and (todo.coverage_basis, todo.tools_offered, todo.coverage) == (
        "seen",
        ["todo.create", "todo.list"],
        0.5,
    )
    assert todo.intended_share is None  # no persona row, so no mix to compare against


def test_tools_offered_come_from_tick_rows_and_the_transcripts_of_older_ticks(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'results.db'}"
    store = StoreBuilder(url)
    store.run("r0", NOW)
    ann = store.tick("r0", "ann", NOW, [("todo.create", 5)], {"todo": 4}, offered=["todo.create", "todo.list"])
    store.tick("r0", "bob", NOW, [("todo.create", 5)], {}, offered=["todo.delete"], offered_on_row=False)
    with store.engine.begin() as conn:  # Ann's list is on her tick's row alone
        conn.execute(delete(Transcript).where(col(Transcript.tick_id) == ann))
    todo = run_report(store, "r0").module("todo")
    assert todo and todo.tools_offered == ["todo.create", "todo.delete", "todo.list"]

    # A store from before ticks kept the list, read as it is (reading commands do not upgrade a store).
    store.engine.dispose()
    with sqlite3.connect(tmp_path / "results.db") as db:
        db.execute("ALTER TABLE ticks DROP COLUMN tools_offered")
    older = open_store(url, create=False)
    with older.connect() as conn:
        scope = runs_scope(conn, ["r0"])
    todo = build_report(older, scope).module("todo")
    assert todo and todo.tools_offered == ["todo.delete"]
    older.dispose()


class StrictHTML(HTMLParser):
    """Fails on any end tag that does not close the innermost open element; records ids and tags."""

    VOID = frozenset({"meta", "br", "hr", "img", "input", "link", "wbr"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.ids: list[str] = []
        self.tags: set[str] = set()
        self.links: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_startendtag(tag, attrs)
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)
        self.ids += [value for name, value in attrs if name == "id" and value]
        self.links += [value or "" for name, value in attrs if name in ("href", "src", "xlink:href")]

    def handle_endtag(self, tag: str) -> None:
        assert self.stack and self.stack[-1] == tag, f"</{tag}> closes <{self.stack[-1] if self.stack else None}>"
        self.stack.pop()

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def parse_html(page: str) -> StrictHTML:
    parser = StrictHTML()
    parser.feed(page)
    parser.close()
    assert parser.stack == [], f"unclosed: {parser.stack}"
    assert len(set(parser.ids)) == len(parser.ids), f"repeated ids: {sorted(parser.ids)}"
    return parser


def test_html_is_balanced_self_contained_and_has_every_section(store_url: str) -> None:
    page = render_html(run_report(build_known_store(store_url), "r1"))
    assert page.startswith("<!DOCTYPE html>")
    parsed = parse_html(page)
    assert {"changes", "summary", "modules", "details", "personas", "grid", "module-todo", "module-calendar"} <= set(
        parsed.ids
    )
    assert {"svg", "circle", "rect", "style"} <= parsed.tags
    assert not {"script", "link", "img", "iframe"} & parsed.tags and "url(" not in page and "@import" not in page
    assert parsed.links and all(link.startswith("#") and link[1:] in parsed.ids for link in parsed.links)
    text = "".join(parsed.text)
    assert "lost my <b>meeting</b> | twice" in text  # user text shown as text, never as markup
    assert "calendar: mean rating 4.8 -> 2.0, error rate 0% -> 50% since run r0" in text
    assert "@media print" in page and "width=device-width" in page


def test_every_module_gets_its_own_anchor(tmp_path: Path) -> None:
    store = StoreBuilder(f"sqlite:///{tmp_path / 'results.db'}")
    store.run("r0", NOW)
    tools = ["a_b.x", "a-b.x", "A-b.x", "details.x"]
    store.tick("r0", "ann", NOW, [(tool, 10) for tool in tools], {}, offered=tools)
    parsed = parse_html(render_html(run_report(store, "r0")))  # fails on a repeated id
    assert parsed.links == [
        "#module-_41_-b",
        "#module-a-b",
        "#module-a_5f_b",
        "#module-details",
    ]  # A-b, a-b, a_b, details
    assert {link[1:] for link in parsed.links} | {"details"} <= set(parsed.ids)


def test_markdown_fits_a_pull_request_comment(store_url: str) -> None:
    text = render_markdown(run_report(build_known_store(store_url), "r1"))
    assert len(text) < 65536
    for heading in (
        "## Persona feedback: run r1",
        "### What changed",
        "### Modules",
        "### Errors and lowest-rated notes",
        "### Personas",
    ):
        assert heading in text
    assert "- calendar: mean rating 4.8 -> 2.0, error rate 0% -> 50% since run r0" in text
    assert (
        "| calendar | 2.0 [1.0-4.5] | 3 | 4 | 50% | 50% (1/2, k=1.5) | 290 ms `calendar.add` | 100% | 44% / 31% |"
        in text
    )
    assert "lost my &lt;b>meeting&lt;/b> \\| twice" in text
    assert "| Ann | 2 | 7 | 2 | 1.5 | 4.5 |" in text


def test_html_modules_table_shows_pass_k_as_markdown_does(store_url: str) -> None:
    page = render_html(run_report(build_known_store(store_url), "r1"))
    section = re.search(r'<section id="modules">.*?</section>', page, flags=re.S)
    assert section
    headers = re.findall(r"<th[^>]*>(.*?)</th>", section[0])
    calendar = re.search(r'<tr><td><a href="#module-calendar">.*?</tr>', section[0], flags=re.S)
    assert calendar
    cells = dict(zip(headers, re.findall(r"<td[^>]*>(.*?)</td>", calendar[0], flags=re.S), strict=True))
    # Ann met an error with calendar in both her ticks, Bob in none of his: 1 of 2 personas clean, 3 ticks over 2.
    assert cells["pass^k"] == "50% (1/2, k=1.5)" and cells["Error rate"] == "50%"
    assert "pass^k: the share of personas whose every tick with the module met no product error" in section[0]


def test_what_changed_lines_in_markdown_are_whole(tmp_path: Path) -> None:
    store = StoreBuilder(f"sqlite:///{tmp_path / 'results.db'}")
    base, candidate = "20261201-020000-aa11bb", "20261202-020000-cc22dd"
    for run_id, at, ms, fails in ((base, NOW - timedelta(days=1), 40.0, False), (candidate, NOW, 340.0, True)):
        store.run(run_id, at)
        calls: list[Call] = [("todo.list", ms * random.Random(i).uniform(0.95, 1.05)) for i in range(15)]
        calls += [("todo.complete", 25.0, "500") if fails else ("todo.complete", 25.0) for _ in range(4)]
        store.tick(run_id, "p0", at, calls, {}, offered=None)
    report = run_report(store, candidate)
    summaries = [change.summary for change in report.changes]
    assert len(summaries) == 2 and max(map(len, summaries)) > MAX_CELL  # longer than a table cell may be
    text = render_markdown(report)
    for summary in summaries:
        assert summary.endswith(f"since run {base}") and f"- {summary}\n" in text


def test_json_puts_failures_before_the_modules_and_reads_older_exports(tmp_path: Path) -> None:
    report = run_report(build_known_store(f"sqlite:///{tmp_path / 'results.db'}"), "r1")
    figures = json.loads(report.model_dump_json())
    keys = list(figures)
    assert keys.index("totals") < keys.index("failures") < keys.index("changes") < keys.index("modules")
    assert keys.index("modules") < keys.index("personas") and keys.index("runs") < keys.index("totals")
    # An export from before: modules first, no failures, runs or ticks to look at, no `recorded_nothing`.
    older_order = ["generated_at", "store", "scope", "previous", "trend_by", "totals", "changes", "modules", "personas"]
    older = {key: figures[key] for key in older_order}
    for scope in (older["scope"], older["previous"]):
        del scope["recorded_nothing"]
    read = Report.model_validate_json(json.dumps(older))
    kept = {"failures", "runs", "look_at"}
    assert read.model_dump(exclude=kept) == report.model_dump(exclude=kept) and read.failures == read.runs == []
    assert compare(read, report, Thresholds()).passed  # the gate reads it as it reads a fresh one


def render_as_github(markdown: str) -> str:
    """Markdown rendered as a PR comment is: CommonMark with tables, raw HTML allowed."""
    return MarkdownIt("commonmark", {"html": True}).enable("table").render(markdown)


def test_markdown_shows_html_and_links_from_notes_as_text(tmp_path: Path) -> None:
    store = StoreBuilder(f"sqlite:///{tmp_path / 'results.db'}")
    store.run("r0", NOW)
    hostile = (
        "<!-- the rest is hidden --> <img src=https://tracker.test/pixel.png> ![x](https://tracker.test/y.png) a & b"
    )
    store.tick("r0", "ann", NOW, [("todo.create<b>", 10, hostile)], {"todo": (1, hostile)})
    page = render_as_github(render_markdown(run_report(store, "r0")))
    assert "<img" not in page and "<!--" not in page and "<b>" not in page
    assert (
        page.count(
            "&lt;!-- the rest is hidden --&gt; &lt;img src=https://tracker.test/pixel.png&gt;"
            " ![x](https://tracker.test/y.png) a &amp; b"
        )
        == 2
    )
    assert "<code>todo.create&lt;b&gt;</code>" in page and "<h3>Personas</h3>" in page


def test_report_command_writes_every_format(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = build_known_store(f"sqlite:///{tmp_path / 'results.db'}")
    monkeypatch.chdir(tmp_path)
    done = cli("report", "--db", "results.db")
    assert done.returncode == 0, done.stderr
    written = sorted(p.name for p in (tmp_path / "reports").iterdir())
    assert len(written) == 2 and "latest.html" in written and written[0].endswith("Z.html")
    assert (tmp_path / "reports" / "latest.html").read_text() == (tmp_path / "reports" / written[0]).read_text()
    assert f"wrote reports/{written[0]}" in done.stdout

    done = cli("report", "--db", "results.db", "--run", "r1", "--format", "json", "--out", "out/r1.json")
    assert done.returncode == 0, done.stderr
    figures = json.loads((tmp_path / "out" / "r1.json").read_text())
    assert figures == json.loads(run_report(store, "r1").model_dump_json(exclude={"generated_at"})) | {
        "generated_at": figures["generated_at"]
    }
    done = cli("report", "--db", "results.db", "--since", "24h", "--format", "md", "--out", "r.md")
    assert done.returncode == 0 and (tmp_path / "r.md").read_text().startswith("## Persona feedback: the last 24 hours")
    done = cli("report", "--db", "results.db", "--run", "r1", "--run", "r0", "--format", "md", "--out", "r.md")
    assert done.returncode == 0 and (tmp_path / "r.md").read_text().startswith("## Persona feedback: runs r0, r1")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--since", "7x"], "--since '7x': expected a positive count"),
        (["--since", "1000000d"], "--since '1000000d': the window can be at most 3650 days (--since 3650d)"),
        (["--since", "9999999999d"], "the window can be at most 3650 days"),
        (["--since", "9" * 5000 + "w"], "the window can be at most 3650 days"),
        (["--since", "3651d"], "the window can be at most 3650 days"),
        (["--run", "nope"], "unknown run nope"),
        (["--run", "r1", "--since", "7d"], "exclude each other"),
        (["--db", "missing.db"], "missing.db does not exist; run `persona-runner run` first or pass --db"),
    ],
)
def test_report_command_refuses_mistakes_without_writing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: list[str], message: str
) -> None:
    build_known_store(f"sqlite:///{tmp_path / 'results.db'}")
    monkeypatch.chdir(tmp_path)
    done = cli("report", "--db", "results.db", "--out", "r.html", *args)
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr.startswith("error: ") and message in done.stderr and done.stderr.count("\n") == 1
    assert not (tmp_path / "r.html").exists()


@pytest.mark.parametrize(
    "command",
    [
        ["report"],
        ["gate", "--baseline", "r0", "--candidate", "r1"],
        ["runs", "list"],
        ["runs", "export", "r1"],
        ["personas", "list"],
        ["personas", "show", "ann"],
    ],
)
def test_reading_commands_neither_create_a_store_nor_its_schema(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: list[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    done = cli(*command, "--db", "new.db")
    assert (done.returncode, done.stderr) == (
        2,
        f"error: results store {(tmp_path / 'new.db').resolve()} does not exist;"
        " run `persona-runner run` first or pass --db\n",
    )
    assert not (tmp_path / "new.db").exists()
    (tmp_path / "blank.db").touch()
    done = cli(*command, "--db", "blank.db")
    assert (
        done.returncode == 2
        and "blank.db has no tables persona_actions, persona_feedback, personas, runs, ticks, transcripts;"
        in done.stderr
    )
    assert (tmp_path / "blank.db").stat().st_size == 0


def test_listing_an_empty_store_is_not_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    StoreBuilder(f"sqlite:///{tmp_path / 'results.db'}")
    monkeypatch.chdir(tmp_path)
    runs = cli("runs", "list", "--db", "results.db")
    assert (runs.returncode, runs.stdout, runs.stderr) == (
        0,
        f"no runs recorded in {(tmp_path / 'results.db').resolve()}\n",
        "",
    )
    personas = cli("personas", "list", "--db", "results.db")
    assert (personas.returncode, personas.stdout, personas.stderr) == (
        0,
        "no personas in the results store yet: run `persona-runner run` or `persona-runner seed`\n",
        "",
    )


def test_runs_list_and_export(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = build_known_store(f"sqlite:///{tmp_path / 'results.db'}")
    monkeypatch.chdir(tmp_path)
    done = cli("runs", "list", "--db", "results.db")
    assert done.returncode == 0
    lines = [line for line in done.stdout.splitlines() if " r0 " in line or " r1 " in line]
    assert "r1" in lines[0] and "r0" in lines[1] and "baseline" in lines[1] and " 4 " in lines[1] and " 3 " in lines[0]
    assert cli("runs", "export", "r1", "--db", "results.db", "--out", "baseline.json").returncode == 0
    exported = Report.model_validate_json((tmp_path / "baseline.json").read_text())
    assert exported.model_dump(exclude={"generated_at", "previous", "changes"}) == run_report(store, "r1").model_dump(
        exclude={"generated_at", "previous", "changes"}
    )
    assert cli("runs", "export", "nope", "--db", "results.db").returncode == 2


def test_labels_are_shown_as_text_not_markup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = StoreBuilder(f"sqlite:///{tmp_path / 'results.db'}")
    store.run("r0", NOW, label="nightly [/x] [red]1.2")
    monkeypatch.chdir(tmp_path)
    done = cli("runs", "list", "--db", "results.db")
    assert done.returncode == 0 and "nightly [/x] [red]1.2" in done.stdout


def test_markdown_text_and_code_spans_show_what_was_written() -> None:
    # No code span forms inside a cell, so the escaped "<" reads as "<", not as "&lt;".
    assert cell("use `<b>` here") == "use \\`&lt;b>\\` here"
    assert code("todo.l|st") == "`todo.l\\|st`" and code("todo.l|st", in_table=False) == "`todo.l|st`"
