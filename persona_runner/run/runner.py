"""A run: one tick for each chosen persona, a few at a time, under one run id.

Personas that share a space (directly, or through another member) tick one
after another, in the order given: two of them working in one space at once
would interleave their writes and listings there, and a seeded run would no
longer repeat call for call. Personas that share nothing tick concurrently.

A signal stops the run in order (see `stopping`): no tick starts after it, ticks in
flight get the grace to finish, and the run is recorded as `stopped`.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from datetime import date, timedelta
from functools import partial
from typing import Any

import anyio
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session

from persona_runner.catalog import PersonaSpec, SpaceSpec
from persona_runner.domain import Driver, PersonaProfile
from persona_runner.run.owner import this_process
from persona_runner.run.recorder import RecordError, TickRecord
from persona_runner.run.stopping import RECORDING_LIMIT, Stop
from persona_runner.run.tick import TickPlan, run_tick
from persona_runner.store.models import Run, utcnow
from persona_runner.store.retry import retrying
from persona_runner.targets.errors import ERROR_LIMIT
from persona_runner.targets.open import opened_target
from persona_runner.targets.spec import TargetSpec
from persona_runner.util.text import counted, truncate
from persona_runner.util.threads import in_daemon_thread

RAN_STATUSES = ("ok", "rating_unparsed")


@dataclass(frozen=True)
class RunSettings:
    target: TargetSpec
    driver: str
    model: str | None = None
    seed: int = 0
    max_turns: int = 20
    timeout: float = 120.0
    concurrency: int = 4
    label: str | None = None
    tick_date: date = field(default_factory=lambda: utcnow().date())
    #: Days each persona lives in a `run`, one tick each, from `tick_date` on: enough calls for a gate to judge.
    repeat: int = 1
    #: The --fault and --delay flags the embedded product was started with: recorded, so no report mistakes
    #: errors asked for with errors found.
    injected: tuple[str, ...] = ()
    #: The cassette the LLM drivers recorded to or replayed from: a `replay --mode driver` of a tick plays
    #: the model's answers from it.
    cassette: str | None = None
    #: The catalog's modules: what the tools of a server that declares none are counted under.
    modules: frozenset[str] | None = None

    def days(self) -> list[date]:
        return [self.tick_date + timedelta(days=day) for day in range(self.repeat)]


def new_run_id() -> str:
    return f"{utcnow():%Y%m%d-%H%M%S}-{secrets.token_hex(3)}"


@dataclass
class RunResult:
    run_id: str
    ticks: list[TickRecord]  # the ticks that finished
    stopped_early: str | None = None  # why some personas were not started
    stopped_by: str | None = None  # the signal that stopped the run
    aborted: list[str] = field(default_factory=list)  # personas whose tick was cut off by the stop
    not_started: list[str] = field(default_factory=list)  # personas never ticked: the run stopped first

    @property
    def failed(self) -> list[TickRecord]:
        return [t for t in self.ticks if t.status not in RAN_STATUSES]


def sharing_groups(personas: Sequence[PersonaSpec], spaces: Sequence[SpaceSpec]) -> list[list[PersonaSpec]]:
    """The personas split into groups that share no space with each other, each group in the order given.

    Connected components of the space memberships: `a` and `c` are in one group when `a`
    shares a space with `b` and `b` one with `c`. Groups come in the order of their first member.
    """
    index = {persona.name: position for position, persona in enumerate(personas)}
    parent = list(range(len(personas)))

    def root(position: int) -> int:
        while parent[position] != position:
            position = parent[position] = parent[parent[position]]
        return position

    for space in spaces:
        members = [index[name] for name in space.members if name in index]
        for member in members[1:]:
            parent[root(member)] = root(members[0])
    groups: dict[int, list[PersonaSpec]] = {}
    for position, persona in enumerate(personas):
        groups.setdefault(root(position), []).append(persona)
    return list(groups.values())


def _write_run(store: Engine, run: Run) -> None:
    """The run's row as it stands, through a briefly locked or unreachable store as ticks are."""

    def write() -> None:
        with Session(store) as session, session.begin():
            session.merge(run)

    try:
        retrying(write)
    except SQLAlchemyError as exc:
        raise RecordError(f"could not record run {run.run_id}: {getattr(exc, 'orig', None) or exc}") from None


async def _end_run(store: Engine, run: Run, status: str, stop: Stop) -> None:
    """Record how the run ended, in the stop's recording scope: a run being cancelled still says
    so, and a store that does not answer cannot hold a process that was asked to stop."""
    run.ended_at, run.status = utcnow(), status
    with stop.recording() as recording:
        await in_daemon_thread(partial(_write_run, store, run), "persona-runner run end")
    if recording.cancelled_caught:
        raise RecordError(
            f"could not record the end of run {run.run_id}: the results store did not answer within "
            f"{RECORDING_LIMIT:g} s of the stop; the run may still show `running`"
        )


