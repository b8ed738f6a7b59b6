"""The gate at the sizes people run, on stores built for the purpose: a tool failing every call at the
default size fails, 300 ms added to a 40 ms tool fails on 15 calls a side, 5% jitter passes, a run whose
ticks all failed fails; the report's "what changed" says the same as the gate in every case; the tests'
detectable effects match a hand calculation; the `--repeat` advice counts the ticks the runs already had;
pass^k is judged only between runs of as many ticks per persona; and `--require-evidence` fails in every
output the gate writes."""

from __future__ import annotations

import math
import random
import xml.etree.ElementTree as ET
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from persona_runner.reporting.evidence import (
    rate_rise_detectable,
    rate_rise_p,
    rating_drop_detectable,
    slowdown_detectable,
    slower_p,
)
from persona_runner.reporting.gate import (
    RUN,
    GateResult,
    Subject,
    Thresholds,
    compare,
    evidence_lines,
    weakest_passes,
)
from persona_runner.reporting.model import Report
from tests.cli_helpers import cli
from tests.test_report import NOW, Call, StoreBuilder, run_report

PERSONAS = [f"p{i}" for i in range(10)]
BEFORE = NOW - timedelta(hours=1)


@pytest.fixture
def store(tmp_path: Path) -> StoreBuilder:
    return StoreBuilder(f"sqlite:///{tmp_path / 'results.db'}")


def default_size_run(
    store: StoreBuilder,
    run_id: str,
    at: object,
    *,
    complete_fails: bool = False,
    list_ms: float = 40.0,
    jitter: float = 0.05,
) -> None:
    """Ten personas, one tick each, as `run` makes at its default size: todo.list a few times a tick, todo.create
    and notes, and todo.complete by four personas only."""
    rng = random.Random(run_id)
    store.run(run_id, at)
    for i, persona in enumerate(PERSONAS):
        calls: list[Call] = [("todo.list", list_ms * rng.uniform(0.95, 1.05)) for _ in range(2)]
        calls += [("todo.create", 30 * rng.uniform(0.9, 1.1)), ("notes.list", 20 * rng.uniform(0.9, 1.1))]
        if i < 4:
            calls.append(("todo.complete", 25.0, "500 internal error") if complete_fails else ("todo.complete", 25.0))
        store.tick(run_id, persona, at, calls, {"todo": 4, "notes": 4}, offered=None)


def judged(store: StoreBuilder) -> tuple[GateResult, Report]:
    """The gate on `cand` against `base`, and the report on `cand`, which compares it with `base` by itself."""
    candidate = run_report(store, "cand")
    return compare(run_report(store, "base"), candidate, Thresholds()), candidate


def failing(result: GateResult) -> set[tuple[str, str]]:
    return {(check.subject, check.metric) for check in result.with_status("fail")}


def changed(report: Report) -> set[str]:
    """What the report's "what changed" names as worse, by the subject it starts with."""
    return {change.summary.split(":")[0].split(" ")[0] for change in report.changes if change.worse}


def test_a_tool_failing_every_call_fails_at_the_default_size(store: StoreBuilder) -> None:
    default_size_run(store, "base", BEFORE)
    default_size_run(store, "cand", NOW, complete_fails=True)
    result, report = judged(store)
    assert not result.passed
    assert ("todo.complete", "error_rate") in failing(result)
    assert result.started_failing_tools == ["todo.complete"] and result.new_failing_tools == []
    [check] = [c for c in result.with_status("fail") if c.subject == "todo.complete"]
    assert check.message.endswith("every one of its 4 calls failed)")
    assert "todo.complete" in changed(report)


def test_300_ms_added_to_a_40_ms_tool_fails_on_15_calls_a_side_and_jitter_does_not(store: StoreBuilder) -> None:
    for run_id, at, ms in (("base", BEFORE, 40.0), ("cand", NOW, 340.0)):
        store.run(run_id, at)
        calls: list[Call] = [("todo.list", ms * random.Random(i).uniform(0.95, 1.05)) for i in range(15)]
        store.tick(run_id, "p0", at, calls, {}, offered=None)
    result, report = judged(store)
    assert failing(result) == {("todo.list", "p95_latency")}
    [latency] = result.with_status("fail")
    assert "slower beyond noise" in latency.message
    assert changed(report) == {"todo.list"}

    jittery = StoreBuilder(f"sqlite:///{Path(str(store.engine.url.database)).with_name('jitter.db')}")
    default_size_run(jittery, "base", BEFORE)
    default_size_run(jittery, "cand", NOW, list_ms=42.0)  # 5% slower, give or take 5%
    result, report = judged(jittery)
    assert result.passed and not report.changes
    [latency] = [c for c in result.checks if c.subject == "todo.list" and c.metric == "p95_latency"]
    assert latency.status == "pass" and "could see" in latency.message


