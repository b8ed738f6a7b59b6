"""A recorded day as the steps it happened in: what the model was told, what it said and asked for, and each call
the product answered.

The scripted driver makes its calls without a word: its day is its calls. A
language-model driver's exchanges are kept in its provider's wire format
(Anthropic Messages or OpenAI Chat Completions, see `drivers/anthropic_driver.py`
and `drivers/openai_driver.py`); they are read here, once, into steps that do
not depend on the provider, so the text and the HTML page tell the same story.
A tool the model asked for is matched to the product call it became by order
and name (the provider's name of each tool offered is read from the tools the
request sent, which follow the order of the tools offered); one that became no
call (a tool not offered, arguments that are not JSON, the rating tool) is a
step of its own, with what went back to the model.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from persona_runner.reporting.formatting import utc_minute
from persona_runner.store.recorded import DayCall, DaySpace, RecordedDay


@dataclass(frozen=True)
class Told:
    """Text the harness sent the model: the opening of the day, the request for ratings, a correction."""

    phase: str
    text: str


@dataclass(frozen=True)
class Said:
    """One answer of the model: its text (maybe none), and the failed attempts before it; no answer at all when the
    provider never gave one."""

    phase: str
    text: str
    answered: bool = True
    failures: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Asked:
    """A tool the model asked for that reached no product: refused by the harness, or the rating tool."""

    tool: str
    arguments: Any
    #: What went back to the model; None when nothing did (the day ended with this answer).
    answer: str | None
    is_error: bool


Step = Told | Said | Asked | DayCall


@dataclass(frozen=True)
class Story:
    #: The model's system prompt (the persona and the framing of its day); None for the scripted driver.
    system: str | None
    steps: list[Step]


@dataclass(frozen=True)
class _Request:
    call_id: str
    name: str
    arguments: Any


def story(day: RecordedDay) -> Story:
    """The day's steps in order; every call of the day is among them, once, in its order."""
    if not day.exchanges:
        return Story(system=None, steps=list(day.calls))
    answers = {
        call_id: answer for exchange in day.exchanges for call_id, answer in _results(exchange.get("request") or {})
    }
    calls = deque(day.calls)
    steps: list[Step] = []
    for exchange in day.exchanges:
        phase = str(exchange.get("phase", ""))
        request = exchange.get("request") or {}
        steps += [Told(phase, text) for text in _told(request)]
        response = exchange.get("response")
        failures = [str(failure.get("error", "")) for failure in exchange.get("failures") or []]
        text, requests = _answer(response) if isinstance(response, dict) else ("", [])
        steps.append(Said(phase, text, answered=isinstance(response, dict), failures=failures))
        names = _product_names(request, day.tools_offered)
        for asked in requests:
            tool = names.get(asked.name, asked.name)
            if calls and calls[0].tool == tool:
                steps.append(calls.popleft())
                continue
            answer, is_error = answers.get(asked.call_id, (None, False))
            steps.append(Asked(tool, asked.arguments, answer, is_error))
    steps += calls  # calls no recorded answer asked for: kept, so the day shows every call it made
    return Story(system=_system(day.exchanges[0].get("request") or {}), steps=steps)


def _product_names(request: dict[str, Any], offered: list[str]) -> dict[str, str]:
    """Each tool's product name by the name the provider knew it by: the request's tools are the tools offered, in
    their order (then the rating tool, which is no product's)."""
    sent = [tool.get("function", tool).get("name") for tool in request.get("tools") or []]
    return {str(name): product for name, product in zip(sent, offered, strict=False)}


def _system(request: dict[str, Any]) -> str | None:
    """Anthropic sends the system prompt beside the messages, OpenAI as the first message."""
    if isinstance(request.get("system"), str):
        return str(request["system"])
    for message in request.get("messages") or []:
        if message.get("role") == "system":
            return _text(message.get("content"))
    return None


def _text(content: Any) -> str:
    """A message's text: a plain string, or the text blocks of a list of blocks."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(str(block.get("text", "")) for block in content if block.get("type") == "text")
    return ""


def _told(request: dict[str, Any]) -> list[str]:
    """The text of the messages new in this request: those after the model's last answer, tool results aside."""
    messages = list(request.get("messages") or [])
    last_answer = max((i for i, message in enumerate(messages) if message.get("role") == "assistant"), default=-1)
    texts = (_text(message.get("content")) for message in messages[last_answer + 1 :] if message.get("role") == "user")
    return [text for text in texts if text]


