"""What two samples can tell: tests that hold on the few calls a run makes, and the smallest change each could see.

A gate that says "pass" must also say what it could have missed. Each test
here comes with its minimum detectable effect: the smallest worsening it
would catch four times in five (POWER, 0.8) at the gate's level (SIGNIFICANT:
one-sided 2.5%, as much as a two-sided 95% test asks), with the counts at
hand. A check whose limit is below that could not have caught a regression of
the size the team set, whatever it says.

- Error rates: Fisher's exact test, one-sided (a rise), so a handful of calls
  is judged exactly rather than by a normal approximation that breaks down
  there. Its detectable rise is exact too: the fewest candidate errors the
  test calls a rise, then the smallest error rate at which the candidate
  makes that many with probability POWER (binomial), the baseline's rate
  taken as measured. A normal approximation would overstate what ten calls
  can see (at its figure the test catches a rise one time in two).
- Latency: the Mann-Whitney U test on the calls' latencies (whole
  milliseconds, ties counted), one-sided (slower): it needs no normal
  distribution, so 300 ms added to a 40 ms tool shows on 15 calls a side. Its
  detectable slow-down is a ratio, from the spread of the baseline's log
  latencies (normal approximation).
- Ratings: Welch's t-test (in `model`); its detectable drop likewise.

The exact sums stop where their terms no longer count, so half a million
calls a side cost a few hundred terms, not half a million.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from functools import lru_cache
from typing import NamedTuple

#: The gate's level: a worsening is beyond noise when a one-sided test puts its chance below 2.5%.
SIGNIFICANT = 0.025
#: How often a worsening of the detectable size would be caught.
POWER = 0.8
#: The normal quantiles of SIGNIFICANT and POWER, for the detectable effects of the latency and rating tests.
Z_CONFIDENCE = 1.959964
Z_POWER = 0.841621
#: A term this small beside the sum so far changes no verdict: an exact tail stops there.
NEGLIGIBLE = 1e-15

Histogram = Sequence[tuple[int, int]]
#: The probability of the next count of a law from the probability of this one: `p(x ± 1) = p(x) * ratio(x)`.
Ratio = Callable[[int], float]


def _log_choose(n: int, k: int) -> float:
    return math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)


def _tail(start: int, log_first: float, ratio: Ratio, end: int, step: int) -> float:
    """The probabilities of a unimodal law summed from `start`, which lies away from the mode, out to `end`.

    Going outward the terms only shrink, so the sum stops at the first one
    that no longer counts: a term that underflows at `start` means the whole
    tail does.
    """
    term, total, x = math.exp(log_first), 0.0, start
    while True:
        total += term
        if x == end or term <= total * NEGLIGIBLE:
            return total
        term *= ratio(x)
        x += step


class Law(NamedTuple):
    """A unimodal law on the counts `low..high`: its log probabilities, its mode, and the ratios between neighbours."""

    low: int
    high: int
    mode: int
    log_p: Callable[[int], float]
    up: Ratio
    down: Ratio

    def at_least(self, least: int) -> float:
        """P(X >= least), summed from `least` away from the mode: the upper tail itself, or one minus the lower."""
        if least <= self.low:
            return 1.0
        if least > self.high:
            return 0.0
        if least > self.mode:
            return _tail(least, self.log_p(least), self.up, self.high, 1)
        return max(0.0, 1.0 - _tail(least - 1, self.log_p(least - 1), self.down, self.low, -1))


def _hypergeometric(population: int, marked: int, drawn: int) -> Law:
    """The marked among `drawn` taken from `population`: the law of the candidate's errors under Fisher's null."""
    rest = population - marked
    whole = _log_choose(population, drawn)
    return Law(
        low=max(0, drawn - rest),
        high=min(marked, drawn),
        mode=(drawn + 1) * (marked + 1) // (population + 2),
        log_p=lambda x: _log_choose(marked, x) + _log_choose(rest, drawn - x) - whole,
        up=lambda x: (marked - x) * (drawn - x) / ((x + 1) * (rest - drawn + x + 1)),
        down=lambda x: x * (rest - drawn + x) / ((marked - x + 1) * (drawn - x + 1)),
    )


def _binomial(trials: int, rate: float) -> Law:
    """Failures among `trials` calls failing independently at `rate` (strictly between 0 and 1)."""
    odds = rate / (1 - rate)
    return Law(
        low=0,
        high=trials,
        mode=int((trials + 1) * rate),
        log_p=lambda x: _log_choose(trials, x) + x * math.log(rate) + (trials - x) * math.log1p(-rate),
        up=lambda x: (trials - x) / (x + 1) * odds,
        down=lambda x: x / ((trials - x + 1) * odds),
    )


def rate_rise_p(calls_before: int, errors_before: int, calls_after: int, errors_after: int) -> float:
    """One-sided p-value of Fisher's exact test that the candidate's error rate is above the baseline's.

    With the margins fixed (all calls, all errors), the candidate's errors follow a
    hypergeometric law; p is the chance of at least as many as it had.
    """
    errors = errors_before + errors_after
    if calls_before == 0 or calls_after == 0 or errors == 0:
        return 1.0
    return _hypergeometric(calls_before + calls_after, errors, calls_after).at_least(errors_after)


def _fewest_errors_beyond_noise(calls_before: int, errors_before: int, calls_after: int) -> int | None:
    """The fewest candidate errors Fisher's test calls a rise over the baseline's; None when even every call
    failing would be within noise. More errors only lower p, so a bisection over the counts finds it."""

    def beyond_noise(errors_after: int) -> bool:
        return rate_rise_p(calls_before, errors_before, calls_after, errors_after) < SIGNIFICANT

    if not beyond_noise(calls_after):
        return None
    within, beyond = 0, calls_after  # no errors is never a rise
    while beyond - within > 1:
        middle = (within + beyond) // 2
        within, beyond = (within, middle) if beyond_noise(middle) else (middle, beyond)
    return beyond


def _rate_caught(calls: int, errors: int, floor: float) -> float:
    """The smallest error rate, from `floor` up, at which `errors` or more of `calls` calls fail with probability
    POWER. That chance grows with the rate, so a bisection finds it, to well within a hundredth of a point."""
    low, high = floor, 1.0
    while high - low > 1e-7:
        middle = (low + high) / 2
        low, high = (low, middle) if _binomial(calls, middle).at_least(errors) >= POWER else (middle, high)
    return high


@lru_cache(maxsize=1024)
def rate_rise_detectable(calls_before: int, errors_before: int, calls_after: int) -> float | None:
    """The smallest rise of the error rate (as a share: 0.05 is 5 points) Fisher's test would catch with
    probability POWER at these counts, the baseline's rate taken as measured; `math.inf` when no rise would
    show beyond noise (too few candidate calls for the baseline's rate). None without calls on a side: there
    is no noise to test against. Cached: the report's "what changed" asks about the same counts as the gate.
    """
    if calls_before == 0 or calls_after == 0:
        return None
    fewest = _fewest_errors_beyond_noise(calls_before, errors_before, calls_after)
    if fewest is None:
        return math.inf
    before = errors_before / calls_before
    return _rate_caught(calls_after, fewest, before) - before


def rating_drop_detectable(
    n_before: int, sd_before: float | None, n_after: int, sd_after: float | None
) -> float | None:
    """The smallest drop of mean rating a Welch test would catch; None below two ratings a side."""
    if n_before < 2 or n_after < 2:
        return None
    spread = ((sd_before or 0.0) ** 2) / n_before + ((sd_after or 0.0) ** 2) / n_after
    return (Z_CONFIDENCE + Z_POWER) * math.sqrt(spread)


def slower_p(before: Histogram, after: Histogram) -> float:
    """One-sided p-value of the Mann-Whitney U test that the candidate's calls take longer.

    Normal approximation with the variance corrected for ties (latencies share whole
    milliseconds) and a continuity correction; fine from about ten calls a side.
    """
    n0, n1 = sum(count for _, count in before), sum(count for _, count in after)
    if n0 == 0 or n1 == 0:
        return 1.0
    counts: dict[int, list[int]] = {}
    for value, count in before:
        counts.setdefault(value, [0, 0])[0] += count
    for value, count in after:
        counts.setdefault(value, [0, 0])[1] += count
    below = 0  # baseline calls faster than the current value
    u = 0.0  # pairs in which the candidate's call is the slower, ties counting half
    ties = 0.0
    for value in sorted(counts):
        in_before, in_after = counts[value]
        u += in_after * (below + in_before / 2)
        below += in_before
        together = in_before + in_after
        ties += together**3 - together
    n = n0 + n1
    variance = n0 * n1 / 12 * ((n + 1) - ties / (n * (n - 1)))
    if variance <= 0:
        return 1.0
    z = (u - n0 * n1 / 2 - 0.5) / math.sqrt(variance)
    return 0.5 * math.erfc(z / math.sqrt(2))


def slowdown_detectable(before: Histogram, calls_after: int) -> float | None:
    """The smallest slow-down (a ratio: 1.4 is 40% slower) the candidate's calls would show against the
    baseline's, from the spread of the baseline's log latencies. None without calls on either side."""
    n0 = sum(count for _, count in before)
    if n0 < 2 or calls_after == 0:
        return None
    logs = [(math.log(value + 0.5), count) for value, count in before]
    mean = sum(log * count for log, count in logs) / n0
    sd = math.sqrt(sum(count * (log - mean) ** 2 for log, count in logs) / (n0 - 1))
    return math.exp((Z_CONFIDENCE + Z_POWER) * sd * math.sqrt(1 / n0 + 1 / calls_after))
