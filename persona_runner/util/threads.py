"""Blocking work the event loop may give up waiting for, without it holding the process open."""

from __future__ import annotations

import threading
from collections.abc import Callable
from contextlib import suppress
from typing import TypeVar

import anyio
import anyio.from_thread
import anyio.lowlevel

T = TypeVar("T")


async def in_daemon_thread(work: Callable[[], T], name: str) -> T:
    """`work()` in a daemon thread of its own, awaited like `anyio.to_thread.run_sync`.

    A cancelled wait leaves the work going on its own, and the process may still exit: anyio's
    worker threads are joined when the interpreter exits, so a write stuck on a store that does
    not answer there would keep a stopped process alive for as long as the write keeps trying.
    """
    token = anyio.lowlevel.current_token()
    done = anyio.Event()
    outcome: list[tuple[bool, object]] = []

    def run() -> None:
        try:
            outcome.append((True, work()))
        except BaseException as exc:  # handed to the waiting task, which raises it
            outcome.append((False, exc))
        with suppress(RuntimeError):  # the loop is gone: no one waits any more
            anyio.from_thread.run_sync(done.set, token=token)

    threading.Thread(target=run, name=name, daemon=True).start()
    await done.wait()
    finished, value = outcome[0]
    if not finished:
        raise value  # type: ignore[misc]
    return value  # type: ignore[return-value]
