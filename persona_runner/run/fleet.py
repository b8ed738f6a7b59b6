"""What workers on many machines agree on through the results store: their run, the due slots, the pause.

Workers (see `worker`) take ticks from a job queue; this module is the part of
their work that lives in the results store, so it reads plainly in SQL and
needs no queue to test:

- One run holds every tick the workers of a label play (`fleet_run_id`), so
  `report --run` and `gate` read a fleet as they read a soak. Its config says
  how the workers were started, `stalled_after` as the latest worker said.
- A persona is due in a slot: the moment it fell due by its latest tick
  (`NextDue.since`), the same for every scheduler that asks, so the queue
  can refuse a second job for it. `claim_slot` is the last word, taken under
  the queue's lock on the persona: a slot is played once, unless the harness
  cut its tick short (a signal, a dead worker), and then it is played again.
- A pause is a row: while it is there, workers start no tick.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.engine import CursorResult, Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col

from persona_runner.catalog import PersonaSpec
from persona_runner.run.cadence import CUT_SHORT, NextDue, next_due
from persona_runner.run.owner import this_process
from persona_runner.run.queue import STALLED_AFTER
from persona_runner.run.reaper import mark_interrupted, recent_history
from persona_runner.run.runner import RunSettings
from persona_runner.store.models import TICK_RUNNING, Run, Tick, WorkerPause, utcnow
from persona_runner.store.retry import retrying

#: The label of a fleet whose workers were given none.
DEFAULT_LABEL = "workers"
#: The slot of a persona that never ticked.
FIRST_SLOT = "first"


def fleet_run_id(label: str | None) -> str:
    """The run of the workers of `label`: every worker and scheduler of one label names the same run."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", label or DEFAULT_LABEL).strip("-") or DEFAULT_LABEL
    return f"fleet-{slug}"


def ensure_fleet_run(
    store: Engine,
    settings: RunSettings,
    personas: Sequence[PersonaSpec],
    every: timedelta | None,
    stalled_after: float,
) -> Run:
    """The fleet's run, on record from the first worker of its label to start; later workers join it as it is,
    but for `stalled_after`: `status` judges the workers' silence by it, so it is the latest worker's.
    Workers started together race to write it: the ones that lose read what the winner wrote."""
    run_id = fleet_run_id(settings.label)

    def read() -> Run | None:
        with Session(store) as session:
            existing = session.get(Run, run_id)
            if existing is not None:
                session.expunge(existing)
            return existing

    def write() -> Run:
        joined = read()
        if joined is None:
            try:
                return insert()
            except IntegrityError:
                joined = read()
                if joined is None:
                    raise
        return joined if joined.config.get("stalled_after") == stalled_after else restalled()

    def restalled() -> Run:
        with Session(store) as session, session.begin():
            run = session.get_one(Run, run_id, with_for_update=True)
            run.config = {**run.config, "stalled_after": stalled_after}
            session.flush()
            session.expunge(run)
            return run

    def insert() -> Run:
        with Session(store) as session, session.begin():
            run = Run(
                run_id=run_id,
                label=settings.label or DEFAULT_LABEL,
                target=settings.target.address,
                driver=settings.driver,
                model=settings.model,
                seed=settings.seed,
                config={
                    "workers": True,
                    "every": every.total_seconds() if every else None,
                    "stalled_after": stalled_after,
                    "max_turns": settings.max_turns,
                    "timeout": settings.timeout,
                    "personas": [p.name for p in personas],
                    "target": settings.target.on_record(),
                },
            )
            session.add(run)
            session.flush()
            session.expunge(run)
            return run

    return retrying(write)


@dataclass(frozen=True)
class DueSlot:
    """A persona due now, and the slot it is due in."""

    persona: PersonaSpec
    slot: str
    due: NextDue


def slot_of(due: NextDue) -> str:
    return due.since.isoformat() if due.since else FIRST_SLOT