def test_a_run_whose_ticks_all_failed_fails_and_the_report_leads_with_it(store: StoreBuilder) -> None:
    default_size_run(store, "base", BEFORE)
    store.run("cand", NOW)
    for persona in PERSONAS:
        store.tick("cand", persona, NOW, [], {}, offered=None, status="failed")
    result, report = judged(store)
    assert failing(result) == {("run", "failed_ticks")}
    assert "run" in changed(report)
    assert report.totals.tick_statuses == {"failed": 10}


def test_thin_data_is_summarised_with_the_repeats_that_would_judge_it(store: StoreBuilder) -> None:
    default_size_run(store, "base", BEFORE)
    default_size_run(store, "cand", NOW)
    result, _ = judged(store)
    lines = evidence_lines(result)
    assert any(line.startswith("too little data for ") and "latency check" in line for line in lines)
    # todo.complete has 4 calls a side in one tick per persona; its error rate and latency verdicts need 10:
    # three ticks per persona.
    assert lines[-1] == (
        "to judge error rate of todo.complete you need 10 calls per side;"
        " the baseline has 4 (1 tick per persona), this candidate 4 (1 tick per persona): rerun both with --repeat 3"
    )


def repeated_run(store: StoreBuilder, run_id: str, at: datetime, days: int, complete_on: int) -> None:
    """Ten personas living `days` days (as `run --repeat days` makes them), p0 calling todo.complete on the
    first `complete_on` of them."""
    store.run(run_id, at)
    for day in range(days):
        for persona in PERSONAS:
            calls: list[Call] = [("todo.list", 40.0), ("todo.create", 30.0), ("notes.list", 20.0)] * 2
            calls += [("todo.complete", 25.0)] if persona == "p0" and day < complete_on else []
            store.tick(run_id, persona, at + timedelta(days=day), calls, {"todo": 4, "notes": 4}, offered=None)


def test_the_repeat_advice_counts_the_ticks_each_persona_already_had(store: StoreBuilder) -> None:
    """After `--repeat 4` a side with 3 calls in 4 days makes 0.75 a day: 10 calls take 10 / 0.75 = 13.3 days,
    so both runs need `--repeat 14`, not the ceil(10 / 3) = 4 a count of one day each would say."""
    repeated_run(store, "base", BEFORE, days=4, complete_on=4)
    repeated_run(store, "cand", NOW, days=4, complete_on=3)
    result, _ = judged(store)
    assert result.ticks_per_persona == (4.0, 4.0)
    [complete] = [c for c in result.checks if c.subject == "todo.complete" and c.metric == "error_rate"]
    assert (complete.status, complete.needed, complete.had) == ("insufficient", 10, (4, 3))
    assert result.repeats_needed(complete) == math.ceil(10 * 4 / 3) == 14
    assert evidence_lines(result)[-1] == (
        "to judge error rate of todo.complete you need 10 calls per side;"
        " the baseline has 4 (4 ticks per persona), this candidate 3 (4 ticks per persona): rerun both with --repeat 14"
    )


def test_fishers_exact_test_matches_the_hypergeometric_by_hand() -> None:
    # 0/24 then 6/6: all 6 errors among the candidate's 6 of 30 calls: 1 / C(30, 6).
    assert rate_rise_p(24, 0, 6, 6) == pytest.approx(1 / math.comb(30, 6))
    # 0/24 then 1/12: the one error fell among the candidate's 12 of 36 calls: 12/36.
    assert rate_rise_p(24, 0, 12, 1) == pytest.approx(12 / 36)
    # 0/12 then 3/3: 1 / C(15, 3).
    assert rate_rise_p(12, 0, 3, 3) == pytest.approx(1 / 455)
    assert rate_rise_p(24, 0, 24, 0) == 1.0 and rate_rise_p(0, 0, 6, 6) == 1.0


