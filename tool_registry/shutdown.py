"""A stop that ends: once the server is told to stop, the requests still running get a few seconds
to finish, and are then cancelled.

uvicorn waits for every open request before it stops, for as long as that
takes; one request that never ends (a client that never reads, a bug) would
hold the process until it is killed. The signal that stops uvicorn also
starts this countdown.
"""

from __future__ import annotations

import asyncio
import json
import math
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from types import FrameType
from typing import Any

import anyio
from starlette.types import ASGIApp, Message, Receive, Scope, Send

#: Enough for any tool call to finish; short enough that a stop never looks like a hang.
SHUTDOWN_GRACE_SECONDS = 3.0
_STOPPING = json.dumps({"error": "the server is shutting down: send the request again once it is back"}).encode()


class ShutdownBound:
    """The requests in flight, and the moment they stop being waited for."""

    def __init__(self, grace_seconds: float = SHUTDOWN_GRACE_SECONDS) -> None:
        self.grace = grace_seconds
        self.deadline = math.inf  # anyio time; finite once stopping
        self.running: set[anyio.CancelScope] = set()

    def stopping(self, now: float) -> None:
        """Start the countdown at `now` (the event loop's clock, which anyio's deadlines use), on the
        event loop: every request, running or still to come, ends by the deadline."""
        self.deadline = min(self.deadline, now + self.grace)
        for scope in self.running:
            scope.deadline = min(scope.deadline, self.deadline)

    @contextmanager
    def on_signals(self) -> Iterator[None]:
        """While open, SIGINT and SIGTERM start the countdown and then go on to the handler already set
        (the server's own). Signals reach only the main thread: elsewhere this does nothing."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        loop = asyncio.get_running_loop()
        chained: dict[signal.Signals, Callable[[int, FrameType | None], Any]] = {}
        for sig in (signal.SIGINT, signal.SIGTERM):
            current = signal.getsignal(sig)
            if callable(current):
                chained[sig] = current
                signal.signal(sig, partial(self._on_signal, loop, current))
        try:
            yield
        finally:
            for sig, handler in chained.items():
                signal.signal(sig, handler)

    def _on_signal(
        self,
        loop: asyncio.AbstractEventLoop,
        then: Callable[[int, FrameType | None], Any],
        sig: int,
        frame: FrameType | None,
    ) -> None:
        loop.call_soon_threadsafe(lambda: self.stopping(loop.time()))
        then(sig, frame)


class BoundedRequests:
    """ASGI middleware: each HTTP request runs in a cancel scope that `ShutdownBound.stopping` can end.

    A request cancelled before it answered gets a 503 saying why.
    """

    def __init__(self, app: ASGIApp, bound: ShutdownBound) -> None:
        self.app = app
        self.bound = bound

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        answered = False

        async def watched(message: Message) -> None:
            nonlocal answered
            answered = answered or message["type"] == "http.response.start"
            await send(message)

        with anyio.CancelScope(deadline=self.bound.deadline) as cancel:
            self.bound.running.add(cancel)
            try:
                await self.app(scope, receive, watched)
            finally:
                self.bound.running.discard(cancel)
        if cancel.cancelled_caught and not answered:
            headers = [(b"content-type", b"application/json"), (b"content-length", str(len(_STOPPING)).encode())]
            await send({"type": "http.response.start", "status": 503, "headers": headers})
            await send({"type": "http.response.body", "body": _STOPPING})
