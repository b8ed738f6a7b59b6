"""The gateway does only the product's own work per call: a token is verified once, a membership
is looked up once (and again at once when memberships change), and a read takes no write lock."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event

from tests.product_helpers import ADMIN, RunningProduct, running_product
from tool_registry.access_tokens import JwksAccessVerifier
from tool_registry.tokens import TokenIssuer, TokenVerifier

pytestmark = pytest.mark.anyio


@pytest.fixture
def product(tmp_path: Path) -> Iterator[RunningProduct]:
    with running_product(str(tmp_path / "p.db"), tmp_path) as running:
        yield running


@pytest.fixture
def statements(product: RunningProduct) -> Iterator[list[str]]:
    """Every SQL statement the product sends from now on."""
    sent: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        sent.append(statement)

    event.listen(product.product.engine, "before_cursor_execute", record)
    yield sent
    event.remove(product.product.engine, "before_cursor_execute", record)


async def test_a_token_is_verified_once_for_all_the_calls_it_makes(product: RunningProduct) -> None:
    _, token, space = await product.persona("steady@example.test")
    verifier = product.product.verifier
    checked: list[str] = []
    original = verifier.verify

    def counting(presented: str) -> Any:
        checked.append(presented)
        return original(presented)

    verifier.verify = counting  # type: ignore[method-assign]
    async with product.mcp(token, space) as client:
        for _ in range(5):
            assert not (await client.call_tool("todo.list", {})).is_error
    assert checked in ([], [token])  # [] when logging in already had it verified, for /me/spaces


async def test_a_remembered_token_is_verified_again_once_it_expires() -> None:
    issuer = TokenIssuer(ttl_seconds=60)
    now = [1_000_000.0]
    access = JwksAccessVerifier(TokenVerifier(issuer.jwks()), clock=lambda: now[0])
    token, expires_at = issuer.issue(sub="u1", email="u1@example.test", kind="persona")
    remembered = await access.verify_token(token)
    assert remembered is not None and remembered.subject == "u1"
    assert await access.verify_token(token) is remembered
    now[0] = expires_at + 1.0  # the JWT's own clock is the real one: it still verifies, so the cache must not answer
    assert await access.verify_token(token) is not remembered
    assert await access.verify_token("not-a-token") is None


async def test_reads_take_no_write_lock_and_ask_for_membership_once(
    product: RunningProduct, statements: list[str]
) -> None:
    _, token, space = await product.persona("reader@example.test")
    async with product.mcp(token, space) as client:
        statements.clear()
        for tool in ("todo.list", "todo.stats", "notes.search", "todo.list"):
            arguments = {"query": "x"} if tool == "notes.search" else {}
            assert not (await client.call_tool(tool, arguments)).is_error
        reads = list(statements)
        statements.clear()
        assert not (await client.call_tool("todo.create", {"title": "write"})).is_error
    assert not [s for s in reads if "BEGIN" in s.upper()], reads
    assert len([s for s in reads if "FROM memberships" in s]) <= 1, reads
    assert "BEGIN IMMEDIATE" in statements


async def test_a_deleted_persona_is_refused_at_once_though_its_membership_was_remembered(
    product: RunningProduct,
) -> None:
    user_id, token, space = await product.persona("leaving@example.test")
    async with product.mcp(token, space) as client:
        assert not (await client.call_tool("todo.list", {})).is_error
    async with product.http(**{"X-Admin-Token": ADMIN}) as admin:
        assert (await admin.delete(f"/api/v1/admin/personas/{user_id}")).status_code == 204
    async with product.http(Authorization=f"Bearer {token}", **{"X-Space": space}) as http:
        refused = await http.post(
            "/mcp",
            json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
            headers={"Accept": "application/json, text/event-stream", "mcp-protocol-version": "2025-11-25"},
        )
    assert refused.status_code == 403 and refused.json() == {"error": f"not a member of space {space}"}
