"""Workers: personas ticked from a job queue, by any number of processes on any number of machines.

The engine is procrastinate (see `queue`). A worker process runs three kinds of job:

- `tick(persona, slot)`: play one due slot of a persona (see `fleet`). Its jobs
  hold a lock per persona, so a persona never ticks twice at once, and a
  queueing lock per persona and slot, so a slot is queued once however many
  schedulers see it due.
- `schedule`: queue every persona due now. A periodic task each worker
  defers every `SCHEDULE_SECONDS` (more often under a short `--every`); the
  engine defers it once per moment however many workers run, so no cron is
  needed (`persona-runner schedule` does the same on demand).
- `recover`: a worker killed outright (SIGKILL, a lost machine) leaves its
  job `doing` and stops beating in the queue. After `stalled_after` seconds
  of silence its tick is marked `interrupted` (the calls it recorded kept)
  and the job goes back to the queue, where another worker plays the slot.

A stop (SIGTERM, SIGINT) stops fetching jobs; ticks in flight get the grace,
as in a soak, and a tick cut off is recorded `aborted`, its slot due again.

A database that goes away for a while (a restart, a failover, the network) does
not end a worker: its ticks write through `store.retry`, a slot is claimed the
same way, its periodic looks at the store skip a beat, and a queue worker the
engine stopped for a lost connection joins the queue again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from functools import partial
from typing import Any

import anyio
import psycopg
from procrastinate import App, JobContext, PsycopgConnector
from procrastinate.exceptions import AlreadyEnqueued, ConnectorException, UniqueViolation
from procrastinate.jobs import Job, Status
from procrastinate.worker import Worker
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from persona_runner.catalog import PersonaSpec
from persona_runner.domain import Driver, PersonaProfile
from persona_runner.run.fleet import claim_slot, due_now, ensure_fleet_run, interrupt_slot, paused
from persona_runner.run.metrics import RunnerMetrics, keep_beating
from persona_runner.run.owner import this_process
from persona_runner.run.queue import (
    RECOVER_TASK,
    SCHEDULE_TASK,
    STALLED_AFTER,
    TICK_TASK,
    conninfo,
    control_queue,
    enrol,
    persona_lock,
    slot_lock,
    tick_queue,
)
from persona_runner.run.recorder import TickRecord
from persona_runner.run.runner import RunSettings
from persona_runner.run.soak import tick_seed
from persona_runner.run.stopping import RECORDING_LIMIT, Stop
from persona_runner.run.tick import TickPlan, run_tick
from persona_runner.store.models import Run, utcnow
from persona_runner.store.retry import is_transient, retrying
from persona_runner.targets.base import Target
from persona_runner.targets.open import opened_target
from persona_runner.util.text import one_line

logger = logging.getLogger("persona_runner.run.worker")

#: How often the workers look for due personas. A persona is due to the second; this is how late it may start.
SCHEDULE_SECONDS = 10
#: Periods a cron's seconds field keeps regular (they divide a minute), shortest first.
_EVEN_PERIODS = (1, 2, 3, 4, 5, 6, 10)
#: How often the workers look for the jobs of workers that stopped beating.
RECOVER_SECONDS = 10
#: How often a paused worker looks whether it was resumed.
PAUSE_POLL_SECONDS = 2.0
#: How often an idle worker asks the queue for a job. Workers poll rather than LISTEN: the engine stops a worker
#: whose LISTEN connection drops, and a worker stopping gives its ticks in flight no more than the grace.
JOB_POLL_SECONDS = 1.0
#: How often a process looks whether the engine registered one of its queue workers under a new id.
ROLL_POLL_SECONDS = 0.5


@dataclass(frozen=True)
class WorkerSettings:
    """A run's settings (its label names the fleet, its concurrency is per process); `every` replaces the
    catalog's cadence; `stalled_after` is how long a silent worker is given before its tick is retried."""

    run: RunSettings
    every: timedelta | None = None
    stalled_after: float = STALLED_AFTER

    def schedule_seconds(self) -> int:
        """How often to look for due personas: every SCHEDULE_SECONDS, or often enough that a persona ticking
        `every` few seconds is not held back by the look (at most half its interval late)."""
        return _regular_period(self.every.total_seconds() / 2 if self.every else SCHEDULE_SECONDS, SCHEDULE_SECONDS)

    def recover_seconds(self) -> int:
        """How often to look for silent workers: a few times within `stalled_after`, at most every RECOVER_SECONDS."""
        return _regular_period(self.stalled_after / 3, RECOVER_SECONDS)


@dataclass(frozen=True)
class Enqueued:
    """What one round of scheduling did: personas queued now, and those already waiting in the queue."""

    added: list[str]
    waiting: list[str]


