"""The gate on stores with known content: regressions fail by name, noise and thin data do not."""

from __future__ import annotations

import json
import random
from pathlib import Path
from xml.etree import ElementTree

import junitparser
import pytest

from persona_runner.reporting.gate import (
    MARKDOWN_ROWS,
    GateResult,
    Thresholds,
    compare,
    render_junit,
    render_markdown,
    weakest_passes,
)
from tests.cli_helpers import cli
from tests.test_report import NOW, OFFERED, Call, StoreBuilder, render_as_github, run_report

PERSONAS = ("ann", "bob", "cy")
LATENCY = {"todo.create": 40.0, "todo.list": 20.0, "todo.delete": 30.0, "calendar.add": 80.0, "calendar.list": 25.0}


def steady_run(
    store: StoreBuilder,
    run_id: str,
    *,
    ticks: int = 20,
    faulty: str | None = None,
    slow: str | None = None,
    skip: str | None = None,
    drop: frozenset[str] = frozenset(),
    calendar_ratings: list[int] | None = None,
) -> None:
    """A run whose every tick calls each offered tool twice; the same seed keeps two healthy runs alike.

    20 ticks make 40 calls a tool, enough for a p95. `skip` is offered but
    not called; `drop` is neither offered nor called.
    """
    rng = random.Random(7)
    store.run(run_id, NOW)
    for i in range(ticks):
        calls: list[Call] = []
        for tool, latency in LATENCY.items():
            if tool == skip or tool in drop:
                continue
            for _ in range(2):
                ms = latency * rng.uniform(0.8, 1.2) * (3 if tool == slow else 1)
                calls.append((tool, ms, "503 upstream unavailable") if tool == faulty else (tool, ms))
        todo = rng.choice([4, 4, 5])
        calendar = calendar_ratings[i] if calendar_ratings else rng.choice([4, 4, 5])
        ratings = {
            module: rating
            for module, rating in (("todo", todo), ("calendar", calendar))
            if any(call[0].startswith(f"{module}.") for call in calls)
        }
        store.tick(run_id, PERSONAS[i % 3], NOW, calls, ratings, offered=[tool for tool in OFFERED if tool not in drop])


def gate_result(store: StoreBuilder, baseline: str, candidate: str, **limits: float) -> GateResult:
    return compare(run_report(store, baseline), run_report(store, candidate), Thresholds(**limits))


@pytest.fixture
def store(tmp_path: Path) -> StoreBuilder:
    return StoreBuilder(f"sqlite:///{tmp_path / 'results.db'}")


def failing(result: GateResult) -> set[tuple[str, str]]:
    return {(check.subject, check.metric) for check in result.with_status("fail")}


def test_a_run_against_itself_passes(store: StoreBuilder) -> None:
    steady_run(store, "base")
    result = gate_result(store, "base", "base")
    # Three personas are too few for pass^k (5 a side); every other check has its data.
    assert result.passed and {c.metric for c in result.with_status("insufficient")} == {"reliability"}
    assert (
        len(result.checks) == 1 + 2 * 4 + 5 * 3
    )  # failed ticks; per module: errors, reliability, rating, coverage; per tool: offered, errors, p95
    steady_run(store, "thin", skip="todo.delete")  # todo coverage 2/3, under the 0.8 floor
    [coverage] = [
        c for c in gate_result(store, "thin", "thin").checks if c.metric == "coverage" and c.subject == "todo"
    ]
    assert coverage.status == "pass" and "below the limit but not below the baseline" in coverage.message


def test_a_faulted_tool_fails_naming_module_and_tool(store: StoreBuilder) -> None:
    steady_run(store, "base")
    steady_run(store, "cand", faulty="calendar.add")
    result = gate_result(store, "base", "cand")
    assert not result.passed
    assert failing(result) == {("calendar", "error_rate"), ("calendar.add", "error_rate")}
    assert result.started_failing_tools == ["calendar.add"]
    assert result.new_failing_tools == [] and result.disappeared_tools == []
    [tool_check] = [c for c in result.with_status("fail") if c.kind == "tool"]
    assert (tool_check.module, tool_check.baseline, tool_check.candidate) == ("calendar", 0.0, 1.0)
    assert "error rate 0% -> 100%" in tool_check.message


