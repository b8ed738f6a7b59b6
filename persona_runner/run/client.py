"""Talking to a product over the wire: login, spaces, an MCP session, timed tool calls.

The runner never imports the product: everything goes through HTTP and MCP,
so any product that speaks the same protocol can be exercised.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from mcp.types import TextContent
from pydantic import BaseModel, ValidationError

from persona_runner.domain import CallOutcome, SpaceInfo, ToolInfo, module_of_tool
from persona_runner.util.text import one_line, truncate

ERROR_LIMIT = 500
#: Seconds an HTTP request to the product may take (login, spaces, seeding); tool calls have the tick's own.
DEFAULT_TIMEOUT = 30.0


class ProductError(Exception):
    """The product could not be used (unreachable, refused login, broken answer)."""


class ProductUnreachable(ProductError):
    pass


class LoginFailed(ProductError):
    pass


class GatewayLost(ProductError):
    """The MCP gateway stopped answering in the middle of a tick."""


@dataclass(frozen=True)
class Login:
    token: str
    user_id: str
    email: str


def root_cause(exc: BaseException) -> BaseException:
    """The first leaf of an exception group: what actually failed, under the task groups that carried it."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


def _error_text(response: httpx2.Response) -> str:
    """The product's `{"error": ...}` message, else the start of whatever it sent, on one line."""
    try:
        body = response.json()
    except ValueError:
        body = None
    text = str(body["error"]) if isinstance(body, dict) and "error" in body else response.text
    return one_line(text, 200)


# The answers of the product's HTTP API, as far as the runner reads them: anything else
# the product sends is ignored, anything missing is a ProductError naming the endpoint.


class _Health(BaseModel):
    """Any JSON object: `/health` only has to answer like a persona product."""


class _User(BaseModel):
    id: str


class _LoginAnswer(BaseModel):
    token: str
    user: _User


class _SpacesAnswer(BaseModel):
    spaces: list[SpaceInfo]


class _PersonaUpserted(BaseModel):
    user: _User
    change: Literal["created", "updated", "unchanged"]


class _ListedPersona(BaseModel):
    email: str


class _PersonasAnswer(BaseModel):
    personas: list[_ListedPersona]


class _SpaceEnsured(BaseModel):
    added: list[str]


Answer = TypeVar("Answer", bound=BaseModel)


def personal_space(spaces: list[SpaceInfo]) -> SpaceInfo:
    """The persona's own space; the first one when the product marks none as personal."""
    return next((s for s in spaces if s.type == "personal"), spaces[0])


@dataclass(frozen=True)
class Visit:
    """A logged-in persona at work in one of its spaces: the session to call tools on, and what it offers."""

    spaces: list[SpaceInfo]
    space: SpaceInfo
    mcp: McpSession
    tools: list[ToolInfo]


