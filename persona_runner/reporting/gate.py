"""The regression gate: did the personas' experience get worse between two runs?

It compares two `Report`s (a run's, or a baseline exported to JSON): the run's
ticks, then module by module and tool by tool. Each check passes, fails, or
says it had too little data to judge: a check on three calls would block
releases on chance, and calling it "passed" would hide that nobody looked.
A rise in error rate or a drop in rating fails only when it exceeds its
threshold *and* the noise of the two runs (the same tests the report's "what
changed" uses), so one flaky call or one grumpy tick does not block a release.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal, NamedTuple
from xml.etree import ElementTree

from pydantic import BaseModel, ValidationError

from persona_runner.reporting.evidence import (
    SIGNIFICANT,
    rate_rise_detectable,
    rate_rise_p,
    rating_drop_detectable,
    slowdown_detectable,
    slower_p,
)
from persona_runner.reporting.formatting import milliseconds, percent, rating_text
from persona_runner.reporting.markdown import cell, code, prose, table
from persona_runner.reporting.model import (
    FAILED_TICK_STATUSES,
    RUNNING,
    Change,
    ModuleReport,
    RatingStats,
    Report,
    ToolStats,
    Totals,
    rating_noise,
    ratings_differ,
)
from persona_runner.util.errors import UserError
from persona_runner.util.text import counted

MIN_CALLS = 10
#: The rank test on latencies needs about ten calls a side; fewer are one or two slow calls, not a distribution.
MIN_CALLS_LATENCY = 10
MIN_TICKS = 10
MIN_RATINGS = 3
#: Personas a side before pass^k (the share whose every tick went clean) is judged.
MIN_PERSONAS = 5
#: A tool that answered in the baseline and fails every one of this many calls in the candidate is broken,
#: whatever the baseline's count: no test of noise needs to say so.
ALL_FAILING_CALLS = 3

Status = Literal["pass", "fail", "insufficient"]
#: How a count of checks in each status reads ("3 failed"), in the order the verdict line lists them.
STATUS_WORDS: dict[Status, str] = {"fail": "failed", "pass": "passed", "insufficient": "with too little data"}
Kind = Literal["run", "module", "tool"]
RateMetric = Literal["error_rate", "failed_ticks", "reliability"]
#: `evidence` is the check `--require-evidence` adds, failing a module of the baseline no other check could judge.
Metric = Literal[RateMetric, "rating", "p95_latency", "coverage", "offered", "evidence"]
#: pass^k of two runs is compared when their ticks per persona are this close (relative): a tick more or less for one
#: persona in ten does not change what it measures; a different `--repeat` does, since more days are more chances to
#: meet an error.
SAME_K = 0.1
#: A pass whose detectable worsening is this many times its limit or more is weak: a regression twice the size the
#: team set could have passed it.
WEAK = 2.0


class Thresholds(BaseModel):
    max_error_rate_increase: float = 0.05
    max_rating_drop: float = 0.5
    max_p95_latency_ratio: float = 1.5
    min_coverage: float = 0.8


class Check(BaseModel):
    """One verdict about the run's ticks, one module or one tool, with the figures it was based on."""

    kind: Kind
    subject: str
    module: str
    metric: Metric
    status: Status
    baseline: float | None
    candidate: float | None
    limit: float
    message: str
    #: The smallest worsening this check would have caught (in its limit's unit), at the counts it had; `math.inf`
    #: when none would have shown beyond noise.
    detectable: float | None = None
    #: What a verdict needs, per side, and what each side had (calls, ticks or ratings), when it had too little.
    needed: int | None = None
    had: tuple[int, int] | None = None

    @property
    def name(self) -> str:
        return f"{self.subject} {self.metric.replace('_', ' ')}"

    @property
    def weakness(self) -> float:
        """How many times its limit the smallest worsening this check could see: above 1, a regression the size of
        the limit could pass it. 0 for a check that says nothing of the kind. A slow-down counts by its excess over
        1x, as its limit does."""
        if self.detectable is None:
            return 0.0
        seen, allowed = self.detectable, self.limit
        if self.metric == "p95_latency":
            seen, allowed = seen - 1, allowed - 1
        return seen / allowed if allowed > 0 else math.inf