def test_a_consistent_rating_drop_fails_but_one_bad_tick_inside_the_noise_passes(store: StoreBuilder) -> None:
    steady_run(store, "base", ticks=4, calendar_ratings=[4, 5, 4, 5])
    steady_run(store, "grumpy", ticks=4, calendar_ratings=[4, 5, 4, 1])  # drop 1.0 > 0.5, but the intervals overlap
    steady_run(store, "worse", ticks=4, calendar_ratings=[2, 2, 3, 2])  # drop 2.25 and clear of the noise
    grumpy = gate_result(store, "base", "grumpy")
    assert grumpy.passed
    [rating] = [c for c in grumpy.checks if c.metric == "rating" and c.subject == "calendar"]
    assert rating.status == "pass" and "drop 1.00" in rating.message and "within noise" in rating.message
    worse = gate_result(store, "base", "worse")
    assert failing(worse) == {("calendar", "rating")}


def test_a_rating_drop_beyond_noise_but_under_the_threshold_passes(store: StoreBuilder) -> None:
    steady_run(store, "base", ticks=40, calendar_ratings=[5] * 40)
    steady_run(store, "cand", ticks=40, calendar_ratings=[5, 5, 5, 4] * 10)  # 5.0 -> 4.75: real, but small
    result = gate_result(store, "base", "cand")
    [rating] = [c for c in result.checks if c.metric == "rating" and c.subject == "calendar"]
    assert rating.status == "pass" and "beyond noise" in rating.message
    assert failing(gate_result(store, "base", "cand", max_rating_drop=0.2)) == {("calendar", "rating")}


def test_slower_tools_and_unused_tools_fail_by_name(store: StoreBuilder) -> None:
    steady_run(store, "base")
    steady_run(store, "cand", slow="todo.list", skip="todo.delete")
    result = gate_result(store, "base", "cand")
    assert failing(result) == {("todo.list", "p95_latency"), ("todo", "coverage")}
    assert result.disappeared_tools == []  # todo.delete is still offered, only no longer used
    [coverage] = [c for c in result.checks if c.metric == "coverage" and c.subject == "todo"]
    assert coverage.candidate == pytest.approx(2 / 3) and "not used: todo.delete" in coverage.message
    [latency] = [c for c in result.checks if c.metric == "p95_latency" and c.subject == "todo.list"]
    assert latency.candidate / latency.baseline == pytest.approx(3.0, rel=0.25)  # type: ignore[operator]


def test_tools_and_modules_the_candidate_no_longer_offers_fail_by_name(store: StoreBuilder, tmp_path: Path) -> None:
    steady_run(store, "base", skip="todo.delete")
    steady_run(store, "cand", drop=frozenset({"todo.list", "todo.delete", "calendar.add", "calendar.list"}))
    result = gate_result(store, "base", "cand")
    assert failing(result) == {
        ("todo.list", "offered"),
        ("calendar.add", "offered"),
        ("calendar.list", "offered"),
    }  # todo.delete was never used
    assert result.disappeared_tools == ["calendar.add", "calendar.list", "todo.list"]
    [todo_list] = [c for c in result.with_status("fail") if c.subject == "todo.list"]
    assert (todo_list.kind, todo_list.module, todo_list.message) == (
        "tool",
        "todo",
        "todo.list was used in the baseline and is not offered by the candidate",
    )
    path = tmp_path / "gate.xml"
    path.write_text(render_junit(result))
    cases = [case for suite in junitparser.JUnitXml.fromfile(str(path)) for case in suite]
    failed = {
        (case.classname, case.name): case.result[0].message
        for case in cases
        if any(isinstance(r, junitparser.Failure) for r in case.result)
    }
    assert (
        failed[("persona_gate.tool.todo.list", "offered")]
        == "todo.list was used in the baseline and is not offered by the candidate"
    )
    assert len(failed) == 3


