"""What a report says, as data: every figure of a scope, and the statistics that tell a change from noise.

The report is built from SQL in `report`; it is dumped as JSON, read by the
HTML and Markdown renderers, and two of them are compared by the gate (an
exported baseline is one), so the outputs and the gate share these models.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from datetime import datetime
from itertools import pairwise
from typing import Any, Literal, NamedTuple

from pydantic import BaseModel, NonNegativeInt, model_validator

RATING_MIN, RATING_MAX = 1.0, 5.0
#: A tick that ended in one of these did not finish what the persona set out to do; listed in this order.
FAILED_TICK_STATUSES = ("failed", "timeout", "aborted", "interrupted")
#: A tick still being played has no outcome yet: it neither failed nor finished.
RUNNING = "running"
Z975 = 1.959964

# Two-sided 95% critical values of Student's t, keyed by 1/df; 1/df = 0 is the
# normal limit. Welch's test gives fractional df, mostly small ones, hence the
# extra rows below 4. Between rows log(t) is interpolated linearly in 1/df,
# which stays within 0.4% of the exact value for every df >= 1 (0.2% from
# df 2, 0.03% from df 5).
_T975_BY_INVERSE_DF = (
    (1 / 1, 12.7062),
    (1 / 1.25, 8.0280),
    (1 / 1.5, 6.0167),
    (1 / 1.75, 4.9488),
    (1 / 2, 4.3027),
    (1 / 2.5, 3.5747),
    (1 / 3, 3.1824),
    (1 / 3.5, 2.9401),
    (1 / 4, 2.7764),
    (1 / 5, 2.5706),
    (1 / 6, 2.4469),
    (1 / 7, 2.3646),
    (1 / 8, 2.3060),
    (1 / 9, 2.2622),
    (1 / 10, 2.2281),
    (1 / 11, 2.2010),
    (1 / 12, 2.1788),
    (1 / 13, 2.1604),
    (1 / 14, 2.1448),
    (1 / 15, 2.1314),
    (1 / 16, 2.1199),
    (1 / 17, 2.1098),
    (1 / 18, 2.1009),
    (1 / 19, 2.0930),
    (1 / 20, 2.0860),
    (1 / 25, 2.0595),
    (1 / 30, 2.0423),
    (1 / 40, 2.0211),
    (1 / 60, 2.0003),
    (1 / 120, 1.9799),
    (0.0, Z975),
)


def t_quantile_975(df: float) -> float:
    """Critical value t such that P(|T_df| <= t) = 0.95; df may be fractional (Welch), and counts as 1 below 1."""
    inverse = 1.0 / df if df >= 1 else 1.0
    for (x0, t0), (x1, t1) in pairwise(_T975_BY_INVERSE_DF):
        if x1 <= inverse <= x0:
            return math.exp(math.log(t0) + (math.log(t1) - math.log(t0)) * (x0 - inverse) / (x0 - x1))
    return _T975_BY_INVERSE_DF[0][1]


class RatingStats(BaseModel):
    """Ratings of one module (or one cell of a grid): n, mean and its 95% t-interval.

    The interval needs two ratings; with one, mean is known but the noise is not.
    """

    n: NonNegativeInt = 0
    mean: float | None = None
    sd: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None

    @classmethod
    def from_sums(cls, n: int, total: float, total_sq: float) -> RatingStats:
        """Build from count, sum and sum of squares, which is all the database has to return."""
        if n == 0:
            return cls()
        mean = total / n
        if n == 1:
            return cls(n=1, mean=mean)
        sd = math.sqrt(max(0.0, (total_sq - n * mean * mean) / (n - 1)))
        half = t_quantile_975(n - 1) * sd / math.sqrt(n)
        # A mean of 1..5 ratings cannot leave the scale, so neither does the interval shown for it.
        low, high = max(RATING_MIN, mean - half), min(RATING_MAX, mean + half)
        return cls(n=n, mean=mean, sd=sd, ci_low=low, ci_high=high)


def rating_noise(before: RatingStats, after: RatingStats) -> float | None:
    """The smallest difference of mean ratings a Welch t-test calls real at 95% (two-sided).

    Welch's test does not assume both runs rate with the same spread. Asking
    instead that the two 95% intervals not overlap would be a far stricter
    test (about p < 0.005) than the 5% the reports promise. None when either
    side has fewer than two ratings: the data cannot say, which is different
    from "no".
    """
    if before.n < 2 or after.n < 2 or before.sd is None or after.sd is None:
        return None
    spread_before, spread_after = before.sd**2 / before.n, after.sd**2 / after.n
    spread = spread_before + spread_after
    if spread == 0:
        return 0.0  # every rating on each side the same: any difference in means is real
    df = spread**2 / (spread_before**2 / (before.n - 1) + spread_after**2 / (after.n - 1))
    return t_quantile_975(df) * math.sqrt(spread)


def ratings_differ(before: RatingStats, after: RatingStats) -> bool | None:
    """Whether two sets of ratings differ beyond noise; None when either side is too small to tell."""
    noise = rating_noise(before, after)
    if noise is None or before.mean is None or after.mean is None:
        return None
    return abs(after.mean - before.mean) > noise


def error_rate(calls: int, errors: int) -> float | None:
    """Errors per call; None where no call was made, which is not the same as no errors."""
    return errors / calls if calls else None


class Scope(BaseModel):
    """What a report covers: a time window [since, until) or a set of runs; a window may keep only the runs of
    one label or one target."""

    kind: Literal["window", "runs"]
    label: str
    since: datetime | None = None
    until: datetime | None = None
    run_ids: list[str] = []
    run_label: str | None = None
    target: str | None = None
    #: Set on the scope a report compares with when it holds no tick, call or rating: "what changed" then
    #: compared nothing, which must not read as "nothing moved".
    recorded_nothing: bool = False


class RunInfo(BaseModel):
    """A run a report covers, with what sets it apart: its label, its target and the faults injected in it."""

    run_id: str
    label: str | None
    target: str
    started_at: datetime
    status: str
    #: --fault and --delay the embedded product ran with: its errors and slowness were asked for.
    injected: list[str] = []


def injected_faults(config: Mapping[str, Any] | None) -> list[str]:
    """The faults (`--fault`, `--delay`) a run's config says were injected in the embedded product for it, in the
    order they were given."""
    return list((config or {}).get("injected", ()))


class RunKind(NamedTuple):
    """What sets a run's figures apart from another's: the label a user gave it, and the faults (`--fault`,
    `--delay`) injected in the embedded product for it."""

    label: str | None
    injected: tuple[str, ...]

    @classmethod
    def of(cls, label: str | None, config: Mapping[str, Any] | None) -> RunKind:
        """The kind of a run as the `runs` table records it: the injected faults are kept in its config, in the order
        they were given, which does not change what they do."""
        return cls(label, tuple(sorted(injected_faults(config))))

    def likeness(self, other: RunKind) -> int | None:
        """How well a run of kind `other` stands in for one of this kind in "what changed", 0 best.

        0: the same label (no label on either counts as the same) and the
        same faults; 1: the same faults under another label; 2: no faults,
        where this run had some (a clean run is what a drill's figures read
        against). None for a run with other faults: its figures show what was
        asked of the product, not what the product did.
        """
        if other.injected == self.injected:
            return 0 if other.label == self.label else 1
        return None if other.injected else 2


def closest_earlier(kind: RunKind, earlier: Iterable[tuple[str, RunKind]]) -> str | None:
    """Among `earlier` runs (id and kind, latest first), the latest of those most like a run of `kind`; None when
    none stands in for it (see `RunKind.likeness`)."""
    ranked = [
        (rank, order, run_id)
        for order, (run_id, other) in enumerate(earlier)
        if (rank := kind.likeness(other)) is not None
    ]
    return min(ranked)[2] if ranked else None


class Counted(BaseModel):
    """Figures of calls and of the errors among them.

    A report read back from a file (a baseline kept in a repository) may have
    been edited by hand; counts no store could produce are refused when it is
    read, rather than failing a statistic later.
    """

    calls: NonNegativeInt
    errors: NonNegativeInt

    @model_validator(mode="after")
    def _errors_among_calls(self) -> Counted:
        if self.errors > self.calls:
            raise ValueError(f"{self.errors} errors among {self.calls} calls")
        return self


class ToolStats(Counted):
    tool: str
    module: str
    error_rate: float
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    #: The calls' latencies as (whole milliseconds, calls) pairs, ascending: the distribution the gate compares.
    #: Empty in a baseline exported before it was kept.
    latency_histogram: list[tuple[int, int]] = []


class ErrorCount(BaseModel):
    message: str
    count: NonNegativeInt


class Note(BaseModel):
    """A note as personas gave it: `count` times with this rating (the latest time: `tick_id`, `created_at`),
    by `personas` (all of them, by name; `persona` is one)."""

    rating: int
    notes: str
    persona: str
    tick_id: str
    created_at: datetime
    count: NonNegativeInt = 1
    personas: list[str] = []


class TrendPoint(Counted):
    """One day or one run of one module."""

    bucket: str
    rating: RatingStats
    error_rate: float | None


class Reliability(BaseModel):
    """Ticks and personas that used a module, and how many of each saw no product error in it."""

    ticks: NonNegativeInt = 0
    clean_ticks: NonNegativeInt = 0
    personas: NonNegativeInt = 0
    clean_personas: NonNegativeInt = 0

    @property
    def ticks_per_persona(self) -> float | None:
        """The k of pass^k: how many days each persona had to get through cleanly, on average."""
        return self.ticks / self.personas if self.personas else None

    @property
    def pass_k(self) -> float | None:
        return self.clean_personas / self.personas if self.personas else None


class ModuleReport(Counted):
    module: str
    rating: RatingStats
    error_rate: float | None
    tools: list[ToolStats]
    tools_used: list[str]
    tools_offered: list[str]
    coverage: float | None
    coverage_basis: Literal["offered", "seen"]
    actual_share: float | None
    intended_share: float | None
    top_errors: list[ErrorCount]
    notes: list[Note]
    trend: list[TrendPoint]
    #: How reliably the module serves a persona day after day (pass^k, as tau-bench counts it): of the personas
    #: that used it, those whose every tick with it saw no product error; and of the ticks, the clean ones.
    reliability: Reliability = Reliability()


class PersonaReport(Counted):
    persona_id: str
    name: str
    ticks: NonNegativeInt
    ratings: dict[str, RatingStats]


class Change(BaseModel):
    """A module whose rating or error rate moved beyond noise against the previous scope."""

    module: str
    summary: str
    rating_before: float | None
    rating_after: float | None
    rating_moved: bool
    error_rate_before: float | None
    error_rate_after: float | None
    error_rate_moved: bool
    worse: bool


class FailureGroup(BaseModel):
    """Ticks that did not finish, of one status and one reason (ids and numbers in it made alike)."""

    status: str
    reason: str
    count: NonNegativeInt
    #: A few of the ticks, for `persona-runner ticks show`.
    tick_ids: list[str]


class LowRating(BaseModel):
    """A module a tick rated 1 or 2, with the persona's note on why."""

    module: str
    rating: int
    notes: str = ""


