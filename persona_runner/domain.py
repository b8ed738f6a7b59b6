"""The shared types of the harness: who a persona is, the day it lives, what it did and thought.

The runner and the drivers both speak these types, and neither imports the
other's modules for them: drivers import this module and nothing of the runner.

A tick hands a driver a `Day` (who the persona is, which date it lives through,
which tools the product offers) and an `act` coroutine. The driver calls
`act(tool_name, arguments)` as often as it likes, up to `day.max_turns`; `act`
performs the real MCP call, times and records it, and returns what the persona
saw. When the day is over the tick asks `rate(modules_used)`.

Drivers never touch the network of the product or the results store directly:
everything they do goes through `act`, so every call is recorded the same way
whichever driver made it.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Literal, Protocol

Outcome = Literal["ok", "error"]


@dataclass(frozen=True)
class PersonaProfile:
    """The persona as the driver needs it (a slice of the catalog entry)."""

    name: str
    email: str
    archetype: str
    system_prompt: str
    module_mix: dict[str, float]
    style: str | None = None
    locale: str | None = None


@dataclass(frozen=True)
class SpaceInfo:
    id: str
    name: str
    type: str
    role: str


#: What ends the module part of a tool's name: `todo.create`, `files/read`, `git_status`, `get-sum`.
_MODULE_END = re.compile(r"[./_-]")


def module_of_tool(tool: str, declared: str | None = None, known: Collection[str] | None = None) -> str:
    """The module a call counts against: the tool's own (`_meta.module`) when it declares one; else,
    when the catalog's modules are `known`, the part of its name before the first `.`, `/`, `_` or `-`
    if the catalog names that part as a module (`git_status` -> `git`), else the whole name (`get-sum`);
    with no catalog at hand, the part before the first dot (`todo.create` -> `todo`).

    One rule for the runner that records calls and the reports that read them back, so a call is
    never filed under one module when made and another when counted.
    """
    if declared:
        return declared
    if known is None:
        return tool.split(".", 1)[0]
    prefix = _MODULE_END.split(tool, maxsplit=1)[0]
    return prefix if prefix in known else tool


@dataclass(frozen=True)
class ToolInfo:
    """A tool as `tools/list` described it."""

    name: str
    description: str
    module: str
    input_schema: dict[str, Any]
    policy_hint: str = "read"
    read_only: bool = False
    destructive: bool = False


@dataclass(frozen=True)
class Day:
    persona: PersonaProfile
    tick_date: date
    seed: int
    spaces: list[SpaceInfo]
    tools: list[ToolInfo]
    max_turns: int
    tick_id: str = ""
    #: When the tick is cut off (`time.monotonic()`), so a driver never waits past it; None: no limit.
    deadline: float | None = None

    def tool(self, name: str) -> ToolInfo | None:
        return next((t for t in self.tools if t.name == name), None)

    def module_of(self, tool: str) -> str:
        """The module of a call: the tool's own (`_meta.module`), else its name's prefix."""
        info = self.tool(tool)
        return info.module if info else module_of_tool(tool)


@dataclass(frozen=True)
class CallOutcome:
    """What one tool call did, as the persona saw it."""

    tool: str
    arguments: dict[str, Any]
    outcome: Outcome
    latency_ms: float
    error: str | None = None
    structured: dict[str, Any] | None = None
    text: str = ""
    #: Sent on purpose to be refused (bad input); its rejection is not a product error.
    probe: bool = False

    @property
    def ok(self) -> bool:
        return self.outcome == "ok"


class Act(Protocol):
    """Make one tool call for the persona; `probe=True` marks a call sent to be refused."""

    async def __call__(self, tool: str, arguments: dict[str, Any], *, probe: bool = False) -> CallOutcome: ...


class MindError(Exception):
    """The persona's mind failed: its driver could not decide or rate, so the tick fails with this
    message and the run carries on.

    Drivers raise their own kinds of it (a model provider that gave up, a cassette without the
    answer); the runner catches this one, whichever driver played the day.
    """


class TurnLimitReached(Exception):
    """Raised by `act` when the day already used `max_turns` calls."""


@dataclass(frozen=True)
class Rating:
    module: str
    rating: int
    notes: str


@dataclass
class Verdict:
    """The end of a persona's day: ratings, or the reason there are none.

    `status` is `ok` or `rating_unparsed`; an unparsed answer keeps the raw
    text in `raw_answer` and carries no ratings: a rating is never invented.
    """

    ratings: list[Rating]
    status: Literal["ok", "rating_unparsed"] = "ok"
    raw_answer: str | None = None
    flags: list[str] = field(default_factory=list)


@dataclass
class Usage:
    tokens_in: int = 0
    tokens_out: int = 0


class Driver(Protocol):
    """One driver instance plays one persona for one day."""

    name: str
    model: str | None
    usage: Usage
    #: What the driver noticed that did not match what it expected (for the transcript).
    surprises: list[str]
    #: Model exchanges (request/response pairs) for the transcript; empty for offline drivers.
    exchanges: list[dict[str, Any]]

    async def play(self, day: Day, act: Act) -> None: ...

    async def rate(self, day: Day, modules_used: list[str], history: list[CallOutcome]) -> Verdict: ...

    async def aclose(self) -> None:
        """Release what the driver holds (an SDK's connection pool); called once per tick."""
        ...
