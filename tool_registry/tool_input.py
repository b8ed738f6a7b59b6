"""Tool arguments on their way to a handler: bounded in size, validated off the event loop when
validating could take long, and refused with a message of bounded length.

One call's arguments are parsed into objects before any tool sees them, so
their size is measured by walking them, stopping as soon as a cap is passed:
the walk costs at most the cap, whatever was sent. Pydantic reports every
problem it finds, and an argument object with thousands of unknown fields
makes thousands; the caller is told the first few and how many more there are.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import anyio.to_thread
from pydantic import BaseModel, ValidationError

from tool_registry.field_errors import field_problems
from tool_registry.spec import ToolError, ToolSpec

#: Far more than any tool takes (a note is one 20,000-character body, a few fields and 10 tags).
MAX_VALUES = 1_000
MAX_CHARS = 100_000
#: Up to this size validating takes microseconds: cheaper on the event loop than a hop to a thread.
INLINE_VALUES = 100
INLINE_CHARS = 20_000
#: Problems named in a refusal; the rest are counted.
SHOWN_PROBLEMS = 5
MAX_PROBLEM_CHARS = 200


@dataclass(frozen=True)
class Size:
    values: int  # keys, items and scalars, containers included
    chars: int  # characters of every key and string

    def within(self, values: int, chars: int) -> bool:
        return self.values <= values and self.chars <= chars


def measure(arguments: Any, stop_values: int = MAX_VALUES, stop_chars: int = MAX_CHARS) -> Size:
    """The size of a JSON value, counted until either figure passes its stop (then it is past the stop)."""
    values = chars = 0
    pending = [arguments]
    while pending and values <= stop_values and chars <= stop_chars:
        value = pending.pop()
        values += 1
        if isinstance(value, str):
            chars += len(value)
        elif isinstance(value, dict):
            for key, item in value.items():
                chars += len(key) if isinstance(key, str) else 0
                pending.append(item)
                if len(pending) > stop_values:
                    break
        elif isinstance(value, list | tuple):
            pending.extend(value[: stop_values + 1])
    return Size(values, chars)


async def validate(spec: ToolSpec, arguments: dict[str, Any]) -> BaseModel:
    """The tool's input model for these arguments; ToolError when they are too large, ValidationError when invalid."""
    size = measure(arguments)
    if not size.within(MAX_VALUES, MAX_CHARS):
        raise ToolError(
            f"arguments for {spec.name} are too large: at most {MAX_VALUES} values and {MAX_CHARS} characters "
            "in one call (tools/list shows each field's limits)"
        )
    if size.within(INLINE_VALUES, INLINE_CHARS):
        return spec.input.model_validate(arguments)
    return await anyio.to_thread.run_sync(spec.input.model_validate, arguments)


def format_validation_error(tool: str, error: ValidationError) -> str:
    """One line naming the first few bad fields, in the caller's terms, and how many more there are:
    `invalid arguments for todo.create: title: String should have at most 200 characters`."""
    shown = field_problems(error, whole="(arguments)", limit=SHOWN_PROBLEMS)
    problems = "; ".join(_clip(f"{field}: {message}") for field, message in shown)
    more = error.error_count() - len(shown)
    if more:
        problems += f"; and {more} more problem{'s' if more != 1 else ''}"
    return f"invalid arguments for {tool}: {problems}"


def _clip(text: str) -> str:
    return text if len(text) <= MAX_PROBLEM_CHARS else text[: MAX_PROBLEM_CHARS - 1] + "…"
