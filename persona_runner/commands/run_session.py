"""One `run` against a product that is up: seed it, tick every persona once, show progress as it goes,
and stop in order on SIGTERM or SIGINT."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import date

import anyio
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from sqlalchemy.engine import Engine

from persona_runner.catalog import Catalog, PersonaSpec
from persona_runner.commands.options import store_from, user_errors_from
from persona_runner.commands.run_drivers import DriverChoice
from persona_runner.commands.run_output import StopNotice, err, print_stopped_before_the_run, print_tick_failure
from persona_runner.commands.run_target import Target, prepared_target, seed_target
from persona_runner.run.client import DEFAULT_TIMEOUT, ProductClient, ProductError
from persona_runner.run.recorder import RecordError, TickRecord
from persona_runner.run.runner import RAN_STATUSES, RunResult, RunSettings, execute_run
from persona_runner.run.stopping import Stop


@dataclass(frozen=True)
class RunPlan:
    """What the command line asked of the run; the product it runs against comes separately."""

    catalog: Catalog
    personas: list[PersonaSpec]
    secret: str
    drivers: DriverChoice
    db: str | None
    seed: int
    max_turns: int
    timeout: float
    concurrency: int
    label: str | None
    tick_date: date | None  # None: today, as `RunSettings` decides it
    repeat: int = 1
    injected: tuple[str, ...] = ()  # --fault and --delay of the embedded product

    def settings(self, target: str) -> RunSettings:
        return RunSettings(
            target=target,
            driver=self.drivers.name,
            model=self.drivers.model,
            seed=self.seed,
            max_turns=self.max_turns,
            timeout=self.timeout,
            concurrency=self.concurrency,
            label=self.label,
            repeat=self.repeat,
            injected=self.injected,
            cassette=str(self.drivers.cassette.path.resolve()) if self.drivers.cassette else None,
            **({"tick_date": self.tick_date} if self.tick_date else {}),
        )


#: What ticks the personas once the product is ready: `run`'s one pass, or a soak.
Ticking = Callable[[RunPlan, Target, Engine, Stop], Awaitable[RunResult]]


def execute_on_product(
    plan: RunPlan,
    *,
    target: str | None,
    admin_token: str | None,
    faults: list[str],
    delays: list[str],
    grace: float,
    ticking: Ticking | None = None,
) -> RunResult | None:
    """The plan executed on `target`, or on a fresh embedded product (see `prepared_target`).

    Signals are caught from before the embedded product starts until it is gone, so a stop at
    any point unwinds it; None (said on the terminal) when one came before the run began.
    """
    stop = Stop(grace)
    plan = replace(plan, injected=tuple(f"--fault {f}" for f in faults) + tuple(f"--delay {d}" for d in delays))
    with (
        stop.catching_signals(),
        user_errors_from(ProductError, RecordError),
        prepared_target(target, admin_token, faults, delays, plan.seed) as product,
    ):
        result = execute(plan, product, stop, ticking)
    if result is None:
        print_stopped_before_the_run(stop)
    return result


def execute(plan: RunPlan, target: Target, stop: Stop, ticking: Ticking | None = None) -> RunResult | None:
    """Check the target, open the store, seed, then tick (one pass unless `ticking` says otherwise):
    nothing is written before the product answered.

    Signals stop the run as `stop` says; one that comes before any tick started ends the
    preparation at once and the run is not begun (None), since there is nothing to keep.
    """
    return anyio.run(_execute, plan, target, stop, ticking or _tick)


async def _execute(plan: RunPlan, target: Target, stop: Stop, ticking: Ticking) -> RunResult | None:
    async with stop.watching_signals():
        store = None
        with stop.guard(grace=0):
            store = await _prepare(plan, target)
        if store is None or stop.requested:
            return None
        return await ticking(plan, target, store, stop)


async def _prepare(plan: RunPlan, target: Target) -> Engine:
    """The results store, once the target answered and holds the catalog's personas."""
    timeout = min(plan.timeout, DEFAULT_TIMEOUT)
    async with ProductClient(target.url, admin_token=target.admin_token, timeout=timeout) as client:
        await client.check()  # an unreachable target or a refused token is one line, before anything is written
        store = store_from(plan.db)
        await seed_target(target, client, plan.catalog, plan.secret, store)
    return store


async def _tick(plan: RunPlan, target: Target, store: Engine, stop: Stop) -> RunResult:
    """Every persona ticked once, a progress bar meanwhile."""
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        StopNotice(stop),
    )
    with Progress(*columns, console=err, transient=True) as progress:
        ticks = len(plan.personas) * plan.repeat
        days = f", {plan.repeat} days each" if plan.repeat > 1 else ""
        task = progress.add_task(f"ticking {len(plan.personas)} personas{days}", total=ticks)

        def done(record: TickRecord) -> None:
            progress.advance(task)
            if record.status not in RAN_STATUSES:
                print_tick_failure(record)

        return await execute_run(
            plan.settings(target.url),
            plan.personas,
            secret=plan.secret,
            store=store,
            make_driver=plan.drivers.new_driver,
            spaces=plan.catalog.spaces,
            should_stop=plan.drivers.budget_spent,
            on_tick=done,
            stop=stop,
        )