def test_without_transcripts_what_the_candidate_offered_is_too_little_data(store: StoreBuilder) -> None:
    steady_run(store, "base")
    store.run("cand", NOW)
    for i in range(20):
        calls: list[Call] = [(tool, LATENCY[tool]) for tool in LATENCY if tool != "calendar.list" for _ in range(2)]
        store.tick("cand", PERSONAS[i % 3], NOW, calls, {"todo": 4, "calendar": 4}, offered=None)
    result = gate_result(store, "base", "cand")
    assert result.passed and result.disappeared_tools == []
    unknown = {(c.subject, c.metric): c.message for c in result.with_status("insufficient")}
    assert (
        unknown[("calendar.list", "offered")]
        == "too little data: the candidate recorded no tools offered and did not call calendar.list,"
        " used in the baseline"
    )
    assert (
        unknown[("calendar", "coverage")]
        == unknown[("todo", "coverage")]
        == "too little data: the candidate recorded no tools offered for this module"
    )
    [called] = [c for c in result.checks if c.subject == "calendar.add" and c.metric == "offered"]
    assert (called.status, called.baseline, called.candidate) == ("pass", 40, 40)  # a tool it called was offered


def test_too_little_data_is_reported_as_such(store: StoreBuilder) -> None:
    store.run("small", NOW)
    store.tick(
        "small",
        "ann",
        NOW,
        [("todo.create", 10), ("calendar.add", 20)],
        {"todo": 4},
        offered=["todo.create", "calendar.add"],
    )
    steady_run(store, "cand", ticks=1)
    result = gate_result(store, "small", "cand")
    assert result.passed and not result.with_status("fail")
    insufficient = {(c.subject, c.metric): c.message for c in result.with_status("insufficient")}
    assert {
        ("run", "failed_ticks"),
        ("todo", "error_rate"),
        ("todo", "rating"),
        ("calendar.add", "p95_latency"),
        ("calendar", "rating"),
    } <= set(insufficient)
    assert all(message.startswith("too little data: ") for message in insufficient.values())
    assert (
        insufficient[("todo", "error_rate")]
        == "too little data: 1 baseline call, 6 candidate calls (need 10 on each side)"
    )
    assert (
        insufficient[("todo.delete", "error_rate")]
        == "too little data: 0 baseline calls, 2 candidate calls (need 3 candidate calls)"
    )
    assert (
        insufficient[("calendar.add", "p95_latency")]
        == "too little data: 1 baseline call, 2 candidate calls (need 10 on each side)"
    )
    assert (
        insufficient[("run", "failed_ticks")]
        == "too little data: 1 baseline tick, 1 candidate tick (need 10 on each side)"
    )
    # A few calls leave tools unused by chance: coverage is not judged on them.
    assert (
        insufficient[("todo", "coverage")]
        == "too little data: 1 baseline call, 6 candidate calls in this module (need 10 on each side)"
    )
    # The Markdown counts them in one line per kind, and says what would judge them (the JUnit lists each).
    summary = render_markdown(result)
    assert "too little data |" not in summary
    assert "- too little data for 2 rating checks: calendar, todo" in summary
    assert summary.rstrip().endswith(
        "- to judge failed ticks of run you need 10 ticks per side; the baseline has 1 (1 tick per persona),"
        " this candidate 1 (1 tick per persona): rerun both with --repeat 10"
    )


def calls_run(store: StoreBuilder, run_id: str, calls: int, errors: int, *, per_tick: int = 2) -> None:
    """A run of `calls` calls to todo.create, the first `errors` of them failing, `per_tick` to a tick."""
    store.run(run_id, NOW)
    made: list[Call] = [
        ("todo.create", 10.0, "500 internal error") if i < errors else ("todo.create", 10.0) for i in range(calls)
    ]
    for start in range(0, calls, per_tick):
        store.tick(run_id, PERSONAS[start % 3], NOW, made[start : start + per_tick], {}, offered=["todo.create"])


