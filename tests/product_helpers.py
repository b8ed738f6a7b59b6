"""Starting the reference product for a test and talking to it as a client would."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from tool_registry.server import BackgroundServer, Product, ServerConfig
from tool_registry.spec import Registry

ADMIN = "test-admin-token"
PASSWORD = "correct-horse-battery"


@dataclass
class RunningProduct:
    product: Product
    url: str
    key_path: Path

    def http(self, **headers: str) -> httpx2.AsyncClient:
        return httpx2.AsyncClient(base_url=self.url, headers=headers, timeout=30)

    async def persona(self, email: str, name: str | None = None) -> tuple[str, str, str]:
        """Create a persona through the admin API and log in: (user id, token, personal space id)."""
        async with self.http(**{"X-Admin-Token": ADMIN}) as http:
            created = await http.post(
                "/api/v1/admin/personas",
                json={"email": email, "name": name or email.split("@")[0], "password": PASSWORD},
            )
            assert created.status_code in (200, 201), created.text
            token = (await http.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})).json()["token"]
            spaces = (await http.get("/api/v1/me/spaces", headers={"Authorization": f"Bearer {token}"})).json()[
                "spaces"
            ]
        personal = next(s["id"] for s in spaces if s["type"] == "personal")
        return created.json()["user"]["id"], token, personal

    async def shared_space(self, name: str, type: str, *emails: str) -> str:
        """Create (or find) a shared space with these members through the admin API; its id."""
        async with self.http(**{"X-Admin-Token": ADMIN}) as http:
            made = await http.post("/api/v1/admin/spaces", json={"name": name, "type": type, "members": list(emails)})
        assert made.status_code == 200, made.text
        return made.json()["space"]["id"]

    @asynccontextmanager
    async def mcp(self, token: str, space: str, mode: str = "auto") -> AsyncIterator[Client]:
        http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}", "X-Space": space}, timeout=30)
        async with http, Client(streamable_http_client(f"{self.url}/mcp", http_client=http), mode=mode) as client:  # type: ignore[arg-type]
            yield client


@contextmanager
def running_product(
    data: str, tmp_path: Path, registry: Registry | None = None, **config: object
) -> Iterator[RunningProduct]:
    key_path = tmp_path / "signing-key.pem"
    product = Product(ServerConfig(data=data, admin_token=ADMIN, signing_key=str(key_path), **config), registry)  # type: ignore[arg-type]
    with BackgroundServer(product.app()) as server:
        yield RunningProduct(product, server.url, key_path)
