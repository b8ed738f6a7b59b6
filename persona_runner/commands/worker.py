"""`persona-runner worker`: tick personas from the job queue in PostgreSQL, beside any number of other workers.

This module reads the command line and sets up logging, signals and metrics; `run.worker`
plays the jobs and `run.queue` holds the queue's names and tables.
"""

from __future__ import annotations

import logging

from persona_runner.commands.options import (
    BaseUrlOption,
    CatalogOption,
    ConcurrencyOption,
    DbOption,
    DriverOption,
    EveryOption,
    FleetLabelOption,
    GraceOption,
    MaxTurnsOption,
    MetricsHostOption,
    MetricsPortOption,
    ModelOption,
    PersonaOption,
    RunningTargetOption,
    SeedOption,
    StalledAfterOption,
    TimeoutOption,
    interval_from,
    queue_store_from,
    user_errors_from,
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


def worker(
    target: RunningTargetOption = None,
    mcp_url: McpUrlOption = None,
    header: HeaderOption = None,
    bearer_env: BearerEnvOption = None,
    mcp_stdio: McpStdioOption = None,
    env: EnvOption = None,
    target_name: TargetNameOption = None,
    db: DbOption = None,
    concurrency: ConcurrencyOption = 4,
    label: FleetLabelOption = None,
    every: EveryOption = None,
    grace: GraceOption = DEFAULT_GRACE,
    metrics_port: MetricsPortOption = None,
    metrics_host: MetricsHostOption = "127.0.0.1",
    stalled_after: StalledAfterOption = 30.0,
    persona: PersonaOption = None,
    driver: DriverOption = "scripted",
    model: ModelOption = None,
    base_url: BaseUrlOption = None,
    seed: SeedOption = 0,
    max_turns: MaxTurnsOption = 20,
    timeout: TimeoutOption = 120.0,
    catalog: CatalogOption = None,
) -> None:
    """Tick personas from the job queue in PostgreSQL, --concurrency at a time, until SIGTERM or SIGINT.

    Run as many workers as you like, on any machines, with the same --db, --label and
    catalog: every 10 s they queue each persona that is due (by its cadence, or every
    --every), and each due persona ticks once, on one worker, never twice at once. A worker
    killed outright has its tick marked interrupted and its persona ticked by another.
    The product must be up and seeded (`persona-runner seed`). On SIGTERM no job is
    taken any more and ticks in flight get --grace to finish. Logs go to stderr;
    --metrics-port serves /metrics (Prometheus) and /health.

    Example: persona-runner worker --db postgresql+psycopg://runner@db/personas --target http://staging:8765
    """
    from persona_runner.commands.run_drivers import lasting_drivers
    from persona_runner.run.metrics import RunnerMetrics, serving_metrics
    from persona_runner.run.recorder import RecordError
    from persona_runner.run.runner import RunSettings
    from persona_runner.run.worker import WorkerSettings
    from persona_runner.targets.errors import ProductError
    from persona_runner.targets.open import build_target

    loaded, personas, drivers = lasting_drivers(catalog, persona, driver, model, base_url)
    reached = chosen_target(TargetChoice(target, mcp_url, header, bearer_env, mcp_stdio, env, target_name), loaded)
    if reached is None:
        raise UserError(
            "worker needs a target that is already up: --target URL for a seeded persona product (see "
            "`persona-runner serve` and `persona-runner seed`), or --mcp-url, --mcp-stdio or --target-name"
        )
    url, store = queue_store_from(db)
    settings = WorkerSettings(
        run=RunSettings(
            target=reached,
            modules=loaded.modules,
            driver=drivers.name,
            model=drivers.model,
            seed=seed,
            max_turns=max_turns,
            timeout=timeout,
            concurrency=concurrency,
            label=label,
        ),
        every=interval_from(every, "--every"),
        stalled_after=stalled_after,
    )
    _log_to_stderr()
    stop, metrics = Stop(grace), RunnerMetrics()
    with (
        stop.catching_signals(),
        user_errors_from(ProductError, RecordError),
        serving_metrics(metrics, metrics_port, metrics_host) as port,
    ):
        import anyio

        from persona_runner.run.worker import run_worker

        async def work() -> None:
            async with stop.watching_signals():
                async with build_target(reached, timeout=min(timeout, 30.0)) as checked:
                    await checked.check()  # a wrong target is one line, before the worker joins the queue
                await run_worker(
                    settings,
                    personas,
                    secret=seed_secret(),
                    store=store,
                    store_url=url,
                    make_driver=drivers.new_driver,
                    stop=stop,
                    metrics=metrics,
                    on_ready=lambda run: _say_ready(run.run_id, len(personas), concurrency, reached.address, port),
                )

        anyio.run(work)
    logging.getLogger("persona_runner.run.worker").info(
        "worker stopped%s", f" by {stop.signal_name}" if stop.signal_name else ""
    )


def _log_to_stderr() -> None:
    """One line per tick and per event, with the time: what an operator reads in a journal or `kubectl logs`.
    The libraries' own logs (every job taken, every HTTP request) stay quiet unless they warn."""
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(message)s")
    logging.getLogger("persona_runner").setLevel(logging.INFO)


def _say_ready(run_id: str, personas: int, concurrency: int, target: str, port: int | None) -> None:
    metrics = f"; metrics on port {port}" if port else ""
    logging.getLogger("persona_runner.run.worker").info(
        "worker ready: run %s, %d personas, %d at a time, target %s%s", run_id, personas, concurrency, target, metrics
    )
