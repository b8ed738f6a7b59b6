"""MCP sessions of the 2025-11-25 protocol era, over raw HTTP as any client sends them: a user at
the per-user cap gets a new session in place of an idle one, a refused `initialize` holds no
slot, a request id sent twice at once is answered, and `serve` stops within seconds whatever is
in flight."""

from __future__ import annotations

import contextlib
import logging
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest

from tests.cli_helpers import ADMIN as CLI_ADMIN
from tests.cli_helpers import served_product
from tests.product_helpers import PASSWORD, RunningProduct, running_product
from tool_registry.session_limits import MAX_SESSIONS_PER_USER

pytestmark = pytest.mark.anyio

ACCEPT = {"Accept": "application/json, text/event-stream"}
ERA = "2025-11-25"
INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {"protocolVersion": ERA, "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}},
}


@pytest.fixture
def product(tmp_path: Path) -> Iterator[RunningProduct]:
    with running_product(str(tmp_path / "p.db"), tmp_path, delays=["todo.stats=1500ms"], rate_limit=10_000) as running:
        yield running


class Caller:
    """One user's raw HTTP to /mcp."""

    def __init__(self, http: httpx2.AsyncClient, token: str, space: str) -> None:
        self.http = http
        self.headers = {"Authorization": f"Bearer {token}", "X-Space": space, **ACCEPT}

    async def open(self) -> httpx2.Response:
        return await self.http.post("/mcp", json=INITIALIZE, headers=self.headers)

    async def send(self, session: str, message: dict[str, Any]) -> httpx2.Response:
        headers = {**self.headers, "mcp-session-id": session, "mcp-protocol-version": ERA}
        return await self.http.post("/mcp", json={"jsonrpc": "2.0", **message}, headers=headers)

    async def list_tools(self, session: str) -> int:
        return (await self.send(session, {"id": 2, "method": "tools/list"})).status_code


async def caller(product: RunningProduct, http: httpx2.AsyncClient, email: str) -> Caller:
    _, token, space = await product.persona(email)
    return Caller(http, token, space)


async def signed_in(http: httpx2.AsyncClient, email: str, admin_token: str) -> Caller:
    """A new persona of a product this test did not start, logged in, acting in its personal space."""
    made = await http.post(
        "/api/v1/admin/personas",
        json={"email": email, "name": "P", "password": PASSWORD},
        headers={"X-Admin-Token": admin_token},
    )
    assert made.status_code == 201, made.text
    token = (await http.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})).json()["token"]
    spaces = (await http.get("/api/v1/me/spaces", headers={"Authorization": f"Bearer {token}"})).json()["spaces"]
    return Caller(http, token, spaces[0]["id"])


async def test_forty_sessions_opened_without_ending_any_all_succeed(product: RunningProduct) -> None:
    """Clients that never send DELETE keep working: past the cap the least recently used idle session makes room."""
    async with product.http() as http:
        greedy = await caller(product, http, "greedy@example.test")
        other = await caller(product, http, "other@example.test")
        opened = [await greedy.open() for _ in range(40)]
        assert [r.status_code for r in opened] == [200] * 40
        sessions = [r.headers["mcp-session-id"] for r in opened]
        # Used a moment ago, so it is not the least recently used when the 41st opens.
        assert await greedy.list_tools(sessions[9]) == 200
        assert (await greedy.open()).status_code == 200
        statuses = [await greedy.list_tools(session) for session in sessions]
        assert (await other.open()).status_code == 200
    closed = 40 + 1 - MAX_SESSIONS_PER_USER
    assert statuses == [404] * 9 + [200] + [404] * (closed - 9) + [200] * (40 - closed - 1)