def next_dues(
    store: Engine, personas: Sequence[PersonaSpec], every: timedelta | None, now: datetime
) -> list[tuple[PersonaSpec, NextDue]]:
    """When each persona is next due, by its recent ticks in any run."""
    history = recent_history(store, [p.name for p in personas])
    return [
        (persona, next_due(persona.tick_cadence, history.get(persona.name, []), now, every=every))
        for persona in personas
    ]


def due_now(store: Engine, personas: Sequence[PersonaSpec], every: timedelta | None, now: datetime) -> list[DueSlot]:
    """The personas due at `now`, each in its slot, longest due first."""
    slots = [DueSlot(persona, slot_of(due), due) for persona, due in next_dues(store, personas, every, now) if due.due]
    return sorted(slots, key=lambda slot: slot.due.since or now)


def claim_slot(store: Engine, run_id: str, persona: str, slot: str) -> int | None:
    """The number of the tick that plays `persona`'s `slot` in the run, or None when the slot was played.

    Called under the queue's lock on the persona, so no other tick of it starts meanwhile. A tick of
    the slot still `running` counts as played: its process may be playing it, and if it died, the
    recovery marks the tick `interrupted` (`interrupt_slot`) before the slot's job runs again.
    """
    with Session(store) as session:
        statuses = list(
            session.scalars(
                select(col(Tick.status)).where(
                    col(Tick.run_id) == run_id, col(Tick.persona_name) == persona, col(Tick.slot) == slot
                )
            )
        )
        if any(status not in CUT_SHORT for status in statuses):
            return None
        ticks = session.scalar(
            select(func.count()).where(col(Tick.run_id) == run_id, col(Tick.persona_name) == persona)
        )
    return int(ticks or 0) + 1


def interrupt_slot(store: Engine, run_id: str, persona: str, slot: str, reason: str) -> list[str]:
    """Mark `interrupted` the ticks of the slot still `running`: their worker is gone (the queue says so)."""
    with Session(store) as session, session.begin():
        running = session.execute(
            select(col(Tick.tick_id), col(Tick.heartbeat_at), col(Tick.started_at)).where(
                TICK_RUNNING, col(Tick.run_id) == run_id, col(Tick.persona_name) == persona, col(Tick.slot) == slot
            )
        ).all()
        gone = {row.tick_id: (row.heartbeat_at or row.started_at, reason) for row in running}
        if gone:
            mark_interrupted(session, gone)
    return list(gone)


def pause(store: Engine, reason: str | None) -> WorkerPause:
    """Hold every worker before its next tick; a pause already in place is kept as it was."""
    with Session(store) as session, session.begin():
        held = session.get(WorkerPause, "all")
        if held is None:
            held = WorkerPause(paused_by=str(this_process()), paused_at=utcnow(), reason=reason)
            session.add(held)
            session.flush()
        session.expunge(held)
        return held


def resume(store: Engine) -> bool:
    """Let the workers go on; False when they were not paused."""
    with Session(store) as session, session.begin():
        result: CursorResult[Any] = session.execute(delete(WorkerPause))  # type: ignore[assignment]
        return bool(result.rowcount)


def stalled_after_of(store: Engine, run_id: str) -> float:
    """How long the fleet's workers may be silent in the queue before they are taken for dead, as its run says;
    the default for a fleet no worker started yet (or one started before the run said it)."""
    with Session(store) as session:
        run = session.get(Run, run_id)
        return float(run.config.get("stalled_after", STALLED_AFTER)) if run else STALLED_AFTER


def paused(store: Engine) -> WorkerPause | None:
    with Session(store) as session:
        held = session.get(WorkerPause, "all")
        if held is not None:
            session.expunge(held)
        return held


def ticks_in_flight(store: Engine, run_id: str) -> list[Tick]:
    """The run's ticks still `running`, oldest first."""
    with Session(store) as session:
        ticks = list(
            session.scalars(select(Tick).where(TICK_RUNNING, col(Tick.run_id) == run_id).order_by(col(Tick.started_at)))
        )
        session.expunge_all()
        return ticks