def _regular_period(wanted: float, longest: int) -> int:
    """The longest period of whole seconds up to `wanted` and `longest` that a cron's seconds field keeps
    regular (one that divides a minute); 1 at least."""
    return max((period for period in _EVEN_PERIODS if period <= min(wanted, longest)), default=1)


def queue_app(store_url: str, run_id: str, *, periodic: WorkerSettings | None = None) -> App:
    """The fleet's queue. With `periodic`, this process defers the fleet's scheduling and recovery jobs as
    often as those settings say (every worker does; the engine keeps one per moment)."""
    app = App(connector=PsycopgConnector(conninfo=conninfo(store_url), min_size=1))
    app.task(name=TICK_TASK, queue=tick_queue(run_id), pass_context=True)(_tick_job)
    control = control_queue(run_id)
    schedule = app.task(name=SCHEDULE_TASK, queue=control, pass_context=True, queueing_lock=f"schedule:{run_id}")(
        _schedule_job
    )
    recover = app.task(name=RECOVER_TASK, queue=control, pass_context=True, queueing_lock=f"recover:{run_id}")(
        _recover_job
    )
    if periodic:
        app.periodic(cron=f"* * * * * */{periodic.schedule_seconds()}", periodic_id=run_id)(schedule)
        app.periodic(cron=f"* * * * * */{periodic.recover_seconds()}", periodic_id=run_id)(recover)
    return app


async def enqueue_due(
    app: App, store: Engine, run_id: str, personas: Sequence[PersonaSpec], every: timedelta | None
) -> Enqueued:
    """Queue a tick job for each persona due now, in its slot; a slot already waiting is left as it is, and
    a persona whose job a worker has taken is left to it (its tick may not be on record yet)."""
    slots = await anyio.to_thread.run_sync(due_now, store, personas, every, utcnow())
    # Read last, next to the deferring: a job taken between the two reads would be queued again. (One taken in
    # the moment of a deferral still can be: its duplicate finds the slot played and ends without a tick.)
    taken = {str(job.task_kwargs["persona"]) for job in await _jobs(app, run_id, Status.DOING)}
    done = Enqueued(added=[], waiting=[])
    for due in slots:
        name = due.persona.name
        if name in taken:
            continue
        try:
            await defer_tick(app, run_id, name, due.slot)
        except AlreadyEnqueued:
            done.waiting.append(name)
        else:
            done.added.append(name)
    return done


async def _jobs(app: App, run_id: str, status: Status) -> list[Job]:
    return list(await app.job_manager.list_jobs_async(queue=tick_queue(run_id), task=TICK_TASK, status=status.value))


async def defer_tick(app: App, run_id: str, persona: str, slot: str) -> None:
    """Queue the persona's slot; AlreadyEnqueued when a job for it is waiting already."""
    job = app.configure_task(
        TICK_TASK, lock=persona_lock(persona), queueing_lock=slot_lock(run_id, persona, slot), queue=tick_queue(run_id)
    )
    await job.defer_async(run_id=run_id, persona=persona, slot=slot)


