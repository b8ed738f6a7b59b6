"""What recording costs the runner: tool calls per second with full recording, against a bare loop.

Two ways of making the same calls against the reference product on 127.0.0.1:

- recorded: `execute_run` with the scripted driver, every tick written to a
  real SQLite results store (ticks, actions, feedback, transcripts);
- bare: the exact (tool, arguments) sequence each persona made in a recorded
  run, read back from the store's transcripts and replayed with the MCP SDK
  alone (login, spaces, a session in the same space, tools/list, tools/call)
  over one connection pool, with the same concurrency and no store, no driver.

Both include what a tick cannot do without (login, spaces, session set-up,
tools/list), so the figures are what the driver and the recording add to the
same network work: calls per second, and CPU time per call and per
persona-day of this process (the runner) and of the product's process,
measured side by side (CPU time holds on a busy machine where wall time does
not). Each phase gets a fresh product process started with the same id seed,
seeded the same way, so every call that carries an id (`todo.complete {id}`)
finds the same row in the same state; the bare loop reports how many of its
calls ended differently from the recording. The phases alternate round after
round and medians are compared.

Then the memory of one runner process with 200 (or `--in-flight 200 1000`) personas in flight at once,
measured in a fresh process of its own that never loads the product (which
runs as `persona-runner serve` beside it), so the figure is the runner's
alone and the throughput rounds are not run in its aftermath. That process is
started first, while this one is still small: Linux carries a parent's peak
RSS over into a child it starts (`ru_maxrss` survives fork and exec).

    .venv/bin/python bench/runner_throughput.py --personas 10 --turns 20 --concurrency 4 --rounds 3
    .venv/bin/python bench/runner_throughput.py --rounds 1 --in-flight 200 1000
    .venv/bin/python bench/runner_throughput.py --delay 50ms --in-flight 0   # the product not the bottleneck

Prints figures; never asserts timings. Exits 1 only when something broke.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import resource
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import anyio
import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from sqlalchemy.engine import Engine
from sqlmodel import Session

from persona_runner.catalog import Catalog, PersonaSpec, default_catalog_path, load_catalog
from persona_runner.credentials import derive_password
from persona_runner.domain import Act, Day
from persona_runner.drivers.scripted import ScriptedDriver
from persona_runner.run.runner import RunResult, RunSettings, execute_run
from persona_runner.run.seeding import seed_catalog
from persona_runner.store.db import open_store
from persona_runner.store.models import Transcript
from persona_runner.targets.product import ProductClient
from persona_runner.targets.spec import TargetSpec

#: The targets of the runner's cost against a bare loop of the same MCP calls: throughput, CPU per call and per day.
TARGET_RATIO = 0.95
TARGET_CPU_RATIO = 1.1
TARGET_DAY_MS = 20.0
#: Peak RSS goals of one runner process, by personas in flight.
MEMORY_GOALS_MIB = {200: 300, 1000: 1024}
#: A fixed day, run seed and id seed: every round plays and replays exactly the same calls.
TICK_DATE = date(2026, 11, 22)
RUN_SEED = 7
ID_SEED = 7
#: Checked on every call, never reached: the product's per-tool limit (30/min) would otherwise turn calls into refusals.
HUGE_RATE_LIMIT = 1_000_000_000
#: The bench's own throwaway personas log in with passwords derived from this.
SECRET = "runner-throughput-bench-secret"
BENCH_DOMAIN = "runner-bench.test"
TICK_TIMEOUT_SECONDS = 900.0
STARTUP_SECONDS = 60.0


class BenchError(RuntimeError):
    """Something broke (a tick, the product, the time budget): the figures would mean nothing."""


# ---- the personas --------------------------------------------------------------------------


def bench_catalog(size: int) -> Catalog:
    return load_catalog(default_catalog_path()).scaled(size, BENCH_DOMAIN)


# ---- the product ---------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_healthy(url: str, server: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise BenchError(f"the product process exited with {server.returncode} before answering on {url}")
        try:
            if httpx2.get(f"{url}/health", timeout=2.0).status_code == 200:
                return
        except httpx2.TransportError:
            pass
        time.sleep(0.1)
    raise BenchError(f"the product process did not answer on {url} within {STARTUP_SECONDS:g} s")


@contextmanager
def product_process(delay: str | None = None) -> Iterator[tuple[str, str, int]]:
    """A fresh reference product in its own process (`persona-runner serve`) on a free loopback port, with the
    bench's id seed, so it hands out the same ids every time: (its URL, admin token, process id). With `delay`,
    every tool answers that much later, as a product busy elsewhere would."""
    token = secrets.token_urlsafe(24)
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory(prefix="runner-bench-product-") as tmp:
        command = [
            sys.executable,
            "-c",
            "from persona_runner.cli import main; main()",
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--data",
            f"{tmp}/product.db",
            "--id-seed",
            str(ID_SEED),
            "--rate-limit",
            str(HUGE_RATE_LIMIT),
            # Its accounts die with it: at argon2's standard cost each persona-day's login would spend about
            # 0.2 s of the product's CPU, and the product, not the runner, would set the pace.
            "--password-hashing",
            "throwaway",
            *_every_tool_delayed(delay),
        ]
        # The token travels in the environment, not on a command line other users can read.
        server = subprocess.Popen(command, env={**os.environ, "PERSONA_ADMIN_TOKEN": token}, stdout=subprocess.DEVNULL)
        try:
            _wait_healthy(url, server)
            yield url, token, server.pid
        finally:
            server.terminate()
            try:
                server.wait(timeout=15)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()


def _every_tool_delayed(delay: str | None) -> list[str]:
    """`serve` flags slowing every tool a persona may call by `delay` (none without one)."""
    if delay is None:
        return []
    from tool_registry.modules import build_registry

    return [flag for spec in build_registry().proposable() for flag in ("--delay", f"{spec.name}={delay}")]


# ---- the phases ----------------------------------------------------------------------------


@dataclass(frozen=True)
class ScriptedCall:
    tool: str
    arguments: dict[str, Any]
    outcome: str


@dataclass(frozen=True)
class Script:
    """What one persona did in a recorded tick: where, and which calls in which order."""

    persona: PersonaSpec
    space_id: str
    calls: tuple[ScriptedCall, ...]


def process_cpu_seconds(pid: int) -> float:
    """CPU time (user + system, every thread) a process has used so far, from /proc (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class CpuClock:
    """CPU time of this process (the runner) and of the product's process, over one phase."""

    product_pid: int
    runner: float = 0.0
    product: float = 0.0

    @contextmanager
    def measuring(self) -> Iterator[None]:
        runner, product = time.process_time(), process_cpu_seconds(self.product_pid)
        yield
        self.runner = time.process_time() - runner
        self.product = process_cpu_seconds(self.product_pid) - product


@dataclass(frozen=True)
class Phase:
    calls: int
    seconds: float
    days: int  # persona-days played (ticks, or replayed scripts)
    runner_cpu: float  # seconds of CPU this process used
    product_cpu: float  # seconds of CPU the product's process used
    differing: int = 0  # bare loop only: calls whose outcome (ok/error) differs from the recording

    @property
    def rate(self) -> float:
        return self.calls / self.seconds

    @property
    def runner_ms_per_call(self) -> float:
        return 1000 * self.runner_cpu / self.calls

    @property
    def runner_ms_per_day(self) -> float:
        return 1000 * self.runner_cpu / self.days

    @property
    def product_ms_per_call(self) -> float:
        return 1000 * self.product_cpu / self.calls


def read_scripts(store: Engine, run_id: str, personas: list[PersonaSpec]) -> list[Script]:
    """Every persona's calls as the transcripts recorded them, in persona order."""
    scripts = []
    with Session(store) as session:
        for persona in personas:
            tick_id = f"{run_id}:{persona.name}:{TICK_DATE.isoformat()}"
            transcript = session.get(Transcript, tick_id)
            if transcript is None:
                raise BenchError(f"no transcript for tick {tick_id}")
            body = transcript.body
            calls = tuple(ScriptedCall(c["tool"], c["arguments"], c["outcome"]) for c in body["calls"])
            scripts.append(Script(persona=persona, space_id=body["space"]["id"], calls=calls))
    return scripts


async def _seed(url: str, token: str, catalog: Catalog, store: Engine | None) -> None:
    async with ProductClient(url, admin_token=token, timeout=TICK_TIMEOUT_SECONDS) as admin:
        await seed_catalog(catalog, admin, SECRET, store)


def _settings(url: str, turns: int, concurrency: int, catalog: Catalog) -> RunSettings:
    return RunSettings(
        target=TargetSpec.product(url),
        modules=catalog.modules,
        driver="scripted",
        seed=RUN_SEED,
        max_turns=turns,
        timeout=TICK_TIMEOUT_SECONDS,
        concurrency=concurrency,
        label="bench/runner_throughput",
        tick_date=TICK_DATE,
    )


def _check_ran(result: RunResult) -> int:
    """The calls recorded; a failed tick means the run measured something else, so it stops the bench."""
    if result.failed:
        first = result.failed[0]
        raise BenchError(
            f"{len(result.failed)} tick(s) failed, e.g. {first.persona.name}: {first.status}: {first.error}"
        )
    return sum(len(tick.calls) for tick in result.ticks)


async def recorded(
    url: str, token: str, clock: CpuClock, catalog: Catalog, store: Engine, turns: int, concurrency: int
) -> tuple[Phase, str]:
    """Seed, then one scripted run with full recording; the clocks run over the ticking only."""
    await _seed(url, token, catalog, store)
    started = time.perf_counter()
    with clock.measuring():
        result = await execute_run(
            _settings(url, turns, concurrency, catalog),
            catalog.personas,
            secret=SECRET,
            store=store,
            make_driver=lambda _p: ScriptedDriver(),
        )
    seconds = time.perf_counter() - started
    calls = _check_ran(result)
    return Phase(calls, seconds, len(result.ticks), clock.runner, clock.product), result.run_id


async def bare(
    url: str, token: str, clock: CpuClock, catalog: Catalog, scripts: list[Script], concurrency: int
) -> Phase:
    """Seed, then replay every persona's recorded calls with the MCP SDK alone, over one connection pool,
    `concurrency` personas at once: the least a runner could spend on the same calls."""
    await _seed(url, token, catalog, None)
    limiter = anyio.Semaphore(concurrency)
    differing = 0
    made = 0
    pool = httpx2.AsyncHTTPTransport(limits=httpx2.Limits(max_connections=None, max_keepalive_connections=256))

    async with ProductClient(url, timeout=TICK_TIMEOUT_SECONDS) as api, pool:

        async def one(script: Script) -> None:
            nonlocal differing, made
            async with limiter:
                email = script.persona.email
                login = await api.login(email, derive_password(email, SECRET))
                if script.space_id not in {space.id for space in await api.spaces(login.token)}:
                    raise BenchError(
                        f"{script.persona.name} is not in space {script.space_id}: "
                        "the fresh product handed out other ids"
                    )
                headers = {"Authorization": f"Bearer {login.token}", "X-Space": script.space_id}
                # Not closed: closing a client closes its transport, the pool every persona shares.
                http = httpx2.AsyncClient(headers=headers, timeout=TICK_TIMEOUT_SECONDS, transport=pool)
                async with Client(streamable_http_client(f"{url}/mcp", http_client=http)) as mcp:
                    await mcp.list_tools()
                    for call in script.calls:
                        try:
                            result = await mcp.call_tool(call.tool, dict(call.arguments))
                            outcome = "error" if result.is_error else "ok"
                        except MCPError:
                            outcome = "error"
                        made += 1
                        differing += outcome != call.outcome

        started = time.perf_counter()
        with clock.measuring():
            async with anyio.create_task_group() as group:
                for script in scripts:
                    group.start_soon(one, script)
        seconds = time.perf_counter() - started
    return Phase(made, seconds, len(scripts), clock.runner, clock.product, differing=differing)


# ---- 200 personas in flight ----------------------------------------------------------------


@dataclass
class InFlight:
    """How many personas are in the middle of their day right now, and the most there ever were."""

    now: int = 0
    most: int = 0


class CountingDriver(ScriptedDriver):
    """The scripted driver, counting personas mid-day, to show they really were all in flight at once."""

    def __init__(self, in_flight: InFlight) -> None:
        super().__init__()
        self._in_flight = in_flight

    async def play(self, day: Day, act: Act) -> None:
        self._in_flight.now += 1
        self._in_flight.most = max(self._in_flight.most, self._in_flight.now)
        try:
            await super().play(day, act)
        finally:
            self._in_flight.now -= 1


def current_rss_kib() -> int | None:
    """This process's resident set now (Linux), to set the peak against what the runner holds before ticking."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


@dataclass(frozen=True)
class MemoryFigures:
    personas: int
    most_in_flight: int
    calls: int
    seconds: float
    rss_before_kib: int | None
    peak_rss_kib: int
    failures: list[str]


async def in_flight_run(url: str, token: str, catalog: Catalog, store: Engine, turns: int) -> MemoryFigures:
    """Every persona of the catalog ticking at once, fully recorded; peak RSS of this process afterwards."""
    await _seed(url, token, catalog, store)
    counter = InFlight()
    before = current_rss_kib()
    settings = _settings(url, turns, len(catalog.personas), catalog)
    started = time.perf_counter()
    result = await execute_run(
        settings, catalog.personas, secret=SECRET, store=store, make_driver=lambda _p: CountingDriver(counter)
    )
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    # A failed tick still held its memory while in flight: it is reported next to the figure, not fatal to it.
    failures = [f"{tick.persona.name}: {tick.status}: {tick.error}" for tick in result.failed]
    calls = sum(len(tick.calls) for tick in result.ticks)
    return MemoryFigures(len(catalog.personas), counter.most, calls, seconds, before, peak, failures)


# ---- driving it all ------------------------------------------------------------------------


@dataclass
class Budget:
    """One deadline for the whole bench, so no phase can run on past it."""

    seconds: float
    started: float = field(default_factory=time.monotonic)

    def left(self) -> float:
        left = self.seconds - (time.monotonic() - self.started)
        if left <= 0:
            raise BenchError(
                f"the bench took longer than --budget {self.seconds:g} s; "
                "lower --personas, --turns, --rounds or --in-flight"
            )
        return left

    def run(self, phase: Callable[..., Any], *args: Any) -> Any:
        async def bounded() -> Any:
            with anyio.fail_after(self.left()):
                return await phase(*args)

        try:
            return anyio.run(bounded)
        except TimeoutError:
            raise BenchError(
                f"the bench took longer than --budget {self.seconds:g} s; "
                "lower --personas, --turns, --rounds or --in-flight"
            ) from None


@contextmanager
def results_store() -> Iterator[Engine]:
    """A fresh SQLite results store in a temp dir: every recorded phase writes into the same empty tables."""
    with tempfile.TemporaryDirectory(prefix="runner-bench-store-") as tmp:
        store = open_store(str(Path(tmp) / "results.db"))
        try:
            yield store
        finally:
            store.dispose()


def measure_memory(personas: int, turns: int, seconds: float) -> MemoryFigures:
    """Runs in the memory process: see the module docstring."""
    catalog = bench_catalog(personas)
    print(
        f"in flight: seeding {personas} personas into a product process...",
        file=sys.stderr,
        flush=True,
    )
    with product_process() as (url, token, _), results_store() as store:
        return Budget(seconds).run(in_flight_run, url, token, catalog, store, turns)


def memory_in_own_process(personas: int, turns: int, budget: Budget) -> MemoryFigures:
    """One size of the memory figure, in a fresh process of its own (see the module docstring)."""
    seconds = budget.left()
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(measure_memory, personas, turns, seconds).result(timeout=seconds + STARTUP_SECONDS)


def record_once(catalog: Catalog, args: argparse.Namespace, budget: Budget) -> tuple[Phase, list[Script]]:
    with product_process(args.delay) as (url, token, pid), results_store() as store:
        clock = CpuClock(pid)
        phase, run_id = budget.run(recorded, url, token, clock, catalog, store, args.turns, args.concurrency)
        return phase, read_scripts(store, run_id, catalog.personas)


def replay_once(catalog: Catalog, scripts: list[Script], args: argparse.Namespace, budget: Budget) -> Phase:
    # A fresh product, not the recorded one: there the tasks are already completed and deleted, and
    # replayed creates would lengthen every listing. Under the same id seed it hands out the same ids.
    with product_process(args.delay) as (url, token, pid):
        return budget.run(bare, url, token, CpuClock(pid), catalog, scripts, args.concurrency)


@dataclass
class Throughput:
    recorded: list[Phase] = field(default_factory=list)
    bare: list[Phase] = field(default_factory=list)
    repeated: bool = True  # every recorded round made the same calls as the first recording

    @staticmethod
    def median(phases: list[Phase], figure: Callable[[Phase], float] = lambda phase: phase.rate) -> float:
        return statistics.median(figure(phase) for phase in phases)


def measure_throughput(args: argparse.Namespace, budget: Budget) -> Throughput:
    catalog = bench_catalog(args.personas)
    # An untimed first recording: it warms the imports and caches, and gives the bare loop its script.
    _, scripts = record_once(catalog, args, budget)
    results = Throughput()
    for round_no in range(args.rounds):
        # Alternate who goes first, so a drift in machine load over a round hits both alike.
        for kind in ("recorded", "bare") if round_no % 2 == 0 else ("bare", "recorded"):
            if kind == "recorded":
                phase, again = record_once(catalog, args, budget)
                results.repeated &= again == scripts
                results.recorded.append(phase)
            else:
                results.bare.append(replay_once(catalog, scripts, args, budget))
        line = f"recorded {results.recorded[-1].rate:.1f} calls/s, bare {results.bare[-1].rate:.1f} calls/s"
        print(f"round {round_no + 1}/{args.rounds}: {line}", file=sys.stderr, flush=True)
    return results


def report(args: argparse.Namespace, throughput: Throughput, memory: list[MemoryFigures]) -> str:
    def both(figure: Callable[[Phase], float]) -> tuple[float, float]:
        return throughput.median(throughput.recorded, figure), throughput.median(throughput.bare, figure)

    rate, bare_rate = both(lambda phase: phase.rate)
    per_call, bare_per_call = both(lambda phase: phase.runner_ms_per_call)
    per_day, bare_per_day = both(lambda phase: phase.runner_ms_per_day)
    product, bare_product = both(lambda phase: phase.product_ms_per_call)
    lines = [
        f"runner throughput ({args.personas} personas x {args.turns} turns, concurrency {args.concurrency}, "
        f"{args.rounds} rounds, median; product in a process of its own, fresh for each phase"
        + (f", every tool delayed {args.delay})" if args.delay else ")"),
        "                          recorded      bare",
        f"calls/s                   {rate:>8.1f}  {bare_rate:>8.1f}   ratio {rate / bare_rate:.2f} "
        f"(target >= {TARGET_RATIO})",
        f"runner CPU ms per call    {per_call:>8.2f}  {bare_per_call:>8.2f}   ratio {per_call / bare_per_call:.2f} "
        f"(target <= {TARGET_CPU_RATIO})",
        f"runner CPU ms per day     {per_day:>8.1f}  {bare_per_day:>8.1f}   {per_day - bare_per_day:+.1f} ms "
        f"(target <= +{TARGET_DAY_MS:g} ms)",
        f"product CPU ms per call   {product:>8.2f}  {bare_product:>8.2f}   (the same calls: the product's share)",
        f"calls per phase {throughput.recorded[0].calls}, persona-days per phase {throughput.recorded[0].days}",
    ]
    differing = max(p.differing for p in throughput.bare)
    if differing:
        lines.append(
            f"note: {differing} replayed call(s) ended differently from the recording "
            "(ids in shared spaces depend on interleaving)"
        )
    if not throughput.repeated:
        lines.append(
            "note: a recorded round made other calls than the first recording; the bare loop replayed the first"
        )
    for figures in memory:
        before = f", {figures.rss_before_kib / 1024:.0f} MiB before ticking" if figures.rss_before_kib else ""
        goal = MEMORY_GOALS_MIB.get(figures.personas)
        lines.append(
            f"{figures.personas} personas in flight: peak RSS {figures.peak_rss_kib / 1024:.0f} MiB"
            + (f" (target < {goal} MiB)" if goal else "")
            + f" (runner process; product in its own process{before}), "
            f"{figures.calls:,} calls in {figures.seconds:.1f} s, at most {figures.most_in_flight} mid-day at once"
        )
        if figures.failures:
            lines.append(f"  {len(figures.failures)} of {figures.personas} ticks failed, e.g. {figures.failures[0]}")
    return "\n".join(lines)


def bounded(low: int, high: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        value = int(text)
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be between {low} and {high}, got {value}")
        return value

    return parse


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Tool calls per second of the scripted runner with full recording "
        "versus a bare loop of the same calls."
    )
    parser.add_argument(
        "--personas", type=bounded(1, 1000), default=10, help="personas per throughput phase (default 10)"
    )
    parser.add_argument(
        "--turns", type=bounded(1, 500), default=20, help="most tool calls per persona per tick (default 20)"
    )
    parser.add_argument(
        "--concurrency",
        type=bounded(1, 256),
        default=4,
        help="personas ticking at once in the throughput phases (default 4)",
    )
    parser.add_argument(
        "--rounds", type=bounded(1, 20), default=5, help="alternating rounds of recorded and bare (default 5)"
    )
    parser.add_argument(
        "--in-flight",
        type=bounded(0, 1000),
        nargs="+",
        default=[200],
        help="personas all ticking at once for the memory figure, one process per size given, e.g. "
        "--in-flight 200 1000; 0 skips it (default 200)",
    )
    parser.add_argument(
        "--delay",
        metavar="DELAY",
        help="slow every tool of the product by DELAY (e.g. 50ms) in the throughput phases, so that neither the "
        "product nor this machine's CPU is the bottleneck and the calls/s ratio shows what the runner adds",
    )
    parser.add_argument(
        "--budget", type=bounded(30, 7200), default=1800, help="give up after this many seconds in all (default 1800)"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    budget = Budget(args.budget)
    try:
        # First, while this process is small: see the module docstring.
        memory = [memory_in_own_process(size, args.turns, budget) for size in args.in_flight if size]
        throughput = measure_throughput(args, budget)
    except BenchError as exc:
        print(f"runner_throughput: {exc}", file=sys.stderr)
        return 1
    except TimeoutError:
        print(
            f"runner_throughput: the memory process ran past --budget {args.budget} s; lower --in-flight or --turns",
            file=sys.stderr,
        )
        return 1
    print(report(args, throughput, memory))
    return 0


if __name__ == "__main__":
    sys.exit(main())
