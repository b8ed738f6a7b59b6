"""`persona-runner run`: seed the catalog into a product and tick every persona once."""

from __future__ import annotations

import secrets
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import date
from pathlib import Path
from statistics import mean
from typing import Annotated

import anyio
import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from persona_runner.commands.options import (
    AdminTokenOption,
    CatalogOption,
    DbOption,
    TargetOption,
    catalog_from,
    store_from,
    user_errors_from,
)
from persona_runner.commands.seed import print_module_warnings, print_seed_report
from persona_runner.commands.serve import DelayOption, FaultOption, build_product_app
from persona_runner.credentials import seed_secret
from persona_runner.domain import Driver, PersonaProfile
from persona_runner.drivers.budget import RunBudget
from persona_runner.drivers.cassette import Cassette
from persona_runner.drivers.factory import DRIVERS, check_keys, make_driver
from persona_runner.run.client import DEFAULT_TIMEOUT, ProductClient, ProductError
from persona_runner.run.recorder import RecordError, TickRecord
from persona_runner.run.runner import RAN_STATUSES, RunResult, RunSettings, execute_run
from persona_runner.run.seeding import seed_catalog
from persona_runner.store.db import describe, resolve_url
from persona_runner.util.errors import UserError
from tool_registry.server import BackgroundServer, ServerConfig

# Lines are never wrapped, so a reason or the next command stays whole when output goes to a log.
err = Console(stderr=True, soft_wrap=True)
out = Console(soft_wrap=True)


@contextmanager
def embedded_product(faults: list[str], delays: list[str], id_seed: int) -> Iterator[tuple[str, str]]:
    """A fresh reference product on a free loopback port, with a throwaway database and admin
    token, handing out ids seeded like the run so the same seed repeats the same calls."""
    admin_token = secrets.token_urlsafe(24)
    with tempfile.TemporaryDirectory(prefix="persona-product-") as tmp:
        config = ServerConfig(
            data=f"{tmp}/product.db", admin_token=admin_token, faults=faults, delays=delays, id_seed=id_seed
        )
        app = build_product_app(config)
        with BackgroundServer(app) as server:
            yield server.url, admin_token


def _parse_date(value: str | None) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise UserError(f"--date {value!r} is not an ISO date like 2026-11-22") from None


def _cassette(option: tuple[str, Path] | None) -> Cassette | None:
    if option is None:
        return None
    mode, path = option
    if mode == "record":
        return Cassette.record(path)
    if mode == "replay":
        return Cassette.replay(path)
    raise UserError(f"--cassette {mode!r}: the mode is record or replay, e.g. --cassette replay run.jsonl")


