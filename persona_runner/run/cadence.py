"""When a persona is next due to tick: its catalog cadence, and a backoff after failed ticks.

One pure function over a persona's recent ticks and the current time, so the
soak, the workers' scheduler and `personas list` apply one rule, and a test can
state any moment: the clock is a parameter, never read here.

Cadence (`tick_cadence` in the catalog): `hourly` is due once its latest tick
started over an hour ago, `daily` over 24 hours ago, `weekdays` over 24 hours
ago and on a Monday to Friday (UTC). A persona that never ticked is due at once
(on a weekday for `weekdays`). A tick the harness cut short (`aborted` by a signal,
`interrupted` by a crash) is not the persona's latest tick: it did not live its
day, so it is due again as if that tick had not started. An interval the caller gives (the soak's
`--every`) replaces the cadence, weekday rule included, so a short soak on a
Saturday still ticks everyone.

Backoff: a failed tick is tried again before the cadence comes round, so a
persona does not lose its day to a blip, but the tries spread out: after k
failures in a row the wait from the latest start is `BACKOFF_BASE * 2^(k-1)`,
never longer than the cadence itself. A product that stays broken is reached by
each persona a few times early on, then at no more than its cadence.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import Literal, TypeGuard, get_args

from persona_runner.catalog import Cadence

#: How long each cadence waits after a tick's start.
INTERVALS: dict[Cadence, timedelta] = {
    "hourly": timedelta(hours=1),
    "daily": timedelta(days=1),
    "weekdays": timedelta(days=1),
}
#: The wait after the first failure. A product down for a deploy or a restart is usually back within
#: minutes; doubling from here reaches a day's cadence after 10 failures (5 min * 2^9 > 24 h).
BACKOFF_BASE = timedelta(minutes=5)
#: Ticks of history worth reading per persona: enough for the wait to reach its cap at a daily
#: cadence with harness stops in between. A longer streak of failures counts as this many.
HISTORY_DEPTH = 20
#: Tick ends that count against the product: the persona could not live its day.
FAILED = frozenset({"failed", "timeout"})
#: Ticks the harness stopped itself (a signal, a crash): the day was not lived, so they are passed over.
CUT_SHORT = frozenset({"aborted", "interrupted"})
#: Tick ends that say nothing of the product: still going, or cut short. They neither add to a streak of
#: failures nor end it.
NO_VERDICT = CUT_SHORT | {"running"}
#: The finest step of a timestamp: "over an hour ago" first holds an hour and one step after.
_STEP = timedelta(microseconds=1)

#: A tick as the rule reads it: (started_at, status).
PastTick = tuple[datetime, str]
Reason = Literal["never ticked", "cadence", "backoff"]


@dataclass(frozen=True)
class NextDue:
    """When a persona is next due (UTC; the present moment when it is due now) and why then."""

    at: datetime
    due: bool
    reason: Reason
    #: Failed ticks in a row behind a backoff; 0 otherwise.
    failures: int = 0
    #: The moment the persona fell (or falls) due by its latest tick, before the weekday rule and the
    #: present are applied; None when it never ticked. It names the due slot, the same for whoever asks.
    since: datetime | None = None


def is_cadence(name: str) -> TypeGuard[Cadence]:
    """Whether `name` (a cadence as the store holds it, plain text) is one the rule knows."""
    return name in get_args(Cadence)


def consecutive_failures(statuses: Sequence[str]) -> int:
    """Failed ticks since the latest one that ran, reading `statuses` newest first."""
    count = 0
    for status in statuses:
        if status in FAILED:
            count += 1
        elif status not in NO_VERDICT:
            break
    return count


def backoff(failures: int, interval: timedelta) -> timedelta:
    """The wait after `failures` (at least 1) failed ticks in a row: the base, doubled for each
    failure after the first, never longer than `interval`."""
    growth = 2 ** (failures - 1)
    # Compared as a ratio: a long streak's growth would overflow a timedelta.
    return interval if growth >= interval / BACKOFF_BASE else BACKOFF_BASE * growth


def next_due(
    cadence: Cadence, history: Sequence[PastTick], now: datetime, *, every: timedelta | None = None
) -> NextDue:
    """When the persona with this `cadence` and these recent ticks (any order) is next due, seen from
    `now` (aware): `now` itself when it is due. `every` replaces the cadence's interval and weekday rule."""
    now = now.astimezone(UTC)
    newest_first = sorted(
        (tick for tick in history if tick[1] not in CUT_SHORT), key=lambda tick: tick[0], reverse=True
    )
    interval = INTERVALS[cadence] if every is None else every
    failures = consecutive_failures([status for _, status in newest_first])
    reason: Reason
    since: datetime | None
    if not newest_first:
        since, reason = None, "never ticked"
    elif failures:
        since, reason = newest_first[0][0] + backoff(failures, interval) + _STEP, "backoff"
    else:
        since, reason = newest_first[0][0] + interval + _STEP, "cadence"
    since = since and since.astimezone(UTC)
    at = max(since or now, now)
    if cadence == "weekdays" and every is None:
        at = _on_a_weekday(at)
    return NextDue(at=at, due=at <= now, reason=reason, failures=failures, since=since)


def _on_a_weekday(moment: datetime) -> datetime:
    """`moment` (UTC), or the Monday 00:00 after it when it falls on a Saturday or a Sunday."""
    if moment.weekday() < 5:
        return moment
    monday = moment.date() + timedelta(days=7 - moment.weekday())
    return datetime.combine(monday, time(), UTC)
