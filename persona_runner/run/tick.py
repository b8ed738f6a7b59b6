"""One tick of one persona, start to persisted rows.

    tick row `running` -> login -> spaces -> MCP session -> tools/list
          -> driver.play (<= max_turns calls, each streamed to the store)
          -> driver.rate -> one transaction with the end of it

Whatever goes wrong (refused login, dead gateway, a tool that hangs past the
tick's timeout, a driver that fails, a store that stays unavailable) becomes
this tick's status and reason; the calls made before it are still recorded,
and other personas carry on. A run stopped in the middle of a tick (Ctrl-C)
records that tick as `aborted` with the calls it made.
"""

from __future__ import annotations

import contextlib
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import date
from typing import Any

import anyio
import httpx2
from sqlalchemy.engine import Engine

from persona_runner.catalog import PersonaSpec
from persona_runner.credentials import derive_password
from persona_runner.domain import (
    CallOutcome,
    Day,
    Driver,
    MindError,
    PersonaProfile,
    SpaceInfo,
    ToolInfo,
    TurnLimitReached,
    Verdict,
)
from persona_runner.run.live_tick import LiveTick
from persona_runner.run.recorder import RecordedCall, RecordError, TickRecord
from persona_runner.run.stopping import Stop
from persona_runner.store.models import utcnow
from persona_runner.targets.base import Target, Visitor
from persona_runner.targets.errors import ERROR_LIMIT, GatewayLost, ProductError, root_cause
from persona_runner.targets.mcp import McpSession
from persona_runner.targets.product import personal_space
from persona_runner.targets.spec import resolve_headers
from persona_runner.util.text import truncate

logger = logging.getLogger("persona_runner.run.tick")
SHARED_SPACE_SHARE = 0.3
#: The tick-wide guard fires this much after the per-call deadline, so a hanging
#: call is always cut off (and recorded) by `act` first.
GUARD_GRACE_SECONDS = 1.0


@dataclass(frozen=True)
class TickPlan:
    run_id: str
    persona: PersonaProfile
    cadence: str
    password: str
    tick_date: date
    seed: int
    max_turns: int
    timeout: float
    #: Counts the persona's ticks in a run that ticks it more than once (a soak, workers), from 1, and ends
    #: the tick's id, which would otherwise be the same for each of its ticks on one day.
    number: int | None = None
    slot: str | None = None  # the due slot a worker plays (see `Tick.slot`)
    #: Sent with the persona's MCP requests, beside the target's own (`headers` in its catalog entry).
    headers: tuple[tuple[str, str], ...] = ()

    @classmethod
    def for_persona(
        cls,
        persona: PersonaSpec,
        *,
        run_id: str,
        secret: str,
        tick_date: date,
        seed: int,
        max_turns: int,
        timeout: float,
        number: int | None = None,
        slot: str | None = None,
    ) -> TickPlan:
        """The plan of `persona`'s day: its password derived from `secret`, its headers' variables read now."""
        return cls(
            run_id=run_id,
            persona=persona.to_profile(),
            cadence=persona.tick_cadence,
            password=derive_password(persona.email, secret),
            tick_date=tick_date,
            seed=seed,
            max_turns=max_turns,
            timeout=timeout,
            number=number,
            slot=slot,
            headers=tuple(persona_headers(persona).items()),
        )

    @property
    def visitor(self) -> Visitor:
        return Visitor(self.persona.email, self.password, dict(self.headers))

    @property
    def tick_id(self) -> str:
        base = f"{self.run_id}:{self.persona.name}:{self.tick_date.isoformat()}"
        return base if self.number is None else f"{base}:{self.number}"


def choose_space(plan: TickPlan, spaces: list[SpaceInfo]) -> SpaceInfo:
    """The personal space most days; a shared space on some, chosen by the seed so replays agree."""
    shared = [s for s in spaces if s.type != "personal"]
    rng = random.Random(f"space:{plan.seed}:{plan.persona.name}:{plan.tick_date.isoformat()}")
    if shared and rng.random() < SHARED_SPACE_SHARE:
        return rng.choice(shared)
    return personal_space(spaces)


def persona_headers(persona: PersonaSpec) -> dict[str, str]:
    """The persona's own headers, their `${VAR}`s read from the environment (one line when one is not set)."""
    return resolve_headers(persona.headers, f"persona {persona.name}")