class ProductClient:
    """The product's HTTP API, as a persona or the harness's seeding step uses it."""

    def __init__(self, base_url: str, *, timeout: float = DEFAULT_TIMEOUT, admin_token: str | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.admin_token = admin_token
        headers = {"X-Admin-Token": admin_token} if admin_token else {}
        #: One TLS context for the API and every persona's MCP session: each new one loads the CA bundle, about
        #: a megabyte and 20 ms, which 200 personas in flight would pay 200 times.
        self._tls = httpx2.create_ssl_context()
        self._http = httpx2.AsyncClient(base_url=self.base_url, timeout=timeout, headers=headers, verify=self._tls)

    async def __aenter__(self) -> ProductClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._http.aclose()

    async def _request(self, method: str, path: str, **kwargs: Any) -> httpx2.Response:
        try:
            try:
                return await self._http.request(method, path, **kwargs)
            except httpx2.RemoteProtocolError:
                # A pooled keep-alive connection the server had just closed: one fresh try.
                # Safe for these calls: login, spaces and the admin upserts are idempotent.
                return await self._http.request(method, path, **kwargs)
        except httpx2.TimeoutException:
            raise ProductUnreachable(
                f"product at {self.base_url} did not answer {method} {path} within {self.timeout:g} s; "
                "is it overloaded? check --target"
            ) from None
        except httpx2.TransportError as exc:
            raise ProductUnreachable(
                f"product at {self.base_url} is unreachable ({type(exc).__name__}: {exc}); "
                "is it running? check --target"
            ) from None

    async def _call(
        self, method: str, path: str, answer: type[Answer], *, expect: tuple[int, ...] = (200,), **kwargs: Any
    ) -> Answer:
        response = await self._request(method, path, **kwargs)
        if response.status_code not in expect:
            raise ProductError(f"{method} {path} answered {response.status_code}: {_error_text(response)}")
        return self._parse(response, f"{method} {path}", answer)

    def _parse(self, response: httpx2.Response, what: str, answer: type[Answer]) -> Answer:
        """The answer in the shape a persona product gives it, or one line saying this is not one."""
        try:
            return answer.model_validate_json(response.content)
        except ValidationError as exc:
            first = exc.errors()[0]
            if first["type"] == "json_invalid":
                detail = "did not answer JSON"
            else:
                where = ".".join(str(part) for part in first["loc"]) or "the body"
                detail = f"answered JSON of another shape ({where}: {first['msg']})"
            raise ProductError(f"{what} on {self.base_url} {detail}; is --target a persona product?") from None

    async def health(self) -> None:
        await self._call("GET", "/health", _Health)

    async def check(self) -> None:
        """That the target answers like a persona product and, when an admin token is set, accepts it.

        Commands call it before they write anything, so a wrong --target or
        --admin-token costs one line and leaves no results store behind.
        """
        await self.health()
        if self.admin_token:
            await self.persona_emails()

    async def login(self, email: str, password: str) -> Login:
        response = await self._request("POST", "/api/v1/auth/login", json={"email": email, "password": password})
        if response.status_code == 401:
            raise LoginFailed(
                f"login refused for {email}: {_error_text(response)} "
                "(was the persona seeded with the same PERSONA_SEED_SECRET?)"
            )
        if response.status_code != 200:
            raise ProductError(f"login for {email} answered {response.status_code}: {_error_text(response)}")
        answer = self._parse(response, "POST /api/v1/auth/login", _LoginAnswer)
        return Login(token=answer.token, user_id=answer.user.id, email=email)

    async def spaces(self, token: str) -> list[SpaceInfo]:
        return (
            await self._call("GET", "/api/v1/me/spaces", _SpacesAnswer, headers={"Authorization": f"Bearer {token}"})
        ).spaces

    @asynccontextmanager
    async def visit(
        self, login: Login, choose: Callable[[list[SpaceInfo]], SpaceInfo] = personal_space
    ) -> AsyncIterator[Visit]:
        """How every persona's day starts once logged in: its spaces, the one it works in, an MCP session
        there, the tools."""
        spaces = await self.spaces(login.token)
        if not spaces:
            raise ProductError(f"{login.email} belongs to no space; the product must give every user a personal space")
        space = choose(spaces)
        async with self.mcp_session(login.token, space.id) as mcp:
            yield Visit(spaces=spaces, space=space, mcp=mcp, tools=await mcp.list_tools())

    # admin -----------------------------------------------------------------

    async def upsert_persona(self, *, email: str, name: str, password: str) -> tuple[str, str]:
        """Returns (user id, change) where change is created | updated | unchanged."""
        answer = await self._call(
            "POST",
            "/api/v1/admin/personas",
            _PersonaUpserted,
            expect=(200, 201),
            json={"email": email, "name": name, "password": password},
        )
        return answer.user.id, answer.change

    async def persona_emails(self) -> set[str]:
        """The emails of the persona accounts the product already has."""
        return {
            persona.email for persona in (await self._call("GET", "/api/v1/admin/personas", _PersonasAnswer)).personas
        }

    async def ensure_space(self, *, name: str, type: str, members: list[str]) -> list[str]:
        """Returns the member emails newly added."""
        return (
            await self._call(
                "POST", "/api/v1/admin/spaces", _SpaceEnsured, json={"name": name, "type": type, "members": members}
            )
        ).added

    # MCP -------------------------------------------------------------------

    @asynccontextmanager
    async def mcp_session(self, token: str, space_id: str) -> AsyncIterator[McpSession]:
        http = httpx2.AsyncClient(
            headers={"Authorization": f"Bearer {token}", "X-Space": space_id}, timeout=self.timeout, verify=self._tls
        )
        transport = streamable_http_client(f"{self.base_url}/mcp", http_client=http)
        try:
            async with http, Client(transport) as client:
                yield McpSession(client, self.base_url)
        except Exception as raised:
            # The SDK's task groups wrap what went wrong; tool calls answer their own MCP errors,
            # so one here is about the session itself (opening it, tools/list).
            cause = root_cause(raised)
            if isinstance(cause, httpx2.TransportError):
                raise GatewayLost(
                    f"MCP gateway at {self.base_url}/mcp stopped answering: {type(cause).__name__}: {cause}"
                ) from None
            if isinstance(cause, MCPError):
                raise ProductError(
                    f"{self.base_url}/mcp refused the MCP session ({cause}); "
                    "is --target a persona product with an MCP gateway?"
                ) from None
            raise


def tool_info(tool: Any) -> ToolInfo:
    """A `tools/list` entry as drivers see it; the module comes from `_meta` when present."""
    meta = tool.meta or {}
    annotations = tool.annotations
    return ToolInfo(
        name=tool.name,
        description=tool.description or "",
        module=module_of_tool(tool.name, str(meta.get("module") or "") or None),
        input_schema=dict(tool.input_schema),
        policy_hint=str(meta.get("policyHint", "read" if annotations and annotations.read_only_hint else "write")),
        read_only=bool(annotations and annotations.read_only_hint),
        destructive=bool(annotations and annotations.destructive_hint),
    )


class McpSession:
    def __init__(self, client: Client, base_url: str) -> None:
        self._client = client
        self._base_url = base_url

    async def list_tools(self) -> list[ToolInfo]:
        tools: list[ToolInfo] = []
        cursor: str | None = None
        while True:
            page = await self._client.list_tools(cursor=cursor)
            tools.extend(tool_info(t) for t in page.tools)
            cursor = page.next_cursor
            if not cursor:
                return tools

    async def call_tool(self, name: str, arguments: dict[str, Any]) -> CallOutcome:
        """One timed `tools/call`. A tool error is an outcome, not an exception;
        a dead gateway raises GatewayLost, and the caller times the lost call itself."""
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
                f"MCP gateway at {self._base_url}/mcp stopped answering during {name}: {type(exc).__name__}: {exc}"
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
