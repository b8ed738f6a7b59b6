"""MCP sessions over Streamable HTTP, every persona's through one connection pool.

A client of its own per persona's day would load the CA bundle each time
(about a megabyte and 20 ms, even for `http://`) and open fresh connections:
200 personas in flight would pay it 200 times. Each session gets a light
client of its own (its headers: the persona's token, its space) over the one
transport of the target, which outlives them all.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Collection, Mapping
from contextlib import asynccontextmanager

import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from persona_runner.targets.mcp import McpSession, SharedValidators, mcp_session

#: Connections kept open between calls: enough for every persona in flight at the highest --concurrency.
KEPT_ALIVE = 256
#: How long an idle connection is kept for reuse: well under the 5 s after which common servers (uvicorn,
#: node) close one, so a request never goes out on a connection the server is closing at that moment.
IDLE_SECONDS = 2.0


class _Borrowed(httpx2.AsyncBaseTransport):
    """The pool's transport as one session's client sees it: closing the client leaves the pool open."""

    def __init__(self, transport: httpx2.AsyncBaseTransport) -> None:
        self._transport = transport

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        return await self._transport.handle_async_request(request)

    async def aclose(self) -> None:
        """The pool closes with its target, not with a session."""


class SessionPool:
    """One TLS context and one connection pool for a target's API calls and all its MCP sessions, and one
    set of compiled output-schema validators (see `SharedValidators`)."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.validators = SharedValidators()
        self.tls = httpx2.create_ssl_context()
        self._transport = httpx2.AsyncHTTPTransport(
            verify=self.tls,
            limits=httpx2.Limits(
                max_connections=None, max_keepalive_connections=KEPT_ALIVE, keepalive_expiry=IDLE_SECONDS
            ),
        )

    def client(self, headers: Mapping[str, str], base_url: str = "") -> httpx2.AsyncClient:
        """A client with these headers on the shared pool."""
        return httpx2.AsyncClient(
            transport=_Borrowed(self._transport), headers=dict(headers), timeout=self.timeout, base_url=base_url
        )

    @asynccontextmanager
    async def session(
        self, url: str, headers: Mapping[str, str], modules: Collection[str] | None, hint: str
    ) -> AsyncIterator[McpSession]:
        """An MCP session at `url` sending `headers` (see `mcp_session` for what its failures say)."""
        http = self.client(headers)
        client = Client(streamable_http_client(url, http_client=http))
        async with http, mcp_session(client, url, modules, hint=hint, validators=self.validators) as mcp:
            yield mcp

    async def aclose(self) -> None:
        await self._transport.aclose()
