"""One persona's MCP session on any target: its tools as drivers see them, and timed tool calls.

Every kind of target ends here: a product's gateway, a foreign server over
Streamable HTTP, a child process over stdio. What differs is only how the
session is reached (see the `targets` package).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Collection
from contextlib import asynccontextmanager
from typing import Any

import httpx2
from mcp import Client
from mcp.shared.exceptions import MCPError
from mcp.types import TextContent

from persona_runner.domain import CallOutcome, ToolInfo, module_of_tool
from persona_runner.targets.errors import ERROR_LIMIT, GatewayLost, ProductError, root_cause
from persona_runner.util.canonical import canonical_json
from persona_runner.util.text import truncate


class SharedValidators:
    """The compiled output-schema validators of one target, shared by every session on it.

    The SDK checks each structured result against its tool's output schema, and compiles
    the schema into a validator the first time a session meets the tool: compiling costs
    about sixty validations, and with 200 personas in flight, each with a session of its
    own, it took a third of the runner's time. A session whose listing gave every tool
    the schema the first session's did is handed the target's one table of validators, so
    each tool is compiled once, by whichever session calls it first, and only if one does.
    The SDK keeps that table private to its session; should it ever be gone, each session
    compiles its own again, as before: slower, never wrong.
    """

    def __init__(self) -> None:
        self._schemas: dict[str, str] | None = None  # tool -> its output schema as canonical JSON
        self._validators: dict[str, Any] = {}

    def lend(self, session: Any) -> None:
        """Share the table with a session that just listed its tools, when they are the tools the first one saw."""
        schemas = getattr(session, "_tool_output_schemas", None)
        if not isinstance(schemas, dict) or not isinstance(getattr(session, "_tool_output_validators", None), dict):
            return
        listed = {name: canonical_json(schema) for name, schema in schemas.items() if schema is not None}
        if self._schemas is None:
            self._schemas = listed
        if listed == self._schemas:
            session._tool_output_validators = self._validators


def tool_info(tool: Any, modules: Collection[str] | None = None) -> ToolInfo:
    """A `tools/list` entry as drivers see it; its module from `_meta` when present, else from its name and the
    catalog's `modules` (see `module_of_tool`)."""
    meta = tool.meta or {}
    annotations = tool.annotations
    return ToolInfo(
        name=tool.name,
        description=tool.description or "",
        module=module_of_tool(tool.name, str(meta.get("module") or "") or None, modules),
        input_schema=dict(tool.input_schema),
        policy_hint=str(meta.get("policyHint", "read" if annotations and annotations.read_only_hint else "write")),
        read_only=bool(annotations and annotations.read_only_hint),
        destructive=bool(annotations and annotations.destructive_hint),
    )


@asynccontextmanager
async def mcp_session(
    client: Client,
    where: str,
    modules: Collection[str] | None = None,
    *,
    hint: str = "is it an MCP server?",
    validators: SharedValidators | None = None,
) -> AsyncIterator[McpSession]:
    """`client` connected, as a session on the server at `where`; a server that cannot be reached or refuses
    the session is one ProductError naming `where`, and `hint` saying what to check."""
    try:
        async with client:
            yield McpSession(client, where, modules, validators or SharedValidators())
    except Exception as raised:
        # The SDK's task groups wrap what went wrong; tool calls answer their own MCP errors,
        # so one here is about the session itself (opening it, tools/list).
        cause = root_cause(raised)
        if isinstance(cause, httpx2.TransportError | ConnectionError):
            raise GatewayLost(f"MCP server at {where} stopped answering: {type(cause).__name__}: {cause}") from None
        if isinstance(cause, MCPError):
            raise ProductError(f"{where} refused the MCP session ({cause}); {hint}") from None
        raise


class McpSession:
    def __init__(
        self,
        client: Client,
        where: str,
        modules: Collection[str] | None = None,
        validators: SharedValidators | None = None,
    ) -> None:
        self._client = client
        self._where = where
        self._modules = modules
        self._validators = validators or SharedValidators()

    async def list_tools(self) -> list[ToolInfo]:
        tools: list[ToolInfo] = []
        cursor: str | None = None
        while True:
            page = await self._client.list_tools(cursor=cursor)
            tools.extend(tool_info(t, self._modules) for t in page.tools)
            cursor = page.next_cursor
            if not cursor:
                self._validators.lend(self._client.session)
                return tools

    async def call_tool(self, name: str, arguments: dict[str, Any]) -> CallOutcome:
        """One timed `tools/call`. A tool error is an outcome, not an exception;
        a dead server raises GatewayLost, and the caller times the lost call itself."""
        started = time.perf_counter()
        try:
            result = await self._client.call_tool(name, arguments)
        except MCPError as exc:
            latency = (time.perf_counter() - started) * 1000
            return CallOutcome(
                tool=name,
                arguments=arguments,
                outcome="error",
                latency_ms=latency,
                error=truncate(f"MCP error: {exc}", ERROR_LIMIT),
            )
        except (httpx2.TransportError, ConnectionError) as exc:
            raise GatewayLost(
                f"MCP server at {self._where} stopped answering during {name}: {type(exc).__name__}: {exc}"
            ) from None
        latency = (time.perf_counter() - started) * 1000
        text = "\n".join(block.text for block in result.content if isinstance(block, TextContent))
        structured = result.structured_content if isinstance(result.structured_content, dict) else None
        if result.is_error:
            return CallOutcome(
                tool=name,
                arguments=arguments,
                outcome="error",
                latency_ms=latency,
                error=truncate(text or "tool reported an error with no message", ERROR_LIMIT),
                text=text,
            )
        return CallOutcome(
            tool=name, arguments=arguments, outcome="ok", latency_ms=latency, structured=structured, text=text
        )
