"""What keeps a flood of logins from hurting anyone else: failed attempts are throttled per
source address and per account, and the slow password checks take turns on their own threads.

Only failures count, so the harness logging in hundreds of personas at once
from one address, with the right passwords, is never throttled. Against one
account an attempt counts from the moment it starts, and is forgiven when it
succeeds, so guesses sent side by side cannot slip past its limit; against an
address only finished failures count, or a few hundred personas logging in at
once would look like a flood (guesses from one address wait on the hashing
slots anyway, a few per second at most).
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections import defaultdict, deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TypeVar

import anyio.to_thread

T = TypeVar("T")

#: A person mistypes a few times; a script guessing passwords does not stop at ten.
FAILURES_PER_ACCOUNT = 10
#: Generous: a whole office behind one address, or a test harness, stays far below it.
FAILURES_PER_SOURCE = 100
FAILURE_WINDOW_SECONDS = 300.0


class LoginThrottled(Exception):
    """Too many failed logins: `message` says for what, `retry_after` when to try again (seconds)."""

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = max(1, math.ceil(retry_after))


class FailureWindow:
    """Failed attempts per key over a sliding window; keys idle for a whole window are forgotten."""

    def __init__(self, limit: int, window_seconds: float, clock: Callable[[], float]) -> None:
        self.limit = limit
        self.window = window_seconds
        self._clock = clock
        self._failures: defaultdict[str, deque[float]] = defaultdict(deque)
        self._next_sweep = clock() + window_seconds

    def wait(self, key: str) -> float | None:
        """Seconds until `key` may try again, or None when it may try now."""
        now = self._clock()
        self._sweep(now)
        failures = self._failures.get(key)
        if failures is None:
            return None
        while failures and failures[0] <= now - self.window:
            failures.popleft()
        return failures[0] + self.window - now if len(failures) >= self.limit else None

    def add(self, key: str) -> float:
        stamp = self._clock()
        self._failures[key].append(stamp)
        return stamp

    def forgive(self, key: str, stamp: float) -> None:
        failures = self._failures.get(key)
        if failures is not None:
            with contextlib.suppress(ValueError):  # already out of the window
                failures.remove(stamp)

    def _sweep(self, now: float) -> None:
        if now < self._next_sweep:
            return
        self._next_sweep = now + self.window
        stale = [key for key, failures in self._failures.items() if not failures or failures[-1] <= now - self.window]
        for key in stale:
            del self._failures[key]


@dataclass(frozen=True)
class LoginLimits:
    failures_per_source: int = FAILURES_PER_SOURCE
    failures_per_account: int = FAILURES_PER_ACCOUNT
    window_seconds: float = FAILURE_WINDOW_SECONDS


class LoginGuard:
    """Throttles failed logins and runs password hashing off the shared worker threads.

    Argon2 is slow on purpose and memory-hungry; run on the worker threads
    every request shares, a flood of logins would take them all and stall
    every other request. Here at most one check per CPU runs at a time, on a
    limiter of its own; the rest wait their turn without holding anything.
    """

    def __init__(self, limits: LoginLimits | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        limits = limits or LoginLimits()
        self._by_source = FailureWindow(limits.failures_per_source, limits.window_seconds, clock)
        self._by_account = FailureWindow(limits.failures_per_account, limits.window_seconds, clock)
        self._hashing = anyio.CapacityLimiter(max(1, os.cpu_count() or 1))

    @contextmanager
    def attempt(self, source: str, account: str) -> Iterator[None]:
        """One login attempt: refused at once when throttled; counted as a failure unless the block completes."""
        if (wait := self._by_account.wait(account)) is not None:
            raise LoginThrottled(f"too many failed logins for {account}: try again in {math.ceil(wait)} s", wait)
        if (wait := self._by_source.wait(source)) is not None:
            raise LoginThrottled(f"too many failed logins from {source}: try again in {math.ceil(wait)} s", wait)
        stamp = self._by_account.add(account)
        try:
            yield
        except BaseException:
            self._by_source.add(source)
            raise
        self._by_account.forgive(account, stamp)

    async def hashing(self, fn: Callable[[], T]) -> T:
        """Run `fn` (which hashes or verifies a password) in a thread, taking turns with the other checks."""
        return await anyio.to_thread.run_sync(fn, limiter=self._hashing)