async def begin_run(store: Engine, settings: RunSettings, personas: Sequence[PersonaSpec], **config: Any) -> Run:
    """A new run under a fresh id, on record as `running`; `config` adds what this kind of run was asked
    beyond the settings."""
    run = Run(
        run_id=new_run_id(),
        runner=str(this_process()),
        label=settings.label,
        target=settings.target.address,
        driver=settings.driver,
        model=settings.model,
        seed=settings.seed,
        config={
            **config,
            **({"injected": list(settings.injected)} if settings.injected else {}),
            **({"cassette": settings.cassette} if settings.cassette else {}),
            "target": settings.target.on_record(),
            "max_turns": settings.max_turns,
            "timeout": settings.timeout,
            "personas": [p.name for p in personas],
        },
    )
    await anyio.to_thread.run_sync(_write_run, store, run)
    return run


@asynccontextmanager
async def aborted_on_error(store: Engine, run: Run, stop: Stop) -> AsyncIterator[None]:
    """Record the run as `aborted` when the block raises or is cancelled from outside, then let that go on."""
    try:
        yield
    except BaseException:
        # What stopped the run matters more than failing to note its end.
        with suppress(RecordError):
            await _end_run(store, run, "aborted", stop)
        raise


async def end_run(store: Engine, run: Run, result: RunResult, stop: Stop) -> None:
    """Record how a run that came to its end ended: `stopped` by a signal (named in its config and in
    `result`), `failed` when ticks failed, `aborted` when it stopped early, else `ok`."""
    if stop.signal_name:
        result.stopped_by = stop.signal_name
        run.config = {**run.config, "stopped_by": stop.signal_name}
        status = "stopped"
    else:
        status = "failed" if result.failed else ("aborted" if result.stopped_early else "ok")
    run.error = unrecorded_ticks(result.ticks)
    await _end_run(store, run, status, stop)


def unrecorded_ticks(ticks: Sequence[TickRecord]) -> str | None:
    """What the run's row says when the store would not take some of its ticks (None: it took all)."""
    unrecorded = [tick for tick in ticks if tick.store_error]
    if not unrecorded:
        return None
    first = unrecorded[0]
    return truncate(
        f"{len(unrecorded)} of {counted(len(ticks), 'tick')} could not be recorded; "
        f"first {first.tick_id}: {first.store_error}",
        ERROR_LIMIT,
    )


async def execute_run(
    settings: RunSettings,
    personas: list[PersonaSpec],
    *,
    secret: str,
    store: Engine,
    make_driver: Callable[[PersonaProfile], Driver],
    spaces: Sequence[SpaceSpec] = (),
    should_stop: Callable[[], str | None] = lambda: None,
    on_tick: Callable[[TickRecord], None] = lambda _record: None,
    stop: Stop | None = None,
) -> RunResult:
    """Tick every persona once (on each of `settings.days()`, in order); members of `spaces` are grouped as
    `sharing_groups` says.

    `should_stop` lets a run-wide budget hold back ticks not yet started. Once `stop` is
    requested no tick starts, and ticks in flight are cut off (recorded `aborted`) when it
    ends its guard; the run is then `stopped`. A run that raises or is cancelled from outside
    is recorded as `aborted`, its ticks in flight too.
    """
    stop = stop or Stop()
    run = await begin_run(store, settings, personas, tick_date=settings.tick_date.isoformat(), repeat=settings.repeat)
    result = RunResult(run_id=run.run_id, ticks=[])
    limiter = anyio.Semaphore(max(1, settings.concurrency))
    started: list[TickPlan] = []

    async with opened_target(settings.target, timeout=settings.timeout, modules=settings.modules) as target:

        async def one(persona: PersonaSpec, day: date) -> None:
            async with limiter:
                if stop.requested:
                    return
                reason = should_stop()
                if reason:
                    result.stopped_early = reason
                    return
                plan = TickPlan.for_persona(
                    persona,
                    run_id=run.run_id,
                    secret=secret,
                    tick_date=day,
                    seed=settings.seed,
                    max_turns=settings.max_turns,
                    timeout=settings.timeout,
                )
                started.append(plan)
                record = await run_tick(plan, target=target, driver=make_driver(plan.persona), store=store, stop=stop)
                result.ticks.append(record)
                on_tick(record)

        async def in_turn(group: list[PersonaSpec]) -> None:
            for persona in group:
                for day in settings.days():
                    await one(persona, day)

        async with aborted_on_error(store, run, stop):
            with stop.guard():
                async with anyio.create_task_group() as tasks:
                    for group in sharing_groups(personas, spaces):
                        tasks.start_soon(in_turn, group)
    finished = {t.tick_id for t in result.ticks}
    result.aborted = list(dict.fromkeys(plan.persona.name for plan in started if plan.tick_id not in finished))
    ticked = {plan.persona.name for plan in started}
    result.not_started = [p.name for p in personas if p.name not in ticked]
    await end_run(store, run, result, stop)
    result.ticks.sort(key=lambda t: (t.persona.name, t.tick_date))
    return result
