"""MCP servers nobody here wrote, for personas to be pointed at: the reference `server-everything` over
Streamable HTTP (from npm, into a cache shared by test runs), `mcp-server-time` and `mcp-server-git` over
stdio (from PyPI, installed with the test extras), and a proxy that records what crosses the wire."""

from __future__ import annotations

import fcntl
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx2
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import StreamingResponse
from starlette.routing import Route

from tool_registry.server import BackgroundServer, free_port

EVERYTHING = "@modelcontextprotocol/server-everything"
EVERYTHING_VERSION = "2026.8.31"
#: npm installs here once; later runs (and CI re-runs on one machine) reuse it.
NPM_CACHE = Path(os.environ.get("PERSONA_RUNNER_TEST_CACHE", Path.home() / ".cache" / "persona-runner-tests")) / "npm"
BIN = Path(sys.executable).parent


def everything_script() -> Path:
    """server-everything's entry point, installed with npm at the pinned version if it is not yet."""
    prefix = NPM_CACHE / f"server-everything-{EVERYTHING_VERSION}"
    script = prefix / "node_modules" / EVERYTHING / "dist" / "index.js"
    prefix.mkdir(parents=True, exist_ok=True)
    with (prefix / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # test workers wait for the one that installs
        if not script.exists():
            package = f"{EVERYTHING}@{EVERYTHING_VERSION}"
            subprocess.run(
                ["npm", "install", "--no-audit", "--no-fund", "--prefix", str(prefix), package],
                check=True,
                capture_output=True,
                timeout=300,
            )
    return script


def _wait_for_port(port: int, process: subprocess.Popen[bytes], within: float = 30.0) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited {process.returncode} before it listened on {port}")
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listened on 127.0.0.1:{port} within {within:g} s")


@contextmanager
def everything_server() -> Iterator[str]:
    """server-everything in Streamable HTTP mode on a free port: its MCP endpoint's URL."""
    port = free_port()
    process = subprocess.Popen(
        ["node", str(everything_script()), "streamableHttp"],
        env={**os.environ, "PORT": str(port)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_for_port(port, process)
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        process.terminate()
        process.wait(timeout=10)


class RecordingProxy:
    """Forwards every request to `upstream` as it came, streaming the answers back, and keeps each request's
    headers: what a server on the other side of the wire was sent."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.seen: list[dict[str, str]] = []
        self._client = httpx2.AsyncClient(timeout=30)

    async def forward(self, request: Request) -> StreamingResponse:
        self.seen.append(dict(request.headers))
        headers = {k: v for k, v in request.headers.items() if k not in ("host", "content-length")}
        outgoing = self._client.build_request(
            request.method, self.upstream + request.url.path, headers=headers, content=await request.body()
        )
        answer = await self._client.send(outgoing, stream=True)

        async def body() -> AsyncIterator[bytes]:
            async for chunk in answer.aiter_raw():
                yield chunk

        kept = {k: v for k, v in answer.headers.items() if k not in ("content-length", "transfer-encoding")}
        return StreamingResponse(body(), answer.status_code, kept, background=BackgroundTask(answer.aclose))


@contextmanager
def recording_proxy(upstream: str) -> Iterator[tuple[str, RecordingProxy]]:
    """A proxy on 127.0.0.1 in front of `upstream` (a base URL): (its base URL, the proxy and what it saw)."""
    proxy = RecordingProxy(upstream)
    app = Starlette(routes=[Route("/{path:path}", proxy.forward, methods=["GET", "POST", "DELETE"])])
    with BackgroundServer(app, shutdown_grace=1.0) as server:
        yield server.url, proxy


def git_repository(where: Path) -> Path:
    """A small repository with one commit, for mcp-server-git to serve."""
    where.mkdir(parents=True, exist_ok=True)
    author = ["-c", "user.email=tester@example.test", "-c", "user.name=tester"]
    (where / "README.md").write_text("hello\n")
    for command in (["init", "-q"], ["add", "README.md"], [*author, "commit", "-q", "-m", "first"]):
        subprocess.run(["git", *command], cwd=where, check=True, capture_output=True)
    return where


def write_catalog(path: Path, personas: list[dict[str, Any]], **sections: Any) -> Path:
    """A catalog of `personas` (each needs name and moduleMix; the rest is filled in)."""
    entries = [
        {
            "email": f"{p['name']}@personas.test",
            "archetype": "solo-dev",
            "systemPrompt": f"You are {p['name']}, trying the server out.",
            "tickCadence": "daily",
            **p,
        }
        for p in personas
    ]
    path.write_text(json.dumps({"version": 1, "personas": entries, **sections}))
    return path
