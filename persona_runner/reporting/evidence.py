"""What two samples can tell: tests that hold on the few calls a run makes, and the smallest change each could see.

A gate that says "pass" must also say what it could have missed. Each test
here comes with its minimum detectable effect: the smallest worsening it
would catch four times in five (power 0.8) at the gate's 95% confidence, with
the counts at hand. A check whose limit is below that could not have caught a
regression of the size the team set, whatever it says.

- Error rates: Fisher's exact test, one-sided (a rise), so a handful of calls
  is judged exactly rather than by a normal approximation that breaks down
  there. Its detectable rise comes from the normal approximation (Cohen's),
  which is what "how many calls do I need" questions are answered with.
- Latency: the Mann-Whitney U test on the calls' latencies (whole
  milliseconds, ties counted), one-sided (slower): it needs no normal
  distribution, so 300 ms added to a 40 ms tool shows on 15 calls a side. Its
  detectable slow-down is a ratio, from the spread of the baseline's log
  latencies.
- Ratings: Welch's t-test (in `model`); its detectable drop likewise.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

#: One-sided 2.5% (a rise, at the 95% the reports promise two-sided) and power 0.8.
Z_CONFIDENCE = 1.959964
Z_POWER = 0.841621
SIGNIFICANT = 0.025

Histogram = Sequence[tuple[int, int]]


def _log_choose(n: int, k: int) -> float:
    return math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)


def rate_rise_p(calls_before: int, errors_before: int, calls_after: int, errors_after: int) -> float:
    """One-sided p-value of Fisher's exact test that the candidate's error rate is above the baseline's.

    With the margins fixed (all calls, all errors), the candidate's errors follow a
    hypergeometric law; p is the chance of at least as many as it had.
    """
    total, errors = calls_before + calls_after, errors_before + errors_after
    if calls_before == 0 or calls_after == 0 or errors == 0:
        return 1.0
    log_all = _log_choose(total, calls_after)
    most = min(errors, calls_after)
    return min(
        1.0,
        sum(
            math.exp(_log_choose(errors, x) + _log_choose(total - errors, calls_after - x) - log_all)
            for x in range(errors_after, most + 1)
        ),
    )


def rate_rise_detectable(calls_before: int, errors_before: int, calls_after: int) -> float | None:
    """The smallest rise of the error rate (as a share: 0.05 is 5 points) these counts would catch.

    Solves d = (z_conf + z_power) * sqrt(p0(1-p0)/n0 + p1(1-p1)/n1) with p1 = p0 + d by fixed
    point; a baseline with no calls counts as 0% known exactly. None without candidate calls.
    """
    if calls_after == 0:
        return None
    before = errors_before / calls_before if calls_before else 0.0
    known = before * (1 - before) / calls_before if calls_before else 0.0
    rise = 0.5
    for _ in range(60):
        after = min(before + rise, 1.0)
        rise = (Z_CONFIDENCE + Z_POWER) * math.sqrt(known + max(after * (1 - after), 1e-12) / calls_after)
    return min(rise, 1.0 - before)


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
