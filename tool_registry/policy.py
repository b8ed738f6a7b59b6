"""The policy gate in front of every tool handler.

Four rules, checked in order: admin-scope tools are never callable through the
gateway; destructive tools need the user's explicit opt-in; each user may call
each tool at most `rate_limit` times per `window` seconds; free text that looks
like a prompt injection is flagged (the call still runs, because a note that
*quotes* an attack is legitimate data, but operators must see it).

Modes: `enforce` denies, `log-only` records what it would have denied and lets
the call through, `off` checks nothing.
"""

from __future__ import annotations

import re
import time
from collections import defaultdict, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

from tool_registry.spec import ToolSpec

PolicyMode = Literal["enforce", "log-only", "off"]
POLICY_MODES: tuple[PolicyMode, ...] = ("enforce", "log-only", "off")

INJECTION_MARKERS = re.compile(
    r"ignore\s+(?:all\s+|any\s+|the\s+)?(?:previous|prior|above|earlier)\s+(?:instructions|prompts?|rules)"
    r"|disregard\s+(?:all\s+|any\s+|the\s+)?(?:previous|prior|above)\b"
    r"|you\s+are\s+now\s+(?:in\s+)?(?:dan|developer\s+mode|an?\s+unrestricted)"
    r"|reveal\s+(?:your|the)\s+system\s+prompt"
    r"|<\|im_start\|>|<\|system\|>|\[\s*system\s*\]|###\s*system\s*:"
    r"|begin\s+(?:new\s+)?system\s+prompt",
    re.IGNORECASE,
)

#: More free text than any tool accepts in one call (a note's body is 20,000 characters at most).
MAX_SCANNED_CHARS = 50_000

DENY_REASONS = {
    "admin-scope": "admin tools cannot be called through the gateway",
    "destructive-not-allowed": "destructive tools are off for this user; "
    'opt in with PUT /api/v1/me/preferences {{"allow_destructive": true}}',
    "rate-limited": "rate limit exceeded: at most {limit} calls to {tool} per {window:g} s",
}


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str | None = None  # why it was (or, in log-only mode, would have been) denied
    message: str | None = None
    flags: tuple[str, ...] = field(default_factory=tuple)

    @property
    def label(self) -> str:
        """The metrics label: allow, deny, or would-deny (log-only)."""
        if not self.allowed:
            return "deny"
        return "would-deny" if self.reason else "allow"


def free_text(value: Any) -> Iterator[str]:
    """Every string inside a JSON-like value, keys excluded."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from free_text(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from free_text(item)


def looks_injected(arguments: Any) -> bool:
    """Whether the call's free text carries an injection marker, reading at most `MAX_SCANNED_CHARS`.

    The scan runs on the event loop before the arguments are validated, so an
    oversized argument (refused later anyway) must not stall every other call.
    """
    budget = MAX_SCANNED_CHARS
    for text in free_text(arguments):
        if INJECTION_MARKERS.search(text, 0, budget):
            return True
        budget -= len(text)
        if budget <= 0:
            return False
    return False


class PolicyGate:
    """Decides each call from what it is told; it never touches the database, so it can
    run on the event loop. The caller looks up a user's destructive opt-in (a query)
    off the loop, and only for destructive tools."""

    def __init__(
        self,
        *,
        mode: PolicyMode = "enforce",
        rate_limit: int = 30,
        window_seconds: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if mode not in POLICY_MODES:
            raise ValueError(f"policy mode {mode!r} is not one of {', '.join(POLICY_MODES)}")
        self.mode = mode
        self.rate_limit = rate_limit
        self.window_seconds = window_seconds
        self._clock = clock
        self._calls: defaultdict[tuple[str, str], deque[float]] = defaultdict(deque)
        self._next_sweep = clock() + window_seconds

    def check(
        self, user_id: str, spec: ToolSpec, arguments: dict[str, Any], *, destructive_allowed: bool = False
    ) -> Decision:
        """`destructive_allowed`: whether the user opted in to destructive tools (only read for those)."""
        if self.mode == "off":
            return Decision(allowed=True)
        flags = ("prompt-injection",) if looks_injected(arguments) else ()
        reason = self._violation(user_id, spec, destructive_allowed)
        if reason is None:
            return Decision(allowed=True, flags=flags)
        message = DENY_REASONS[reason].format(limit=self.rate_limit, tool=spec.name, window=self.window_seconds)
        return Decision(
            allowed=self.mode == "log-only", reason=reason, message=f"policy denied {spec.name}: {message}", flags=flags
        )

    def _violation(self, user_id: str, spec: ToolSpec, destructive_allowed: bool) -> str | None:
        if spec.scope == "admin":
            return "admin-scope"
        if spec.policy_hint == "destructive" and not destructive_allowed:
            return "destructive-not-allowed"
        if not self._admit(user_id, spec.name):
            return "rate-limited"
        return None

    def _admit(self, user_id: str, tool: str) -> bool:
        """Sliding window: a denied call does not count against the window."""
        now = self._clock()
        self._sweep(now)
        calls = self._calls[(user_id, tool)]
        _expire(calls, now - self.window_seconds)
        if len(calls) >= self.rate_limit:
            return False
        calls.append(now)
        return True

    def _sweep(self, now: float) -> None:
        """Once a window, forget every (user, tool) with no call left in it, so a long soak
        with personas coming and going keeps memory flat."""
        if now < self._next_sweep:
            return
        self._next_sweep = now + self.window_seconds
        for key, calls in list(self._calls.items()):
            _expire(calls, now - self.window_seconds)
            if not calls:
                del self._calls[key]


def _expire(calls: deque[float], cutoff: float) -> None:
    """Drop the calls at or before `cutoff` (oldest first)."""
    while calls and calls[0] <= cutoff:
        calls.popleft()
