"""The MCP gateway: the registry's proposable tools, served over Streamable HTTP.

Request path, outermost first:

    a body of at most MAX_BODY_BYTES              -> 413 otherwise
    bearer JWT (verified against the JWKS)        -> 401 otherwise
    X-Space of a space the user belongs to        -> 400 / 403 otherwise
    MCP session manager (both protocol eras; a session belongs to its opener)
    tools/call: policy gate -> fault injection -> input size and validation -> handler

A denial, an injected fault, invalid arguments and a handler's ToolError all
come back as tool results with `isError: true` and a message that names the
cause, so an agent can read what went wrong and adjust.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Any

import anyio
import mcp_types as types
from mcp.server.auth.middleware.auth_context import get_access_token
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser, RequireAuthMiddleware
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel import Server
from mcp.server.streamable_http_manager import StreamableHTTPASGIApp
from mcp.server.transport_security import TransportSecuritySettings
from pydantic import BaseModel, ValidationError
from starlette.types import ASGIApp, Receive, Scope, Send

from tool_registry.body_limit import MAX_BODY_BYTES, BodyLimit
from tool_registry.faults import FaultPlan
from tool_registry.membership import MembershipCache
from tool_registry.metrics import GatewayMetrics
from tool_registry.overload import BUSY_MESSAGE, is_overload
from tool_registry.policy import PolicyGate
from tool_registry.session_limits import PerUserSessionManager
from tool_registry.spec import Registry, ToolBackend, ToolContext, ToolError, ToolSpec
from tool_registry.tool_input import format_validation_error, validate

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
CHECKED_SPACE = "space_id"  # key in the request's state: the space SpaceGuard verified membership of
logger = logging.getLogger("tool_registry.gateway")


class DriftError(RuntimeError):
    """The tools the gateway would expose are not exactly the registry's proposable tools."""


def describe_tool(spec: ToolSpec) -> types.Tool:
    """The MCP description of a tool, derived only from its spec."""
    read_only = spec.policy_hint == "read"
    return types.Tool(
        name=spec.name,
        description=spec.description,
        input_schema=spec.input.model_json_schema(),
        output_schema=spec.output.model_json_schema(mode="serialization"),
        annotations=types.ToolAnnotations(
            read_only_hint=read_only,
            destructive_hint=spec.policy_hint == "destructive",
            idempotent_hint=read_only,
        ),
        _meta={"module": spec.module, "policyHint": spec.policy_hint, "defaultPolicy": spec.default_policy},
    )


def _differences(surface: str, expected: dict[str, Any], actual: dict[str, Any]) -> list[str]:
    """`surface missing: a, b` / `extra: …` / `changed: …` for every kind of difference found."""
    missing = sorted(set(expected) - set(actual))
    extra = sorted(set(actual) - set(expected))
    changed = sorted(name for name in set(expected) & set(actual) if expected[name] != actual[name])
    found = (("missing", missing), ("extra", extra), ("changed", changed))
    return [f"{surface} {label}: {', '.join(names)}" for label, names in found if names]


def error_result(text: str) -> types.CallToolResult:
    """A tool error (`isError: true`) whose text tells the caller what went wrong."""
    return types.CallToolResult(content=[types.TextContent(type="text", text=text)], is_error=True)


def _tool_result(output: BaseModel) -> types.CallToolResult:
    """A tool's answer, both as structured content and as the same JSON in text for clients that read only text."""
    structured = output.model_dump(mode="json")
    text = json.dumps(structured, ensure_ascii=False, separators=(",", ":"))
    return types.CallToolResult(content=[types.TextContent(type="text", text=text)], structured_content=structured)