class TickTimeout(Exception):
    pass


class NothingToUse(ProductError):
    """None of the tools the target offers belongs to a module the persona uses."""


class _Recorder:
    """Implements the driver's `act`: every call is timed, bounded by the tick's deadline and recorded."""

    def __init__(self, live: LiveTick, mcp: McpSession, day: Day, deadline: float, timeout: float) -> None:
        self.live = live
        self.record = live.record
        self.mcp = mcp
        self.day = day
        self.deadline = deadline
        self.timeout = timeout

    async def act(self, tool: str, arguments: dict[str, Any], *, probe: bool = False) -> CallOutcome:
        if len(self.record.calls) >= self.day.max_turns:
            raise TurnLimitReached(f"the day is over: {self.day.max_turns} calls made")
        arguments = dict(arguments)
        started = time.perf_counter()
        remaining = self.deadline - time.monotonic()
        try:
            with anyio.fail_after(max(remaining, 0.0)):
                outcome = await self.mcp.call_tool(tool, arguments)
        except TimeoutError:
            message = f"no answer before the tick's timeout of {self.timeout:g} s"
            self._add(
                CallOutcome(
                    tool=tool,
                    arguments=arguments,
                    outcome="error",
                    latency_ms=(time.perf_counter() - started) * 1000,
                    error=message,
                    probe=probe,
                )
            )
            raise TickTimeout(f"tick exceeded its timeout of {self.timeout:g} s while waiting for {tool}") from None
        except BaseException as exc:
            # Cut off under us (the session died, or the run is being stopped): keep the call on record, then let it go.
            reason = (
                str(exc)
                if isinstance(exc, GatewayLost)
                else "no answer: cut off while waiting (the MCP session broke or the run was stopped)"
            )
            self._add(
                CallOutcome(
                    tool=tool,
                    arguments=arguments,
                    outcome="error",
                    latency_ms=(time.perf_counter() - started) * 1000,
                    error=truncate(reason, ERROR_LIMIT),
                    probe=probe,
                )
            )
            raise
        outcome = replace(outcome, probe=probe)
        self._add(outcome)
        return outcome

    def _add(self, outcome: CallOutcome) -> None:
        self.live.add(
            RecordedCall(
                seq=len(self.record.calls), module=self.day.module_of(outcome.tool), outcome=outcome, at=utcnow()
            )
        )


def _classify(exc: BaseException, plan: TickPlan, calls: int) -> tuple[str, str]:
    """The tick's status and one-line reason for what stopped it."""
    if isinstance(exc, TickTimeout):
        return "timeout", str(exc)
    if isinstance(exc, TimeoutError):
        return "timeout", f"tick exceeded its timeout of {plan.timeout:g} s after {calls} calls"
    if isinstance(exc, ProductError | MindError | RecordError):
        return "failed", str(exc)
    if isinstance(exc, httpx2.TransportError):
        return "failed", truncate(
            f"the product stopped answering after {calls} calls: {type(exc).__name__}: {exc}", ERROR_LIMIT
        )
    logger.error("tick %s failed", plan.tick_id, exc_info=exc)
    return "failed", truncate(f"{type(exc).__name__}: {exc}", ERROR_LIMIT)


