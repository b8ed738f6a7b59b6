"""Prometheus metrics of the gateway, one registry per app so tests and
embedded products never share counters."""

from __future__ import annotations

from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    generate_latest,
)

# `*_created` series only double the output; scrapers derive resets themselves.
disable_created_metrics()


class GatewayMetrics:
    """The gateway's counters. `record_call` is on every tool call's path: it looks each labelled
    series up once and keeps it, because prometheus_client's `labels()` costs more than the update."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.tool_calls = Counter(
            "persona_product_tool_calls",
            "Tool calls by tool and outcome (ok, error, denied, invalid).",
            ["tool", "outcome"],
            registry=self.registry,
        )
        self.tool_duration = Histogram(
            "persona_product_tool_duration_seconds",
            "Tool handler duration, policy and validation included.",
            ["tool"],
            registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
        )
        self.policy_decisions = Counter(
            "persona_product_policy_decisions",
            "Policy decisions by decision (allow, deny, would-deny, flag) and reason.",
            ["decision", "reason"],
            registry=self.registry,
        )
        self._series: dict[tuple[object, ...], Any] = {}

    def record_call(self, tool: str, outcome: str, seconds: float | None) -> None:
        """One tool call: counted by outcome, and timed when `seconds` is given (tools the gateway serves)."""
        self._series_of(self.tool_calls, tool, outcome).inc()
        if seconds is not None:
            self._series_of(self.tool_duration, tool).observe(seconds)

    def record_decision(self, decision: str, reason: str) -> None:
        self._series_of(self.policy_decisions, decision, reason).inc()

    def _series_of(self, metric: Counter | Histogram, *labels: str) -> Any:
        key = (id(metric), *labels)
        series = self._series.get(key)
        if series is None:
            series = self._series[key] = metric.labels(*labels)
        return series

    def render(self) -> bytes:
        return generate_latest(self.registry)