def fisher_by_hand(calls_before: int, errors_before: int, calls_after: int, errors_after: int) -> float:
    """One-sided Fisher in whole numbers: the ways the errors can fall with at least `errors_after` among the
    candidate's calls, over all the ways the candidate's calls can be drawn."""
    calls, errors = calls_before + calls_after, errors_before + errors_after
    ways = sum(
        math.comb(errors, x) * math.comb(calls - errors, calls_after - x)
        for x in range(errors_after, min(errors, calls_after) + 1)
    )
    return ways / math.comb(calls, calls_after)


def detectable_by_brute_force(calls_before: int, errors_before: int, calls_after: int) -> float:
    """The error rate rise Fisher's test catches four times in five, the long way: the fewest candidate errors
    it calls a rise, then rates a hundredth of a point apart until the candidate makes that many with
    probability 0.8 (binomial, summed term by term)."""
    fewest = next(
        x for x in range(calls_after + 1) if fisher_by_hand(calls_before, errors_before, calls_after, x) < 0.025
    )
    before = errors_before / calls_before

    def power(rate: float) -> float:
        return sum(
            math.comb(calls_after, x) * rate**x * (1 - rate) ** (calls_after - x)
            for x in range(fewest, calls_after + 1)
        )

    return next(step / 10_000 for step in range(1, 10_001) if power(min(before + step / 10_000, 1.0)) >= 0.8)


@pytest.mark.parametrize(("calls_before", "errors_before", "calls_after"), [(10, 0, 10), (100, 2, 100), (50, 10, 40)])
def test_the_detectable_error_rate_rise_is_the_exact_tests_own(
    calls_before: int, errors_before: int, calls_after: int
) -> None:
    """The figure a pass prints is the rise the deciding test catches with power 0.8, to a hundredth of a point."""
    found = rate_rise_detectable(calls_before, errors_before, calls_after)
    by_hand = detectable_by_brute_force(calls_before, errors_before, calls_after)
    assert found is not None and by_hand - 1e-4 < found <= by_hand


def test_detectable_effects_match_a_hand_calculation() -> None:
    z = 1.959964 + 0.841621  # one-sided 2.5%, power 0.8
    # 0 of 24, then 12 calls: all k errors among the candidate's 12 of 36 calls has p = C(12, k) / C(36, k):
    # 3 errors give 220/7140 = 0.031, within noise; 4 give 495/58905 = 0.0084, a rise. The candidate makes 4 or
    # more of 12 with probability 0.8 at a rate of 41.2%: P(X >= 4) = 1 - sum_{k<4} C(12, k) p^k (1-p)^(12-k).
    assert fisher_by_hand(24, 0, 12, 3) == pytest.approx(220 / 7140) and fisher_by_hand(24, 0, 12, 4) < 0.025
    rise = rate_rise_detectable(24, 0, 12)
    assert rise is not None
    assert 1 - sum(math.comb(12, k) * rise**k * (1 - rise) ** (12 - k) for k in range(4)) == pytest.approx(0.8)
    assert rise == pytest.approx(0.4124, abs=1e-4)
    # A baseline failing 6 calls of 10: even 10 of 10 in the candidate is within noise, C(16, 10) / C(20, 10) = 0.043.
    assert fisher_by_hand(10, 6, 10, 10) == pytest.approx(8008 / 184756)
    assert rate_rise_detectable(10, 6, 10) == math.inf
    assert rate_rise_detectable(0, 0, 10) is None and rate_rise_detectable(10, 0, 0) is None
    # At half a million calls a side the exact figure meets the normal one: (z_2.5% * sqrt(2) + z_80%) * sd.
    big = rate_rise_detectable(500_000, 10_000, 500_000)
    assert big == pytest.approx((1.959964 * math.sqrt(2) + 0.841621) * math.sqrt(0.02 * 0.98 / 500_000), rel=0.03)
    # Ratings: z * sqrt(sd0^2 / n0 + sd1^2 / n1).
    assert rating_drop_detectable(10, 0.67, 10, 0.79) == pytest.approx(z * math.sqrt(0.67**2 / 10 + 0.79**2 / 10))
    # Latency: exp(z * sd of ln(ms + 0.5) * sqrt(1/n0 + 1/n1)); 5 calls at 9 ms and 5 at 19 ms, 10 candidate calls.
    logs = [math.log(9.5)] * 5 + [math.log(19.5)] * 5
    mean = sum(logs) / 10
    sd = math.sqrt(sum((x - mean) ** 2 for x in logs) / 9)
    assert slowdown_detectable([(9, 5), (19, 5)], 10) == pytest.approx(math.exp(z * sd * math.sqrt(0.2)))


