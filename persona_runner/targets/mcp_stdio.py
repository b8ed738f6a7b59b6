"""Any MCP server started as a child process, one per persona's day, over stdin and stdout.

The SDK's stdio client starts the child and stops it when the session ends,
however it ends (a finished day, a failed tick, a cancelled run). What the child
writes to stderr is kept aside, and its last line is quoted when it fails to
start, which is where such a server says what it is missing.
"""

from __future__ import annotations

import tempfile
from collections.abc import AsyncIterator, Collection, Mapping
from contextlib import asynccontextmanager
from typing import IO

from mcp import Client
from mcp.client.stdio import StdioServerParameters, stdio_client

from persona_runner.targets.base import ChooseSpace, Visit, Visitor
from persona_runner.targets.errors import ProductError
from persona_runner.targets.mcp import McpSession, SharedValidators, mcp_session
from persona_runner.targets.spec import stdio_address
from persona_runner.util.text import one_line

HINT = "does --mcp-stdio start an MCP server on stdin/stdout?"


def _last_words(log: IO[str]) -> str:
    log.seek(0)
    lines = [line for line in log.read().splitlines() if line.strip()]
    return f"; it said: {one_line(lines[-1], 300)}" if lines else ""


class McpStdioTarget:
    def __init__(self, command: list[str], env: Mapping[str, str], *, modules: Collection[str] | None = None) -> None:
        self.command = command
        self.env = dict(env)
        self.modules = modules
        self.validators = SharedValidators()

    @property
    def address(self) -> str:
        return stdio_address(self.command)

    async def __aenter__(self) -> McpStdioTarget:
        return self

    async def __aexit__(self, *exc: object) -> None:
        """Nothing outlives a visit: each child is stopped with its session."""

    async def check(self) -> None:
        """That the command starts a server that lists its tools."""
        async with self._session() as mcp:
            await mcp.list_tools()

    @asynccontextmanager
    async def visit(self, visitor: Visitor, choose: ChooseSpace) -> AsyncIterator[Visit]:
        async with self._session() as mcp:
            yield Visit(persona_id=f"email:{visitor.email}", mcp=mcp, tools=await mcp.list_tools())

    @asynccontextmanager
    async def _session(self) -> AsyncIterator[McpSession]:
        params = StdioServerParameters(command=self.command[0], args=self.command[1:], env=self.env)
        with tempfile.TemporaryFile("w+", encoding="utf-8", errors="replace") as log:
            try:
                client = Client(stdio_client(params, errlog=log))
                async with mcp_session(
                    client, self.address, self.modules, hint=HINT, validators=self.validators
                ) as mcp:
                    yield mcp
            except OSError as exc:
                raise ProductError(f"could not start {self.address}: {exc.strerror or exc}{_last_words(log)}") from None
            except ProductError as exc:
                raise type(exc)(f"{exc}{_last_words(log)}") from None
