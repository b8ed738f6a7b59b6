"""Percentiles: one rule for every latency figure, whether a persona judges it or a report prints it."""

from __future__ import annotations

import math
from collections.abc import Iterable


def percentile(values: Iterable[float], fraction: float) -> float:
    """The `fraction` percentile (0.95 for p95) of `values`, interpolated linearly between ranked values.

    With the values sorted, position h = (n - 1) * fraction; the result is
    v[floor h] + frac(h) * (v[floor h + 1] - v[floor h]). This is the rule of
    the report (`reporting.actions.tool_stats`, and PostgreSQL's
    `percentile_cont`), so the p95 a scripted persona complains about is the
    p95 the report shows for the same calls.
    """
    ordered = sorted(values)
    if not ordered:
        raise ValueError("a percentile of no values")
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"percentile fraction {fraction} is outside 0..1")
    position = (len(ordered) - 1) * fraction
    below = math.floor(position)
    above = min(below + 1, len(ordered) - 1)
    return ordered[below] + (position - below) * (ordered[above] - ordered[below])
