"""What every kind of target offers a tick: a visit, as one persona, to an MCP session and its tools."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Protocol

from persona_runner.domain import SpaceInfo, ToolInfo
from persona_runner.targets.mcp import McpSession

#: How a tick picks the space it works in from those the persona belongs to.
ChooseSpace = Callable[[list[SpaceInfo]], SpaceInfo]


@dataclass(frozen=True)
class Visitor:
    """The persona at the door: who it is, how it proves it, and the headers of its own it sends."""

    email: str
    password: str
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Visit:
    """A persona at work: the session to call tools on, what it offers, and (on a product) its spaces."""

    #: The target's id for the persona: the product's user id, else its email (a server without accounts).
    persona_id: str
    mcp: McpSession
    tools: list[ToolInfo]
    spaces: list[SpaceInfo] = field(default_factory=list)
    space: SpaceInfo | None = None


class Target(Protocol):
    """A product or MCP server the personas visit; one per run, shared by all its ticks."""

    @property
    def address(self) -> str:
        """Where it is, as runs record it."""
        ...

    async def check(self) -> None:
        """That it answers (before anything is written): a ProductError in one line when it does not."""
        ...

    def visit(self, visitor: Visitor, choose: ChooseSpace) -> AbstractAsyncContextManager[Visit]:
        """One persona's session, open for the block."""
        ...