class Subject(NamedTuple):
    """What a check is about: the run's ticks, a module, or a tool and its module."""

    kind: Kind
    name: str
    module: str

    def check(
        self,
        metric: Metric,
        status: Status,
        baseline: float | None,
        candidate: float | None,
        limit: float,
        message: str,
        **evidence: Any,
    ) -> Check:
        return Check(
            kind=self.kind,
            subject=self.name,
            module=self.module,
            metric=metric,
            status=status,
            baseline=baseline,
            candidate=candidate,
            limit=limit,
            message=message,
            **evidence,
        )


RUN = Subject("run", "run", "")


class GateResult(BaseModel):
    baseline: str
    candidate: str
    thresholds: Thresholds
    checks: list[Check]
    #: Ticks each persona had, on average, in the baseline and in the candidate: the K of `run --repeat K`.
    ticks_per_persona: tuple[float, float]
    #: Tools absent from the baseline whose errors fail the gate.
    new_failing_tools: list[str]
    #: Tools the baseline had whose errors now fail the gate.
    started_failing_tools: list[str]
    disappeared_tools: list[str]

    def with_status(self, status: Status) -> list[Check]:
        return [check for check in self.checks if check.status == status]

    @property
    def passed(self) -> bool:
        return not self.with_status("fail")

    def named_tools(self) -> list[tuple[str, list[str]]]:
        """The tools behind the verdict, under the words that say what became of them (only those with any)."""
        named = [
            ("tools that started failing", self.started_failing_tools),
            ("new failing tools", self.new_failing_tools),
            ("tools that disappeared", self.disappeared_tools),
        ]
        return [(words, tools) for words, tools in named if tools]

    def repeats_needed(self, check: Check) -> int | None:
        """The `--repeat` both runs need for this check to have its data; None when more ticks would not help (a
        side with none at all, or personas, which more ticks do not add).

        A side's count grows with the ticks its personas had: `had` over k
        ticks per persona becomes `needed` over needed * k / had.
        """
        if check.needed is None or check.had is None or min(check.had) == 0 or check.metric == "reliability":
            return None
        return max(
            math.ceil(check.needed * ticks / had - 1e-9)
            for ticks, had in zip(self.ticks_per_persona, check.had, strict=True)
        )

    @property
    def verdict(self) -> str:
        counts = ", ".join(f"{len(self.with_status(status))} {word}" for status, word in STATUS_WORDS.items())
        return f"{'PASS' if self.passed else 'FAIL'} ({counts})"


def load_baseline_file(path: Path) -> Report:
    """A baseline kept in a repository: the JSON of `runs export` (or `report --format json`)."""
    try:
        return Report.model_validate_json(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(
            f"baseline file {path} does not exist; export one with `persona-runner runs export RUN_ID --out {path}`"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"baseline file {path} cannot be read: {exc}") from None
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(part) for part in first["loc"]) or "the file"
        message = first["msg"].removeprefix("Value error, ")
        raise UserError(
            f"baseline file {path} is not an exported report "
            f"({counted(exc.error_count(), 'problem')}, first: {where}: {message})"
        ) from None


class Counts(NamedTuple):
    """How many there were and how many went wrong: calls and errors, or ticks and failed ticks."""

    total: int
    failed: int


class RateTerms(NamedTuple):
    what: str
    unit: str
    failed: str
    minimum: int


_RATE_TERMS: dict[RateMetric, RateTerms] = {
    "error_rate": RateTerms("error rate", "call", "failed", MIN_CALLS),
    "failed_ticks": RateTerms("failed ticks", "tick", "failed, timed out, aborted or interrupted", MIN_TICKS),
    "reliability": RateTerms("personas hit by errors", "persona", "met a product error here", MIN_PERSONAS),
}


def _counts(tool_or_module: ToolStats | ModuleReport | None) -> Counts:
    return Counts(tool_or_module.calls, tool_or_module.errors) if tool_or_module else Counts(0, 0)


def ticks_per_persona(report: Report) -> float:
    """How many ticks each persona of a report had, on average: K after `run --repeat K`, more in a long soak. A
    report that counts no persona or no tick (written by hand) counts as one tick each."""
    totals = report.totals
    return totals.ticks / totals.personas if totals.personas and totals.ticks else 1.0


def same_k(ticks_per_persona: tuple[float, float]) -> bool:
    """Whether two runs' pass^k measure the same thing: their personas had about as many ticks (SAME_K)."""
    before, after = ticks_per_persona
    return abs(before - after) <= SAME_K * max(before, after)


def _per_persona(ticks: float) -> str:
    """ "1 tick per persona", "6.7 ticks per persona"."""
    shown = round(ticks, 1)
    return f"{shown:g} tick{'' if shown == 1 else 's'} per persona"


