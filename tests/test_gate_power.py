"""The gate at the sizes people run, on stores built for the purpose: a tool failing every call at the
default size fails, 300 ms added to a 40 ms tool fails on 15 calls a side, 5% jitter passes, a run whose
ticks all failed fails; the report's "what changed" says the same as the gate in every case; and the
tests' detectable effects match a hand calculation."""

from __future__ import annotations

import math
import random
from datetime import timedelta
from pathlib import Path

import pytest

from persona_runner.reporting.evidence import (
    rate_rise_detectable,
    rate_rise_p,
    rating_drop_detectable,
    slowdown_detectable,
    slower_p,
)
from persona_runner.reporting.gate import GateResult, Thresholds, compare, evidence_lines
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
    # todo.complete has 4 calls a side; its error rate and latency verdicts need 10: three times the calls.
    assert lines[-1] == (
        "to judge error rate of todo.complete you need 10 calls per side; the baseline has 4, this candidate 4:"
        " rerun both with --repeat 3"
    )


def test_fishers_exact_test_matches_the_hypergeometric_by_hand() -> None:
    # 0/24 then 6/6: all 6 errors among the candidate's 6 of 30 calls: 1 / C(30, 6).
    assert rate_rise_p(24, 0, 6, 6) == pytest.approx(1 / math.comb(30, 6))
    # 0/24 then 1/12: the one error fell among the candidate's 12 of 36 calls: 12/36.
    assert rate_rise_p(24, 0, 12, 1) == pytest.approx(12 / 36)
    # 0/12 then 3/3: 1 / C(15, 3).
    assert rate_rise_p(12, 0, 3, 3) == pytest.approx(1 / 455)
    assert rate_rise_p(24, 0, 24, 0) == 1.0 and rate_rise_p(0, 0, 6, 6) == 1.0


def test_detectable_effects_match_a_hand_calculation() -> None:
    z = 1.959964 + 0.841621  # 95% one-sided 2.5%, power 0.8
    # 2% of 100 calls, 100 candidate calls: d = z * sqrt(.02 * .98 / 100 + p1 (1 - p1) / 100), p1 = .02 + d.
    d = rate_rise_detectable(100, 2, 100)
    assert d is not None and d == pytest.approx(z * math.sqrt(0.02 * 0.98 / 100 + (0.02 + d) * (0.98 - d) / 100))
    assert d == pytest.approx(0.0987, abs=5e-4)
    # Against a clean baseline: d = z^2 (1 - d) / n, so d = z^2 / (n + z^2); 12 calls: 0.395.
    assert rate_rise_detectable(24, 0, 12) == pytest.approx(z**2 / (12 + z**2), rel=0.02)
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


def test_require_evidence_fails_a_gate_that_could_not_judge_a_module(store: StoreBuilder, tmp_path: Path) -> None:
    default_size_run(store, "base", BEFORE)
    default_size_run(store, "cand", NOW)
    store.run("thin", NOW)  # notes is in the baseline, but the candidate made no call to it at all
    store.tick("thin", "p0", NOW, [("todo.list", 40.0)] * 30, {"todo": 4}, offered=None)
    db = ["--db", str(Path(str(store.engine.url.database)))]
    lenient = cli("gate", "--baseline", "base", "--candidate", "thin", *db)
    assert lenient.returncode == 0, lenient.stdout
    strict = cli("gate", "--baseline", "base", "--candidate", "thin", "--require-evidence", *db)
    assert strict.returncode == 1
    assert "FAIL --require-evidence: no check could judge notes" in strict.stdout
    judged = cli("gate", "--baseline", "base", "--candidate", "cand", "--require-evidence", *db)
    assert judged.returncode == 0, judged.stdout
