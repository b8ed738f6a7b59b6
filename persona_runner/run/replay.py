"""A recorded day lived again on a product, and compared call by call with the day on record.

Two ways to live it again:

- `calls`: the recorded tool calls, in order, with their recorded arguments,
  ids rebound to what the replay's own earlier calls were given (`rebind`).
  Nothing decides anything: what changed is the product. The replay is not
  recorded; its ratings are what a rater (the scripted driver's rules, no
  model) makes of its calls.
- `driver`: the persona's driver plays the day again (the same seed and date,
  or the model's answers from a cassette). The new day is a tick of its own, in
  a run of its own, and its calls are set beside the old ones by position.

Either way each call gets one verdict: the same, its outcome changed, its
answer changed shape, it got much slower or faster; in `driver` mode also
another call made in its place, or a call missing or extra.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import date
from typing import Any, Literal

import anyio
from pydantic import BaseModel, Field, computed_field
from sqlalchemy.engine import Engine

from persona_runner.catalog import PersonaSpec
from persona_runner.domain import CallOutcome, Day, Driver, PersonaProfile, SpaceInfo
from persona_runner.run.rebind import LOGIN, Rebinder, Rebound, Unbound
from persona_runner.run.recorder import EXCERPT_LIMIT, TickRecord
from persona_runner.run.runner import RAN_STATUSES
from persona_runner.run.shape import describe_shape_change
from persona_runner.run.tick import TickPlan, run_tick
from persona_runner.store.recorded import DayCall, DayRating, DaySpace, RecordedDay, load_day
from persona_runner.targets.base import Target, Visitor
from persona_runner.targets.errors import ERROR_LIMIT, GatewayLost
from persona_runner.targets.product import personal_space
from persona_runner.util.canonical import input_hash
from persona_runner.util.text import truncate

Mode = Literal["calls", "driver"]
Verdict = Literal["same", "outcome changed", "shape changed", "slower", "faster", "other call", "missing", "extra"]
#: Verdicts that fail a replay: the day did not happen as recorded.
CHANGED: tuple[Verdict, ...] = ("outcome changed", "other call", "missing", "extra")
#: A latency ratio beyond `latency_ratio` (either way) is reported once the slower side takes this long:
#: below it, a millisecond of scheduling noise would double a fast call.
LATENCY_FLOOR_MS = 50.0
DEFAULT_LATENCY_RATIO = 2.0


class CallSide(BaseModel):
    """One side of a compared call: what was called and what came of it."""

    tool: str
    input_hash: str
    outcome: Literal["ok", "error"]
    latency_ms: float
    error: str | None = None

    @classmethod
    def of(cls, call: DayCall) -> CallSide:
        return cls(
            tool=call.tool,
            input_hash=call.input_hash,
            outcome=call.outcome,
            latency_ms=round(call.latency_ms, 3),
            error=call.error,
        )


class CallComparison(BaseModel):
    seq: int
    tool: str
    verdict: Verdict
    before: CallSide | None
    after: CallSide | None
    #: What the verdict rests on, in a few words (the error that appeared, the keys that went).
    detail: str | None = None
    rebound: list[Rebound] = Field(default_factory=list)
    unbound: list[Unbound] = Field(default_factory=list)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def changed(self) -> bool:
        """Whether this call did not happen as recorded (its outcome, or the call itself)."""
        return self.verdict in CHANGED


class TickReplay(BaseModel):
    """One recorded tick lived again, and how it compares."""

    tick_id: str
    persona: str
    tick_date: str
    mode: Mode
    target: str
    calls: list[CallComparison] = Field(default_factory=list)
    ratings_before: list[DayRating] = Field(default_factory=list)
    ratings_after: list[DayRating] = Field(default_factory=list)
    #: `driver` mode: the new day's own tick, to show with `ticks show`.
    replay_tick_id: str | None = None
    #: Why the replay could not be lived to its end (a refused login, a gateway that died), None when it was.
    problem: str | None = None

    @classmethod
    def of(cls, day: RecordedDay, mode: Mode, target: Target, **found: Any) -> TickReplay:
        """The replay of `day` in `mode` on `target`, with what was `found` so far."""
        return cls(
            tick_id=day.tick_id,
            persona=day.persona,
            tick_date=day.tick_date,
            mode=mode,
            target=target.address,
            ratings_before=day.ratings,
            **found,
        )

    @computed_field  # type: ignore[prop-decorator]
    @property
    def changed(self) -> bool:
        """Whether the day did not replay as recorded: a call changed, or it could not be lived to its end."""
        return self.problem is not None or any(call.changed for call in self.calls)

    def count(self, verdict: Verdict) -> int:
        return sum(1 for call in self.calls if call.verdict == verdict)


def compare_calls(
    before: DayCall | None,
    after: DayCall | None,
    *,
    same_call_expected: bool,
    latency_ratio: float,
) -> CallComparison:
    """The verdict on one call. `same_call_expected` (driver mode): the replay chose its own call, which may differ."""
    present = after if before is None else before
    assert present is not None, "a comparison has at least one side"
    verdict, detail = _verdict(before, after, same_call_expected, latency_ratio)
    return CallComparison(
        seq=present.seq,
        tool=present.tool,
        verdict=verdict,
        before=CallSide.of(before) if before else None,
        after=CallSide.of(after) if after else None,
        detail=detail,
    )


def _verdict(
    before: DayCall | None, after: DayCall | None, same_call_expected: bool, latency_ratio: float
) -> tuple[Verdict, str | None]:
    if before is None:
        return "extra", "the replay made a call the recorded day did not"
    if after is None:
        return "missing", "the replay ended before this call"
    if same_call_expected and before.tool != after.tool:
        return "other call", f"{after.tool} instead"
    if same_call_expected and before.input_hash != after.input_hash:
        return "other call", "the same tool with other arguments"
    if before.outcome != after.outcome:
        return "outcome changed", after.error if after.outcome == "error" else f"now ok; was: {before.error}"
    shape = describe_shape_change(before.result(), after.result()) if before.outcome == "ok" else None
    if shape:
        return "shape changed", shape
    slower, faster = max(before.latency_ms, after.latency_ms), min(before.latency_ms, after.latency_ms)
    if slower >= LATENCY_FLOOR_MS and slower >= latency_ratio * max(faster, 0.001):
        moved = f"{before.latency_ms:.0f} -> {after.latency_ms:.0f} ms"
        return ("slower" if after.latency_ms > before.latency_ms else "faster"), moved
    return "same", None


def same_kind_of_space(recorded: DaySpace | None) -> Callable[[list[SpaceInfo]], SpaceInfo]:
    """The replay's space: the one named as the recorded day's, else one of its type, else the personal one."""

    def choose(spaces: list[SpaceInfo]) -> SpaceInfo:
        if recorded is None:
            return personal_space(spaces)
        for fits in (
            lambda s: s.name == recorded.name and s.type == recorded.type,
            lambda s: s.type == recorded.type,
        ):
            match = next((space for space in spaces if fits(space)), None)
            if match is not None:
                return match
        return personal_space(spaces)

    return choose


def _spaces_aligned(recorded: Sequence[DaySpace], replayed: Sequence[SpaceInfo]) -> tuple[list[Any], list[Any]]:
    """The recorded spaces and, at the same places, the replay's spaces of the same name and type."""
    by_kind = {(s.name, s.type): s for s in replayed}
    before, after = [], []
    for space in recorded:
        match = by_kind.get((space.name, space.type))
        before.append({"id": space.id})
        after.append({"id": match.id} if match else {})
    return before, after


