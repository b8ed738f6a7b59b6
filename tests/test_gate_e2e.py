"""The regression gate and the report on real runs: a baseline against a healthy product, a
candidate against one whose todo.list always fails (`run --fault`), judged by the command line."""

from __future__ import annotations

import json
import re
import sqlite3
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tests.cli_helpers import cli

RUN = ("--seed", "11", "--date", "2026-11-20", "--max-turns", "15")


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, str]:
    """A healthy baseline run and a faulted candidate run of the same seed in one results store,
    made once for the module: every test here only reads them."""
    db = tmp_path_factory.mktemp("gate") / "results.db"
    for label, flags in (("baseline", ()), ("candidate", ("--fault", "todo.list=1.0"))):
        done = cli("run", "--db", str(db), "--label", label, *RUN, *flags)
        assert done.returncode == 0, done.stderr
    with sqlite3.connect(db) as conn:
        ids = dict(conn.execute("SELECT label, run_id FROM runs").fetchall())
    return db, ids["baseline"], ids["candidate"]


def test_a_faulted_tool_fails_the_gate_naming_module_and_tool(two_runs: tuple[Path, str, str], tmp_path: Path) -> None:
    db, baseline, candidate = two_runs
    junit, summary = tmp_path / "gate.xml", tmp_path / "gate.md"
    done = cli(
        "gate",
        "--baseline",
        baseline,
        "--candidate",
        candidate,
        "--junit",
        str(junit),
        "--markdown",
        str(summary),
        "--db",
        str(db),
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert (
        "FAIL todo.list error rate: error rate 0% -> 100%" in done.stdout
        and "FAIL todo error rate: error rate 0% -> " in done.stdout
    )
    assert "tools that started failing: todo.list" in done.stdout
    failed = [
        f"{case.get('classname')}.{case.get('name')}"
        for case in ET.parse(junit).getroot().iter("testcase")
        if case.find("failure") is not None
    ]
    assert any("tool.todo.list." in name for name in failed), failed
    assert any("module.todo." in name for name in failed), failed
    assert "todo.list" in summary.read_text()


def test_the_same_run_against_itself_passes(two_runs: tuple[Path, str, str]) -> None:
    db, baseline, _ = two_runs
    done = cli("gate", "--baseline", baseline, "--candidate", baseline, "--db", str(db))
    assert done.returncode == 0, done.stdout + done.stderr


def test_an_exported_baseline_judges_the_same_way(two_runs: tuple[Path, str, str], tmp_path: Path) -> None:
    db, baseline, candidate = two_runs
    exported = tmp_path / "baseline.json"
    assert cli("runs", "export", baseline, "--out", str(exported), "--db", str(db)).returncode == 0
    assert json.loads(exported.read_text())["scope"]["run_ids"] == [baseline]
    assert cli("gate", "--baseline", str(exported), "--candidate", candidate, "--db", str(db)).returncode == 1
    listed = cli("runs", "list", "--db", str(db))
    assert baseline in listed.stdout and candidate in listed.stdout


def test_unknown_run_is_a_usage_error(two_runs: tuple[Path, str, str]) -> None:
    db, baseline, _ = two_runs
    done = cli("gate", "--baseline", baseline, "--candidate", "no-such-run", "--db", str(db))
    assert done.returncode == 2 and "no-such-run" in done.stderr and "Traceback" not in done.stderr


def test_report_on_the_candidate_names_what_changed_since_the_baseline(
    two_runs: tuple[Path, str, str], tmp_path: Path
) -> None:
    db, baseline, candidate = two_runs
    figures = tmp_path / "report.json"
    assert cli("report", "--run", candidate, "--format", "json", "--out", str(figures), "--db", str(db)).returncode == 0
    report = json.loads(figures.read_text())
    assert report["previous"]["run_ids"] == [baseline]
    todo = next(module for module in report["modules"] if module["module"] == "todo")
    changed = {change["module"]: change for change in report["changes"] if change["summary"].startswith("todo:")}
    assert changed["todo"]["error_rate_moved"] and changed["todo"]["worse"]
    line = f"error rate 0% -> {todo['error_rate']:.0%} since run {baseline}"
    assert re.fullmatch(rf"todo: (mean rating \d\.\d -> \d\.\d, )?{line}", changed["todo"]["summary"]), changed["todo"][
        "summary"
    ]
    markdown = tmp_path / "report.md"
    assert cli("report", "--run", candidate, "--format", "md", "--out", str(markdown), "--db", str(db)).returncode == 0
    assert f"- {changed['todo']['summary']}" in markdown.read_text()
    # The tool behind it is named as the gate names it, so a report and a gate never disagree.
    assert any(
        change["summary"].startswith("todo.list error rate: error rate 0% -> 100%") for change in report["changes"]
    )
    page = tmp_path / "report.html"
    assert cli("report", "--run", baseline, "--run", candidate, "--out", str(page), "--db", str(db)).returncode == 0
    assert page.read_text().startswith("<!DOCTYPE html>") and "todo.list" in page.read_text()