def _reliability_check(
    module: str,
    before: ModuleReport | None,
    after: ModuleReport | None,
    limit: float,
    ticks_per_persona: tuple[float, float],
) -> Check:
    """pass^k: the share of personas whose every tick with the module went without a product error. A module
    that fails some personas every day is judged here even when its error rate, spread over all, moved little.

    It is judged only between runs whose personas had about as many ticks: a
    persona living four days has four chances to meet an error, so a candidate
    run with `--repeat 4` against a baseline of one day would fail on that alone.
    """
    subject = Subject("module", module, module)
    old = before.reliability if before else None
    if before is not None and old is not None and old.personas == 0 and before.calls:
        message = "too little data: the baseline keeps no per-persona reliability; export it again with `runs export`"
        return subject.check("reliability", "insufficient", None, None, limit, message)
    if not same_k(ticks_per_persona):
        ticks_before, ticks_after = ticks_per_persona
        message = (
            f"too little data: pass^k over {_per_persona(ticks_before)} in the baseline and over"
            f" {_per_persona(ticks_after)} in the candidate measure different things;"
            " rerun both with the same --repeat"
        )
        return subject.check("reliability", "insufficient", None, None, limit, message)

    def counts(module_report: ModuleReport | None) -> Counts:
        if module_report is None:
            return Counts(0, 0)
        kept = module_report.reliability
        return Counts(kept.personas, kept.personas - kept.clean_personas)

    return _rate_check(subject, "reliability", counts(before), counts(after), limit)


def _tick_counts(totals: Totals) -> Counts:
    statuses = totals.tick_statuses
    # A tick still being played has no outcome yet: a gate over a soak in progress judges the ticks that ended.
    unfinished = statuses.get(RUNNING, 0)
    failed = sum(count for status, count in statuses.items() if status in FAILED_TICK_STATUSES)
    return Counts(totals.ticks - unfinished, failed)


def _rate_check(subject: Subject, metric: RateMetric, before: Counts, after: Counts, limit: float) -> Check:
    """A rise in the share of calls (or ticks) that failed, judged on the limit and on the noise.

    A rise fails when it exceeds the limit and Fisher's exact test says it is
    beyond chance, so a few calls are judged too: 0 of 24, then 6 of 6, fails.
    A tool that answered in the baseline and failed every one of at least
    ALL_FAILING_CALLS calls in the candidate fails outright. Something the
    baseline never exercised has no noise to measure: it is held against no
    failures, on the limit alone, from ALL_FAILING_CALLS calls. A pass needs
    `minimum` on each side; with fewer, "no rise" only means the test could not
    have seen one. A candidate whose every tick failed left nothing else to
    judge, so that fails on the limit alone whatever the counts.
    """
    terms = _RATE_TERMS[metric]
    rate_before = before.failed / before.total if before.total else 0.0
    detectable = rate_rise_detectable(before.total, before.failed, after.total)
    evidence: dict[str, Any] = {"detectable": detectable}
    if after.total == 0:
        message = f"too little data: {counted(before.total, f'baseline {terms.unit}')}, no candidate {terms.unit}s"
        return subject.check(
            metric, "insufficient", rate_before, None, limit, message, needed=terms.minimum, had=(before.total, 0)
        )
    rate_after = after.failed / after.total
    increase = rate_after - rate_before
    all_failing = after.failed == after.total >= ALL_FAILING_CALLS
    if before.total:
        judged = min(before.total, after.total) >= terms.minimum
        beyond_noise = rate_rise_p(before.total, before.failed, after.total, after.failed) < SIGNIFICANT
        noise = "beyond noise" if beyond_noise else "within noise"
    else:
        judged = beyond_noise = after.total >= ALL_FAILING_CALLS
        noise = "new, judged on the limit alone"
    status: Status
    if metric == "error_rate" and all_failing and before.total > before.failed and increase > limit:
        status, noise = "fail", f"every one of its {counted(after.total, 'call')} failed"
    elif increase > limit and beyond_noise:
        status = "fail"
    elif increase > limit and metric == "failed_ticks" and after.failed == after.total:
        status, noise = "fail", "no tick succeeded"
    elif judged:
        status = "pass"
    else:
        need = (
            f"{terms.minimum} on each side" if before.total else counted(ALL_FAILING_CALLS, f"candidate {terms.unit}")
        )
        message = (
            f"too little data: {counted(before.total, f'baseline {terms.unit}')}, "
            f"{counted(after.total, f'candidate {terms.unit}')} (need {need})"
        )
        evidence |= {"needed": terms.minimum, "had": (before.total, after.total)} if before.total else {}
        return subject.check(metric, "insufficient", rate_before, rate_after, limit, message, **evidence)
    message = (
        f"{terms.what} {percent(rate_before)} -> {percent(rate_after)} "
        f"({after.failed}/{after.total} {terms.unit}s {terms.failed}; "
        f"increase {increase * 100:+.0f} points, limit +{limit * 100:.0f}; {noise}"
        f"{_could_see(metric, detectable) if status == 'pass' else ''})"
    )
    return subject.check(metric, status, rate_before, rate_after, limit, message, **evidence)


