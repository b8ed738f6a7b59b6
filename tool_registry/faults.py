"""Fault injection, for testing the harness itself: make a tool fail at a rate, or slow it down.

Parsed from `--fault todo.complete=1.0` and `--delay todo.list=200ms`. Off
unless asked for. Failures are drawn from a seeded generator so a run with the
same faults fails the same calls.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field

_DURATION = re.compile(r"^(?P<value>\d+(?:\.\d+)?)\s*(?P<unit>ms|s)?$")


class FaultSpecError(ValueError):
    pass


def _split(text: str, flag: str) -> tuple[str, str]:
    tool, sep, value = text.partition("=")
    if not sep or "." not in tool or not value:
        raise FaultSpecError(
            f"{flag} {text!r}: expected TOOL=VALUE, e.g. {flag} todo.complete={'1.0' if flag == '--fault' else '200ms'}"
        )
    return tool.strip(), value.strip()


def parse_fault(text: str) -> tuple[str, float]:
    tool, value = _split(text, "--fault")
    try:
        rate = float(value)
    except ValueError:
        raise FaultSpecError(f"--fault {text!r}: rate {value!r} is not a number between 0 and 1") from None
    if not 0.0 <= rate <= 1.0:
        raise FaultSpecError(f"--fault {text!r}: rate must be between 0 and 1")
    return tool, rate


def parse_delay(text: str) -> tuple[str, float]:
    """Return (tool, seconds); a bare number is milliseconds."""
    tool, value = _split(text, "--delay")
    match = _DURATION.match(value)
    if not match:
        raise FaultSpecError(f"--delay {text!r}: duration {value!r} must look like 200ms or 1.5s")
    amount = float(match["value"])
    return tool, amount if match["unit"] == "s" else amount / 1000.0


@dataclass
class FaultPlan:
    failure_rates: dict[str, float] = field(default_factory=dict)
    delays: dict[str, float] = field(default_factory=dict)
    seed: int = 0

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    @classmethod
    def parse(cls, faults: list[str], delays: list[str], seed: int = 0) -> FaultPlan:
        return cls(dict(map(parse_fault, faults)), dict(map(parse_delay, delays)), seed)

    def unknown_tools(self, known: set[str]) -> list[str]:
        return sorted((set(self.failure_rates) | set(self.delays)) - known)

    def delay_for(self, tool: str) -> float:
        return self.delays.get(tool, 0.0)

    def should_fail(self, tool: str) -> bool:
        rate = self.failure_rates.get(tool, 0.0)
        return rate > 0.0 and (rate >= 1.0 or self._rng.random() < rate)
