"""One `run` against a product that is up: seed it, tick every persona once, show progress as it goes,
and stop in order on SIGTERM or SIGINT."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import date

import anyio
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from sqlalchemy.engine import Engine

from persona_runner.catalog import Catalog, PersonaSpec
from persona_runner.commands.options import store_from, user_errors_from
from persona_runner.commands.run_drivers import DriverChoice
from persona_runner.commands.run_output import StopNotice, TickFailures, err, print_stopped_before_the_run
from persona_runner.commands.run_target import Target, prepared_target, seed_target
from persona_runner.credentials import derive_password
from persona_runner.run.recorder import RecordError, TickRecord
from persona_runner.run.runner import RunResult, RunSettings, execute_run
from persona_runner.run.stopping import Stop
from persona_runner.run.survey import idle_warning, survey
from persona_runner.run.tick import persona_headers
from persona_runner.targets.base import Visitor
from persona_runner.targets.errors import ProductError
from persona_runner.targets.open import build_target
from persona_runner.targets.product import DEFAULT_TIMEOUT, ProductClient
from persona_runner.targets.spec import TargetSpec
from persona_runner.util.text import counted


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

    def settings(self, target: TargetSpec) -> RunSettings:
        return RunSettings(
            target=target,
            modules=self.catalog.modules,
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
    target: TargetSpec | None,
    admin_token: str | None,
    faults: list[str],
    delays: list[str],
    grace: float,
    ticking: Ticking | None = None,
) -> RunResult | None:
    """The plan executed on `target`, or (None) on a fresh embedded product (see `prepared_target`).

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
    """The results store, once the target answered (a product: and holds the catalog's personas; any other
    server: said up front when a persona will find nothing of its modules there)."""
    timeout = min(plan.timeout, DEFAULT_TIMEOUT)
    reaching = build_target(target.spec, timeout=timeout, admin_token=target.admin_token, modules=plan.catalog.modules)
    async with reaching as reached:
        await reached.check()  # an unreachable target or a refused token is one line, before anything is written
        store = store_from(plan.db)
        if isinstance(reached, ProductClient):
            await seed_target(target, reached, plan.catalog, plan.secret, store)
        else:
            first = plan.personas[0]
            visitor = Visitor(first.email, derive_password(first.email, plan.secret), persona_headers(first))
            warning = idle_warning(await survey(reached, plan.catalog, plan.personas, visitor))
            if warning:
                err.print(escape(warning))
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
        task = progress.add_task(f"ticking {counted(len(plan.personas), 'persona')}{days}", total=ticks)
        failures = TickFailures(target.url, seeded=bool(target.admin_token))

        def done(record: TickRecord) -> None:
            progress.advance(task)
            failures(record)

        return await execute_run(
            plan.settings(target.spec),
            plan.personas,
            secret=plan.secret,
            store=store,
            make_driver=plan.drivers.new_driver,
            spaces=plan.catalog.spaces,
            should_stop=plan.drivers.budget_spent,
            on_tick=done,
            stop=stop,
        )