class TickToLookAt(BaseModel):
    """A tick a report sends its reader to: one that did not finish, or one that rated a module 1 or 2."""

    tick_id: str
    persona: str
    started_at: datetime
    status: str
    #: Why the tick did not finish (the tick's own error), None when it did.
    reason: str | None = None
    low_ratings: list[LowRating] = []
    #: The command that shows the day as the persona lived it, `--db` included when the store is not the default.
    command: str


class TicksToLookAt(BaseModel):
    """The first ticks to look at (those that did not finish, then the newest), and how many more there are."""

    ticks: list[TickToLookAt] = []
    left_out: NonNegativeInt = 0


class Totals(Counted):
    ticks: NonNegativeInt
    ratings: NonNegativeInt
    personas: NonNegativeInt
    tick_statuses: dict[str, NonNegativeInt]

    @model_validator(mode="after")
    def _statuses_among_ticks(self) -> Totals:
        if sum(self.tick_statuses.values()) > self.ticks:
            raise ValueError(f"tick_statuses count {sum(self.tick_statuses.values())} ticks of {self.ticks}")
        return self


class Report(BaseModel):
    """Every figure of a scope, its fields in the order a reader needs them, which is the order of its JSON
    dump: what it covers, how many ticks ended how and why those that did not finish failed, what changed,
    then module by module and persona by persona."""

    generated_at: datetime
    store: str
    scope: Scope
    #: The runs whose ticks the report covers, oldest first.
    runs: list[RunInfo] = []
    trend_by: Literal["day", "run"]
    totals: Totals
    #: Ticks that failed, timed out, were aborted or interrupted, grouped by reason, most first.
    failures: list[FailureGroup] = []
    previous: Scope | None
    changes: list[Change]
    modules: list[ModuleReport]
    personas: list[PersonaReport]
    #: Ticks that did not finish or rated a module 1 or 2, each with its `persona-runner ticks show` command.
    look_at: TicksToLookAt = TicksToLookAt()

    @property
    def mixes_injected_runs(self) -> bool:
        """Runs with injected faults beside runs without: their figures would blur each other unnoticed."""
        return len({bool(run.injected) for run in self.runs}) > 1

    @property
    def run_labels(self) -> dict[str, str]:
        """The label of each covered run that has one, by run id: what a trend by run names its points by."""
        return {run.run_id: run.label for run in self.runs if run.label}

    def module(self, name: str) -> ModuleReport | None:
        return next((m for m in self.modules if m.module == name), None)

    @property
    def is_empty(self) -> bool:
        return self.totals.calls == 0 and self.totals.ratings == 0
