"""The run-level token budget (`--max-tokens-per-run`), shared by every tick of a run.

Each driver adds the usage the provider reports after every model exchange, so
the figure is what the provider will bill, not an estimate. The run loop checks
`exhausted` before it starts a tick and stops starting new ones once it is
true; drivers also end a day early once it is, so ticks already under way do
not keep spending long past the limit.
"""

from __future__ import annotations

import threading

from persona_runner.domain import Usage


class RunBudget:
    """Tokens spent by the whole run against an optional limit (None: no limit)."""

    def __init__(self, max_tokens: int | None = None) -> None:
        if max_tokens is not None and max_tokens <= 0:
            raise ValueError("max_tokens must be positive")
        self.max_tokens = max_tokens
        self._spent = 0
        # Workers may live in several threads; a lost update would let a run overspend.
        self._lock = threading.Lock()

    @property
    def spent(self) -> int:
        return self._spent

    def add(self, usage: Usage) -> None:
        """Count one exchange's tokens, in and out."""
        with self._lock:
            self._spent += usage.tokens_in + usage.tokens_out

    @property
    def exhausted(self) -> bool:
        return self.max_tokens is not None and self._spent >= self.max_tokens

    def describe(self) -> str:
        """One line for the run loop to print when it stops starting ticks."""
        return f"token budget for the run spent: {self._spent} of {self.max_tokens} tokens; no new ticks started"
