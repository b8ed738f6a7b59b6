"""A recorded day as plain text for a terminal: who, when, where, then every step in order, the ratings, the end.

Everything shown came from a persona, a model or the product, and lands in a
terminal: control characters (an escape sequence would repaint the screen) and
the marks that reverse the direction of text are shown as escapes, not obeyed.
"""

from __future__ import annotations

import re

from persona_runner.reporting.tick_story import (
    NO_TRANSCRIPT,
    Asked,
    Said,
    Told,
    arguments_text,
    chosen_space,
    driver_line,
    ending,
    others,
    outcome,
    space_text,
    story,
    timing_line,
    weekday,
)
from persona_runner.store.recorded import DayCall, RecordedDay

#: C0 and C1 control characters but tab and newline, and the bidirectional overrides and isolates.
_UNSAFE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def safe(text: str) -> str:
    """Text a terminal shows as it is written: each control character as its escape (`\\x1b`)."""
    return _UNSAFE.sub(lambda match: match[0].encode("unicode_escape").decode("ascii"), text)


def _field(label: str, value: str, indent: int = 6) -> str:
    """ "      arguments {…}": a labelled value, its further lines lined up under its first."""
    lead = f"{' ' * indent}{label:<10} "
    lines = safe(value).splitlines() or [""]
    return "\n".join([lead + lines[0], *(" " * len(lead) + line for line in lines[1:])])


def _call(call: DayCall, kept: bool) -> list[str]:
    shown = "ok" if call.outcome == "ok" else outcome(call).upper()  # a failure stands out in a long day
    lines = [f"  #{call.seq} {safe(call.tool)}  {shown}  {call.latency_ms:.1f} ms"]
    if call.arguments is not None:
        lines.append(_field("arguments", arguments_text(call.arguments)))
    if call.outcome == "ok":
        if kept:
            lines.append(_field("result", call.result_excerpt or "(empty)"))
    else:
        lines.append(_field("error", call.error or "(no message)"))
    return lines


def _step(persona: str, step: Told | Said | Asked | DayCall, kept: bool) -> list[str]:
    if isinstance(step, DayCall):
        return _call(step, kept)
    if isinstance(step, Told):
        return [_field(f"told ({step.phase}):", step.text, indent=2)]
    if isinstance(step, Said):
        lines = [_field("attempt", failure) for failure in step.failures]
        if not step.answered:
            return [f"  {safe(persona)} ({step.phase}): no answer from the model", *lines]
        return [*lines, f"  {safe(persona)} ({step.phase}): {safe(step.text) if step.text else '(asks for tools)'}"]
    lines = [f"  asked for {safe(step.tool)}, no call made", _field("arguments", arguments_text(step.arguments))]
    if step.answer is not None:
        lines.append(_field("error" if step.is_error else "answer", step.answer))
    return lines


def render_tick_text(day: RecordedDay) -> str:
    """The whole day as text, ending in a newline."""
    told = story(day)
    lines = [
        f"Tick {safe(day.tick_id)}",
        f"{safe(day.persona)} on {safe(weekday(day))}, run {safe(day.run_id)}",
        f"{safe(driver_line(day))}; {timing_line(day)}",
    ]
    space = chosen_space(day)
    if space is not None:
        lines.append(f"space: {safe(space_text(space))}, id {safe(space.id)}")
    if elsewhere := others(day):
        lines.append(f"also a member of: {safe(', '.join(space_text(space) for space in elsewhere))}")
    if day.tools_offered:
        lines.append(f"tools offered ({len(day.tools_offered)}): {safe(', '.join(day.tools_offered))}")
    lines.append(f"ended: {safe(ending(day))}")
    if not day.has_transcript:
        lines.append(f"note: {NO_TRANSCRIPT}")
    lines += ["", f"The day ({len(day.calls)} calls)"]
    for step in told.steps:
        lines += _step(day.persona, step, day.has_transcript)
    if not told.steps:
        lines.append("  no calls")
    lines += ["", "Ratings"]
    width = max((len(rating.module) for rating in day.ratings), default=0)
    lines += [
        f"  {safe(rating.module):<{width}}  {rating.rating}/5  {safe(' '.join(rating.notes.split()))}"
        for rating in day.ratings
    ] or ["  none"]
    if day.surprises:
        lines += ["", "Surprises", *(f"  - {safe(surprise)}" for surprise in day.surprises)]
    return "\n".join(lines) + "\n"
