"""A soak: one run that ticks each persona whenever it is due, for as long as it is asked to.

There is no batch barrier: a scheduler starts a persona's tick as soon as it is due
(`cadence.next_due`, or every `every`) and one of `concurrency` slots is free, and sleeps
until the next one is due or a tick ends. A slow persona only holds back itself: it never
has two ticks at once, and the personas it shares a space with (see `sharing_groups`)
wait for it, since two of them working in one space at once would interleave their writes.

Each tick has an id and a seed of its own, numbered per persona, so a soak ticking a
persona several times a day keeps every tick apart and repeats itself under the same seed.

The soak ends at `ends_at` or on a signal: no tick starts after that, and ticks in flight
get the grace to finish, then are cut off and recorded `aborted` (see `stopping`).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import anyio
from sqlalchemy.engine import Engine

from persona_runner.catalog import PersonaSpec, SpaceSpec
from persona_runner.domain import Driver, PersonaProfile
from persona_runner.run.cadence import HISTORY_DEPTH, NextDue, PastTick, next_due
from persona_runner.run.metrics import RunnerMetrics
from persona_runner.run.reaper import recent_history
from persona_runner.run.recorder import TickRecord
from persona_runner.run.runner import (
    RAN_STATUSES,
    RunResult,
    RunSettings,
    aborted_on_error,
    begin_run,
    end_run,
    sharing_groups,
)
from persona_runner.run.stopping import Stop
from persona_runner.run.tick import TickPlan, run_tick
from persona_runner.store.models import utcnow
from persona_runner.targets.open import opened_target


def tick_seed(run_seed: int, persona: str, number: int) -> int:
    """The seed of a persona's `number`th tick: fixed by the run's seed, so a soak repeats, yet a
    different day for each tick. (31 bits: what every store's integer column holds.)"""
    return random.Random(f"soak:{run_seed}:{persona}:{number}").getrandbits(31)


class Schedule:
    """Who is due and who may start: the scheduler's bookkeeping, with the time always passed in.

    `history` holds each persona's recent ticks (any order) by name, from the store and then
    from the soak itself; a persona in flight, or whose sharing group has one in flight, waits.
    """

    def __init__(
        self,
        personas: Sequence[PersonaSpec],
        spaces: Sequence[SpaceSpec],
        *,
        every: timedelta | None,
        history: dict[str, list[PastTick]],
    ) -> None:
        self.personas = list(personas)
        self.every = every
        self.history = {p.name: sorted(history.get(p.name, []), reverse=True) for p in personas}
        self._group = {p.name: number for number, group in enumerate(sharing_groups(personas, spaces)) for p in group}
        self.in_flight: set[str] = set()

    def when(self, persona: PersonaSpec, now: datetime) -> NextDue:
        return next_due(persona.tick_cadence, self.history[persona.name], now, every=self.every)

    def ready(self, now: datetime) -> list[PersonaSpec]:
        """The personas that may start now, longest due first: due, and no one of their sharing
        group in flight; at most one per group, since they would then be working side by side."""
        busy = {self._group[name] for name in self.in_flight}
        waiting = [(self.when(p, now).at, position, p) for position, p in enumerate(self.personas)]
        chosen: list[PersonaSpec] = []
        for at, _, persona in sorted(waiting, key=lambda entry: entry[:2]):
            group = self._group[persona.name]
            if at <= now and group not in busy:
                busy.add(group)
                chosen.append(persona)
        return chosen

    def next_up(self, now: datetime) -> tuple[PersonaSpec, datetime] | None:
        """The persona not in flight that is due soonest, and when (None: all are in flight)."""
        waiting = [(self.when(p, now).at, p) for p in self.personas if p.name not in self.in_flight]
        if not waiting:
            return None
        at, persona = min(waiting, key=lambda entry: entry[0])
        return persona, at

    def wake_at(self, now: datetime) -> datetime | None:
        """When a persona not in flight next falls due after `now` (None: none will): the scheduler
        sleeps until then. One due already but held back waits for a tick to end instead."""
        return min(
            (at for p in self.personas if p.name not in self.in_flight if (at := self.when(p, now).at) > now),
            default=None,
        )

    def started(self, persona: PersonaSpec, at: datetime) -> None:
        self.in_flight.add(persona.name)
        self.history[persona.name].insert(0, (at, "running"))

    def ended(self, persona: PersonaSpec, status: str) -> None:
        """The persona's tick (the latest it started) ended as `status`."""
        self.in_flight.discard(persona.name)
        latest = self.history[persona.name]
        latest[0] = (latest[0][0], status)
        del latest[HISTORY_DEPTH:]


@dataclass
class SoakStatus:
    """How the soak is going, for a progress line: read at any time, updated as ticks start and end."""

    started_at: datetime = field(default_factory=utcnow)
    ends_at: datetime | None = None
    done: int = 0
    failed: int = 0
    calls: int = 0  # calls of the ticks that ended
    in_flight: int = 0
    next_up: tuple[str, datetime] | None = None  # persona due soonest, and when


@dataclass(frozen=True)
class SoakSettings:
    """A run's settings (its `tick_date` unused: each tick lives the day it starts on); how long the
    soak lasts from its first tick and the moment it ends by (the sooner; neither: until a signal);
    and `every`, which replaces the catalog's cadence when given."""

    run: RunSettings
    duration: timedelta | None = None
    until: datetime | None = None
    every: timedelta | None = None

    def ends_at(self, start: datetime) -> datetime | None:
        ends = [moment for moment in (self.duration and start + self.duration, self.until) if moment]
        return min(ends, default=None)


async def execute_soak(
    settings: SoakSettings,
    personas: list[PersonaSpec],
    *,
    secret: str,
    store: Engine,
    make_driver: Callable[[PersonaProfile], Driver],
    spaces: Sequence[SpaceSpec] = (),
    stop: Stop,
    status: SoakStatus | None = None,
    on_tick: Callable[[TickRecord], None] = lambda _record: None,
    metrics: RunnerMetrics | None = None,
    now: Callable[[], datetime] = utcnow,
) -> RunResult:
    """Tick each persona whenever it is due until the soak ends or a signal comes, under one run id.

    The soak ends as `settings.ends_at` says, counted from now. At the end, ticks in flight get
    `stop.grace` to finish, as after a signal. The run is then `stopped` (a signal), `failed`
    (some ticks failed) or `ok`; `aborted` when it raised. `status` is kept up to date for
    whoever shows progress, `metrics` for whoever scrapes them; `now` is the clock the schedule reads.
    """
    metrics = metrics or RunnerMetrics()
    ends_at = settings.ends_at(now())
    run = await begin_run(
        store,
        settings.run,
        personas,
        soak={
            "ends_at": ends_at.isoformat() if ends_at else None,
            "every": settings.every.total_seconds() if settings.every else None,
            "concurrency": settings.run.concurrency,
        },
    )
    status = status or SoakStatus()
    status.ends_at = ends_at
    history = await anyio.to_thread.run_sync(recent_history, store, [p.name for p in personas])
    schedule = Schedule(personas, spaces, every=settings.every, history=history)
    result = RunResult(run_id=run.run_id, ticks=[])
    numbers = dict.fromkeys((p.name for p in personas), 0)
    changed = anyio.Event()

    async with opened_target(settings.run.target, timeout=settings.run.timeout, modules=settings.run.modules) as target:

        async def tick(persona: PersonaSpec, started_at: datetime) -> None:
            numbers[persona.name] += 1
            plan = TickPlan.for_persona(
                persona,
                run_id=run.run_id,
                secret=secret,
                tick_date=started_at.date(),
                seed=tick_seed(settings.run.seed, persona.name, numbers[persona.name]),
                max_turns=settings.run.max_turns,
                timeout=settings.run.timeout,
                number=numbers[persona.name],
            )
            cut: list[TickRecord] = []
            metrics.tick_started()
            try:
                record = await run_tick(
                    plan, target=target, driver=make_driver(plan.persona), store=store, stop=stop, cut_off=cut.append
                )
            except anyio.get_cancelled_exc_class():
                result.aborted.append(persona.name)
                status.in_flight -= 1
                metrics.tick_cut_off(*cut)
                raise
            metrics.tick_ended(record)
            schedule.ended(persona, record.status)
            result.ticks.append(record.settled())
            status.done += 1
            status.failed += record.status not in RAN_STATUSES
            status.calls += len(record.calls)
            status.in_flight -= 1
            on_tick(record)
            changed.set()

        async with aborted_on_error(store, run, stop):
            with stop.guard():
                async with anyio.create_task_group() as tasks:
                    while not stop.requested and (ends_at is None or now() < ends_at):
                        moment = now()
                        free = settings.run.concurrency - len(schedule.in_flight)
                        ready = schedule.ready(moment)
                        for persona in ready[: max(free, 0)]:
                            schedule.started(persona, moment)
                            status.in_flight += 1
                            tasks.start_soon(tick, persona, moment)
                        metrics.set_due(max(len(ready) - max(free, 0), 0))
                        changed = anyio.Event()
                        nxt = schedule.next_up(moment)
                        status.next_up = (nxt[0].name, nxt[1]) if nxt else None
                        wake = min((at for at in (schedule.wake_at(moment), ends_at) if at), default=None)
                        # A signal ends the wait at once (a guard with no grace), as does a tick that ends.
                        with stop.guard(grace=0), anyio.move_on_after(_seconds_until(wake, now())):
                            await changed.wait()
                    # The end: nothing starts any more, and what is in flight gets the grace to finish.
                    metrics.stopping()
                    tasks.cancel_scope.deadline = min(tasks.cancel_scope.deadline, anyio.current_time() + stop.grace)
    result.not_started = [p.name for p in personas if numbers[p.name] == 0]
    await end_run(store, run, result, stop)
    return result


def _seconds_until(moment: datetime | None, now: datetime) -> float:
    return float("inf") if moment is None else max((moment - now).total_seconds(), 0.0)
