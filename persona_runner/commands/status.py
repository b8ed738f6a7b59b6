"""`persona-runner status`: the workers, the ticks in flight, the queue and the due personas of a fleet."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Annotated, Literal

import typer

from persona_runner.commands.catalog_file import catalog_from
from persona_runner.commands.options import (
    CatalogOption,
    DbOption,
    EveryOption,
    FleetLabelOption,
    interval_from,
    queue_store_from,
)
from persona_runner.util.text import counted

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from persona_runner.catalog import PersonaSpec
    from persona_runner.run.queue import QueueWorker
    from persona_runner.store.models import WorkerPause


@dataclass(frozen=True)
class InFlight:
    persona: str
    tick_id: str
    started_at: str
    runner: str | None


@dataclass(frozen=True)
class QueueWorkerSeen:
    """One of the fleet's workers in the queue: each worker process runs two, one for ticks, one for control."""

    id: int
    serves: str  # "ticks" or "control"
    host: str | None
    pid: int | None
    beat_seconds_ago: float
    silent: bool  # silent longer than the fleet's stalled-after: dead, or about to be taken for dead


@dataclass(frozen=True)
class FleetStatus:
    run_id: str
    paused: str | None  # who paused the workers, when and why; None when they are not
    stalled_after: float  # the fleet's --stalled-after, by which `silent` is judged
    workers: list[QueueWorkerSeen]
    in_flight: list[InFlight]
    queued: list[str]
    due: list[str]  # due now and not yet queued: the next scheduling round queues them
    next_due: tuple[str, str] | None  # the persona due soonest after now, and when


def status(
    db: DbOption = None,
    label: FleetLabelOption = None,
    every: EveryOption = None,
    output: Annotated[Literal["text", "json"], typer.Option("--format", help="text, or json for scripts.")] = "text",
    catalog: CatalogOption = None,
) -> None:
    """Show a fleet's workers, ticks in flight, queued and due personas, and whether it is paused.

    Give it the --label, --every and catalog the workers have. Each worker process is two
    workers in the queue (ticks and control); one silent for longer than the workers'
    --stalled-after is shown silent: dead, or about to be taken for dead.

    Example: persona-runner status --db postgresql+psycopg://runner@db/personas --label nightly
    """
    from persona_runner.commands.run_output import out

    personas = catalog_from(catalog).personas
    _, store = queue_store_from(db)
    found = _gather(store, label, personas, interval_from(every, "--every"))
    if output == "json":
        out.print_json(json.dumps(asdict(found)))
        return
    for line in _lines(found):
        out.print(line, highlight=False, markup=False)


def _gather(store: Engine, label: str | None, personas: Sequence[PersonaSpec], every: timedelta | None) -> FleetStatus:
    from persona_runner.run.fleet import fleet_run_id, next_dues, paused, stalled_after_of, ticks_in_flight
    from persona_runner.run.queue import queue_state
    from persona_runner.store.models import utcnow

    now = utcnow()
    run_id = fleet_run_id(label)
    state = queue_state(store, run_id)
    stalled_after = stalled_after_of(store, run_id)
    ticks = ticks_in_flight(store, run_id)
    ticking = {tick.persona_name for tick in ticks}
    busy = {*state.waiting, *state.taken, *ticking}
    dues = [(persona.name, due) for persona, due in next_dues(store, personas, every, now) if persona.name not in busy]
    later = min(((due.at, name) for name, due in dues if not due.due), default=None)
    return FleetStatus(
        run_id=run_id,
        paused=_pause_note(paused(store)),
        stalled_after=stalled_after,
        workers=[_seen(worker, stalled_after) for worker in state.workers],
        in_flight=[InFlight(t.persona_name, t.tick_id, _utc(t.started_at), t.runner) for t in ticks],
        # A job a worker took whose tick has not started (held by a pause, or about to start) is still queued. By
        # name: the queue's order is whichever scheduler came first.
        queued=sorted([*state.waiting, *(name for name in state.taken if name not in ticking)]),
        due=[name for name, due in dues if due.due],
        next_due=(later[1], _utc(later[0])) if later else None,
    )


def _seen(worker: QueueWorker, stalled_after: float) -> QueueWorkerSeen:
    runner = worker.runner
    return QueueWorkerSeen(
        id=worker.worker_id,
        serves=worker.serves,
        host=runner.host if runner else None,
        pid=runner.pid if runner else None,
        beat_seconds_ago=round(worker.beat_seconds_ago, 1),
        silent=worker.beat_seconds_ago > stalled_after,
    )


def _pause_note(held: WorkerPause | None) -> str | None:
    if held is None:
        return None
    reason = f" ({held.reason})" if held.reason else ""
    return f"{held.paused_by} at {_utc(held.paused_at)}{reason}"


def _utc(moment: datetime) -> str:
    return f"{moment:%Y-%m-%d %H:%M:%S} UTC"


def _lines(found: FleetStatus) -> list[str]:
    paused = f"PAUSED by {found.paused}" if found.paused else "not paused"
    silent = sum(worker.silent for worker in found.workers)
    silence = f", {silent} silent for over {found.stalled_after:g} s" if silent else ""
    lines = [f"run {found.run_id}: {counted(len(found.workers) - silent, 'queue worker')} beating{silence}; {paused}"]
    lines += [_worker_line(worker) for worker in found.workers]
    lines.append(f"in flight: {counted(len(found.in_flight), 'tick')}")
    lines += [f"  {t.persona}  {t.tick_id}  since {t.started_at}  on {t.runner or '?'}" for t in found.in_flight]
    lines.append(f"queued: {len(found.queued)}" + (f": {', '.join(found.queued)}" if found.queued else ""))
    lines.append(f"due, not yet queued: {len(found.due)}" + (f": {', '.join(found.due)}" if found.due else ""))
    if found.next_due:
        lines.append(f"next due: {found.next_due[0]} at {found.next_due[1]}")
    return lines


def _worker_line(worker: QueueWorkerSeen) -> str:
    where = f"on {worker.host} pid {worker.pid}" if worker.host else "on ?"
    beat = f"{'SILENT, last beat' if worker.silent else 'beat'} {worker.beat_seconds_ago:.0f} s ago"
    return f"  worker {worker.id}  {worker.serves:<7}  {where}  {beat}"