def test_an_error_rate_rise_fails_only_beyond_noise_and_a_few_calls_can_show_it(store: StoreBuilder) -> None:
    calls_run(store, "base", 24, 0)
    calls_run(store, "broken", 6, 6)  # the persona stopped calling a tool that always failed
    calls_run(store, "flaky", 12, 1)
    calls_run(store, "quiet", 6, 0)
    broken = {(c.subject, c.metric): c for c in gate_result(store, "base", "broken").checks}
    assert broken[("todo.create", "error_rate")].status == "fail"
    assert (
        broken[("todo.create", "error_rate")].message
        == "error rate 0% -> 100% (6/6 calls failed; increase +100 points, limit +5; every one of its 6 calls failed)"
    )
    [flaky] = [
        c for c in gate_result(store, "base", "flaky").checks if c.subject == "todo.create" and c.metric == "error_rate"
    ]
    assert (flaky.status, flaky.message) == (
        "pass",
        "error rate 0% -> 8% (1/12 calls failed; increase +8 points, limit +5; within noise;"
        " could see a rise of 41 points)",
    )
    [quiet] = [
        c for c in gate_result(store, "base", "quiet").checks if c.subject == "todo.create" and c.metric == "error_rate"
    ]
    assert (quiet.status, quiet.message) == (
        "insufficient",
        "too little data: 24 baseline calls, 6 candidate calls (need 10 on each side)",
    )


def test_a_pass_that_could_see_no_rise_says_so(store: StoreBuilder) -> None:
    """Against a baseline failing 6 calls of 10, even 10 failures of 10 are within noise: the pass says that no
    rise would have shown, and the terminal names it among the weakest passes."""
    calls_run(store, "base", 10, 6)
    calls_run(store, "same", 10, 6)
    result = gate_result(store, "base", "same")
    [same] = [c for c in result.checks if c.subject == "todo.create" and c.metric == "error_rate"]
    assert (same.status, same.message) == (
        "pass",
        "error rate 60% -> 60% (6/10 calls failed; increase +0 points, limit +5; within noise;"
        " could see no rise at all)",
    )
    weakest = weakest_passes(result)
    assert weakest is not None and "todo.create error rate could only see no rise at all (limit 5 points)" in weakest


def test_a_new_tool_is_judged_on_the_limit_alone(store: StoreBuilder) -> None:
    calls_run(store, "base", 24, 0)
    store.run("cand", NOW)
    for i in range(10):
        store.tick(
            "cand",
            PERSONAS[i % 3],
            NOW,
            [("todo.create", 10.0), ("todo.list", 10.0, "500") if i < 2 else ("todo.list", 10.0)],
            {},
            offered=["todo.create", "todo.list"],
        )
    [new] = [
        c for c in gate_result(store, "base", "cand").checks if c.subject == "todo.list" and c.metric == "error_rate"
    ]
    assert (new.status, new.baseline, new.candidate) == ("fail", 0.0, 0.2)
    assert (
        new.message
        == "error rate 0% -> 20% (2/10 calls failed; increase +20 points, limit +5; new, judged on the limit alone)"
    )


def test_a_consistent_drop_of_a_point_fails_though_the_intervals_overlap(store: StoreBuilder) -> None:
    steady_run(store, "base", ticks=10, calendar_ratings=[3, 3, 4, 4, 4, 4, 4, 4, 5, 5])  # 4.0, sd 0.67
    steady_run(store, "cand", ticks=10, calendar_ratings=[2, 2, 3, 3, 3, 3, 4, 4, 4, 4])  # 3.2, sd 0.79
    result = gate_result(store, "base", "cand")
    assert failing(result) == {("calendar", "rating")}
    [rating] = result.with_status("fail")
    assert rating.message == "mean rating 4.0 [3.5-4.5] -> 3.2 [2.6-3.8] (drop 0.80, limit 0.50; beyond noise of ±0.69)"


def test_one_slow_call_is_not_a_slower_tool(store: StoreBuilder) -> None:
    calls_run(store, "base", 40, 0)
    for run_id, calls in (("short", 20), ("long", 40)):
        store.run(run_id, NOW)
        for start in range(0, calls, 2):
            store.tick(
                run_id,
                "ann",
                NOW,
                [("todo.create", 2000.0 if start == 0 else 10.0), ("todo.create", 10.0)],
                {},
                offered=["todo.create"],
            )
    [short] = [c for c in gate_result(store, "base", "short").checks if c.metric == "p95_latency"]
    # One call of twenty took 2 s: the p95 rose far past the limit, but the calls as a whole are no slower.
    assert short.status == "pass" and short.message.startswith("p95 latency 10 ms -> 110 ms (10.95x, limit 1.50x;")
    assert "not slower beyond noise" in short.message
    [long] = [c for c in gate_result(store, "base", "long").checks if c.metric == "p95_latency"]
    assert (long.status, long.candidate) == ("pass", 10.0)