def test_the_rank_test_by_hand() -> None:
    # Every candidate call slower than every baseline call, 3 a side: U = 9, sd = sqrt(9/12 * 7),
    # z = (9 - 4.5 - 0.5) / sd = 1.746, one-sided p = 0.040.
    assert slower_p([(10, 1), (20, 1), (30, 1)], [(40, 1), (50, 1), (60, 1)]) == pytest.approx(0.0404, abs=1e-3)
    # The same calls on both sides: no evidence at all.
    assert slower_p([(10, 5), (20, 5)], [(10, 5), (20, 5)]) > 0.5


def test_a_module_that_fails_some_personas_on_some_days_fails_on_pass_k(store: StoreBuilder) -> None:
    """Six of ten personas meet one error in notes on one of their three days: spread over all calls the error
    rate rises 2 points, within the limit, but pass^k, the share whose every day went clean, falls to 40%."""
    for run_id, at, flaky in (("base", BEFORE, 0), ("cand", NOW, 6)):
        store.run(run_id, at)
        for day in range(3):
            for i, persona in enumerate(PERSONAS):
                broken = i < flaky and day == i % 3
                calls: list[Call] = [("todo.list", 40.0)] * 4 + [("notes.list", 20.0)] * 9
                calls.append(("notes.list", 20.0, "500 internal error") if broken else ("notes.list", 20.0))
                store.tick(run_id, persona, at + timedelta(days=day), calls, {"notes": 4}, offered=None)
    result, report = judged(store)
    assert failing(result) == {("notes", "reliability")}
    [check] = result.with_status("fail")
    assert check.message.startswith("personas hit by errors 0% -> 60% (6/10 personas met a product error here;")
    notes = report.module("notes")
    assert notes is not None and (notes.reliability.personas, notes.reliability.clean_personas) == (10, 4)
    assert notes.reliability.ticks == 30 and notes.reliability.clean_ticks == 24
    assert "notes" in changed(report)


def test_require_evidence_fails_a_gate_that_could_not_judge_a_module_in_every_output(
    store: StoreBuilder, tmp_path: Path
) -> None:
    """The verdict line, the Markdown and the JUnit say what the exit code says, so CI never shows green on a
    job that failed."""
    default_size_run(store, "base", BEFORE)
    default_size_run(store, "cand", NOW)
    store.run("thin", NOW)  # notes is in the baseline, but the candidate made no call to it at all
    store.tick("thin", "p0", NOW, [("todo.list", 40.0)] * 30, {"todo": 4}, offered=None)
    db = ["--db", str(Path(str(store.engine.url.database)))]
    junit, summary = tmp_path / "gate.xml", tmp_path / "gate.md"
    files = ["--junit", str(junit), "--markdown", str(summary)]

    lenient = cli("gate", "--baseline", "base", "--candidate", "thin", *files, *db)
    assert lenient.returncode == 0 and lenient.stdout.startswith("gate: PASS"), lenient.stdout
    # 30 clean calls against 20 could only have caught a rise of 29 points: the pass says so in the terminal too.
    assert (
        "  weakest passes: todo.list error rate could only see a rise of 29 points (limit 5 points);" in lenient.stdout
    )
    assert summary.read_text().startswith("## Persona gate: PASS")
    assert ET.parse(junit).getroot().get("failures") == "0"

    strict = cli("gate", "--baseline", "base", "--candidate", "thin", "--require-evidence", *files, *db)
    assert strict.returncode == 1 and strict.stdout.startswith("gate: FAIL (1 failed, "), strict.stdout
    assert "  FAIL notes evidence: no check could judge notes, a module of the baseline" in strict.stdout
    assert summary.read_text().startswith("## Persona gate: FAIL (1 failed, ")
    assert "| ❌ fail | `notes` | evidence | no check could judge notes" in summary.read_text()
    root = ET.parse(junit).getroot()
    assert root.get("failures") == "1"
    [failed] = [case for case in root.iter("testcase") if case.find("failure") is not None]
    assert (failed.get("classname"), failed.get("name")) == ("persona_gate.module.notes", "evidence")
    failure = failed.find("failure")
    assert failure is not None and "no check could judge notes" in (failure.get("message") or "")

    judged = cli("gate", "--baseline", "base", "--candidate", "cand", "--require-evidence", *db)
    assert judged.returncode == 0 and judged.stdout.startswith("gate: PASS"), judged.stdout