async def test_a_user_whose_sessions_are_all_busy_is_told_to_retry_with_the_cap_named(
    product: RunningProduct, caplog: pytest.LogCaptureFixture
) -> None:
    async with product.http() as http:
        busy = await caller(product, http, "busy@example.test")
        sessions = [(await busy.open()).headers["mcp-session-id"] for _ in range(MAX_SESSIONS_PER_USER)]
        answers: list[httpx2.Response] = []

        async def slow_call(session: str) -> None:
            call = {"id": 3, "method": "tools/call", "params": {"name": "todo.stats", "arguments": {}}}
            answers.append(await busy.send(session, call))

        with caplog.at_level(logging.INFO):
            async with anyio.create_task_group() as group:
                for session in sessions:
                    group.start_soon(slow_call, session)
                await anyio.sleep(0.5)  # every session is now serving its todo.stats (1.5 s each)
                refused = await busy.open()
            admitted = await busy.open()  # the calls are over: an idle session makes room
    assert [a.status_code for a in answers] == [200] * MAX_SESSIONS_PER_USER
    assert refused.status_code == 429 and refused.headers["retry-after"] == "1"
    assert refused.json()["error"]["message"] == (
        f"too many MCP sessions: each user may hold {MAX_SESSIONS_PER_USER} at once and all of yours are "
        "serving requests; end one (DELETE /mcp) or retry after 1 s"
    )
    assert admitted.status_code == 200
    assert "sessions are already open" not in caplog.text
    assert f"refusing a new MCP session: its user holds {MAX_SESSIONS_PER_USER}, all busy" in caplog.text


async def test_a_refused_initialize_holds_no_session(product: RunningProduct) -> None:
    manager = product.product.gateway.session_manager
    async with product.http() as http:
        user = await caller(product, http, "sloppy@example.test")
        for _ in range(MAX_SESSIONS_PER_USER + 8):
            refused = await http.post(
                "/mcp", json={**INITIALIZE, "params": {"protocolVersion": ERA}}, headers=user.headers
            )
            assert refused.status_code == 200 and refused.json()["error"]["code"] == -32602
        # The refused session is discarded as its request ends, which may be just after the answer went out.
        with anyio.move_on_after(5):
            while manager._session_owners:
                await anyio.sleep(0.05)
        assert manager._session_owners == {}
        opened = (await user.open()).headers["mcp-session-id"]
        assert list(manager._session_owners) == [opened]


async def test_a_request_id_sent_twice_at_once_gets_an_error_and_the_first_its_answer(product: RunningProduct) -> None:
    async with product.http() as http:
        user = await caller(product, http, "twice@example.test")
        session = (await user.open()).headers["mcp-session-id"]
        call = {"id": 7, "method": "tools/call", "params": {"name": "todo.stats", "arguments": {}}}
        answers: list[httpx2.Response] = []

        async def send() -> None:
            answers.append(await user.send(session, call))

        with anyio.fail_after(10):
            async with anyio.create_task_group() as group:
                group.start_soon(send)
                await anyio.sleep(0.3)
                group.start_soon(send)
        again = await user.send(session, {"id": 7, "method": "tools/list"})  # the id is free again once answered
    duplicate, first = answers
    assert duplicate.status_code == 409
    assert duplicate.json() == {
        "jsonrpc": "2.0",
        "id": 7,
        "error": {
            "code": -32600,
            "message": "request id 7 is already in flight on this session: give every request its own id",
        },
    }
    assert first.status_code == 200 and first.json()["result"]["structuredContent"]["total"] == 0
    assert again.status_code == 200 and again.json()["id"] == 7


async def test_serve_stops_within_seconds_with_requests_in_flight(tmp_path: Path) -> None:
    """Duplicate ids and calls that would take a minute are in flight when SIGTERM arrives."""
    with served_product(tmp_path, "--delay", "todo.stats=60s") as (url, process):
        async with httpx2.AsyncClient(base_url=url, timeout=30) as http:
            user = await signed_in(http, "stuck@example.test", admin_token=CLI_ADMIN)
            session = (await user.open()).headers["mcp-session-id"]
            call = {"id": 1, "method": "tools/call", "params": {"name": "todo.stats", "arguments": {}}}

            async def stuck_call() -> None:
                with contextlib.suppress(httpx2.TransportError):
                    await user.send(session, call)

            async with anyio.create_task_group() as group:
                for _ in range(3):
                    group.start_soon(stuck_call)
                await anyio.sleep(1.0)
                process.send_signal(signal.SIGTERM)
                started = time.monotonic()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    await anyio.to_thread.run_sync(process.wait, 10)
                stopped_after = time.monotonic() - started
                group.cancel_scope.cancel()
    assert process.returncode is not None and stopped_after < 6, stopped_after