def test_failed_ticks_fail_the_gate(store: StoreBuilder) -> None:
    steady_run(store, "base")
    store.run("dead", NOW)
    for i in range(3):
        store.tick("dead", PERSONAS[i], NOW, [], {}, offered=None, status="failed")
    store.run("half", NOW)
    for i in range(20):
        calls: list[Call] = [(tool, LATENCY[tool]) for tool in LATENCY for _ in range(2)] if i % 2 else []
        store.tick(
            "half",
            PERSONAS[i % 3],
            NOW,
            calls,
            {"todo": 4, "calendar": 4} if calls else {},
            status="ok" if calls else "timeout" if i % 4 else "aborted",
        )
    dead = gate_result(store, "base", "dead")
    assert failing(dead) == {("run", "failed_ticks")}
    assert (
        dead.with_status("fail")[0].message
        == "failed ticks 0% -> 100% (3/3 ticks failed, timed out, aborted or interrupted;"
        " increase +100 points, limit +5; beyond noise)"
    )
    # One failed tick against three good ones is within noise, yet the candidate did nothing else that could be judged.
    steady_run(store, "small", ticks=3)
    store.run("single", NOW)
    store.tick("single", "ann", NOW, [], {}, offered=None, status="failed")
    single = gate_result(store, "small", "single")
    assert failing(single) == {("run", "failed_ticks")}
    assert single.with_status("fail")[0].message.endswith(
        "(1/1 ticks failed, timed out, aborted or interrupted; increase +100 points, limit +5; no tick succeeded)"
    )
    half = gate_result(store, "base", "half")
    assert ("run", "failed_ticks") in failing(half)
    [ticks] = [c for c in half.checks if c.metric == "failed_ticks"]
    assert (
        ticks.message == "failed ticks 0% -> 50% (10/20 ticks failed, timed out, aborted or interrupted;"
        " increase +50 points, limit +5; beyond noise)"
    )


def test_interrupted_ticks_count_as_failed_and_ticks_in_flight_do_not_count(store: StoreBuilder) -> None:
    """A soak still going has ticks `running`: they have no outcome yet, so neither side of the rate
    holds them; a tick its process died in did not finish, as an aborted one did not."""
    steady_run(store, "base")
    store.run("live", NOW)
    for i in range(20):
        calls: list[Call] = [(tool, LATENCY[tool]) for tool in LATENCY for _ in range(2)]
        status = "running" if i < 10 else "interrupted" if i < 13 else "ok"
        store.tick("live", PERSONAS[i % 3], NOW, calls, {"todo": 4, "calendar": 4}, status=status)
    live = gate_result(store, "base", "live")
    [ticks] = [c for c in live.checks if c.metric == "failed_ticks"]
    assert ticks.message.startswith("failed ticks 0% -> 30% (3/10 ticks failed, timed out, aborted or interrupted;")


def test_markdown_summary_shows_names_and_messages_as_text(store: StoreBuilder) -> None:
    hostile = "todo.<!--x <img src=https://tracker.test/p.png>"
    store.run("base", NOW)
    for i in range(3):
        store.tick(
            "base", PERSONAS[i], NOW, [(hostile, 10.0), ("todo.create", 10.0)], {}, offered=[hostile, "todo.create"]
        )
    store.run("cand", NOW)
    for i in range(3):
        store.tick("cand", PERSONAS[i], NOW, [("todo.create", 10.0)], {}, offered=["todo.create"])
    result = gate_result(store, "base", "cand")
    assert result.disappeared_tools == [hostile]
    page = render_as_github(render_markdown(result))
    assert "<img" not in page and "<!--" not in page
    assert "<td><code>todo.&lt;!--x &lt;img src=https://tracker.test/p.png&gt;</code></td>" in page
    assert (
        "<td>todo.&lt;!--x &lt;img src=https://tracker.test/p.png&gt;"
        " was used in the baseline and is not offered by the candidate</td>" in page
    )


