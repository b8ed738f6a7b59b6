"""Replaying many recorded days at once: one tick, or every tick of a run (a regression suite in one command).

Days replay in the order they were lived, one at a time, so a persona's later
day finds what its earlier days left, as it did when recorded; each persona
keeps one `Rebinder` across its days, so an id handed out on Monday and used on
Tuesday is rebound too. In `driver` mode the new days are ticks of one new run,
recorded like any other and named after the ticks they replay.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from sqlalchemy.engine import Engine

from persona_runner.catalog import PersonaSpec
from persona_runner.credentials import derive_password
from persona_runner.domain import Driver, PersonaProfile
from persona_runner.run.rebind import Rebinder
from persona_runner.run.recorder import TickRecord
from persona_runner.run.replay import DEFAULT_LATENCY_RATIO, Mode, TickReplay, replay_calls, replay_driver
from persona_runner.run.runner import RunResult, RunSettings, begin_run, end_run
from persona_runner.run.stopping import Stop
from persona_runner.run.tick import persona_headers
from persona_runner.store.recorded import RecordedDay
from persona_runner.targets.base import Target, Visitor
from persona_runner.targets.errors import ProductError, ProductUnreachable
from persona_runner.targets.spec import TargetSpec


@dataclass(frozen=True)
class DriverReplay:
    """Who plays the days again in `driver` mode, and within which limits."""

    name: str
    model: str | None
    make: Callable[[PersonaProfile], Driver]
    max_turns: int
    timeout: float


@dataclass(frozen=True)
class ReplayRequest:
    days: list[RecordedDay]  # in the order they were lived
    personas: Mapping[str, PersonaSpec]  # by name: every persona of `days`
    secret: str
    #: Where the days are lived again, as the run of a `driver` replay records it.
    target: TargetSpec
    #: Rates the calls of a `calls` replay, which no driver played.
    rater: Callable[[], Driver]
    mode: Mode = "calls"
    latency_ratio: float = DEFAULT_LATENCY_RATIO
    driver: DriverReplay | None = None  # `driver` mode only
    label: str | None = None


async def replay_days(request: ReplayRequest, target: Target, store: Engine) -> list[TickReplay]:
    """Every day of `request` lived again on `target`, in order. A product that cannot be reached
    stops it all (ProductUnreachable); one that refuses a persona fails that persona's days only."""
    if request.mode == "driver":
        return await _by_driver(request, target, store)
    rebinders: dict[str, Rebinder] = {}
    replays = []
    for day in request.days:
        persona = request.personas[day.persona]
        try:
            replays.append(
                await replay_calls(
                    day,
                    Visitor(persona.email, derive_password(persona.email, request.secret), persona_headers(persona)),
                    persona.to_profile(),
                    target,
                    request.rater(),
                    rebinder=rebinders.setdefault(day.persona, Rebinder()),
                    latency_ratio=request.latency_ratio,
                )
            )
        except ProductUnreachable:
            raise
        except ProductError as exc:
            replays.append(TickReplay.of(day, "calls", target, problem=str(exc)))
    return replays


async def _by_driver(request: ReplayRequest, target: Target, store: Engine) -> list[TickReplay]:
    driver = request.driver
    assert driver is not None, "a driver replay names its driver"
    replayed = [day.tick_id for day in request.days]
    settings = RunSettings(
        target=request.target,
        driver=driver.name,
        model=driver.model,
        seed=request.days[0].seed if request.days else 0,
        max_turns=driver.max_turns,
        timeout=driver.timeout,
        label=request.label or f"replay of {replayed[0]}" + (f" and {len(replayed) - 1} more" if replayed[1:] else ""),
    )
    personas = list({day.persona: request.personas[day.persona] for day in request.days}.values())
    run = await begin_run(store, settings, personas, replay_of=replayed)
    replays: list[TickReplay] = []
    records: list[TickRecord] = []
    for number, day in enumerate(request.days, start=1):
        persona = request.personas[day.persona]
        replay, record = await replay_driver(
            day,
            persona,
            request.secret,
            target,
            store,
            run.run_id,
            driver.make(persona.to_profile()),
            max_turns=driver.max_turns,
            timeout=driver.timeout,
            number=number,
            latency_ratio=request.latency_ratio,
        )
        replays.append(replay)
        records.append(record)
    await end_run(store, run, RunResult(run_id=run.run_id, ticks=records), Stop())
    return replays