class Fleet:
    """What the jobs of one worker process play with: its run, personas, product, store, stop and metrics."""

    def __init__(
        self,
        settings: WorkerSettings,
        run: Run,
        personas: Sequence[PersonaSpec],
        *,
        secret: str,
        store: Engine,
        target: Target,
        make_driver: Callable[[PersonaProfile], Driver],
        stop: Stop,
        metrics: RunnerMetrics,
    ) -> None:
        self.settings = settings
        self.run = run
        self.personas = {p.name: p for p in personas}
        self.secret = secret
        self.store = store
        self.target = target
        self.make_driver = make_driver
        self.stop = stop
        self.metrics = metrics

    async def play(self, persona: str, slot: str) -> None:
        """Tick `persona` in `slot` unless the slot was played; held while the workers are paused (a job
        taken in the moment the pause came)."""
        if not await self._wait_while_paused():
            return  # stopped while paused: the slot stays due, for the next worker
        spec = self.personas.get(persona)
        if spec is None:
            raise LookupError(f"persona {persona!r} is not in this worker's catalog: give every worker the same one")
        now = utcnow()
        # A claim is the tick's first word: a store that falters is waited out (up to a minute), not skipped.
        claim = partial(claim_slot, self.store, self.run.run_id, persona, slot)
        number = await anyio.to_thread.run_sync(retrying, claim)
        if number is None:
            logger.info("%s: slot %s was already played", persona, slot)
            return
        settings = self.settings.run
        plan = TickPlan.for_persona(
            spec,
            run_id=self.run.run_id,
            secret=self.secret,
            tick_date=now.date(),
            seed=tick_seed(self.run.seed, persona, number),
            max_turns=settings.max_turns,
            timeout=settings.timeout,
            number=number,
            slot=slot,
        )
        record: TickRecord | None = None
        cut: list[TickRecord] = []
        self.metrics.tick_started()
        try:
            with self.stop.guard():
                driver = self.make_driver(plan.persona)
                record = await run_tick(
                    plan, target=self.target, driver=driver, store=self.store, stop=self.stop, cut_off=cut.append
                )
        finally:
            self.metrics.tick_ended(record) if record else self.metrics.tick_cut_off(*cut)
        if record is None:
            logger.warning("%s: tick %s cut off by the stop, recorded aborted", persona, plan.tick_id)
        else:
            reason = f": {record.error}" if record.error else ""
            logger.info("%s: tick %s %s, %s%s", persona, record.tick_id, record.status, record.summary(), reason)

    async def keep_working(self, worker: Worker, *, pausable: bool) -> None:
        """Run a queue worker until the stop, and again whenever it ends before: the engine stops a worker
        whose database connection failed for longer than its pool waits. A `pausable` one (the ticks') is
        also stopped while the workers are paused (its ticks in flight finish, the queue keeps the rest), and
        starts again on `resume`."""
        while not self.stop.requested:
            async with anyio.create_task_group() as watching:
                if pausable:
                    watching.start_soon(self._stop_when_paused, worker)
                with _skipping_a_beat(f"the {worker.worker_name} worker's round"):
                    await worker.run()
                watching.cancel_scope.cancel()
            if pausable:
                await self._wait_while_paused()
            else:
                await self._rest()

    async def _rest(self) -> None:
        """A period's rest before a queue worker joins again, cut short by the stop."""
        with self.stop.guard(grace=0):
            await anyio.sleep(PAUSE_POLL_SECONDS)

    async def _stop_when_paused(self, worker: Worker) -> None:
        while True:
            with _skipping_a_beat("a look for a pause"):
                if await anyio.to_thread.run_sync(paused, self.store) is not None:
                    break
            await anyio.sleep(PAUSE_POLL_SECONDS)
        worker.stop()

    async def _wait_while_paused(self) -> bool:
        """Return once the workers are not paused (True), or once a stop came (False). A store that does not
        answer is no answer: the look is taken again a period later."""
        said = False
        while not self.stop.requested:
            with _skipping_a_beat("a look whether the workers were resumed"):
                held = await anyio.to_thread.run_sync(paused, self.store)
                if held is None:
                    return True
                if not said:
                    logger.info(
                        "paused by %s since %s: waiting for `persona-runner resume`", held.paused_by, held.paused_at
                    )
                    said = True
            await self._rest()
        return False

    async def schedule(self, app: App) -> Enqueued:
        return await enqueue_due(app, self.store, self.run.run_id, list(self.personas.values()), self.settings.every)

    async def recover(self, app: App) -> None:
        """Send back to the queue the tick jobs of workers silent for `stalled_after`, their ticks `interrupted`."""
        silent = self.settings.stalled_after
        stalled = await app.job_manager.get_stalled_jobs(
            queue=tick_queue(self.run.run_id), task_name=TICK_TASK, seconds_since_heartbeat=silent
        )
        for job in stalled:
            persona, slot = str(job.task_kwargs["persona"]), str(job.task_kwargs["slot"])
            reason = f"its worker fell silent in the job queue for over {silent:g} s"
            await anyio.to_thread.run_sync(interrupt_slot, self.store, self.run.run_id, persona, slot, reason)
            try:
                await app.job_manager.retry_job(job)
            except UniqueViolation:
                # A scheduler queued the slot again while this job was taken: the job waiting plays it.
                await app.job_manager.finish_job(job, status=Status.ABORTED, delete_job=False)
            except ConnectorException as exc:  # another worker's recovery sent it back first
                logger.info("job %s of %s was not retried here: %s", job.id, persona, exc.__cause__ or exc)
                continue
            logger.warning("%s: %s; its slot %s goes back to the queue", persona, reason, slot)

    async def watch_backlog(self, app: App) -> None:
        """Keep the metrics' due backlog (tick jobs waiting in this fleet's queue) up to date."""
        while True:
            with _skipping_a_beat("a count of the due backlog"):
                self.metrics.set_due(len(await _jobs(app, self.run.run_id, Status.TODO)))
            await anyio.sleep(SCHEDULE_SECONDS)

    async def keep_roll(self, workers: Mapping[str, Worker]) -> None:
        """Keep this process's queue workers (by the queue each serves) on the fleet's roll, which `status`
        lists: each once the engine has registered it, and again under the new id it takes on joining again.
        The engine tells of a registration by the worker's id only, so the id is watched for."""
        enrolled: dict[str, int] = {}
        while True:
            for queue, worker in workers.items():
                worker_id = worker.worker_id
                if worker_id is not None and enrolled.get(queue) != worker_id:
                    with _skipping_a_beat("putting a worker on the roll"):
                        await anyio.to_thread.run_sync(enrol, self.store, worker_id, queue, str(this_process()))
                        enrolled[queue] = worker_id
            await anyio.sleep(ROLL_POLL_SECONDS)


