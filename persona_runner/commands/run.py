"""`persona-runner run`: seed the catalog into a product and tick every persona once.

This module reads the command line; `run_target` prepares the product, `run_session` ticks
the personas against it and `run_output` prints what they did and thought.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Annotated

import typer

from persona_runner.catalog import Catalog, PersonaSpec
from persona_runner.commands.catalog_file import catalog_from
from persona_runner.commands.options import (
    AdminTokenOption,
    BaseUrlOption,
    CatalogOption,
    ConcurrencyOption,
    DbOption,
    DelayOption,
    DriverOption,
    FaultOption,
    GraceOption,
    LabelOption,
    MaxTurnsOption,
    ModelOption,
    PersonaOption,
    SeedOption,
    TargetOption,
    TimeoutOption,
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
from persona_runner.run.stopping import DEFAULT_GRACE
from persona_runner.util.errors import UserError


def run(
    target: TargetOption = None,
    mcp_url: McpUrlOption = None,
    header: HeaderOption = None,
    bearer_env: BearerEnvOption = None,
    mcp_stdio: McpStdioOption = None,
    env: EnvOption = None,
    target_name: TargetNameOption = None,
    admin_token: AdminTokenOption = None,
    persona: PersonaOption = None,
    driver: DriverOption = "scripted",
    model: ModelOption = None,
    base_url: BaseUrlOption = None,
    seed: SeedOption = 0,
    max_turns: MaxTurnsOption = 20,
    timeout: TimeoutOption = 120.0,
    concurrency: ConcurrencyOption = 4,
    catalog: CatalogOption = None,
    label: LabelOption = None,
    db: DbOption = None,
    tick_date: Annotated[
        str | None,
        typer.Option(
            "--date", metavar="YYYY-MM-DD", help="The day the personas live through (ISO). Default: today, UTC."
        ),
    ] = None,
    repeat: Annotated[
        int,
        typer.Option(
            min=1,
            max=365,
            metavar="K",
            help="Live K consecutive days from --date, one tick each: the calls a gate needs to judge "
            "(`gate` says how many).",
        ),
    ] = 1,
    fault: FaultOption = None,
    delay: DelayOption = None,
    cassette: Annotated[
        tuple[str, Path] | None,
        typer.Option(
            metavar="record|replay PATH",
            help="record PATH: keep every model exchange; replay PATH: answer from it, no network.",
            show_default=False,
        ),
    ] = None,
    max_tokens_per_tick: Annotated[
        int | None,
        typer.Option(min=1, metavar="N", help="LLM drivers: end a persona's day once it used this many tokens."),
    ] = None,
    max_tokens_per_run: Annotated[
        int | None,
        typer.Option(min=1, metavar="N", help="LLM drivers: start no new ticks once the run used this many tokens."),
    ] = None,
    grace: GraceOption = DEFAULT_GRACE,
) -> None:
    """Tick every persona once against a product and print what they did and thought.

    With no --target (or --target embedded), a fresh reference product is started on a free loopback
    port and seeded first. Exit 0 when every tick ran (product errors are
    findings) or a signal stopped the run, 1 when ticks failed, 2 on usage errors.
    SIGTERM or SIGINT starts no new tick and gives ticks in flight --grace to
    finish; a second signal aborts them at once.

    --repeat K lives K consecutive days from --date per persona, each a tick of its own.

    Example: persona-runner run --persona maya --persona gremlin --seed 7
    """
    from persona_runner.commands.run_drivers import choose_driver
    from persona_runner.commands.run_output import no_calls_made, print_outcome
    from persona_runner.commands.run_session import RunPlan, execute_on_product

    loaded = catalog_from(catalog)
    personas = _chosen(loaded, persona or [])
    secret = seed_secret()
    day = _parse_date(tick_date)
    if driver == "scripted" and (cassette or max_tokens_per_tick or max_tokens_per_run):
        raise UserError(
            "--cassette and --max-tokens-* apply to the LLM drivers (anthropic, openai); "
            "the scripted driver calls no model"
        )
    reached = chosen_target(
        TargetChoice(target, mcp_url, header, bearer_env, mcp_stdio, env, target_name),
        loaded,
        admin_token=admin_token,
        product_flags=bool(fault or delay),
    )
    drivers = choose_driver(
        driver,
        model=model,
        base_url=base_url,
        cassette=cassette,
        max_tokens_per_tick=max_tokens_per_tick,
        max_tokens_per_run=max_tokens_per_run,
        sample=personas[0].to_profile(),
    )
    plan = RunPlan(
        catalog=loaded,
        personas=personas,
        secret=secret,
        drivers=drivers,
        db=db,
        seed=seed,
        max_turns=max_turns,
        timeout=timeout,
        concurrency=concurrency,
        label=label,
        tick_date=day,
        repeat=repeat,
    )
    result = execute_on_product(
        plan, target=reached, admin_token=admin_token, faults=fault or [], delays=delay or [], grace=grace
    )
    if result is None:
        return
    print_outcome(result, drivers.cassette, db)
    idle = no_calls_made(result)
    if not result.stopped_by and (result.failed or idle):
        raise typer.Exit(1)


def _chosen(catalog: Catalog, names: list[str]) -> list[PersonaSpec]:
    """The personas named (all when none is), in catalog order whatever order --persona named them in."""
    chosen = {p.name for p in catalog.select(names)}
    return [p for p in catalog.personas if p.name in chosen]


def _parse_date(value: str | None) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise UserError(f"--date {value!r} is not an ISO date like 2026-11-22") from None
