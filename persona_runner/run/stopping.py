"""Stopping on a signal: the first SIGTERM or SIGINT stops the work in order, a second one at once.

A supervisor (systemd, Kubernetes, CI) stops a job with SIGTERM and kills it a while later;
a person presses Ctrl-C, and presses it again when in a hurry. Either way, what was done must
be on record and the process must end on its own, unwinding every `with` on the way (the
embedded product's temporary data goes with it).

- First signal: `requested` turns true, and whoever starts work asks it first and starts
  nothing new. Work in flight runs inside `guard()` scopes, which end `grace` seconds later;
  work cut off records itself (a tick as `aborted`, with the calls it made).
- Second signal: every guard ends now.
- Recording runs in `recording()`: shielded, so a cut does not stop it, and once a stop
  was asked, bounded, so a store that does not answer cannot hold the stop.

Signals reach the stop from `catching_signals()` on: through plain handlers while no event
loop runs (the embedded product starting and stopping), and through the loop inside
`watching_signals()`, where guards can be ended safely. Outside a loop nothing can be cut
off in order, so a second signal there raises KeyboardInterrupt, as Ctrl-C does by default.
"""

from __future__ import annotations

import signal
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from types import FrameType

import anyio

SIGNALS = (signal.SIGTERM, signal.SIGINT)
DEFAULT_GRACE = 30.0
#: How long a write may take once a stop was asked: a store that answers writes a run or a tick in milliseconds.
RECORDING_LIMIT = 3.0


class Stop:
    """What the signals asked so far, and the scopes of the work they end."""

    def __init__(self, grace: float = DEFAULT_GRACE) -> None:
        self.grace = grace
        self.signal_name: str | None = None  # the first signal, once one came
        self.hurried = False  # a second signal came
        self._asked_at: float | None = None  # time.monotonic() of the first signal
        self._guards: dict[anyio.CancelScope, float] = {}  # each open guard, with its grace
        self._recording_until: float | None = None  # when every write after the stop must be done

    @property
    def requested(self) -> bool:
        return self.signal_name is not None

    @contextmanager
    def guard(self, grace: float | None = None) -> Iterator[anyio.CancelScope]:
        """A cancel scope this stop ends: `grace` seconds (default: the stop's) after the first
        signal, at once after the second. Entered after a signal, it gets what is left of its grace."""
        with anyio.CancelScope() as scope:
            self._guards[scope] = self.grace if grace is None else grace
            try:
                self._end_as_asked(scope)
                yield scope
            finally:
                del self._guards[scope]

    def take(self, signum: int) -> None:
        """A signal came: the first asks for a stop, any later one hurries it."""
        if self.signal_name is None:
            self.signal_name, self._asked_at = signal.Signals(signum).name, time.monotonic()
        else:
            self.hurried = True
        for scope in self._guards:
            self._end_as_asked(scope)

    def recording(self) -> anyio.CancelScope:
        """A scope to write what was done in: no cancellation reaches it, and once a stop was asked it ends
        RECORDING_LIMIT after the first such write began, as do all the others (the ticks cut off and the
        run's end share the limit; a write in a thread is then abandoned to finish on its own)."""
        if not self.requested:
            return anyio.CancelScope(shield=True)
        if self._recording_until is None:
            self._recording_until = anyio.current_time() + RECORDING_LIMIT
        return anyio.CancelScope(shield=True, deadline=self._recording_until)

    def _end_as_asked(self, scope: anyio.CancelScope) -> None:
        if self.hurried:
            scope.cancel()
        elif self._asked_at is not None:
            left = self._asked_at + self._guards[scope] - time.monotonic()
            scope.deadline = min(scope.deadline, anyio.current_time() + max(left, 0.0))

    @contextmanager
    def catching_signals(self) -> Iterator[None]:
        """SIGTERM and SIGINT come to this stop until the block ends; the handlers before are put back.

        Python runs signal handlers in the main thread only, which is where the command line runs.
        """

        def caught(signum: int, _frame: FrameType | None) -> None:
            self.take(signum)
            if self.hurried:
                raise KeyboardInterrupt

        with _handlers_kept():
            for signum in SIGNALS:
                signal.signal(signum, caught)
            yield

    @asynccontextmanager
    async def watching_signals(self) -> AsyncIterator[None]:
        """Signals come through the event loop while the block runs, so guards are ended between
        steps of the work rather than in the middle of one. The loop leaves the default handlers
        when it stops watching; the ones before are put back instead."""
        failure: BaseException | None = None
        with _handlers_kept(), anyio.open_signal_receiver(*SIGNALS) as received:
            async with anyio.create_task_group() as watcher:
                watcher.start_soon(self._take_all, received)
                try:
                    yield
                except BaseException as exc:  # raised below as it is: out of the group it would come in a group
                    failure = exc
                finally:
                    watcher.cancel_scope.cancel()
        if failure is not None:
            raise failure

    async def _take_all(self, received: AsyncIterator[signal.Signals]) -> None:
        async for signum in received:
            self.take(signum)


@contextmanager
def _handlers_kept() -> Iterator[None]:
    """The handlers of SIGNALS as they were when the block began, put back when it ends."""
    kept = {signum: signal.getsignal(signum) for signum in SIGNALS}
    try:
        yield
    finally:
        for signum, handler in kept.items():
            signal.signal(signum, handler)
