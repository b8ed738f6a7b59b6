"""What a report covers: the runs it names, a window kept to one label or target, a warning when runs
with injected faults are mixed with runs without, and the scope "what changed" compares it with."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest

from persona_runner.reporting.aggregate import build_report, previous_scope, runs_scope, window_scope
from persona_runner.reporting.html import render_html
from persona_runner.reporting.markdown import render_markdown
from persona_runner.reporting.model import RunKind
from tests.cli_helpers import cli, one_line_error
from tests.test_report import NOW, StoreBuilder, parse_html

STAGING = "http://staging.test:8765"


@pytest.fixture
def store(tmp_path: Path) -> StoreBuilder:
    """Three runs in the last day: a nightly one against staging, a fault-injected one on the embedded
    product, and a nightly one the day before (the previous window)."""
    built = StoreBuilder(f"sqlite:///{tmp_path / 'results.db'}")
    built.run("old", NOW - timedelta(days=1, hours=2), "nightly", target=STAGING)
    built.tick("old", "ann", NOW - timedelta(days=1, hours=2), [("todo.create", 10.0)] * 4, {"todo": 5})
    built.run("night", NOW - timedelta(hours=3), "nightly", target=STAGING)
    built.tick("night", "ann", NOW - timedelta(hours=3), [("todo.create", 10.0)] * 4, {"todo": 5})
    built.run("chaos", NOW - timedelta(hours=2), "fault drill", injected=["--fault todo.create=1.0"])
    built.tick("chaos", "bob", NOW - timedelta(hours=2), [("todo.create", 10.0, "500 injected")] * 4, {"todo": 1})
    return built


def test_a_window_names_its_runs_and_warns_when_it_mixes_injected_faults_with_real_ones(store: StoreBuilder) -> None:
    report = build_report(store.engine, window_scope(timedelta(hours=24), NOW))
    assert [run.run_id for run in report.runs] == ["night", "chaos"]
    assert report.runs[1].injected == ["--fault todo.create=1.0"] and report.mixes_injected_runs
    text = render_markdown(report)
    assert "Covers 2 runs: night (nightly), chaos (fault drill) with --fault todo.create=1.0." in text
    assert "**Mixes runs with injected faults and runs without: their errors and latency blur each other;" in text
    page = render_html(report)
    assert "Covers 2 runs: night (nightly), chaos (fault drill) with --fault todo.create=1.0." in page
    assert "Mixes runs with injected faults and runs without" in page


@pytest.mark.parametrize(
    ("only", "runs"),
    [
        ({"run_label": "nightly"}, ["night"]),
        ({"target": STAGING}, ["night"]),
        ({"run_label": "fault drill"}, ["chaos"]),
    ],
)
def test_a_window_kept_to_one_label_or_target_covers_only_its_runs(
    store: StoreBuilder, only: dict[str, str], runs: list[str]
) -> None:
    report = build_report(store.engine, window_scope(timedelta(hours=24), NOW, **only))
    assert [run.run_id for run in report.runs] == runs and not report.mixes_injected_runs
    assert report.totals.ticks == 1
    # The previous window keeps to the same runs: last night's nightly run, never the fault drill.
    assert report.previous is not None and report.previous.run_label == only.get("run_label")
    if only.get("run_label") == "nightly":
        assert "(label nightly)" in report.scope.label and not report.changes


def test_the_report_command_filters_and_says_when_runs_are_mixed(store: StoreBuilder, tmp_path: Path) -> None:
    db = ["--db", str(tmp_path / "results.db")]
    mixed = cli("report", "--since", "24h", "--format", "md", "--out", str(tmp_path / "all.md"), *db)
    assert mixed.returncode == 0 and "mixes runs with injected faults and runs without" in mixed.stderr
    kept = cli("report", "--since", "24h", "--label", "nightly", "--format", "md", "--out", str(tmp_path / "n.md"), *db)
    assert kept.returncode == 0 and "mixes" not in kept.stderr
    assert "Covers 1 run: night (nightly)." in (tmp_path / "n.md").read_text()
    both = cli("report", "--run", "night", "--label", "nightly", *db)
    assert both.returncode == 2 and "--label and --target filter a time window" in one_line_error(both.stderr)


def test_an_earlier_window_that_recorded_nothing_is_said_so_in_every_format(store: StoreBuilder) -> None:
    drill = build_report(store.engine, window_scope(timedelta(hours=24), NOW, run_label="fault drill"))
    assert drill.previous is not None and drill.previous.recorded_nothing and drill.changes == []
    said = "Nothing was recorded in the previous 24 hours, so there is nothing to compare with."
    for text in (render_markdown(drill), "".join(parse_html(render_html(drill)).text)):
        assert said in text and "Nothing moved" not in text
    assert json.loads(drill.model_dump_json())["previous"]["recorded_nothing"] is True
    # Last night's nightly run is there to compare with: nothing moved, and the report says that instead.
    nightly = build_report(store.engine, window_scope(timedelta(hours=24), NOW, run_label="nightly"))
    assert nightly.previous is not None and not nightly.previous.recorded_nothing
    assert "Nothing moved beyond noise since the previous 24 hours." in render_markdown(nightly)


#: Runs oldest first: id, label, injected faults. "empty" recorded no tick.
HISTORY = [
    ("n1", "nightly", ()),
    ("try1", None, ()),
    ("drill", "drill", ("--fault todo.create=1.0",)),
    ("slow", "slow", ("--delay todo.list=300ms",)),
    ("n2", "nightly", ()),
    ("empty", "nightly", ()),
    ("try2", None, ()),
    ("drill2", "drill", ("--fault todo.create=1.0",)),
    ("n3", "nightly-2026-12-02", ()),
]


@pytest.mark.parametrize(
    ("runs", "previous"),
    [
        (["n2"], "n1"),  # the same label, over the drill, the slow run and a try between
        (["try2"], "try1"),  # no label goes with no label, over the nightly runs between
        (["slow"], "try1"),  # injected faults of its own: a clean run, never the drill just before
        (["drill2"], "drill"),  # the same label and faults, over the clean runs between
        (["n3"], "try2"),  # a label new today: the latest clean run, never the drill just before
        (["try2", "n3"], "try1"),  # several runs: like the first of them
        (["n1"], None),  # nothing earlier
    ],
)
def test_a_run_is_compared_with_the_latest_earlier_run_like_it(
    tmp_path: Path, runs: list[str], previous: str | None
) -> None:
    history = StoreBuilder(f"sqlite:///{tmp_path / 'results.db'}")
    for hours_ago, (run_id, label, injected) in zip(range(len(HISTORY), 0, -1), HISTORY, strict=True):
        at = NOW - timedelta(hours=hours_ago)
        history.run(run_id, at, label, injected=injected)
        if run_id != "empty":
            history.tick(run_id, "ann", at, [("todo.create", 10.0)], {"todo": 4})
    with history.engine.connect() as conn:
        report = build_report(history.engine, runs_scope(conn, runs))
    assert (report.previous.run_ids if report.previous else None) == ([previous] if previous else None)
    expected = f"since run {previous}." if previous else "No earlier run like this one to compare against."
    assert expected in render_markdown(report)


def test_a_run_with_faults_of_its_own_and_no_clean_run_before_it_is_compared_with_none(tmp_path: Path) -> None:
    history = StoreBuilder(f"sqlite:///{tmp_path / 'results.db'}")
    for i, (run_id, injected) in enumerate((("slow", "--delay todo.list=300ms"), ("chaos", "--fault x=1"))):
        at = NOW - timedelta(hours=2 - i)
        history.run(run_id, at, injected=[injected])
        history.tick(run_id, "ann", at, [("todo.create", 10.0)], {"todo": 4})
    with history.engine.connect() as conn:
        assert previous_scope(conn, runs_scope(conn, ["chaos"])) is None


def test_faults_given_in_another_order_are_the_same_kind_of_run() -> None:
    both = ["--fault todo.create=1.0", "--delay todo.list=300ms"]
    assert RunKind.of("drill", {"injected": both}) == RunKind.of("drill", {"injected": both[::-1]})
    assert RunKind.of(None, None) == RunKind.of(None, {}) == RunKind(None, ())
