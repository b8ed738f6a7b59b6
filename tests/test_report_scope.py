"""What a report covers: the runs it names, a window kept to one label or target, and a warning when runs
with injected faults are mixed with runs without."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from persona_runner.reporting.aggregate import build_report, window_scope
from persona_runner.reporting.html import render_html
from persona_runner.reporting.markdown import render_markdown
from tests.cli_helpers import cli, one_line_error
from tests.test_report import NOW, StoreBuilder

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
