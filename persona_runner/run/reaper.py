"""Ticks (and runs) whose process died mid-tick: marked `interrupted`, keeping the calls they recorded.

A tick is `running` on record from its start, its process refreshes its
heartbeat every few seconds and writes its end. A process killed outright
(`kill -9`, the OOM killer, a machine lost) does neither, so a later process
reaps what it left: a `running` tick whose owner is known dead (same host,
see `Owner.is_gone`), or whose heartbeat is older than `STALE_AFTER`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select, update
from sqlalchemy.engine import Engine
from sqlmodel import Session, col

from persona_runner.run.cadence import HISTORY_DEPTH, PastTick
from persona_runner.run.owner import Owner, this_process
from persona_runner.store.models import IS_PRODUCT_ERROR, TICK_RUNNING, PersonaAction, Run, Tick, utcnow
from persona_runner.store.views import persona_ids, recent_ticks
from persona_runner.util.text import counted

#: A live process refreshes its ticks' heartbeat every few seconds, but a write may keep retrying a
#: locked or unreachable store for a minute (`STORE_RETRY_SECONDS`, plus SQLite's busy wait): only
#: longer than all that without a heartbeat means the process is gone.
STALE_AFTER = timedelta(minutes=2)


def reap_interrupted(engine: Engine, now: datetime) -> list[str]:
    """Mark `interrupted` every `running` tick whose process is gone, with the count of the calls it
    recorded and why; the ids of the ticks marked. A tick that ends meanwhile keeps its own end."""
    with Session(engine) as session, session.begin():
        running = session.execute(
            select(col(Tick.tick_id), col(Tick.runner), col(Tick.heartbeat_at), col(Tick.started_at)).where(
                TICK_RUNNING
            )
        ).all()
        gone: dict[str, tuple[datetime, str]] = {}
        for row in running:
            last_seen = _utc(row.heartbeat_at or row.started_at)
            if reason := _why_gone(row.runner, last_seen, now):
                gone[row.tick_id] = (last_seen, reason)
        if gone:
            mark_interrupted(session, gone)
        _end_runs_left_running(session)
    return list(gone)


def recent_history(store: Engine, names: Sequence[str]) -> dict[str, list[PastTick]]:
    """The recent ticks of the personas called `names`, by name, in any run, for the cadence rule to read.

    Ticks dead processes left `running` are marked `interrupted` first: a
    persona whose tick died with its process is due again now, not a whole
    cadence after a tick it never lived.
    """
    reap_interrupted(store, utcnow())
    names_of = {user_id: name for name, user_id in persona_ids(store, list(names)).items()}
    return {names_of[user_id]: ticks for user_id, ticks in recent_ticks(store, list(names_of), HISTORY_DEPTH).items()}


def _end_runs_left_running(session: Session) -> None:
    """Mark `interrupted` the runs whose process is known gone (see `Owner.is_gone`), ended when their
    last tick did. A run on another host stays as it is: nothing here can tell it is gone."""
    for run in session.scalars(select(Run).where(col(Run.status) == "running", col(Run.runner).is_not(None))):
        owner = Owner.parse(run.runner or "")
        if owner is None or not owner.is_gone():
            continue
        last = session.scalar(
            select(func.max(func.coalesce(col(Tick.ended_at), col(Tick.heartbeat_at)))).where(
                col(Tick.run_id) == run.run_id
            )
        )
        run.status, run.ended_at = "interrupted", _utc(last or run.started_at)
        run.error = f"its process ({owner.host} pid {owner.pid}) ended without finishing it"
        session.add(run)


def mark_interrupted(session: Session, gone: dict[str, tuple[datetime, str]]) -> None:
    """Mark each tick of `gone` (tick id: when it was last seen, why its process is gone) `interrupted`, with
    the count of the calls it recorded, if it is still `running`: a tick that ended meanwhile keeps its end."""
    counts = {
        row.tick_id: (row.calls, row.errors or 0)
        for row in session.execute(
            select(
                col(PersonaAction.tick_id),
                func.count().label("calls"),
                func.sum(IS_PRODUCT_ERROR).label("errors"),
            )
            .where(col(PersonaAction.tick_id).in_(gone))
            .group_by(PersonaAction.tick_id)
        )
    }
    for tick_id, (last_seen, reason) in gone.items():
        calls, errors = counts.get(tick_id, (0, 0))
        session.execute(
            update(Tick)
            .where(col(Tick.tick_id) == tick_id, TICK_RUNNING)
            .values(
                status="interrupted",
                ended_at=last_seen,
                tool_calls=calls,
                errors=errors,
                summary=f"{counted(calls, 'call')} ({counted(errors, 'error')}) before it was interrupted",
                error=f"{reason}: the tick was cut short after {counted(calls, 'recorded call')}",
            )
        )


def _why_gone(runner: str | None, last_seen: datetime, now: datetime) -> str | None:
    """Why the tick's process is taken for gone, or None while it may still be playing it."""
    owner = Owner.parse(runner or "")
    if owner == this_process():  # alive, this is it: a late heartbeat only means its store was slow
        return None
    who = f"its process ({owner.host} pid {owner.pid})" if owner else "its process"
    if owner and owner.is_gone():
        return f"{who} ended without finishing it"
    if now - last_seen > STALE_AFTER:
        return f"no heartbeat from {who} since {last_seen:%Y-%m-%d %H:%M:%S} UTC"
    return None


def _utc(moment: datetime) -> datetime:
    """Timestamps come back from SQLite without their zone; the store only holds UTC."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
