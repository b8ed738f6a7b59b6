"""Prometheus metrics of the gateway, one registry per app so tests and
embedded products never share counters."""

from __future__ import annotations

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

    def render(self) -> bytes:
        return generate_latest(self.registry)