def _results(request: dict[str, Any]) -> Iterator[tuple[str, tuple[str, bool]]]:
    """Every tool result the request carries back, by the id of the call it answers: (content, marked an error)."""
    for message in request.get("messages") or []:
        if message.get("role") == "tool":  # OpenAI: one message per result, an error says so in its own text
            yield str(message.get("tool_call_id", "")), (_text(message.get("content")), False)
        elif message.get("role") == "user" and isinstance(message.get("content"), list):  # Anthropic: blocks
            for block in message["content"]:
                if block.get("type") == "tool_result":
                    content = block.get("content")
                    text = content if isinstance(content, str) else _text(content)
                    yield str(block.get("tool_use_id", "")), (text, bool(block.get("is_error")))


def _answer(response: dict[str, Any]) -> tuple[str, list[_Request]]:
    """The model's text and the tools it asked for, from an Anthropic message or an OpenAI chat completion."""
    if "choices" in response:
        choices = response.get("choices") or [{}]
        message = choices[0].get("message") or {}
        requests = [
            _Request(str(call.get("id", "")), str(function.get("name", "")), _arguments(function.get("arguments")))
            for call in message.get("tool_calls") or []
            for function in [call.get("function") or {}]
        ]
        return str(message.get("content") or ""), requests
    blocks = response.get("content") or []
    requests = [
        _Request(str(block.get("id", "")), str(block.get("name", "")), block.get("input"))
        for block in blocks
        if block.get("type") == "tool_use"
    ]
    return _text(blocks), requests


def _arguments(raw: Any) -> Any:
    """OpenAI's arguments arrive as a JSON string: the object it holds, or the string itself when it holds none."""
    if not isinstance(raw, str):
        return raw
    try:
        return json.loads(raw)
    except ValueError:
        return raw


# --- what both renderings of a day say the same way ---


def weekday(day: RecordedDay) -> str:
    """ "Friday 2026-11-20": the day the persona lived, as its framing told it."""
    try:
        return f"{date.fromisoformat(day.tick_date):%A} {day.tick_date}"
    except ValueError:
        return day.tick_date


def driver_line(day: RecordedDay) -> str:
    """ "driver anthropic (claude-x), seed 3, 1200 tokens in, 80 out": who played the day, and how."""
    model = f" ({day.model})" if day.model else ""
    tokens = f", {day.tokens_in} tokens in, {day.tokens_out} out" if day.tokens_in or day.tokens_out else ""
    return f"driver {day.driver}{model}, seed {day.seed}{tokens}"


def timing_line(day: RecordedDay) -> str:
    """ "started 2026-11-20 09:00 UTC, took 4.2 s" (or "never ended" for a tick its process left)."""
    started = f"started {utc_minute(day.started_at)} UTC"
    if day.ended_at is None:
        return f"{started}, its end was never recorded"
    return f"{started}, took {(day.ended_at - day.started_at).total_seconds():.1f} s"


def chosen_space(day: RecordedDay) -> DaySpace | None:
    """The space the day was played in, with the persona's role in it (kept in the list of its spaces)."""
    if day.space is None:
        return None
    return next((space for space in day.spaces if space.id == day.space.id), day.space)


def others(day: RecordedDay) -> list[DaySpace]:
    """The persona's other spaces: where it could have gone that day."""
    return [space for space in day.spaces if day.space is None or space.id != day.space.id]


def space_text(space: DaySpace) -> str:
    """ "Ashgrove Road flat (family, member)": a space as the persona knew it."""
    role = f", {space.role}" if space.role else ""
    return f"{space.name} ({space.type}{role})"


def ending(day: RecordedDay) -> str:
    """ "ok", or the status and the reason it ended so: "failed: login refused (HTTP 401)"."""
    return f"{day.status}: {day.error}" if day.error else day.status


def outcome(call: DayCall) -> str:
    """ "ok", "error", or "refused probe" for bad input sent on purpose (not the product's fault)."""
    if call.outcome == "ok":
        return "ok"
    return "refused probe" if call.probe else "error"


def arguments_text(arguments: Any) -> str:
    """Arguments as JSON, in the order the persona gave them."""
    return json.dumps(arguments, ensure_ascii=False)


NO_TRANSCRIPT = (
    "The tick's process ended before the end of its day was written: its calls are listed from the store's actions,"
    " without their arguments, results or the model's messages."
)
