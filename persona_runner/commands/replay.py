"""`persona-runner replay`: live a recorded day again on a product and say what changed, call by call."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import anyio
import typer
from sqlalchemy.engine import Engine
from sqlmodel import Session

from persona_runner.catalog import Catalog, PersonaSpec
from persona_runner.commands.atomic_files import write_atomic
from persona_runner.commands.catalog_file import catalog_from
from persona_runner.commands.options import (
    AdminTokenOption,
    BaseUrlOption,
    CatalogOption,
    DbOption,
    DelayOption,
    FaultOption,
    OutOption,
    TargetOption,
    store_from,
    user_errors_from,
)
from persona_runner.commands.replay_output import (
    ReplayReport,
    render_replay_json,
    render_replay_markdown,
    summary_line,
)
from persona_runner.commands.run_drivers import choose_driver
from persona_runner.commands.run_target import prepared_target, seed_target
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
from persona_runner.domain import PersonaProfile
from persona_runner.drivers.scripted import ScriptedDriver
from persona_runner.run.recorder import RecordError
from persona_runner.run.replay import DEFAULT_LATENCY_RATIO
from persona_runner.run.replay_days import DriverReplay, ReplayRequest, replay_days
from persona_runner.store.models import Run
from persona_runner.store.recorded import RecordedDay, load_day, ticks_of_run
from persona_runner.targets.errors import ProductError
from persona_runner.targets.open import build_target
from persona_runner.targets.product import ProductClient
from persona_runner.util.errors import UserError

#: Calls a `driver` replay may make beyond the recorded day's, when the run did not record its limit.
DEFAULT_MAX_TURNS = 20
DEFAULT_TIMEOUT = 120.0


class ReplayMode(StrEnum):
    calls = "calls"
    driver = "driver"


class ReplayFormat(StrEnum):
    md = "md"
    json = "json"


def replay(
    tick_id: Annotated[
        str | None, typer.Argument(metavar="[TICK_ID]", help="The tick to replay (see `persona-runner ticks list`).")
    ] = None,
    run_id: Annotated[
        str | None,
        typer.Option("--run", metavar="RUN_ID", help="Replay every tick of this run instead.", show_default=False),
    ] = None,
    persona: Annotated[
        str | None,
        typer.Option("--persona", metavar="NAME", help="With --run: only this persona's ticks.", show_default=False),
    ] = None,
    mode: Annotated[
        ReplayMode,
        typer.Option(
            "--mode",
            help="calls: send the recorded calls again, ids rebound. "
            "driver: let the persona's driver play the day again and compare.",
        ),
    ] = ReplayMode.calls,
    target: TargetOption = None,
    mcp_url: McpUrlOption = None,
    header: HeaderOption = None,
    bearer_env: BearerEnvOption = None,
    mcp_stdio: McpStdioOption = None,
    env: EnvOption = None,
    target_name: TargetNameOption = None,
    admin_token: AdminTokenOption = None,
    fault: FaultOption = None,
    delay: DelayOption = None,
    driver: Annotated[
        str | None,
        typer.Option(
            "--driver",
            metavar="NAME",
            help="--mode driver: play live with this driver (scripted, anthropic, openai). "
            "Default: the tick's own, from its run's cassette when it is an LLM.",
            show_default=False,
        ),
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(
            "--model", metavar="MODEL", help="--mode driver: the model. Default: the tick's.", show_default=False
        ),
    ] = None,
    base_url: BaseUrlOption = None,
    cassette: Annotated[
        Path | None,
        typer.Option(
            "--cassette",
            metavar="PATH",
            help="--mode driver: the model's answers to replay. Default: the cassette the run recorded.",
            show_default=False,
        ),
    ] = None,
    latency_ratio: Annotated[
        float,
        typer.Option(
            "--latency-ratio",
            min=1.0,
            metavar="FACTOR",
            help="Report a call as slower or faster when its latency moved by this factor (and took 50 ms or more).",
        ),
    ] = DEFAULT_LATENCY_RATIO,
    output_format: Annotated[
        ReplayFormat, typer.Option("--format", help="md (readable, fits a PR comment) or json (every field).")
    ] = ReplayFormat.md,
    out: OutOption = None,
    catalog: CatalogOption = None,
    db: DbOption = None,
) -> int:
    """Live a recorded day again on a product (default: a fresh embedded one) and compare, call by call.

    The target flags are those of `run` (--target, --mcp-url, --mcp-stdio, --target-name).
    Exit 0 when every call's outcome is as recorded, 1 when one changed (or the product could
    not be used), 2 on a usage error.

    Example: persona-runner replay 20261120-041249-b306a8:yuki:2026-11-20 --target http://127.0.0.1:8765
    """
    loaded = catalog_from(catalog)
    choice = TargetChoice(target, mcp_url, header, bearer_env, mcp_stdio, env, target_name)
    reached = chosen_target(choice, loaded, admin_token=admin_token, product_flags=bool(fault or delay))
    store = store_from(db, create=False)
    days = _days(store, tick_id, run_id, persona)
    personas = _personas(loaded, days)
    run = _run_of(store, days[0].run_id)
    sample = personas[days[0].persona].to_profile()
    secret = seed_secret()
    replayer = _driver(days, run, sample, driver, model, base_url, cassette) if mode is ReplayMode.driver else None
    # A calls replay rebinds ids, so its product hands out its own; a driver replay meets the ids of the run it
    # repeats, when that run's product was the embedded one, seeded with the run's seed.
    id_seed = run.seed if mode is ReplayMode.driver else None
    with (
        user_errors_from(ProductError, RecordError),
        prepared_target(reached, admin_token, fault or [], delay or [], id_seed) as product,
    ):
        request = ReplayRequest(
            days=days,
            personas=personas,
            secret=secret,
            target=product.spec,
            rater=ScriptedDriver,
            mode=mode.value,
            latency_ratio=latency_ratio,
            driver=replayer,
        )

        async def go() -> ReplayReport:
            reaching = build_target(product.spec, admin_token=product.admin_token, modules=loaded.modules)
            async with reaching as reachable:
                await reachable.check()
                if isinstance(reachable, ProductClient):
                    # The whole catalog, as `run` seeds it: the shared spaces, and ids handed out in the same order.
                    await seed_target(product, reachable, loaded, request.secret, store)
                ticks = await replay_days(request, reachable, store)
            return ReplayReport(mode=request.mode, target=product.url, ticks=ticks)

        report = anyio.run(go)
    text = render_replay_json(report) if output_format is ReplayFormat.json else render_replay_markdown(report)
    if out is None:
        typer.echo(text, nl=False)
    else:
        write_atomic(out, text)
        typer.echo(f"wrote {out}: {summary_line(report)}")
    return 1 if report.changed else 0


def _days(store: Engine, tick_id: str | None, run_id: str | None, persona: str | None) -> list[RecordedDay]:
    """The recorded days to replay, each with the transcript a replay needs."""
    if (tick_id is None) == (run_id is None):
        raise UserError("name one tick (TICK_ID) or one run (--run RUN_ID) to replay; see `persona-runner ticks list`")
    if persona and not run_id:
        raise UserError("--persona narrows a --run; a TICK_ID is one persona's already")
    if tick_id is not None:
        day = load_day(store, tick_id)
        if day is None:
            raise UserError(f"no tick {tick_id!r} in the results store; `persona-runner ticks list` shows the ticks")
        if not day.replayable:
            raise UserError(
                f"tick {tick_id} has no transcript (its process ended before the tick's end was written): "
                f"its calls' arguments were not kept; `persona-runner ticks show {tick_id}` shows what is known"
            )
        return [day]
    assert run_id is not None
    ids = ticks_of_run(store, run_id, persona)
    if not ids:
        whose = f" of persona {persona!r}" if persona else ""
        raise UserError(f"no ticks{whose} in run {run_id!r}; `persona-runner runs list` shows the runs")
    days = [day for day in (load_day(store, tick) for tick in ids) if day is not None and day.replayable]
    if not days:
        raise UserError(f"no tick of run {run_id} has a transcript to replay (their processes ended first)")
    return days


def _personas(catalog: Catalog, days: list[RecordedDay]) -> dict[str, PersonaSpec]:
    """The catalog entry of each persona of `days`: its email is how it logs in."""
    known = {p.name: p for p in catalog.personas}
    missing = sorted({day.persona for day in days} - set(known))
    if missing:
        raise UserError(
            f"persona {', '.join(missing)} is not in the catalog: replay logs in as the persona, "
            "so pass the catalog the run used with --catalog"
        )
    return {day.persona: known[day.persona] for day in days}


def _run_of(store: Engine, run_id: str) -> Run:
    with Session(store) as session:
        run = session.get(Run, run_id)
    if run is None:
        raise UserError(f"run {run_id} of the tick is not in the results store")
    return run


def _driver(
    days: list[RecordedDay],
    run: Run,
    sample: PersonaProfile,
    name: str | None,
    model: str | None,
    base_url: str | None,
    cassette: Path | None,
) -> DriverReplay:
    """Who plays the days again: --driver live, else the ticks' own driver (an LLM from its cassette)."""
    recorded = days[0]
    chosen = name or recorded.driver
    recorded_cassette = run.config.get("cassette")
    tape = cassette or (Path(recorded_cassette) if recorded_cassette and not name else None)
    if chosen != "scripted" and tape is None and name is None:
        raise UserError(
            f"tick {recorded.tick_id} was played by {recorded.driver} and its run recorded no cassette: "
            f"replay the model's answers with --cassette PATH, or play live with --driver {recorded.driver} --model M"
        )
    choice = choose_driver(
        chosen,
        model=model or (recorded.model if chosen == recorded.driver else None),
        base_url=base_url,
        cassette=("replay", tape) if tape is not None and chosen != "scripted" else None,
        max_tokens_per_tick=None,
        max_tokens_per_run=None,
        sample=sample,
    )
    recorded_turns = max(len(day.calls) for day in days)
    return DriverReplay(
        name=choice.name,
        model=choice.model,
        make=choice.new_driver,
        max_turns=max(int(run.config.get("max_turns") or DEFAULT_MAX_TURNS), recorded_turns),
        timeout=float(run.config.get("timeout") or DEFAULT_TIMEOUT),
    )