def _size(metric: Metric, size: float) -> str:
    """A change of a check's kind in its limit's unit: "12 points", "1.40x", "0.50"."""
    if metric == "p95_latency":
        return f"{size:.2f}x"
    if metric == "rating":
        return f"{size:.2f}"
    return f"{size * 100:.0f} points"


def _worsening(metric: Metric, size: float) -> str:
    """A worsening of a check's kind in words: "a rise of 12 points", "1.40x", "a drop of 0.50"."""
    if math.isinf(size):
        return "no rise at all"
    if metric == "p95_latency":
        return _size(metric, size)
    return f"{'a drop' if metric == 'rating' else 'a rise'} of {_size(metric, size)}"


def _could_see(metric: Metric, detectable: float | None) -> str:
    """What the check could have caught, said after its verdict."""
    return "" if detectable is None else f"; could see {_worsening(metric, detectable)}"


def _rating_check(module: str, before: RatingStats, after: RatingStats, limit: float) -> Check:
    """A drop in mean rating fails when it exceeds the limit and a Welch t-test says it is beyond noise."""
    subject = Subject("module", module, module)
    noise = rating_noise(before, after)
    detectable = rating_drop_detectable(before.n, before.sd, after.n, after.sd)
    if before.n < MIN_RATINGS or after.n < MIN_RATINGS or noise is None or before.mean is None or after.mean is None:
        message = (
            f"too little data: {counted(before.n, 'baseline rating')}, {counted(after.n, 'candidate rating')}"
            f" (need {MIN_RATINGS} on each side)"
        )
        return subject.check(
            "rating",
            "insufficient",
            before.mean,
            after.mean,
            limit,
            message,
            detectable=detectable,
            needed=MIN_RATINGS,
            had=(before.n, after.n),
        )
    drop = before.mean - after.mean
    beyond_noise = bool(ratings_differ(before, after))
    status: Status = "fail" if drop > limit and beyond_noise else "pass"
    message = (
        f"mean rating {rating_text(before)} -> {rating_text(after)} "
        f"(drop {drop:.2f}, limit {limit:.2f}; {'beyond' if beyond_noise else 'within'} noise of ±{noise:.2f}"
        f"{_could_see('rating', detectable) if status == 'pass' else ''})"
    )
    return subject.check("rating", status, before.mean, after.mean, limit, message, detectable=detectable)


def _latency_check(tool: str, module: str, before: ToolStats | None, after: ToolStats | None, limit: float) -> Check:
    """A slower tool fails when its p95 grew past the limit and the rank test says its calls are slower
    beyond noise: 300 ms added to a 40 ms tool shows on 15 calls a side, a few percent of jitter never."""
    subject = Subject("tool", tool, module)
    p95_before = before.p95_ms if before else None
    p95_after = after.p95_ms if after else None
    histogram_before = before.latency_histogram if before else []
    histogram_after = after.latency_histogram if after else []
    calls_before, calls_after = (before.calls if before else 0), (after.calls if after else 0)
    detectable = slowdown_detectable(histogram_before, calls_after)
    if before and not histogram_before and calls_before:
        message = "too little data: the baseline keeps no latency distribution; export it again with `runs export`"
        return subject.check("p95_latency", "insufficient", p95_before, p95_after, limit, message)
    if min(calls_before, calls_after) < MIN_CALLS_LATENCY or not p95_before or p95_after is None:
        message = (
            f"too little data: {counted(calls_before, 'baseline call')}, {counted(calls_after, 'candidate call')}"
            f" (need {MIN_CALLS_LATENCY} on each side)"
        )
        return subject.check(
            "p95_latency",
            "insufficient",
            p95_before,
            p95_after,
            limit,
            message,
            detectable=detectable,
            needed=MIN_CALLS_LATENCY,
            had=(calls_before, calls_after),
        )
    ratio = p95_after / p95_before
    slower = slower_p(histogram_before, histogram_after) < SIGNIFICANT
    status: Status = "fail" if ratio > limit and slower else "pass"
    message = (
        f"p95 latency {milliseconds(p95_before)} -> {milliseconds(p95_after)} ({ratio:.2f}x, limit {limit:.2f}x; "
        f"{'slower beyond noise' if slower else 'not slower beyond noise'}"
        f"{_could_see('p95_latency', detectable) if status == 'pass' else ''})"
    )
    return subject.check("p95_latency", status, p95_before, p95_after, limit, message, detectable=detectable)