def test_pass_k_over_different_ticks_per_persona_is_not_judged(store: StoreBuilder) -> None:
    """The same product, 2% of notes calls failing: one day each, 2 of 10 personas meet an error; four days
    each, 8 do. pass^k falls from 80% to 20%, and Fisher calls that beyond noise (p = 2126/184756 = 0.012), yet
    nothing got worse: the candidate's personas had four times the chances. Between runs of as many days, the
    same figures pass."""

    def notes_run(run_id: str, at: datetime, days: int) -> None:
        store.run(run_id, at)
        for day in range(days):
            for i, persona in enumerate(PERSONAS):
                hit = i // 2 == day  # two personas a day, different ones each day
                calls: list[Call] = [("notes.list", 20.0)] * 9
                calls.append(("notes.list", 20.0, "500 internal error") if hit else ("notes.list", 20.0))
                store.tick(run_id, persona, at + timedelta(days=day), calls, {"notes": 4}, offered=None)

    notes_run("base", BEFORE, days=1)
    notes_run("cand", NOW, days=4)
    result, report = judged(store)
    assert result.passed and result.ticks_per_persona == (1.0, 4.0)
    [pass_k] = [c for c in result.checks if c.metric == "reliability"]
    assert pass_k.status == "insufficient"
    assert pass_k.message == (
        "too little data: pass^k over 1 tick per persona in the baseline and over 4 ticks per persona in the"
        " candidate measure different things; rerun both with the same --repeat"
    )
    assert (
        "pass^k is not compared: the baseline had 1 tick per persona, this candidate 4 ticks per persona;"
        " rerun both with the same --repeat"
    ) in evidence_lines(result)
    assert "notes" not in changed(report)
    notes_run("base4", BEFORE, days=4)
    like_with_like = compare(run_report(store, "base4"), run_report(store, "cand"), Thresholds())
    [pass_k] = [c for c in like_with_like.checks if c.metric == "reliability"]
    assert pass_k.status == "pass" and pass_k.message.startswith("personas hit by errors 80% -> 80% (8/10 personas")


def test_the_weakest_passes_are_named_in_one_line() -> None:
    """A pass that could only have seen a worsening twice its limit or more is named, weakest first: a green
    gate on thin data does not read as a strong one."""
    tool, latency_tool = Subject("tool", "todo.create", "todo"), Subject("tool", "todo.list", "todo")
    checks = [
        tool.check("error_rate", "pass", 0.0, 0.0, 0.05, "", detectable=0.41),  # 8.2 times its limit
        latency_tool.check("p95_latency", "pass", 40.0, 41.0, 1.5, "", detectable=3.1),  # 2.1 / 0.5 = 4.2 times
        Subject("module", "todo", "todo").check("rating", "pass", 4.0, 4.0, 0.5, "", detectable=0.9),  # 1.8 times
        tool.check("error_rate", "fail", 0.0, 1.0, 0.05, "", detectable=0.9),  # a failure is no weak pass
        RUN.check("failed_ticks", "pass", 0.0, 0.0, 0.05, "", detectable=math.inf),
    ]
    result = GateResult(
        baseline="b",
        candidate="c",
        thresholds=Thresholds(),
        checks=checks,
        ticks_per_persona=(1.0, 1.0),
        new_failing_tools=[],
        started_failing_tools=[],
        disappeared_tools=[],
    )
    assert weakest_passes(result) == (
        "weakest passes: run failed ticks could only see no rise at all (limit 5 points);"
        " todo.create error rate could only see a rise of 41 points (limit 5 points);"
        " todo.list p95 latency could only see 3.10x (limit 1.50x)"
    )
    assert weakest_passes(result, named=1) == (
        "weakest passes: run failed ticks could only see no rise at all (limit 5 points); and 2 more"
    )
    assert weakest_passes(result.model_copy(update={"checks": checks[2:4]})) is None
