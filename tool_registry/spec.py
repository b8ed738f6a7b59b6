"""The tool registry: the single source of truth for what agents may call.

Every tool the product offers is declared once as a `ToolSpec`. The gateway
exposes exactly `Registry.proposable()`, the policy gate reads `scope` and
`policy_hint`, and the MCP schema comes from the pydantic `input` model, so a
tool cannot be exposed without being declared, and cannot be declared without
saying how dangerous it is.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeVar

from pydantic import BaseModel

if TYPE_CHECKING:
    from sqlmodel import Session

Scope = Literal["user-space", "admin"]
PolicyHint = Literal["read", "write", "destructive"]
DefaultPolicy = Literal["auto", "propose"]

TOOL_NAME = re.compile(r"^[a-z][a-z0-9_]*\.[a-z][a-z0-9_]*$")

T = TypeVar("T")


#: What kind of account a call comes from: a person, a simulated persona, or the product itself.
Invoker = Literal["human", "persona", "system"]


class _CallLog(logging.LoggerAdapter[logging.Logger]):
    """Ends every line with who called, in which space, so a handler's log line needs no bookkeeping."""

    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        extra = self.extra or {}
        return f"{msg} (user {extra['user_id']}, {extra['invoker']}, space {extra['space_id']})", kwargs


class ToolBackend(Protocol):
    """The product's data as a handler reaches it (the reference product's is `tool_registry.backend.Backend`).

    Declared here, next to the context that carries it, so that the registry
    does not depend on how a product stores its data.
    """

    async def run(self, ctx: ToolContext, fn: Callable[[Session], T]) -> T:
        """Run `fn(session)` in one transaction, as the context's user in the context's space."""


@dataclass(frozen=True)
class ToolContext:
    """Who is calling, in which space, through which backend: everything a handler may use.

    Handlers never see the HTTP request: the gateway has already verified the
    token and the space membership, so `user_id` and `space_id` are facts.
    `token` is the caller's verified bearer token, for a handler that calls
    another service as the user (None for in-process calls); `invoker` lets a
    product tell persona traffic from people's; `logger` is the tool's own.
    `writes` is False for a read tool: its transaction takes no write lock, so
    reads never queue behind writes (in-process callers get the safe default).
    """

    user_id: str
    space_id: str
    backend: ToolBackend
    token: str | None = None
    invoker: Invoker = "system"
    tool: str = "(in-process)"
    writes: bool = True

    @property
    def logger(self) -> logging.LoggerAdapter[logging.Logger]:
        """`tool_registry.tools.<tool>`, each line ending with the caller and the space."""
        base = logging.getLogger(f"tool_registry.tools.{self.tool}")
        return _CallLog(base, {"user_id": self.user_id, "invoker": self.invoker, "space_id": self.space_id})


Handler = Callable[[Any, ToolContext], Awaitable[BaseModel]]


@dataclass(frozen=True)
class ToolSpec:
    """One tool: its name, contract, risk, and the coroutine that does the work."""

    name: str
    description: str
    input: type[BaseModel]
    output: type[BaseModel]
    handler: Handler
    scope: Scope = "user-space"
    policy_hint: PolicyHint = "read"
    default_policy: DefaultPolicy = "auto"

    @property
    def module(self) -> str:
        return self.name.split(".", 1)[0]

    @property
    def proposable(self) -> bool:
        return self.scope == "user-space"


class DuplicateToolError(ValueError):
    pass


class ToolError(Exception):
    """A failure the caller should see as the tool's answer (not found, ambiguous, not allowed).

    The gateway turns it into an MCP tool error whose text is this message, so
    the message must say what went wrong in the caller's terms.
    """


class Registry:
    """An ordered set of tool specs, keyed by name."""

    def __init__(self, specs: list[ToolSpec] | None = None) -> None:
        self._specs: dict[str, ToolSpec] = {}
        for spec in specs or []:
            self.register(spec)

    def register(self, spec: ToolSpec) -> ToolSpec:
        if not TOOL_NAME.match(spec.name):
            raise ValueError(f"tool name {spec.name!r} must look like 'module.verb' (lowercase, one dot)")
        if spec.name in self._specs:
            raise DuplicateToolError(f"tool {spec.name!r} is already registered")
        self._specs[spec.name] = spec
        return spec

    def get(self, name: str) -> ToolSpec | None:
        return self._specs.get(name)

    def by_module(self, module: str) -> list[ToolSpec]:
        return [spec for spec in self._specs.values() if spec.module == module]

    def proposable(self) -> list[ToolSpec]:
        """Every user-space tool: what an agent may be offered. Admin tools never are."""
        return [spec for spec in self._specs.values() if spec.proposable]

    def __iter__(self) -> Iterator[ToolSpec]:
        return iter(self._specs.values())

    def __len__(self) -> int:
        return len(self._specs)

    def __contains__(self, name: object) -> bool:
        return name in self._specs