def run(
    target: TargetOption = None,
    admin_token: AdminTokenOption = None,
    persona: Annotated[
        list[str] | None, typer.Option("--persona", help="Only this persona (repeatable). Default: all.")
    ] = None,
    driver: Annotated[str, typer.Option(help=f"Who plays the personas: {', '.join(DRIVERS)}.")] = "scripted",
    model: Annotated[str | None, typer.Option(help="Model name for LLM drivers.")] = None,
    base_url: Annotated[
        str | None,
        typer.Option("--base-url", help="OpenAI-compatible server URL (openai driver); default $OPENAI_BASE_URL."),
    ] = None,
    seed: Annotated[
        int, typer.Option(help="Run seed: the same seed, personas and date give the same scripted day.")
    ] = 0,
    max_turns: Annotated[int, typer.Option(min=1, max=500, help="Most tool calls one persona makes in a tick.")] = 20,
    timeout: Annotated[float, typer.Option(min=1.0, help="Seconds one tick may take before it is cut off.")] = 120.0,
    concurrency: Annotated[int, typer.Option(min=1, max=256, help="Personas ticking at once.")] = 4,
    catalog: CatalogOption = None,
    label: Annotated[str | None, typer.Option(help="A name for this run, e.g. a build or commit.")] = None,
    db: DbOption = None,
    tick_date: Annotated[
        str | None, typer.Option("--date", help="The day the personas live through (ISO). Default: today, UTC.")
    ] = None,
    fault: FaultOption = None,
    delay: DelayOption = None,
    cassette: Annotated[
        tuple[str, Path] | None,
        typer.Option(
            help="record PATH: keep every model exchange; replay PATH: answer from it, no network.", show_default=False
        ),
    ] = None,
    max_tokens_per_tick: Annotated[
        int | None, typer.Option(min=1, help="LLM drivers: end a persona's day once it used this many tokens.")
    ] = None,
    max_tokens_per_run: Annotated[
        int | None, typer.Option(min=1, help="LLM drivers: start no new ticks once the run used this many tokens.")
    ] = None,
) -> None:
    """Tick every persona once against a product and print what they did and thought.

    With no --target, a fresh reference product is started on a free loopback
    port and seeded first. Exit 0 when every tick ran (product errors are
    findings), 1 when ticks failed, 2 on usage errors.

    Example: persona-runner run --persona maya --persona gremlin --seed 7
    """
    loaded = catalog_from(catalog)
    chosen = {p.name for p in loaded.select(persona or [])}
    personas = [p for p in loaded.personas if p.name in chosen]  # catalog order, whatever order --persona named them in
    secret = seed_secret()
    day = _parse_date(tick_date)
    if driver == "scripted" and (cassette or max_tokens_per_tick or max_tokens_per_run):
        raise UserError(
            "--cassette and --max-tokens-* apply to the LLM drivers (anthropic, openai); the scripted driver calls no model"
        )
    if target and (fault or delay):
        raise UserError(
            "--fault/--delay configure the embedded product; for an external --target pass them to its `serve`"
        )
    if not (cassette and cassette[0] == "replay"):
        check_keys(driver)  # before a recording cassette replaces anything on disk
    tape = _cassette(cassette)
    budget = RunBudget(max_tokens_per_run) if max_tokens_per_run else None

    def new_driver(_profile: PersonaProfile) -> Driver:
        return make_driver(
            driver,
            model=model,
            base_url=base_url,
            cassette=tape,
            max_tokens_per_tick=max_tokens_per_tick,
            run_budget=budget,
        )

    # A bad --driver, a missing --model or API key is one line here, before the store is touched or any tick starts.
    anyio.run(new_driver(personas[0].to_profile()).aclose)
    settings = RunSettings(
        target=target or "(embedded)",
        driver=driver,
        model=model,
        seed=seed,
        max_turns=max_turns,
        timeout=timeout,
        concurrency=concurrency,
        label=label,
        **({"tick_date": day} if day else {}),
    )

    async def go(url: str, token: str | None) -> RunResult:
        async with ProductClient(url, admin_token=token, timeout=min(timeout, DEFAULT_TIMEOUT)) as client:
            await client.check()  # an unreachable target or a refused token is one line, before anything is written
            store = store_from(db)
            report = await seed_catalog(loaded, client, secret, store) if token else None
        if report is not None:
            if target:
                print_seed_report(report, url)
            else:
                print_module_warnings(report)
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=err,
            transient=True,
        ) as progress:
            task = progress.add_task(f"ticking {len(personas)} personas", total=len(personas))

            def done(record: TickRecord) -> None:
                progress.advance(task)
                if record.status not in RAN_STATUSES:
                    err.print(f"[red]{escape(record.persona.name)}[/]: {record.status}: {escape(record.error or '')}")

            return await execute_run(
                replace(settings, target=url),
                personas,
                secret=secret,
                store=store,
                make_driver=new_driver,
                spaces=loaded.spaces,
                should_stop=lambda: budget.describe() if budget and budget.exhausted else None,
                on_tick=done,
            )

    with user_errors_from(ProductError, RecordError):
        if target:
            result = anyio.run(go, target, admin_token)
        else:
            with embedded_product(fault or [], delay or [], seed) as (url, token):
                result = anyio.run(go, url, token)
    print_run(result)
    if tape and tape.replaying and tape.drift:
        err.print(
            f"[yellow]replay:[/] {len(tape.drift)} tool result(s) differed from the recording; first: {escape(tape.drift[0])}"
        )
    out.print(
        f"results: {describe(resolve_url(db))} (run {result.run_id}); next: persona-runner report --run {result.run_id}"
    )
    if result.failed:
        raise typer.Exit(1)


def print_run(result: RunResult) -> None:
    table = Table(title=f"Run {result.run_id}", title_justify="left")
    for column, justify in (
        ("persona", "left"),
        ("status", "left"),
        ("calls", "right"),
        ("errors", "right"),
        ("modules", "left"),
        ("ratings", "left"),
    ):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for t in result.ticks:
        status = t.status if t.status == "ok" else f"[red]{t.status}[/]"
        ratings = " ".join(f"{r.module} {r.rating}" for r in t.ratings) or (t.error or "-")
        # Module names and errors come from the product: shown as text, never read as markup.
        table.add_row(
            escape(t.persona.name),
            status,
            str(len(t.calls)),
            str(t.errors),
            escape(", ".join(t.modules_used())),
            escape(ratings),
        )
    out.print(table)
    modules = sorted({call.module for t in result.ticks for call in t.calls})
    for module in modules:
        calls = [c for t in result.ticks for c in t.calls if c.module == module]
        ratings = [r.rating for t in result.ticks for r in t.ratings if r.module == module]
        error_rate = sum(1 for c in calls if c.product_error) / len(calls)
        rated = f"mean rating {mean(ratings):.1f} ({len(ratings)} ratings)" if ratings else "no ratings"
        out.print(f"  {escape(module):<10} {rated}, {len(calls)} calls, error rate {error_rate:.0%}")
    if result.stopped_early:
        err.print(f"[yellow]stopped early:[/] {escape(result.stopped_early)}")