async def run_tool(spec: ToolSpec, arguments: dict[str, Any], context: ToolContext) -> tuple[str, types.CallToolResult]:
    """Validate the arguments, run the handler, and answer as MCP: (outcome, result).

    Whatever the arguments or the handler do, the answer is a tool result: bad
    arguments and a ToolError name the problem; anything else is logged and
    reported as an internal error of the tool, never as a protocol error.
    """
    try:
        output = await spec.handler(await validate(spec, arguments), context)
    except ToolError as exc:
        return "error", error_result(str(exc))
    except ValidationError as exc:
        return "invalid", error_result(format_validation_error(spec.name, exc))
    except Exception as exc:
        if is_overload(exc):
            return "error", error_result(f"{spec.name}: {BUSY_MESSAGE}")
        context.logger.exception("tool %s failed", spec.name)
        return "error", error_result(f"internal error in {spec.name}; the product's server log has the details")
    return "ok", _tool_result(output)


class SpaceGuard:
    """ASGI middleware: the request must name, in `X-Space`, a space its user belongs to.

    A membership seen a moment ago is answered from `memberships` on the event
    loop; only an unknown one costs a query, in a worker thread.
    """

    def __init__(self, app: ASGIApp, is_member: Callable[[str, str], bool], memberships: MembershipCache) -> None:
        self.app = app
        self._is_member = is_member
        self._memberships = memberships

    async def is_member(self, user_id: str, space_id: str) -> bool:
        if self._memberships.known(user_id, space_id):
            return True
        return await anyio.to_thread.run_sync(self._is_member, user_id, space_id)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        user = scope.get("user")
        named = [value for key, value in scope["headers"] if key == b"x-space"]
        if len(named) > 1:
            await _send_json(
                send, 400, {"error": f"{len(named)} X-Space headers: send exactly one, naming the space to act in"}
            )
            return
        space_id = named[0].decode("latin-1").strip() if named else ""
        if not space_id:
            await _send_json(
                send,
                400,
                {"error": "missing X-Space header: name the space to act in (GET /api/v1/me/spaces lists yours)"},
            )
            return
        subject = user.access_token.subject if isinstance(user, AuthenticatedUser) else None
        if subject is None or not await self.is_member(subject, space_id):
            await _send_json(send, 403, {"error": f"not a member of space {space_id}"})
            return
        # The handler acts in exactly the space checked here, never in a header it parses again.
        scope.setdefault("state", {})[CHECKED_SPACE] = space_id
        await self.app(scope, receive, send)


async def _send_json(send: Send, status: int, body: dict[str, Any]) -> None:
    payload = json.dumps(body).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})