def test_the_markdown_summary_fits_a_pull_request_comment_however_many_checks(store: StoreBuilder) -> None:
    steady_run(store, "base")
    steady_run(store, "cand", faulty="calendar.add")
    result = gate_result(store, "base", "cand")
    many = result.model_copy(update={"checks": result.checks * 40})
    summary = render_markdown(many)
    assert len(summary) < 65_536
    shown = [
        line
        for line in summary.splitlines()
        if line.startswith("| ❌") or line.startswith("| ⚪") or line.startswith("| ✅")
    ]
    assert len(shown) == MARKDOWN_ROWS and shown[0].startswith("| ❌ fail")
    left = sum(1 for check in many.checks if check.status != "insufficient") - MARKDOWN_ROWS
    assert f"…and {left} more checks (" in summary and "the JUnit file lists every check." in summary
    assert summary.rstrip().endswith(
        "- too little data for 80 reliability checks: calendar, todo, calendar, todo, calendar, …"
    )


def test_junit_has_one_case_per_check_and_reads_in_a_junit_parser(store: StoreBuilder, tmp_path: Path) -> None:
    store.run("small", NOW)
    store.tick("small", "ann", NOW, [("todo.create", 10)], {"todo": 4})
    steady_run(store, "base")
    steady_run(store, "cand", faulty="calendar.add")
    result = compare(run_report(store, "base"), run_report(store, "cand"), Thresholds())
    thin = compare(run_report(store, "small"), run_report(store, "cand"), Thresholds())
    assert result.with_status("fail") and thin.with_status("insufficient")
    for checked in (result, thin):
        path = tmp_path / "gate.xml"
        path.write_text(render_junit(checked))
        xml = junitparser.JUnitXml.fromfile(str(path))
        suites = list(xml) if isinstance(xml, junitparser.JUnitXml) else [xml]
        cases = [case for suite in suites for case in suite]
        assert len(cases) == len(checked.checks)
        failed = {
            (case.classname, case.name)
            for case in cases
            if any(isinstance(r, junitparser.Failure) for r in case.result)
        }
        skipped = {
            (case.classname, case.name)
            for case in cases
            if any(isinstance(r, junitparser.Skipped) for r in case.result)
        }
        assert failed == {(f"persona_gate.{c.kind}.{c.subject}", c.metric) for c in checked.with_status("fail")}
        assert skipped == {
            (f"persona_gate.{c.kind}.{c.subject}", c.metric) for c in checked.with_status("insufficient")
        }
        root = ElementTree.parse(path).getroot()
        suite = root.find("testsuite")
        assert root.tag == "testsuites" and suite is not None
        assert (suite.get("tests"), suite.get("failures"), suite.get("skipped")) == (
            str(len(checked.checks)),
            str(len(checked.with_status("fail"))),
            str(len(checked.with_status("insufficient"))),
        )


