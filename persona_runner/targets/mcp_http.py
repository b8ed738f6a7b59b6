"""Any MCP server over Streamable HTTP, as it is: no login, no spaces, the headers it asks for."""

from __future__ import annotations

from collections.abc import AsyncIterator, Collection, Mapping
from contextlib import asynccontextmanager

import httpx2

from persona_runner.targets.base import ChooseSpace, Visit, Visitor
from persona_runner.targets.errors import ProductUnreachable
from persona_runner.targets.http_sessions import SessionPool

HINT = "is --mcp-url the server's MCP endpoint (often ending in /mcp), and are its --header values right?"


class McpHttpTarget:
    def __init__(
        self, url: str, headers: Mapping[str, str], *, timeout: float, modules: Collection[str] | None = None
    ) -> None:
        self.url = url
        self.headers = dict(headers)
        self.modules = modules
        self._pool = SessionPool(timeout)

    @property
    def address(self) -> str:
        return self.url

    async def __aenter__(self) -> McpHttpTarget:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._pool.aclose()

    async def check(self) -> None:
        """That something answers HTTP at the URL; whether it is an MCP server the first session tells."""
        async with self._pool.client(self.headers) as http:
            try:
                await http.get(self.url)
            except httpx2.TransportError as exc:
                raise ProductUnreachable(
                    f"MCP server at {self.url} is unreachable ({type(exc).__name__}: {exc}); is it running? "
                    "check --mcp-url"
                ) from None

    @asynccontextmanager
    async def visit(self, visitor: Visitor, choose: ChooseSpace) -> AsyncIterator[Visit]:
        """A session sending the target's headers and the persona's own (which win): a server without accounts
        knows a persona only by what its headers say."""
        async with self._pool.session(self.url, {**self.headers, **visitor.headers}, self.modules, HINT) as mcp:
            yield Visit(persona_id=f"email:{visitor.email}", mcp=mcp, tools=await mcp.list_tools())