async def run_tick(
    plan: TickPlan,
    *,
    target: Target,
    driver: Driver,
    store: Engine,
    stop: Stop | None = None,
    cut_off: Callable[[TickRecord], None] = lambda _record: None,
) -> TickRecord:
    """Play one persona's day against the product and record it.

    Never raises for a product, driver or store failure: each becomes the tick's status and reason
    (a store that would not take the tick also sets `store_error`). The tick is on record as
    `running` before the persona logs in, and its calls as they are made. Being cancelled (the run
    is stopped) writes the day so far as `aborted` within `stop`'s recording limit, hands that record
    to `cut_off` (the caller gets none back), then lets the cancellation go on.
    """
    stop = stop or Stop()
    record = TickRecord(
        tick_id=plan.tick_id,
        run_id=plan.run_id,
        persona=plan.persona,
        persona_id=None,
        tick_date=plan.tick_date.isoformat(),
        seed=plan.seed,
        driver=driver.name,
        model=driver.model,
        slot=plan.slot,
    )
    transcript: dict[str, Any] = {
        "tick_id": plan.tick_id,
        "persona": plan.persona.name,
        "tick_date": record.tick_date,
        "seed": plan.seed,
        "driver": driver.name,
        "model": driver.model,
    }
    live = LiveTick(store, record, plan.cadence)
    verdict: Verdict | None = None
    try:
        await live.open()
        deadline = time.monotonic() + plan.timeout
        with anyio.fail_after(plan.timeout + GUARD_GRACE_SECONDS):
            verdict = await _play_day(plan, target, driver, live, transcript, deadline)
    except anyio.get_cancelled_exc_class():
        record.status, record.error = (
            "aborted",
            f"the run was stopped during this tick, after {len(record.calls)} calls",
        )
        # Shielded, so the cut does not stop the write; bounded, so a store that does not answer cannot hold
        # the stop: the tick then stays `running`, its calls streamed so far kept, until it is reaped.
        with stop.recording():
            await _finish(driver, live, transcript, None)
        cut_off(record)
        raise
    except Exception as raised:
        record.status, record.error = _classify(root_cause(raised), plan, len(record.calls))
    await _finish(driver, live, transcript, verdict)
    return record


async def _finish(driver: Driver, live: LiveTick, transcript: dict[str, Any], verdict: Verdict | None) -> None:
    """Release the driver and write the end of the tick: its verdict (when the day reached one), transcript and rows."""
    record = live.record
    await driver.aclose()
    if verdict is not None and record.status == "running":
        record.status = verdict.status
        record.ratings = verdict.ratings
        transcript["verdict"] = {"status": verdict.status, "flags": verdict.flags, "raw_answer": verdict.raw_answer}
    record.ended_at = utcnow()
    record.tokens_in, record.tokens_out = driver.usage.tokens_in, driver.usage.tokens_out
    transcript.update(
        calls=[call.transcript_entry() for call in record.calls],
        ratings=[{"module": r.module, "rating": r.rating, "notes": r.notes} for r in record.ratings],
        surprises=list(driver.surprises),
        exchanges=list(driver.exchanges),
        status=record.status,
        error=record.error,
    )
    record.transcript = transcript
    try:
        await live.close()
    except RecordError as exc:
        # The day happened but could not be written: this tick fails, the others carry on.
        record.status, record.error = "failed", str(exc)


async def _play_day(
    plan: TickPlan,
    target: Target,
    driver: Driver,
    live: LiveTick,
    transcript: dict[str, Any],
    deadline: float,
) -> Verdict:
    record = live.record
    async with target.visit(plan.visitor, lambda spaces: choose_space(plan, spaces)) as visit:
        record.persona_id = visit.persona_id
        if visit.space is not None:
            transcript["space"] = {"id": visit.space.id, "name": visit.space.name, "type": visit.space.type}
        transcript["spaces"] = [{"id": s.id, "name": s.name, "type": s.type, "role": s.role} for s in visit.spaces]
        transcript["tools_offered"] = [tool.name for tool in visit.tools]
        _require_a_tool_to_use(plan, visit.tools)
        day = Day(
            persona=plan.persona,
            tick_date=plan.tick_date,
            seed=plan.seed,
            spaces=visit.spaces,
            tools=visit.tools,
            max_turns=plan.max_turns,
            tick_id=plan.tick_id,
            deadline=deadline,
        )
        recorder = _Recorder(live, visit.mcp, day, deadline, plan.timeout)
        with contextlib.suppress(TurnLimitReached):
            await driver.play(day, recorder.act)
        history = [call.outcome for call in record.calls]
        return await driver.rate(day, record.modules_used(), history)


def _require_a_tool_to_use(plan: TickPlan, tools: list[ToolInfo]) -> None:
    """A day whose persona has nothing to use on this target is a finding about the catalog, said as such."""
    wanted = sorted(module for module, weight in plan.persona.module_mix.items() if weight > 0)
    if any(tool.module in wanted for tool in tools):
        return
    offered = ", ".join(f"{tool.name} ({tool.module})" for tool in tools[:8]) + (" ..." if len(tools) > 8 else "")
    raise NothingToUse(
        f"no tool offered belongs to a module of {plan.persona.name} ({', '.join(wanted)}); "
        f"the target offers {offered or 'no tools'}: name the catalog's modules after them "
        "(see `persona-runner catalog validate --against`)"
    )
