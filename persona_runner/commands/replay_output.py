"""What a replay found, as Markdown (the terminal and review comments) or JSON (scripts).

A replay of one tick shows every call; a replay of a run starts with a line per
persona and shows call by call only the days that did not replay as recorded.
"""

from __future__ import annotations

from pydantic import BaseModel, computed_field

from persona_runner.reporting.markdown import cell, code, table
from persona_runner.run.replay import CallComparison, CallSide, Mode, TickReplay
from persona_runner.store.recorded import DayRating
from persona_runner.util.text import counted, truncate

#: How much of a rebound id is shown: enough to tell ids apart.
SHOWN_ID = 12


class PersonaSummary(BaseModel):
    persona: str
    ticks: int
    calls: int
    same: int
    changed: int
    rebound: int
    unbound: int
    problems: int


class ReplayReport(BaseModel):
    mode: Mode
    target: str
    ticks: list[TickReplay]

    @computed_field  # type: ignore[prop-decorator]
    @property
    def changed(self) -> bool:
        """Whether any day did not replay as recorded: an outcome changed, or the replay could not be lived."""
        return any(tick.changed for tick in self.ticks)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def personas(self) -> list[PersonaSummary]:
        summaries: dict[str, PersonaSummary] = {}
        for tick in self.ticks:
            calls = tick.calls
            now = summaries.setdefault(
                tick.persona,
                PersonaSummary(
                    persona=tick.persona, ticks=0, calls=0, same=0, changed=0, rebound=0, unbound=0, problems=0
                ),
            )
            now.ticks += 1
            now.calls += len(calls)
            now.same += sum(1 for c in calls if c.verdict == "same")
            now.changed += sum(1 for c in calls if c.changed)
            now.rebound += sum(len(c.rebound) for c in calls)
            now.unbound += sum(len(c.unbound) for c in calls)
            now.problems += tick.problem is not None
        return list(summaries.values())


def verdict_counts(tick: TickReplay) -> str:
    """`20 calls: 18 same, 1 outcome changed, 1 slower`."""
    kinds = dict.fromkeys(call.verdict for call in tick.calls)
    tally = ", ".join(f"{tick.count(verdict)} {verdict}" for verdict in kinds)
    return counted(len(tick.calls), "call") + (f": {tally}" if tally else "")


def _side(side: CallSide | None) -> str:
    return "-" if side is None else side.outcome


def _latency(call: CallComparison) -> str:
    before = f"{call.before.latency_ms:.0f}" if call.before else "-"
    after = f"{call.after.latency_ms:.0f}" if call.after else "-"
    return f"{before} -> {after}"


def _short(value: str | int) -> str:
    return truncate(str(value), SHOWN_ID)


def _calls(tick: TickReplay) -> list[str]:
    rows = [
        [
            str(call.seq),
            code(call.tool),
            f"**{call.verdict}**" if call.changed else call.verdict,
            _side(call.before),
            _side(call.after),
            _latency(call),
            cell(call.detail or ""),
        ]
        for call in tick.calls
    ]
    return table(["seq", "tool", "verdict", "before", "after", "ms", "detail"], rows)


def _ids(tick: TickReplay) -> list[str]:
    lines = []
    rebound = [(call, r) for call in tick.calls for r in call.rebound if r.recorded != r.replayed]
    if rebound:
        lines += ["", f"Ids rebound ({len(rebound)}):", ""]
        lines += [
            f"- call {call.seq} {code(call.tool, in_table=False)} `{r.argument}`: {_short(r.recorded)} -> "
            f"{_short(r.replayed)} ("
            + ("spaces at login" if r.source_seq < 0 else f"call {r.source_seq}")
            + f", {r.source_place})"
            for call, r in rebound
        ]
    unbound = [(call, u) for call in tick.calls for u in call.unbound]
    if unbound:
        lines += ["", f"Not rebound, sent as recorded ({len(unbound)}):", ""]
        lines += [
            f"- call {call.seq} {code(call.tool, in_table=False)} `{u.argument}` = {cell(_short(u.value))}: {u.reason}"
            for call, u in unbound
        ]
    return lines


def _ratings(before: list[DayRating], after: list[DayRating]) -> list[str]:
    was = {r.module: r.rating for r in before}
    now = {r.module: r.rating for r in after}
    modules = list(dict.fromkeys([*was, *now]))
    if not modules:
        return []
    rows = [[code(m), str(was.get(m, "-")), str(now.get(m, "-"))] for m in modules]
    return ["", *table(["module", "rating before", "after"], rows)]


def _tick(tick: TickReplay, *, heading: str) -> list[str]:
    lines = [f"{heading} {code(tick.tick_id, in_table=False)}", ""]
    lines.append(f"{cell(tick.persona)}, day {tick.tick_date}, {tick.mode} mode against {tick.target}.")
    if tick.replay_tick_id:
        lines.append(f"The new day: `persona-runner ticks show {tick.replay_tick_id}`.")
    if tick.problem:
        lines += ["", f"**Not replayed to the end:** {cell(tick.problem, 500)}"]
    lines += ["", verdict_counts(tick) + "."]
    if tick.calls:
        lines += ["", *_calls(tick)]
    return lines + _ids(tick) + _ratings(tick.ratings_before, tick.ratings_after)


def render_replay_markdown(report: ReplayReport) -> str:
    if len(report.ticks) == 1:
        return "\n".join(_tick(report.ticks[0], heading="# Replay of")) + "\n"
    heading = f"# Replay of {counted(len(report.ticks), 'tick')}"
    lines = [heading, "", f"{report.mode} mode against {report.target}.", ""]
    rows = [
        [cell(p.persona), *map(str, (p.ticks, p.calls, p.same, p.changed, p.rebound, p.unbound, p.problems))]
        for p in report.personas
    ]
    lines += table(["persona", "ticks", "calls", "same", "changed", "ids rebound", "not rebound", "not replayed"], rows)
    as_recorded = [tick for tick in report.ticks if not tick.changed and not any(c.unbound for c in tick.calls)]
    shown = {tick.tick_id for tick in as_recorded}
    for tick in report.ticks:
        if tick.tick_id not in shown:
            lines += ["", *_tick(tick, heading="##")]
    if as_recorded:
        lines += ["", f"Replayed as recorded: {', '.join(code(t.tick_id, in_table=False) for t in as_recorded)}."]
    return "\n".join(lines) + "\n"


def render_replay_json(report: ReplayReport) -> str:
    return report.model_dump_json(indent=2) + "\n"


def summary_line(report: ReplayReport) -> str:
    """One line for the terminal when the report went to a file."""
    changed = [tick for tick in report.ticks if tick.changed]
    calls = sum(len(tick.calls) for tick in report.ticks)
    if not changed:
        return f"replayed {counted(len(report.ticks), 'tick')} ({counted(calls, 'call')}): every outcome as recorded"
    first = changed[0]
    where = next((f"call {c.seq} {c.tool} {c.verdict}" for c in first.calls if c.changed), first.problem or "")
    return (
        f"replayed {counted(len(report.ticks), 'tick')} ({counted(calls, 'call')}): {len(changed)} changed; "
        f"first {first.tick_id}: {truncate(where, 200)}"
    )