def _coverage_check(module: str, before: ModuleReport | None, after: ModuleReport | None, limit: float) -> Check:
    """Share of the module's offered tools the candidate used; below the limit fails only when also below the baseline.

    A module the baseline already covered thinly is known, and a run compared
    with itself must pass. Coverage needs the list of tools the candidate was
    offered: the store-wide fallback says nothing about this run.
    """
    subject = Subject("module", module, module)
    coverage_before = before.coverage if before else None
    if after is None or after.coverage is None or after.coverage_basis != "offered":
        message = "too little data: the candidate recorded no tools offered for this module"
        return subject.check("coverage", "insufficient", coverage_before, None, limit, message)
    calls_before = before.calls if before else 0
    if min(calls_before, after.calls) < MIN_CALLS:
        # A few calls leave some tools unused by chance alone.
        message = (
            f"too little data: {counted(calls_before, 'baseline call')}, {counted(after.calls, 'candidate call')}"
            " in this module"
            f" (need {MIN_CALLS} on each side)"
        )
        return subject.check("coverage", "insufficient", coverage_before, after.coverage, limit, message)
    unused = sorted(set(after.tools_offered) - set(after.tools_used))
    message = (
        f"tool coverage {percent(coverage_before)} -> {percent(after.coverage)}"
        f" ({len(after.tools_used)} of {len(after.tools_offered)} used, limit {percent(limit)})"
    )
    message += f"; not used: {', '.join(unused)}" if unused else ""
    worse = coverage_before is None or after.coverage < coverage_before
    message += "; below the limit but not below the baseline" if after.coverage < limit and not worse else ""
    return subject.check(
        "coverage",
        "fail" if after.coverage < limit and worse else "pass",
        coverage_before,
        after.coverage,
        limit,
        message,
    )


def _offered_check(
    tool: str, module: str, before: ToolStats, after: ToolStats | None, offered_after: set[str] | None
) -> Check:
    """Whether a tool the baseline's personas used is still offered: dropping it takes away something users rely on.

    Its other checks can only say "too little data" once it is gone, and too
    little data does not fail a gate; this check does. A tool the candidate
    called was offered; one it did not call is judged on the list its
    transcripts recorded, and without such a list the check cannot tell.
    """
    subject = Subject("tool", tool, module)
    if after is not None or (offered_after is not None and tool in offered_after):
        message = f"{tool} was used in the baseline and is offered by the candidate"
        return subject.check("offered", "pass", before.calls, after.calls if after else 0, 0, message)
    if offered_after is None:
        message = (
            f"too little data: the candidate recorded no tools offered and did not call {tool}, used in the baseline"
        )
        return subject.check("offered", "insufficient", before.calls, None, 0, message)
    message = f"{tool} was used in the baseline and is not offered by the candidate"
    return subject.check("offered", "fail", before.calls, 0, 0, message)


class Movement(NamedTuple):
    """How a module moved between two scopes, by the gate's own checks: worse where a check fails, better where
    it would fail with the two scopes swapped."""

    rating_worse: bool
    rating_better: bool
    errors_worse: bool
    errors_better: bool


def module_movement(
    module: str,
    before: Counts,
    after: Counts,
    rating_before: RatingStats,
    rating_after: RatingStats,
    limits: Thresholds,
) -> Movement:
    """The report's "what changed" asks this, so a report never calls a change what the gate calls noise."""
    subject = Subject("module", module, module)
    limit = limits.max_error_rate_increase

    def fails(check: Check) -> bool:
        return check.status == "fail"

    return Movement(
        rating_worse=fails(_rating_check(module, rating_before, rating_after, limits.max_rating_drop)),
        rating_better=fails(_rating_check(module, rating_after, rating_before, limits.max_rating_drop)),
        errors_worse=fails(_rate_check(subject, "error_rate", before, after, limit)),
        errors_better=fails(_rate_check(subject, "error_rate", after, before, limit)),
    )


