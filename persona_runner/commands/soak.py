"""`persona-runner soak`: keep ticking the personas as they fall due, for hours, as one run.

This module reads the command line and shows progress; `run.soak` schedules the ticks, and
the product, the seeding and the output are `run`'s (`run_target`, `run_session`, `run_output`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, time, timedelta
from typing import TYPE_CHECKING, Annotated

import typer
from rich.text import Text

from persona_runner.commands.options import (
    AdminTokenOption,
    BaseUrlOption,
    CatalogOption,
    ConcurrencyOption,
    DbOption,
    DriverOption,
    EveryOption,
    GraceOption,
    LabelOption,
    MaxTurnsOption,
    MetricsHostOption,
    MetricsPortOption,
    ModelOption,
    PersonaOption,
    SeedOption,
    TargetOption,
    TimeoutOption,
    interval_from,
)
from persona_runner.commands.target_options import (
    BearerEnvOption,
    EnvOption,
    HeaderOption,
    McpStdioOption,
    McpUrlOption,
    TargetChoice,
    TargetNameOption,
    chosen_target,
)
from persona_runner.credentials import seed_secret
from persona_runner.run.stopping import DEFAULT_GRACE, Stop
from persona_runner.util.errors import UserError

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from persona_runner.commands.run_session import RunPlan, Ticking
    from persona_runner.commands.run_target import Target
    from persona_runner.run.metrics import RunnerMetrics
    from persona_runner.run.runner import RunResult
    from persona_runner.run.soak import SoakStatus

#: How often the progress is said when stderr is not a terminal (a log keeps every line).
PLAIN_EVERY = 30.0


def soak(
    duration: Annotated[
        str | None,
        typer.Option(metavar="DURATION", help="How long to soak: 30m, 8h, 1d. Default: until SIGTERM or SIGINT."),
    ] = None,
    until: Annotated[
        str | None, typer.Option(metavar="HH:MM", help="Soak until this time of day, HH:MM UTC (the next one to come).")
    ] = None,
    every: EveryOption = None,
    concurrency: ConcurrencyOption = 4,
    target: TargetOption = None,
    mcp_url: McpUrlOption = None,
    header: HeaderOption = None,
    bearer_env: BearerEnvOption = None,
    mcp_stdio: McpStdioOption = None,
    env: EnvOption = None,
    target_name: TargetNameOption = None,
    admin_token: AdminTokenOption = None,
    label: LabelOption = None,
    db: DbOption = None,
    grace: GraceOption = DEFAULT_GRACE,
    metrics_port: MetricsPortOption = None,
    metrics_host: MetricsHostOption = "127.0.0.1",
    persona: PersonaOption = None,
    driver: DriverOption = "scripted",
    model: ModelOption = None,
    base_url: BaseUrlOption = None,
    seed: SeedOption = 0,
    max_turns: MaxTurnsOption = 20,
    timeout: TimeoutOption = 120.0,
    catalog: CatalogOption = None,
) -> None:
    """Tick each persona whenever it is due, for hours, as one run; progress on stderr.

    A persona is due by its catalog cadence, or every --every; it ticks as soon as one of
    --concurrency slots is free, never twice at once, and never beside a persona it shares a
    space with. The soak ends after --duration, at --until or on SIGTERM/SIGINT: no tick
    starts, ticks in flight get --grace to finish. Without --target, or with --target embedded,
    a fresh reference product is started and seeded. Exit 0 when every tick ran or a signal
    stopped the soak, 1 when ticks failed, 2 on usage errors. One soak is one run: `report
    --run` and `gate` read it. --metrics-port serves /metrics (Prometheus) and /health while
    the soak runs.

    Example: persona-runner soak --duration 8h --every 10m --target http://127.0.0.1:8765
    """
    from persona_runner.commands.run_drivers import lasting_drivers
    from persona_runner.commands.run_output import no_calls_made, print_outcome
    from persona_runner.commands.run_session import RunPlan, execute_on_product

    if duration and until:
        raise UserError("--duration and --until both say when the soak ends: give one")
    length, interval = interval_from(duration, "--duration"), interval_from(every, "--every")
    ends_by = _until(until, datetime.now(UTC))
    loaded, personas, drivers = lasting_drivers(catalog, persona, driver, model, base_url)
    choice = TargetChoice(target, mcp_url, header, bearer_env, mcp_stdio, env, target_name)
    reached = chosen_target(choice, loaded, admin_token=admin_token)
    plan = RunPlan(
        catalog=loaded,
        personas=personas,
        secret=seed_secret(),
        drivers=drivers,
        db=db,
        seed=seed,
        max_turns=max_turns,
        timeout=timeout,
        concurrency=concurrency,
        label=label,
        tick_date=None,
    )
    from persona_runner.run.metrics import RunnerMetrics, serving_metrics

    metrics = RunnerMetrics()
    with serving_metrics(metrics, metrics_port, metrics_host):
        result = execute_on_product(
            plan,
            target=reached,
            admin_token=admin_token,
            faults=[],
            delays=[],
            grace=grace,
            ticking=_soaking(length, ends_by, interval, metrics),
        )
    if result is None:
        return
    print_outcome(result, None, db, each_tick=False)
    idle = no_calls_made(result)
    if not result.stopped_by and (result.failed or idle):
        raise typer.Exit(1)


def _until(text: str | None, now: datetime) -> datetime | None:
    """The next moment (UTC) at the time of day `text` (HH:MM) says."""
    if text is None:
        return None
    try:
        clock = time.fromisoformat(text)
    except ValueError:
        raise UserError(f"--until {text!r} is not a time of day like 06:00 (UTC)") from None
    moment = datetime.combine(now.date(), clock.replace(tzinfo=UTC))
    return moment if moment > now else moment + timedelta(days=1)


def _soaking(
    duration: timedelta | None, until: datetime | None, every: timedelta | None, metrics: RunnerMetrics
) -> Ticking:
    """The soak's way of ticking the personas of a run plan, once the product is ready."""

    async def soaking(plan: RunPlan, target: Target, store: Engine, stop: Stop) -> RunResult:
        import anyio

        from persona_runner.commands.run_output import TickFailures
        from persona_runner.run.metrics import keep_beating
        from persona_runner.run.soak import SoakSettings, SoakStatus, execute_soak

        status = SoakStatus()
        with _progress(lambda: _status_line(status, stop)):
            async with anyio.create_task_group() as beside:
                beside.start_soon(keep_beating, metrics)
                result = await execute_soak(
                    SoakSettings(plan.settings(target.spec), duration, until, every),
                    plan.personas,
                    secret=plan.secret,
                    store=store,
                    make_driver=plan.drivers.new_driver,
                    spaces=plan.catalog.spaces,
                    stop=stop,
                    status=status,
                    on_tick=TickFailures(target.url, seeded=bool(target.admin_token)),
                    metrics=metrics,
                )
                beside.cancel_scope.cancel()
            return result

    return soaking


def _status_line(status: SoakStatus, stop: Stop) -> Text:
    from persona_runner.commands.run_output import soak_status_line, stop_notice

    line = Text(soak_status_line(status, datetime.now(UTC)))
    notice = stop_notice(stop)
    return Text.assemble(line, " · ", notice) if notice else line


@contextmanager
def _progress(line: Callable[[], Text]) -> Iterator[None]:
    """`line` kept live on a terminal; said every PLAIN_EVERY seconds to anything else, e.g. a log."""
    from rich.live import Live

    from persona_runner.commands.run_output import err

    if err.is_terminal:
        with Live(get_renderable=line, console=err, transient=True, refresh_per_second=2):
            yield
        return
    done = threading.Event()

    def say() -> None:
        while not done.wait(PLAIN_EVERY):
            err.print(line(), highlight=False)

    speaker = threading.Thread(target=say, name="soak progress", daemon=True)
    speaker.start()
    try:
        yield
    finally:
        done.set()
        speaker.join()
