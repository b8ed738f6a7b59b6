"""A tick on record while it is played, not only once it is over.

Its row is written `running` before anything else (`LiveTick.open`), its calls
reach the store about a second after they are made, and while it plays a
heartbeat says its process is alive; at the end the finished tick is written
in one transaction (`LiveTick.close`). So a `kill -9` loses at most the last
second of calls, and the next process to tick on the store marks what the
dead one left as `interrupted` (see `reaper`).

The calls of every tick in flight on one store travel together: one writer
thread per store and process gathers them every `FLUSH_SECONDS` into one
transaction with one INSERT, so a hundred personas in flight cost the store a
small write a second, not a hundred. The thread starts with the first tick in
flight (looking for ticks dead processes left, first thing) and ends soon
after the last.
"""

from __future__ import annotations

import logging
import threading
import time
from functools import partial

import anyio
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from persona_runner.run.reaper import reap_interrupted
from persona_runner.run.recorder import (
    ActionRow,
    RecordedCall,
    RecordError,
    TickRecord,
    action_row,
    append_actions,
    save_tick,
    start_tick,
)
from persona_runner.store.models import utcnow
from persona_runner.util.threads import in_daemon_thread

logger = logging.getLogger("persona_runner.run.live_tick")

#: How far behind the calls reach the store, at most (plus the write itself).
FLUSH_SECONDS = 1.0
#: How often the ticks in flight say their process is alive; far below `reaper.STALE_AFTER`.
HEARTBEAT_SECONDS = 5.0
#: How often a long-lived process looks again for ticks that processes gone since left `running`.
REAP_SECONDS = 60.0

#: Guards the writers and, in each tick, the calls waiting to be written and the count written.
_lock = threading.Lock()
_writers: dict[Engine, _StoreWriter] = {}


class LiveTick:
    """One tick's side of the recording: on record at its start, its calls streamed, its end written."""

    def __init__(self, store: Engine, record: TickRecord, cadence: str) -> None:
        self.store = store
        self.record = record
        self.cadence = cadence
        self.persona_id: str | None = None  # the persona's id in the store, once the tick is on record
        self.waiting: list[ActionRow] = []
        self.written = 0  # how many of the first calls the writer has put in the store
        self._writer: _StoreWriter | None = None

    async def open(self) -> None:
        """Write the tick's `running` row and have its calls streamed from now on.

        Raises RecordError when the store stayed unavailable through its retries:
        the tick cannot be played on record.
        """
        try:
            await anyio.to_thread.run_sync(self._open)
        except RecordError as exc:
            self.record.store_error = str(exc)
            raise

    def _open(self) -> None:
        """In a worker thread, so the tick joins the writer even if it is cancelled while its row is written."""
        persona_id = start_tick(self.store, self.record, self.cadence)
        with _lock:
            self.persona_id = persona_id
            self._writer = _StoreWriter.joined_by(self)

    def add(self, call: RecordedCall) -> None:
        """Keep the call in the record and queue it for the store."""
        assert self.persona_id is not None, "a tick plays only once it is on record"
        self.record.calls.append(call)
        row = action_row(self.record, call, self.persona_id)
        with _lock:
            self.waiting.append(row)

    async def close(self) -> None:
        """Stop streaming and write the finished tick: status, counts, feedback, transcript and the calls
        the writer has not written yet. Raises RecordError when the store would not take it.

        A tick the store refused at its start is not tried again: that already took a minute.
        """
        if self.record.store_error:
            return
        with _lock:
            if self._writer:
                self._writer.ticks.remove(self)
            written = self.written
        write = partial(save_tick, self.store, self.record, self.cadence, calls_written=written)
        try:
            # A write cut off (see `run_tick`) goes on in its thread without holding the process; rows are
            # merged, so a write that lands late is harmless.
            await in_daemon_thread(write, f"persona-runner tick end {self.record.tick_id}")
        except RecordError as exc:
            self.record.store_error = str(exc)
            raise


class _StoreWriter:
    """The thread that writes the calls and heartbeats of every tick in flight on one store."""

    def __init__(self, store: Engine) -> None:
        self.store = store
        self.ticks: list[LiveTick] = []
        self.thread = threading.Thread(target=self._run, name="persona-runner store writer", daemon=True)

    @classmethod
    def joined_by(cls, tick: LiveTick) -> _StoreWriter:
        """The store's writer (started when there is none), with `tick` among its ticks. Call under `_lock`."""
        writer = _writers.get(tick.store)
        if writer is None:
            writer = _writers[tick.store] = cls(tick.store)
            writer.thread.start()
        writer.ticks.append(tick)
        return writer

    def _run(self) -> None:
        self._reap()
        started = time.monotonic()
        next_heartbeat, next_reap = started + HEARTBEAT_SECONDS, started + REAP_SECONDS
        while True:
            time.sleep(FLUSH_SECONDS)
            now = time.monotonic()
            with _lock:
                if not self.ticks:
                    del _writers[self.store]
                    return
                taken = [(tick, tick.waiting) for tick in self.ticks if tick.waiting]
                for tick, _ in taken:
                    tick.waiting = []
                beating = [tick.record.tick_id for tick in self.ticks] if now >= next_heartbeat else []
            if beating:
                next_heartbeat = now + HEARTBEAT_SECONDS
            if taken or beating:
                self._write(taken, beating)
            if now >= next_reap:
                next_reap = now + REAP_SECONDS
                self._reap()

    def _write(self, taken: list[tuple[LiveTick, list[ActionRow]]], beating: list[str]) -> None:
        """One transaction for all; calls it could not write wait for the next round (or the tick's end)."""
        try:
            append_actions(self.store, [row for _, rows in taken for row in rows], beating)
        except RecordError as exc:
            logger.warning("%s; trying again in %g s", exc, FLUSH_SECONDS)
            with _lock:
                for tick, rows in taken:
                    tick.waiting[:0] = rows
            return
        with _lock:
            for tick, rows in taken:
                tick.written += len(rows)

    def _reap(self) -> None:
        try:
            reaped = reap_interrupted(self.store, utcnow())
        except SQLAlchemyError as exc:
            logger.warning("could not look for ticks that dead processes left running: %s", exc)
            return
        if reaped:
            logger.info("marked %d ticks interrupted that dead processes left running: %s", len(reaped), reaped)