def what_changed(before: Report, after: Report, limits: Thresholds, since: str) -> list[Change]:
    """The report's "what changed", by the gate's rules: each module whose rating or error rate got worse or better
    beyond its limit and the noise, then every other check the gate fails (a tool that started failing or got
    slower, a tool that disappeared, the ticks), worse first. A report and a gate over the same two scopes
    never disagree. A previous scope that recorded nothing gives nothing to compare with."""
    if before.totals.ticks == 0 and before.is_empty:
        return []
    changes = []
    compared = {m.module for m in before.modules} & {m.module for m in after.modules}
    for name in sorted(compared):
        old, new = before.module(name), after.module(name)
        rating_before, rating_after = (old.rating if old else RatingStats()), (new.rating if new else RatingStats())
        moved = module_movement(name, _counts(old), _counts(new), rating_before, rating_after, limits)
        if not any(moved):
            continue
        parts = []
        if rating_before.mean is not None and rating_after.mean is not None:
            parts.append(f"mean rating {rating_before.mean:.1f} -> {rating_after.mean:.1f}")
        rate_before, rate_after = (old.error_rate if old else None), (new.error_rate if new else None)
        if rate_before is not None and rate_after is not None:
            parts.append(f"error rate {percent(rate_before)} -> {percent(rate_after)}")
        changes.append(
            Change(
                module=name,
                summary=f"{name}: {', '.join(parts)} since {since}",
                rating_before=rating_before.mean,
                rating_after=rating_after.mean,
                rating_moved=moved.rating_worse or moved.rating_better,
                error_rate_before=rate_before,
                error_rate_after=rate_after,
                error_rate_moved=moved.errors_worse or moved.errors_better,
                worse=moved.rating_worse or moved.errors_worse,
            )
        )
    for check in compare(before, after, limits).with_status("fail"):
        if check.kind == "module" and check.metric in ("rating", "error_rate") and check.module in compared:
            continue  # said above, with the module's other figures
        changes.append(
            Change(
                module=check.module,
                summary=f"{check.name}: {check.message} since {since}",
                rating_before=None,
                rating_after=None,
                rating_moved=False,
                error_rate_before=check.baseline if check.metric == "error_rate" else None,
                error_rate_after=check.candidate if check.metric == "error_rate" else None,
                error_rate_moved=check.metric == "error_rate",
                worse=True,
            )
        )
    return sorted(changes, key=lambda change: not change.worse)


def _tools(report: Report) -> dict[str, ToolStats]:
    return {tool.tool: tool for module in report.modules for tool in module.tools}


def _offered(report: Report) -> set[str] | None:
    """Tools the product offered in a report, as its transcripts recorded them; None when none recorded the list.

    Without that list the report's is every tool the store ever saw, which
    says nothing about this run.
    """
    if not any(module.coverage_basis == "offered" for module in report.modules):
        return None
    return {tool for module in report.modules for tool in module.tools_offered}


def _checks(
    baseline: Report, candidate: Report, limits: Thresholds, ticks_per_persona: tuple[float, float]
) -> Iterator[Check]:
    yield _rate_check(
        RUN,
        "failed_ticks",
        _tick_counts(baseline.totals),
        _tick_counts(candidate.totals),
        limits.max_error_rate_increase,
    )
    tools_before, tools_after = _tools(baseline), _tools(candidate)
    offered_after = _offered(candidate)
    for name in sorted({m.module for m in baseline.modules} | {m.module for m in candidate.modules}):
        before, after = baseline.module(name), candidate.module(name)
        yield _rate_check(
            Subject("module", name, name), "error_rate", _counts(before), _counts(after), limits.max_error_rate_increase
        )
        yield _reliability_check(name, before, after, limits.max_error_rate_increase, ticks_per_persona)
        yield _rating_check(
            name,
            before.rating if before else RatingStats(),
            after.rating if after else RatingStats(),
            limits.max_rating_drop,
        )
        yield _coverage_check(name, before, after, limits.min_coverage)
        for tool in sorted(tool for tool, stats in (tools_before | tools_after).items() if stats.module == name):
            tool_before, tool_after = tools_before.get(tool), tools_after.get(tool)
            if tool_before:
                yield _offered_check(tool, name, tool_before, tool_after, offered_after)
            yield _rate_check(
                Subject("tool", tool, name),
                "error_rate",
                _counts(tool_before),
                _counts(tool_after),
                limits.max_error_rate_increase,
            )
            yield _latency_check(tool, name, tool_before, tool_after, limits.max_p95_latency_ratio)