def _replayed_call(seq: int, module: str, outcome: CallOutcome) -> DayCall:
    return DayCall(
        seq=seq,
        tool=outcome.tool,
        module=module,
        arguments=outcome.arguments,
        input_hash=input_hash(outcome.arguments),
        outcome=outcome.outcome,
        probe=outcome.probe,
        latency_ms=outcome.latency_ms,
        error=outcome.error,
        result_excerpt=truncate(outcome.text if outcome.ok else (outcome.error or ""), EXCERPT_LIMIT),
        structured=outcome.structured,
    )


async def replay_calls(
    day: RecordedDay,
    visitor: Visitor,
    profile: PersonaProfile,
    target: Target,
    rater: Driver,
    *,
    rebinder: Rebinder | None = None,
    latency_ratio: float = DEFAULT_LATENCY_RATIO,
    call_timeout: float = 120.0,
) -> TickReplay:
    """The recorded calls of `day` sent again, in order, as `visitor`, ids rebound (see `rebind`).

    Pass one `rebinder` to the days of one persona replayed in order, so ids handed out on one day
    and used on a later one are rebound too. A product that cannot be used (unreachable, refused
    login) raises ProductError; a gateway that dies midway ends the replay with its `problem`.
    """
    rebinder = rebinder or Rebinder()
    replay = TickReplay.of(day, "calls", target)
    history: list[CallOutcome] = []
    async with target.visit(visitor, same_kind_of_space(day.space)) as visit:
        rebinder.learn(LOGIN, *({"spaces": side} for side in _spaces_aligned(day.spaces, visit.spaces)))
        modules = {tool.name: tool.module for tool in visit.tools}
        for call in day.calls:
            arguments, rebound, unbound = rebinder.rebind(call.arguments or {})
            try:
                with anyio.fail_after(call_timeout):
                    outcome = await visit.mcp.call_tool(call.tool, arguments)
            except (GatewayLost, TimeoutError) as exc:
                replay.problem = truncate(f"call {call.seq} ({call.tool}): {exc or 'timed out'}", ERROR_LIMIT)
                break
            outcome = replace(outcome, probe=call.probe)
            history.append(outcome)
            after = _replayed_call(call.seq, modules.get(call.tool, call.module), outcome)
            rebinder.learn(call.seq, call.result(), after.result())
            row = compare_calls(call, after, same_call_expected=False, latency_ratio=latency_ratio)
            replay.calls.append(row.model_copy(update={"rebound": rebound, "unbound": unbound}))
        replay.ratings_after = await _rate(rater, day, profile, visit.spaces, visit.tools, history)
    return replay