def test_gate_command_exit_codes_and_files(
    store: StoreBuilder, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    steady_run(store, "base")
    steady_run(store, "cand", faulty="calendar.add")
    monkeypatch.chdir(tmp_path)
    db = ["--db", "results.db"]
    done = cli("gate", "--baseline", "base", "--candidate", "base", *db)
    assert done.returncode == 0 and done.stdout.startswith("gate: PASS")

    done = cli(
        "gate", "--baseline", "base", "--candidate", "cand", "--junit", "ci/gate.xml", "--markdown", "ci/gate.md", *db
    )
    assert done.returncode == 1
    assert "FAIL calendar.add error rate" in done.stdout and "tools that started failing: calendar.add" in done.stdout
    assert len(list(junitparser.JUnitXml.fromfile("ci/gate.xml"))) == 1
    summary = Path("ci/gate.md").read_text()
    assert summary.startswith("## Persona gate: FAIL") and "| ❌ fail | `calendar.add` | error rate |" in summary

    done = cli("gate", "--baseline", "base", "--candidate", "cand", "--max-error-rate-increase", "1", *db)
    assert done.returncode == 0

    store.run("dead", NOW)  # it ran, and every tick failed before a single call: a failing gate, not a usage error
    for persona in PERSONAS:
        store.tick("dead", persona, NOW, [], {}, offered=None, status="failed")
    done = cli("gate", "--baseline", "base", "--candidate", "dead", *db)
    assert done.returncode == 1 and "FAIL run failed ticks: failed ticks 0% -> 100%" in done.stdout

    assert cli("runs", "export", "base", "--out", "baseline.json", *db).returncode == 0
    done = cli("gate", "--baseline", "baseline.json", "--candidate", "base", *db)
    assert done.returncode == 0 and "baseline.json (run base)" in done.stdout
    assert cli("gate", "--baseline", "baseline.json", "--candidate", "cand", *db).returncode == 1


@pytest.mark.parametrize(
    ("baseline", "candidate", "message"),
    [
        ("nope", "base", "unknown run nope"),
        ("base", "nope", "unknown run nope"),
        ("empty", "base", "baseline run empty recorded no tool calls"),
        ("base", "empty", "candidate run empty recorded no ticks"),
        ("missing.json", "base", "baseline file missing.json does not exist"),
        ("broken.json", "base", "baseline file broken.json is not an exported report"),
    ],
)
def test_gate_usage_errors_exit_2(
    store: StoreBuilder, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, baseline: str, candidate: str, message: str
) -> None:
    steady_run(store, "base", ticks=2)
    store.run("empty", NOW)
    monkeypatch.chdir(tmp_path)
    Path("broken.json").write_text('{"scope": 1}')
    done = cli("gate", "--baseline", baseline, "--candidate", candidate, "--db", "results.db", "--junit", "gate.xml")
    assert (done.returncode, message in done.stderr) == (2, True), done.stderr
    assert not Path("gate.xml").exists()


@pytest.mark.parametrize(
    ("field", "value", "problem"),
    [
        ("errors", 10_000, "first: modules.0: 10000 errors among"),
        ("calls", -48, "first: modules.0.calls: Input should be greater than or equal to 0"),
    ],
)
def test_a_baseline_edited_into_impossible_counts_is_a_usage_error(
    store: StoreBuilder, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, field: str, value: int, problem: str
) -> None:
    steady_run(store, "base")
    monkeypatch.chdir(tmp_path)
    assert cli("runs", "export", "base", "--db", "results.db", "--out", "baseline.json").returncode == 0
    exported = json.loads(Path("baseline.json").read_text())
    exported["modules"][0][field] = value
    Path("baseline.json").write_text(json.dumps(exported))
    done = cli("gate", "--baseline", "baseline.json", "--candidate", "base", "--db", "results.db")
    assert done.returncode == 2 and problem in done.stderr, done.stderr


def test_junit_and_markdown_are_written_both_or_neither(
    store: StoreBuilder, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    steady_run(store, "base")
    monkeypatch.chdir(tmp_path)
    Path("summary.md").mkdir()
    done = cli(
        "gate",
        "--baseline",
        "base",
        "--candidate",
        "base",
        "--db",
        "results.db",
        "--junit",
        "gate.xml",
        "--markdown",
        "summary.md",
    )
    assert done.returncode == 2 and done.stderr.startswith("error: cannot write summary.md: Is a directory"), (
        done.stderr
    )
    assert not Path("gate.xml").exists() and not list(Path(".").glob(".*.tmp"))


def test_the_exit_code_is_the_verdict_and_only_a_usage_error_writes_to_stderr(
    store: StoreBuilder, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    steady_run(store, "base")
    steady_run(store, "cand", faulty="calendar.add")
    monkeypatch.chdir(tmp_path)
    verdicts = {
        candidate: cli("gate", "--baseline", "base", "--candidate", candidate, "--db", "results.db")
        for candidate in ("base", "cand", "nope")
    }
    assert {candidate: (done.returncode, done.stderr) for candidate, done in verdicts.items()} == {
        "base": (0, ""),
        "cand": (1, ""),
        "nope": (2, "error: unknown run nope; `persona-runner runs list` shows the recorded runs\n"),
    }