def _unjudged_modules(baseline: Report, checks: list[Check]) -> list[str]:
    """The baseline's modules of which no check could say pass or fail: the gate did not look at them."""
    judged = {check.module for check in checks if check.status != "insufficient" and check.metric != "offered"}
    return sorted(module.module for module in baseline.modules if module.module not in judged)


def _evidence_check(module: str) -> Check:
    """The failure `--require-evidence` adds for a module of the baseline that no check could judge."""
    message = f"no check could judge {module}, a module of the baseline: each had too little data (--require-evidence)"
    return Subject("module", module, module).check("evidence", "fail", None, None, 0, message)


def compare(
    baseline: Report,
    candidate: Report,
    limits: Thresholds,
    *,
    baseline_label: str | None = None,
    require_evidence: bool = False,
) -> GateResult:
    """Every check of candidate against baseline, plus the tools that fail it, newly or again, and those no
    longer offered, by name.

    With `require_evidence`, each module of the baseline that no check could
    judge fails a check of its own, so the verdict, the JUnit and the Markdown
    fail with the exit code, not only the exit code.
    """
    tools_before = _tools(baseline)
    ticks = (ticks_per_persona(baseline), ticks_per_persona(candidate))
    checks = list(_checks(baseline, candidate, limits, ticks))
    if require_evidence:
        checks += [_evidence_check(module) for module in _unjudged_modules(baseline, checks)]
    failing = [c.subject for c in checks if c.kind == "tool" and c.metric == "error_rate" and c.status == "fail"]
    return GateResult(
        baseline=baseline_label or baseline.scope.label,
        candidate=candidate.scope.label,
        thresholds=limits,
        checks=checks,
        ticks_per_persona=ticks,
        new_failing_tools=[tool for tool in failing if tool not in tools_before],
        started_failing_tools=[tool for tool in failing if tool in tools_before],
        disappeared_tools=sorted(
            check.subject for check in checks if check.metric == "offered" and check.status == "fail"
        ),
    )


#: How the checks of each kind are named in the one line that counts those with too little data.
_KIND_WORDS: dict[Metric, str] = {
    "failed_ticks": "failed-ticks",
    "error_rate": "error-rate",
    "rating": "rating",
    "p95_latency": "latency",
    "coverage": "coverage",
    "offered": "offered-tools",
    "reliability": "reliability",
}
_UNITS: dict[Metric, str] = {
    "failed_ticks": "tick",
    "error_rate": "call",
    "rating": "rating",
    "p95_latency": "call",
    "coverage": "call",
    "offered": "call",
    "reliability": "persona",
}


def evidence_lines(result: GateResult) -> list[str]:
    """The checks with too little data, one line per kind, then what would judge them: the repeats the most
    demanding one needs, named, so a team knows what `--repeat` to run the gate's runs with."""
    lines = []
    short = result.with_status("insufficient")
    for metric, words in _KIND_WORDS.items():
        kind = [check for check in short if check.metric == metric]
        if kind:
            subjects = ", ".join(check.subject for check in kind[:5]) + (", …" if len(kind) > 5 else "")
            lines.append(f"too little data for {counted(len(kind), f'{words} check')}: {subjects}")
    before, after = result.ticks_per_persona
    if not same_k(result.ticks_per_persona) and any(check.metric == "reliability" for check in short):
        lines.append(
            f"pass^k is not compared: the baseline had {_per_persona(before)}, this candidate {_per_persona(after)};"
            " rerun both with the same --repeat"
        )
    wanting = [(repeats, check) for check in short if (repeats := result.repeats_needed(check))]
    if wanting:
        repeats, worst = max(wanting, key=lambda pair: (pair[0], pair[1].needed or 0))
        assert worst.needed is not None and worst.had is not None
        unit = _UNITS[worst.metric]
        lines.append(
            f"to judge {worst.metric.replace('_', ' ')} of {worst.subject} you need {counted(worst.needed, unit)}"
            " per side;"
            f" the baseline has {worst.had[0]} ({_per_persona(before)}),"
            f" this candidate {worst.had[1]} ({_per_persona(after)}):"
            f" rerun both with --repeat {repeats}"
        )
    return lines