async def _rate(
    rater: Driver,
    day: RecordedDay,
    profile: PersonaProfile,
    spaces: list[SpaceInfo],
    tools: list[Any],
    history: list[CallOutcome],
) -> list[DayRating]:
    """The replayed calls rated by `rater`, which has not played them: the history alone speaks."""
    played = Day(
        persona=profile,
        tick_date=date.fromisoformat(day.tick_date),
        seed=day.seed,
        spaces=spaces,
        tools=tools,
        max_turns=len(day.calls),
    )
    modules = list(dict.fromkeys(played.module_of(outcome.tool) for outcome in history))
    verdict = await rater.rate(played, modules, history)
    return [DayRating(module=r.module, rating=r.rating, notes=r.notes) for r in verdict.ratings]


async def replay_driver(
    day: RecordedDay,
    persona: PersonaSpec,
    secret: str,
    target: Target,
    store: Engine,
    run_id: str,
    driver: Driver,
    *,
    max_turns: int,
    timeout: float,
    number: int | None = None,
    latency_ratio: float = DEFAULT_LATENCY_RATIO,
) -> tuple[TickReplay, TickRecord]:
    """The persona's day played again by `driver` (same seed and date), recorded as a tick of run `run_id`,
    and set beside the recorded one call by call; with the new tick's record, for the run to end on. `number`
    keeps apart the ticks of a run that replays one persona's date more than once (a soak's ticks)."""
    plan = TickPlan.for_persona(
        persona,
        run_id=run_id,
        secret=secret,
        tick_date=date.fromisoformat(day.tick_date),
        seed=day.seed,
        max_turns=max_turns,
        timeout=timeout,
        number=number,
    )
    record = await run_tick(plan, target=target, driver=driver, store=store)
    again = await anyio.to_thread.run_sync(load_day, store, record.tick_id)
    assert again is not None, "a tick just played is on record"
    length = max(len(day.calls), len(again.calls))
    rows = [
        compare_calls(
            day.calls[seq] if seq < len(day.calls) else None,
            again.calls[seq] if seq < len(again.calls) else None,
            same_call_expected=True,
            latency_ratio=latency_ratio,
        )
        for seq in range(length)
    ]
    replay = TickReplay.of(
        day,
        "driver",
        target,
        calls=rows,
        ratings_after=again.ratings,
        replay_tick_id=again.tick_id,
        problem=None if record.status in RAN_STATUSES else f"the day ended {record.status}: {record.error}",
    )
    return replay, record