class Gateway:
    """Serves a registry's proposable tools to MCP clients, behind auth, space check and policy."""

    def __init__(
        self,
        registry: Registry,
        *,
        backend: ToolBackend,
        policy: PolicyGate,
        is_member: Callable[[str, str], bool],
        memberships: MembershipCache,
        allows_destructive: Callable[[str], bool],
        faults: FaultPlan | None = None,
        metrics: GatewayMetrics | None = None,
        host: str = "127.0.0.1",
    ) -> None:
        self.registry = registry
        self.backend = backend
        self.policy = policy
        self.faults = faults if faults is not None else FaultPlan()
        self.metrics = metrics or GatewayMetrics()
        self._is_member = is_member
        self._memberships = memberships
        self.allows_destructive = allows_destructive  # a database query: always run off the event loop
        # What tools/list shows and what tools/call may run are both fixed here, from the
        # proposable tools only: a tool outside this map is never dispatched, whatever the policy mode.
        self._tools = {spec.name: spec for spec in registry.proposable()}
        self._exposed = [describe_tool(spec) for spec in self._tools.values()]
        input_schemas = {tool.name: tool.input_schema for tool in self._exposed}
        self.server = Server(
            "persona-product",
            version="0.1.0",
            instructions="A personal productivity product: tasks, notes, journal, habits, mood, calendar, contacts.",
            # Without this lookup the SDK rebuilds the whole tools/list on every tools/call
            # to check request headers against the tool's schema.
            get_tool_input_schema=input_schemas.get,
            on_list_tools=self._list_tools,
            on_call_tool=self._call_tool,
        )
        security = None
        if host in LOOPBACK_HOSTS:
            security = TransportSecuritySettings(
                enable_dns_rebinding_protection=True,
                allowed_hosts=["127.0.0.1:*", "localhost:*", "[::1]:*"],
                allowed_origins=["http://127.0.0.1:*", "http://localhost:*", "http://[::1]:*"],
            )
        self.session_manager = PerUserSessionManager(
            app=self.server, json_response=True, security_settings=security, max_request_body_size=MAX_BODY_BYTES
        )

    def check_drift(self) -> None:
        """Refuse to serve unless what tools/list returns and what tools/call dispatches are
        both exactly the registry's proposable tools as they are now."""
        fresh = self.registry.proposable()
        problems = _differences(
            "tools/list",
            {spec.name: describe_tool(spec) for spec in fresh},
            {tool.name: tool for tool in self._exposed},
        )
        problems += _differences("dispatch", {spec.name: spec for spec in fresh}, self._tools)
        if problems:
            raise DriftError("exposed tools drifted from the registry (" + "; ".join(problems) + "); refusing to serve")

    def asgi_app(self) -> ASGIApp:
        """The `/mcp` endpoint: 413 for an oversized body, 401 without a valid token, then the space guard, then MCP."""
        guarded = SpaceGuard(StreamableHTTPASGIApp(self.session_manager), self._is_member, self._memberships)
        return BodyLimit(RequireAuthMiddleware(guarded, required_scopes=[]), MAX_BODY_BYTES)

    async def _list_tools(
        self, ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        return types.ListToolsResult(tools=self._exposed)

    async def _call_tool(
        self, ctx: ServerRequestContext[Any], params: types.CallToolRequestParams
    ) -> types.CallToolResult:
        started = time.perf_counter()
        outcome, result = await self._dispatch(ctx, params.name, params.arguments or {})
        self.metrics.record_call(
            params.name if params.name in self.registry else "(unknown)",
            outcome,
            time.perf_counter() - started if params.name in self._tools else None,
        )
        return result

    async def _dispatch(
        self, ctx: ServerRequestContext[Any], name: str, arguments: dict[str, Any]
    ) -> tuple[str, types.CallToolResult]:
        spec = self._tools.get(name)
        if spec is None:
            if name in self.registry:
                self.metrics.record_decision("deny", "admin-scope")
                return "denied", error_result(f"{name} is an admin tool and is never served over MCP")
            return "unknown", error_result(f"unknown tool {name!r}; tools/list shows the tools this gateway offers")
        access = get_access_token()
        space_id = getattr(ctx.request.state, CHECKED_SPACE, None) if ctx.request is not None else None
        if access is None or access.subject is None or space_id is None:
            return "denied", error_result(
                "this gateway only serves authenticated HTTP requests that passed the space check"
            )
        opted_in = spec.policy_hint == "destructive" and await anyio.to_thread.run_sync(
            self.allows_destructive, access.subject
        )
        decision = self.policy.check(access.subject, spec, arguments, destructive_allowed=opted_in)
        self.metrics.record_decision(decision.label, decision.reason or "none")
        for flag in decision.flags:
            self.metrics.record_decision("flag", flag)
            logger.warning("policy flag %s on %s by user %s", flag, name, access.subject)
        if not decision.allowed:
            return "denied", error_result(decision.message or f"policy denied {name}")
        if delay := self.faults.delay_for(name):
            await anyio.sleep(delay)
        if self.faults.should_fail(name):
            return "error", error_result(
                f"injected fault: {name} failed on purpose (the server was started with --fault {name}=…)"
            )
        invoker = access.claims.get("kind") if access.claims else None
        context = ToolContext(
            user_id=access.subject,
            space_id=space_id,
            backend=self.backend,
            token=access.token,
            invoker=invoker if invoker in ("human", "persona") else "system",
            tool=name,
            writes=spec.policy_hint != "read",
        )
        return await run_tool(spec, arguments, context)