def _passing(error: SQLAlchemyError | ConnectorException) -> bool:
    """Whether a database restart or a lost connection explains the error (the engine's errors carry psycopg's
    as their cause; an operational one, a pool that waited in vain included, passes when the server is back)."""
    if isinstance(error, SQLAlchemyError):
        return is_transient(error)
    return isinstance(error.__cause__, psycopg.OperationalError)


@contextmanager
def _skipping_a_beat(what: str) -> Iterator[None]:
    """What a worker does again every period (a look for a pause, a count, a scheduling round) meets a database
    that does not answer: one line in the log and that one beat lost, not the process. Other errors pass."""
    try:
        yield
    except (SQLAlchemyError, ConnectorException) as exc:
        if not _passing(exc):
            raise
        reason = exc.__cause__ if isinstance(exc, ConnectorException) else getattr(exc, "orig", None)
        logger.warning("%s skipped, the database did not answer: %s", what, one_line(str(reason or exc), 300))


def _fleet(context: JobContext) -> Fleet:
    fleet: Fleet = context.additional_context["fleet"]
    return fleet


async def _tick_job(context: JobContext, run_id: str, persona: str, slot: str) -> None:
    await _fleet(context).play(persona, slot)


async def _schedule_job(context: JobContext, timestamp: int) -> None:
    with _skipping_a_beat("a scheduling round"):
        done = await _fleet(context).schedule(context.app)
        if done.added:
            logger.info("queued %d due personas: %s", len(done.added), ", ".join(done.added))


async def _recover_job(context: JobContext, timestamp: int) -> None:
    with _skipping_a_beat("a look for silent workers"):
        await _fleet(context).recover(context.app)


async def run_worker(
    settings: WorkerSettings,
    personas: Sequence[PersonaSpec],
    *,
    secret: str,
    store: Engine,
    store_url: str,
    make_driver: Callable[[PersonaProfile], Driver],
    stop: Stop,
    metrics: RunnerMetrics,
    on_ready: Callable[[Run], None] = lambda _run: None,
) -> None:
    """Play the fleet's tick jobs, `settings.run.concurrency` at a time, until `stop` is requested.

    The fleet's run is joined (or begun, by the first worker of its label). On a stop no job is
    fetched any more and the ticks in flight end as the stop says; then the process leaves the queue.
    """
    run = await anyio.to_thread.run_sync(
        ensure_fleet_run, store, settings.run, personas, settings.every, settings.stalled_after
    )
    app = queue_app(store_url, run.run_id, periodic=settings)
    async with (
        app.open_async(),
        opened_target(settings.run.target, timeout=settings.run.timeout, modules=settings.run.modules) as target,
    ):
        fleet = Fleet(
            settings,
            run,
            personas,
            secret=secret,
            store=store,
            target=target,
            make_driver=make_driver,
            stop=stop,
            metrics=metrics,
        )
        common: dict[str, Any] = {
            "additional_context": {"fleet": fleet},
            "install_signal_handlers": False,  # the stop has them: one grace for every tick in the process
            "update_heartbeat_interval": settings.stalled_after / 3,
            "stalled_worker_timeout": settings.stalled_after,
            # Ticks end within the grace on their own (see `play`); this only bounds a job that would not.
            "shutdown_graceful_timeout": stop.grace + RECORDING_LIMIT + 5,
            "delete_jobs": "successful",  # the results store keeps what a tick did; the queue only what is left
            "listen_notify": False,
            "fetch_job_polling_interval": JOB_POLL_SECONDS,
        }
        ticks = Worker(
            app, queues=[tick_queue(run.run_id)], concurrency=settings.run.concurrency, name="ticks", **common
        )
        control = Worker(app, queues=[control_queue(run.run_id)], concurrency=1, name="control", **common)
        async with anyio.create_task_group() as beside:
            beside.start_soon(keep_beating, metrics)
            beside.start_soon(fleet.watch_backlog, app)
            beside.start_soon(fleet.keep_roll, {tick_queue(run.run_id): ticks, control_queue(run.run_id): control})
            async with anyio.create_task_group() as working:
                working.start_soon(partial(fleet.keep_working, ticks, pausable=True))
                working.start_soon(partial(fleet.keep_working, control, pausable=False))
                on_ready(run)
                with stop.guard(grace=0):
                    await anyio.sleep_forever()
                metrics.stopping()
                ticks.stop()
                control.stop()
            beside.cancel_scope.cancel()