def weakest_passes(result: GateResult, named: int = 3) -> str | None:
    """One line naming the passes that could only have seen a worsening WEAK times their limit or more, weakest
    first, so a green gate on thin data is not read as a strong one; None when no pass is that weak."""
    weak = sorted(
        (check for check in result.with_status("pass") if check.weakness >= WEAK),
        key=lambda check: check.weakness,
        reverse=True,
    )
    if not weak:
        return None
    shown = [
        f"{check.name} could only see {_worsening(check.metric, check.detectable or 0.0)}"
        f" (limit {_size(check.metric, check.limit)})"
        for check in weak[:named]
    ]
    more = f"; and {len(weak) - named} more" if len(weak) > named else ""
    return f"weakest passes: {'; '.join(shown)}{more}"


_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _xml_safe(text: str) -> str:
    """Tool names come from the product and may hold characters XML 1.0 cannot carry at all."""
    return _NOT_XML.sub("\ufffd", text)


def render_junit(result: GateResult) -> str:
    """JUnit XML, one test case per check: failures as <failure>, too little data as <skipped>."""
    counts = {
        "tests": str(len(result.checks)),
        "failures": str(len(result.with_status("fail"))),
        "errors": "0",
        "skipped": str(len(result.with_status("insufficient"))),
        "time": "0",
    }
    suites = ElementTree.Element("testsuites", {"name": "persona-runner gate", **counts})
    suite = ElementTree.SubElement(
        suites, "testsuite", {"name": _xml_safe(f"{result.candidate} vs {result.baseline}"), **counts}
    )
    properties = ElementTree.SubElement(suite, "properties")
    for key, value in {
        "baseline": result.baseline,
        "candidate": result.candidate,
        **result.thresholds.model_dump(),
    }.items():
        ElementTree.SubElement(properties, "property", {"name": key, "value": _xml_safe(str(value))})
    for check in result.checks:
        message = _xml_safe(check.message)
        case = ElementTree.SubElement(
            suite,
            "testcase",
            {"classname": _xml_safe(f"persona_gate.{check.kind}.{check.subject}"), "name": check.metric, "time": "0"},
        )
        if check.status == "fail":
            ElementTree.SubElement(
                case, "failure", {"message": message, "type": f"{check.metric}_regression"}
            ).text = message
        elif check.status == "insufficient":
            ElementTree.SubElement(case, "skipped", {"message": message})
        else:
            ElementTree.SubElement(case, "system-out").text = message
    ElementTree.indent(suites)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ElementTree.tostring(suites, encoding="unicode") + "\n"


_ORDER: dict[Status, int] = {"fail": 0, "insufficient": 1, "pass": 2}
#: Rows of the Markdown table, failures first: keeps a product with hundreds of tools within what a
#: pull-request comment holds (65,536 characters).
MARKDOWN_ROWS = 150
_LABEL: dict[Status, str] = {"fail": "❌ fail", "insufficient": "⚪ too little data", "pass": "✅ pass"}


def render_markdown(result: GateResult) -> str:
    """A summary table for a PR comment or a CI step summary: failures first, then passes; the checks with
    too little data in one line per kind (the JUnit file lists them one by one), then what would judge them,
    never cut: the `--repeat` to run with ends the line."""
    lines = [
        f"## Persona gate: {result.verdict}",
        "",
        f"Candidate {cell(result.candidate)} against baseline {cell(result.baseline)}.",
        "",
    ]
    for words, tools in result.named_tools():
        lines.append(f"{words.capitalize()}: {', '.join(code(tool, in_table=False) for tool in tools)}.")
    judged = [check for check in result.checks if check.status != "insufficient"]
    ordered = sorted(judged, key=lambda check: (_ORDER[check.status], check.module, check.subject, check.metric))
    shown, left = ordered[:MARKDOWN_ROWS], ordered[MARKDOWN_ROWS:]
    rows = (
        [_LABEL[check.status], code(check.subject), check.metric.replace("_", " "), cell(check.message)]
        for check in shown
    )
    rest = []
    if left:
        failed = sum(1 for check in left if check.status == "fail")
        rest = ["", f"…and {len(left)} more checks ({failed} failed); the JUnit file lists every check."]
    evidence = [f"- {prose(line)}" for line in evidence_lines(result)]
    return "\n".join(
        [
            *lines,
            "",
            *table(["Status", "Subject", "Check", "Detail"], rows),
            *rest,
            *([""] if evidence else []),
            *evidence,
            "",
        ]
    )
