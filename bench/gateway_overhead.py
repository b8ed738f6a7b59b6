"""What the gateway costs per tool call, compared with bare MCP servers.

Three servers answer `todo.list` over Streamable HTTP on 127.0.0.1:

- the gateway: the real product (bearer JWT against the JWKS, `X-Space`
  membership check, policy gate with a rate limit too high to trip, metrics);
- "read": a bare low-level `mcp` server doing the same database read: the
  same tool description and the gateway's own `run_tool` (pydantic
  validation, the handler through the same `Backend`, the same result
  building), and nothing else. gateway / read is the price of the gateway's
  own layers; the target is 0.95 or more;
- "constant": a bare `mcp` server answering the same listing, built once, with
  no database at all. gateway / constant is the ceiling: what is left is the
  product's own work (reading the tasks) plus the gateway's layers.

All use the same transport options (JSON responses, stateful session
manager, DNS-rebinding protection), and are driven by the real `mcp` client in
its default mode. The machine is shared and noisy, so the servers are
measured in turn, round after round (the order rotating), and the medians are
compared.

The client and both servers share this one process (uvicorn in threads, one
GIL), so absolute calls/s are lower than across processes and concurrency
adds little; the ratio is the figure to read.

    .venv/bin/python bench/gateway_overhead.py --calls 2000 --rounds 5

Prints figures; never asserts timings. Exits 1 only when something broke.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx2
import mcp_types as types
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel import Server
from starlette.applications import Starlette

from tool_registry.backend import Backend
from tool_registry.gateway import describe_tool, error_result, run_tool
from tool_registry.server import BackgroundServer, Product, ServerConfig
from tool_registry.spec import ToolContext, ToolSpec

TOOL = "todo.list"
ARGUMENTS: dict[str, Any] = {"filter": "all", "limit": 50}
SEED_TASKS = 20
TARGET_RATIO = 0.95
ADMIN_TOKEN = "bench-admin-token"
PERSONA = {"email": "bench@example.test", "name": "Bench", "password": "bench-password-not-secret"}
# Checked on every call, never reached: the gate's bookkeeping is part of what is measured.
HUGE_RATE_LIMIT = 1_000_000_000
CALL_TIMEOUT_SECONDS = 30.0


class BenchError(RuntimeError):
    """Something broke (a server, a call, a wrong answer): the figures would mean nothing."""


@dataclass(frozen=True)
class Target:
    """One server under test, as a client reaches it."""

    label: str
    url: str
    headers: dict[str, str]


@dataclass(frozen=True)
class Persona:
    user_id: str
    token: str
    space_id: str


def _text(result: types.CallToolResult) -> str:
    return " ".join(block.text for block in result.content if isinstance(block, types.TextContent))


def bare_app(spec: ToolSpec, backend: Backend, persona: Persona) -> Starlette:
    """A bare MCP server offering one tool: what the gateway does per call, minus the gateway.

    The caller and the space are fixed when the app is built, as if already
    authenticated and checked; the call still goes through `run_tool` and
    `Backend.run`, so the work after the gateway's checks (membership row
    included) is exactly the gateway's.
    """
    context = ToolContext(
        user_id=persona.user_id, space_id=persona.space_id, backend=backend, writes=spec.policy_hint != "read"
    )

    async def answer(arguments: dict[str, Any]) -> types.CallToolResult:
        _, result = await run_tool(spec, arguments, context)
        return result

    return _one_tool_app("bare-todo", spec, answer)


def constant_app(spec: ToolSpec, result: types.CallToolResult) -> Starlette:
    """A bare MCP server offering one tool that answers `result`, built once: no database, no validation."""

    async def answer(arguments: dict[str, Any]) -> types.CallToolResult:
        return result

    return _one_tool_app("constant-todo", spec, answer)


def _one_tool_app(
    name: str, spec: ToolSpec, answer: Callable[[dict[str, Any]], Awaitable[types.CallToolResult]]
) -> Starlette:
    tool = describe_tool(spec)

    async def list_tools(
        ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        return types.ListToolsResult(tools=[tool])

    async def call_tool(ctx: ServerRequestContext[Any], params: types.CallToolRequestParams) -> types.CallToolResult:
        if params.name != spec.name:
            return error_result(f"unknown tool {params.name!r}")
        return await answer(params.arguments or {})

    server = Server(name, version="0.1.0", on_list_tools=list_tools, on_call_tool=call_tool)
    return server.streamable_http_app(
        streamable_http_path="/mcp", json_response=True, stateless_http=False, host="127.0.0.1"
    )


async def create_persona(base_url: str) -> Persona:
    """Create the benchmark persona through the admin API, log in, and pick its personal space."""
    async with httpx2.AsyncClient(base_url=base_url, timeout=CALL_TIMEOUT_SECONDS) as http:
        created = await http.post("/api/v1/admin/personas", json=PERSONA, headers={"X-Admin-Token": ADMIN_TOKEN})
        if created.status_code not in (200, 201):
            raise BenchError(f"creating the persona failed: {created.status_code} {created.text}")
        login = await http.post("/api/v1/auth/login", json={"email": PERSONA["email"], "password": PERSONA["password"]})
        if login.status_code != 200:
            raise BenchError(f"logging in failed: {login.status_code} {login.text}")
        token = login.json()["token"]
        spaces = (await http.get("/api/v1/me/spaces", headers={"Authorization": f"Bearer {token}"})).json()["spaces"]
    personal = next((s["id"] for s in spaces if s["type"] == "personal"), None)
    if personal is None:
        raise BenchError("the persona has no personal space")
    return Persona(user_id=created.json()["user"]["id"], token=token, space_id=personal)


@asynccontextmanager
async def open_client(target: Target) -> AsyncIterator[Client]:
    http = httpx2.AsyncClient(headers=target.headers, timeout=CALL_TIMEOUT_SECONDS)
    transport = streamable_http_client(f"{target.url}/mcp", http_client=http)
    async with http, Client(transport, mode="auto", read_timeout_seconds=CALL_TIMEOUT_SECONDS) as client:  # type: ignore[arg-type]
        yield client


async def call(
    client: Client, target: Target, name: str = TOOL, arguments: dict[str, Any] | None = None
) -> types.CallToolResult:
    """One tool call; an error result means the benchmark is measuring the wrong thing, so it stops."""
    result = await client.call_tool(name, dict(ARGUMENTS) if arguments is None else arguments)
    if result.is_error:
        raise BenchError(f"{target.label}: {name} returned an error: {_text(result)[:300]}")
    return result


async def sequential(target: Target, calls: int) -> float:
    """Calls per second of one client calling back to back (connection set up before the clock starts)."""
    async with open_client(target) as client:
        await call(client, target)
        started = time.perf_counter()
        for _ in range(calls):
            await call(client, target)
        return calls / (time.perf_counter() - started)


async def concurrent(target: Target, calls: int, clients: int) -> float:
    """Calls per second of `clients` clients calling at once, `calls` split between them."""
    shares = [calls // clients + (1 if i < calls % clients else 0) for i in range(clients)]
    async with AsyncExitStack() as stack:
        opened = [await stack.enter_async_context(open_client(target)) for _ in range(clients)]
        for client in opened:
            await call(client, target)

        async def drive(client: Client, share: int) -> None:
            for _ in range(share):
                await call(client, target)

        started = time.perf_counter()
        async with anyio.create_task_group() as group:
            for client, share in zip(opened, shares, strict=True):
                group.start_soon(drive, client, share)
        return calls / (time.perf_counter() - started)


async def check_same_answer(targets: list[Target]) -> int:
    """Every server must return the same listing, or the comparison compares different work."""
    answers = []
    for target in targets:
        async with open_client(target) as client:
            answers.append((await call(client, target)).structured_content)
    if any(answer != answers[0] for answer in answers):
        raise BenchError(f"{', '.join(t.label for t in targets)} did not all answer {TOOL} alike")
    return int((answers[0] or {}).get("count", 0))


@dataclass
class Results:
    """Calls per second, per (mode, server label), one figure per round."""

    figures: dict[tuple[str, str], list[float]]

    def median(self, mode: str, label: str) -> float:
        return statistics.median(self.figures[(mode, label)])


MODES = ("sequential", "concurrent")


async def measure(targets: list[Target], *, calls: int, rounds: int, clients: int, warmup: int) -> Results:
    modes: dict[str, Callable[[Target, int], Awaitable[float]]] = {
        "sequential": sequential,
        "concurrent": lambda target, n: concurrent(target, n, clients),
    }
    for target in targets:
        for run in modes.values():
            await run(target, warmup)
    results = Results(figures={(mode, t.label): [] for mode in modes for t in targets})
    for round_no in range(rounds):
        # Rotate who goes first, so a drift in machine load over a round hits every server alike.
        order = targets[round_no % len(targets) :] + targets[: round_no % len(targets)]
        for mode, run in modes.items():
            for target in order:
                results.figures[(mode, target.label)].append(await run(target, calls))
        line = "  ".join(
            f"{mode} " + " ".join(f"{t.label} {results.figures[(mode, t.label)][-1]:.1f}" for t in targets)
            for mode in modes
        )
        print(f"round {round_no + 1}/{rounds}: {line}", file=sys.stderr, flush=True)
    return results


def report(results: Results, *, calls: int, rounds: int, clients: int) -> str:
    lines = [
        f"gateway overhead ({TOOL}, {calls} calls, {rounds} rounds, median calls/s)",
        f"{'':<17}{'constant':>10}{'read':>10}{'gateway':>10}{'gw/read':>10}{'gw/constant':>13}",
    ]
    for mode in MODES:
        title = mode if mode == "sequential" else f"concurrent ({clients})"
        constant, read, gateway = (results.median(mode, label) for label in ("constant", "read", "gateway"))
        figures = f"{constant:>10.1f}{read:>10.1f}{gateway:>10.1f}"
        lines.append(f"{title:<17}{figures}{gateway / read:>10.2f}{gateway / constant:>13.2f}")
    lines.append(
        f"target: gateway / read >= {TARGET_RATIO} (a bare SDK server doing the same database read); "
        "gateway / constant is the ceiling (a bare SDK server answering a constant)"
    )
    # The per-round spread says how far the machine's noise lets the medians be trusted.
    spreads = []
    for mode in MODES:
        for base in ("read", "constant"):
            ratios = [
                g / b for b, g in zip(results.figures[(mode, base)], results.figures[(mode, "gateway")], strict=True)
            ]
            spreads.append(f"{mode} gw/{base} {min(ratios):.2f}-{max(ratios):.2f}")
    lines.append("ratio per round: " + ", ".join(spreads))
    return "\n".join(lines)


async def run_bench(product: Product, base_url: str, args: argparse.Namespace) -> str:
    persona = await create_persona(base_url)
    gateway = Target("gateway", base_url, {"Authorization": f"Bearer {persona.token}", "X-Space": persona.space_id})
    async with open_client(gateway) as client:
        for i in range(SEED_TASKS):
            await call(client, gateway, "todo.create", {"title": f"bench task {i + 1}", "due": f"2026-12-{i + 1:02d}"})
    spec = product.registry.get(TOOL)
    if spec is None:
        raise BenchError(f"the product has no {TOOL} tool")
    async with open_client(gateway) as client:
        listing = await call(client, gateway)
    with (
        BackgroundServer(bare_app(spec, product.gateway.backend, persona)) as read_server,
        BackgroundServer(constant_app(spec, listing)) as constant_server,
    ):
        targets = [
            Target("constant", constant_server.url, {}),
            Target("read", read_server.url, {}),
            gateway,
        ]
        listed = await check_same_answer(targets)
        if listed != SEED_TASKS:
            raise BenchError(f"{TOOL} listed {listed} tasks, expected the {SEED_TASKS} seeded")
        with anyio.fail_after(args.budget):
            results = await measure(
                targets, calls=args.calls, rounds=args.rounds, clients=args.concurrency, warmup=args.warmup
            )
    return report(results, calls=args.calls, rounds=args.rounds, clients=args.concurrency)


# Every flag is bounded, so one run stays bounded in calls and in time.
LIMITS: dict[str, tuple[int, int]] = {
    "calls": (8, 100_000),
    "rounds": (1, 50),
    "concurrency": (1, 64),
    "warmup": (1, 10_000),
    "budget": (10, 7200),
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Throughput of todo.list through the gateway versus bare MCP servers (same read; a constant)."
    )
    parser.add_argument("--calls", type=int, default=2000, help="calls per measurement (default 2000)")
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds per server and mode (default 5)")
    parser.add_argument("--concurrency", type=int, default=8, help="clients in the concurrent mode (default 8)")
    parser.add_argument("--warmup", type=int, default=200, help="untimed calls per server and mode first (default 200)")
    parser.add_argument(
        "--budget", type=int, default=1800, help="give up after this many seconds of measuring (default 1800)"
    )
    args = parser.parse_args(argv)
    for name, (low, high) in LIMITS.items():
        value = getattr(args, name)
        if not low <= value <= high:
            parser.error(f"--{name} must be between {low} and {high}, got {value}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="gateway-overhead-") as tmp:
        config = ServerConfig(data=str(Path(tmp) / "product.db"), admin_token=ADMIN_TOKEN, rate_limit=HUGE_RATE_LIMIT)
        product = Product(config)
        try:
            with BackgroundServer(product.app()) as server:
                print(anyio.run(run_bench, product, server.url, args))
        except TimeoutError:
            print(
                f"gateway_overhead: measuring took longer than --budget {args.budget} s; lower --calls or --rounds",
                file=sys.stderr,
            )
            return 1
        except BenchError as exc:
            print(f"gateway_overhead: {exc}", file=sys.stderr)
            return 1
        finally:
            product.engine.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
