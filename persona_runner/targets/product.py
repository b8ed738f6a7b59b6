"""A persona product: derived login, spaces, and an MCP session at `/mcp` in the chosen space.

The runner never imports the product: everything goes through HTTP and MCP,
so any product that speaks the same protocol can be exercised.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Collection
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

import httpx2
from pydantic import BaseModel, ValidationError

from persona_runner.domain import SpaceInfo
from persona_runner.targets.base import ChooseSpace, Visit, Visitor
from persona_runner.targets.errors import LoginFailed, ProductError, ProductUnreachable
from persona_runner.targets.http_sessions import SessionPool
from persona_runner.util.text import one_line

#: Seconds an HTTP request to the product may take (login, spaces, seeding); tool calls have the tick's own.
DEFAULT_TIMEOUT = 30.0


@dataclass(frozen=True)
class Login:
    token: str
    user_id: str
    email: str


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
    id: str
    email: str


class _PersonasAnswer(BaseModel):
    personas: list[_ListedPersona]


class _SpaceEnsured(BaseModel):
    added: list[str]


Answer = TypeVar("Answer", bound=BaseModel)


def personal_space(spaces: list[SpaceInfo]) -> SpaceInfo:
    """The persona's own space; the first one when the product marks none as personal."""
    return next((s for s in spaces if s.type == "personal"), spaces[0])


class ProductClient:
    """The product's HTTP API, as a persona or the harness's seeding step uses it."""

    def __init__(
        self,
        base_url: str,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        admin_token: str | None = None,
        modules: Collection[str] | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.admin_token = admin_token
        #: The catalog's modules, for tools that do not declare theirs (see `module_of_tool`).
        self.modules = modules
        self._pool = SessionPool(timeout)
        self._http = self._pool.client({"X-Admin-Token": admin_token} if admin_token else {}, self.base_url)

    @property
    def address(self) -> str:
        return self.base_url

    async def __aenter__(self) -> ProductClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._http.aclose()
        await self._pool.aclose()

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
    async def visit(self, visitor: Visitor, choose: ChooseSpace = personal_space) -> AsyncIterator[Visit]:
        """How every persona's day starts: login, its spaces, the one it works in, an MCP session there."""
        login = await self.login(visitor.email, visitor.password)
        spaces = await self.spaces(login.token)
        if not spaces:
            raise ProductError(f"{login.email} belongs to no space; the product must give every user a personal space")
        space = choose(spaces)
        headers = {"Authorization": f"Bearer {login.token}", "X-Space": space.id}
        hint = "is --target a persona product with an MCP gateway?"
        async with self._pool.session(f"{self.base_url}/mcp", headers, self.modules, hint) as mcp:
            tools = await mcp.list_tools()
            yield Visit(persona_id=login.user_id, mcp=mcp, tools=tools, spaces=spaces, space=space)

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

    async def persona_accounts(self) -> dict[str, str]:
        """The persona accounts the product has: user id by email."""
        listed = (await self._call("GET", "/api/v1/admin/personas", _PersonasAnswer)).personas
        return {persona.email: persona.id for persona in listed}

    async def persona_emails(self) -> set[str]:
        """The emails of the persona accounts the product already has."""
        return set(await self.persona_accounts())

    async def delete_persona(self, user_id: str) -> None:
        """Delete a persona account and everything of theirs; the product refuses any account that is not one."""
        response = await self._request("DELETE", f"/api/v1/admin/personas/{user_id}")
        if response.status_code != 204:
            raise ProductError(
                f"DELETE /api/v1/admin/personas/{user_id} answered {response.status_code}: {_error_text(response)}"
            )

    async def ensure_space(self, *, name: str, type: str, members: list[str]) -> list[str]:
        """Returns the member emails newly added."""
        return (
            await self._call(
                "POST", "/api/v1/admin/spaces", _SpaceEnsured, json={"name": name, "type": type, "members": members}
            )
        ).added
