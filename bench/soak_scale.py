"""How the worker fleet scales, and what a worker and a soak cost in memory, on one PostgreSQL.

Three parts, each against the reference product (`persona-runner serve`) in a process
of its own, seeded once, restarted per part with a delay on every tool:

- throughput: 1, 2 and 4 `persona-runner worker` processes, each with the same
  `--concurrency`, ticking the same personas every `--every 1s` from the job queue.
  The product sleeps on every tool call (default 2 s: each tick logs in and opens a
  session, which costs the product CPU, so shorter ticks would make it the bottleneck
  at k=4 on two cores) so that neither it nor the CPU is the bottleneck: what is left
  is the engine's own overhead. There are 4 x 4 x concurrency personas by default:
  workers queue a due persona only every 10 s, so fewer could starve the fleet. Finished ticks
  per second are counted in the results store over a fixed window after a
  warm-up; the targets are >= 1.8x at 2 workers and >= 3.2x at 4. There are
  always more personas due than slots free (the backlog of queued tick jobs is
  sampled during the window to show it), and the product's and the workers' CPU
  use over the window is printed, so a miss can be told apart from a starved fleet
  or a saturated machine. Each k gets a fresh database (a copy of the seeded one).
- rss: one worker with `--concurrency 200` and more personas than that, against a
  product slow enough (default 10 s a call, 3 calls a tick) that 200 ticks are in
  flight at once; the worker's VmRSS is sampled every 0.5 s and its peak while its
  own `persona_runner_ticks_in_flight` gauge says >= 200 is printed (target < 300 MB).
- growth: a `persona-runner soak` process, then one worker, each against a fast product
  (20 ms a call, 5 calls a tick) until 1,000 ticks have finished; the VmRSS of each
  after the first 100 and at 1,000 (target growth < 10%: the issue asks it of a
  1,000-tick soak; a worker is the same ticks under the job queue). `--growth-of`
  measures only one of them. The two runs take most of the bench's time.

The product hashes passwords the cheap way (`serve --password-hashing throwaway`: its
accounts die with the bench): at argon2's standard cost every login spends about 0.2 s
of the product's CPU, and the logins, not the runner, would pace every part.

Every part gets its own database on 127.0.0.1:5432 (trust auth, user postgres), named
`pr_soak_bench_<pid>_...`, dropped at the end however the bench ends (Ctrl-C included).
The machine is shared and noisy: the figures are printed, never asserted.

    .venv/bin/python bench/soak_scale.py                    # all parts: 15-25 minutes on 2 shared cores
    .venv/bin/python bench/soak_scale.py --part growth --growth-of soak
    .venv/bin/python bench/soak_scale.py --part throughput --delay 1s --window 90
    .venv/bin/python bench/soak_scale.py --part rss --in-flight 200

Exits 1 only when something broke (a process died, a part never reached its state).
"""

from __future__ import annotations

import argparse
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine

from persona_runner.catalog import default_catalog_path, load_catalog

PG_SERVER = "postgresql+psycopg://postgres@127.0.0.1:5432"
SCRIPT = str(Path(sys.executable).parent / "persona-runner")
BENCH_DOMAIN = "soak-bench.test"
#: The bench's personas log in with passwords derived from this (seed and workers share it).
SECRET = "soak-scale-bench-secret"
#: Checked on every call, never reached: the product's per-tool limit (30/min) would turn calls into refusals.
HUGE_RATE_LIMIT = 1_000_000_000
STARTUP_SECONDS = 90.0
#: Workers are stopped with this grace: ticks still in flight then are recorded aborted (after the window).
STOP_GRACE = "2s"
TARGET_2 = 1.8
TARGET_4 = 3.2
TARGET_RSS_MB = 300.0
TARGET_GROWTH = 0.10
#: The long-lived processes whose memory growth is measured: the issue's 1,000-tick soak first, then a worker.
GROWTH_KINDS = ("soak", "worker")
MIB = 1024 * 1024


class BenchError(RuntimeError):
    """Something broke: the figures would mean nothing."""


class Interrupted(BaseException):
    """SIGTERM to the bench: unwound like Ctrl-C, so every process and database is cleaned up."""


def say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


# ---- processes -----------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def rss_bytes(pid: int) -> int | None:
    """VmRSS of a live process (Linux), None once it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Child:
    name: str
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def check_alive(self) -> None:
        if self.process.poll() is not None:
            raise BenchError(f"{self.name} exited with {self.process.returncode}; its log ends:\n{self.tail()}")


@dataclass
class Children:
    """Every process the bench started; `stop_all` ends them on every way out: runners first, then products."""

    logs: Path
    env: dict[str, str]
    running: list[Child] = field(default_factory=list)

    def start(self, name: str, *args: str) -> Child:
        log = self.logs / f"{name}-{len(self.running)}.log"
        with log.open("wb") as sink:
            # A session of its own: a Ctrl-C at the terminal reaches the bench, which stops them in order.
            process = subprocess.Popen(
                [SCRIPT, *args], stdout=sink, stderr=subprocess.STDOUT, env=self.env, start_new_session=True
            )
        child = Child(name, process, log)
        self.running.append(child)
        return child

    def stop(self, children: list[Child], timeout: float = 20.0) -> None:
        for child in children:
            if child.process.poll() is None:
                child.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for child in children:
            try:
                child.process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                say(f"{child.name} (pid {child.pid}) ignored SIGTERM for {timeout:g} s: killed")
                child.process.kill()
                child.process.wait()
            if child in self.running:
                self.running.remove(child)

    def stop_all(self) -> None:
        runners = [c for c in self.running if c.name != "product"]
        self.stop(runners)
        self.stop(list(self.running), timeout=10.0)


def run_cli(children: Children, *args: str) -> str:
    done = subprocess.run([SCRIPT, *args], capture_output=True, text=True, env=children.env, timeout=600)
    if done.returncode != 0:
        raise BenchError(f"persona-runner {args[0]} exited {done.returncode}: {done.stderr.strip()[-2000:]}")
    return done.stdout


def wait_until(what: str, ready: Callable[[], bool], timeout: float, alive: list[Child]) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        for child in alive:
            child.check_alive()
        if time.monotonic() > deadline:
            raise BenchError(f"gave up waiting {timeout:g} s for {what}")
        time.sleep(0.25)


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as answer:
            return bool(answer.status == 200)
    except OSError:
        return False


def all_tools() -> list[str]:
    from tool_registry.modules import build_registry

    return [spec.name for spec in build_registry().proposable()]


@contextmanager
def product(children: Children, data: Path, delay: str | None) -> Iterator[tuple[str, Child]]:
    """`persona-runner serve` on a free port, every tool slowed by `delay`; the same data (and signing key)
    every time, so the personas seeded once log in to each part's product."""
    port = free_port()
    delays = [flag for tool in all_tools() for flag in ("--delay", f"{tool}={delay}")] if delay else []
    child = children.start(
        "product",
        "serve",
        "--port",
        str(port),
        "--data",
        str(data / "product.db"),
        "--signing-key",
        str(data / "signing.pem"),
        "--rate-limit",
        str(HUGE_RATE_LIMIT),
        "--password-hashing",
        "throwaway",
        *delays,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(f"the product on {url}", lambda: http_ok(f"{url}/health"), STARTUP_SECONDS, [child])
        yield url, child
    finally:
        children.stop([child], timeout=10.0)


# ---- databases -----------------------------------------------------------------------------


@dataclass
class Databases:
    """The bench's own databases on the shared server, all named `prefix_*`, all dropped at the end."""

    prefix: str
    admin: Engine = field(init=False)

    def __post_init__(self) -> None:
        self.admin = create_engine(f"{PG_SERVER}/postgres", isolation_level="AUTOCOMMIT", pool_pre_ping=True)

    def url(self, name: str) -> str:
        return f"{PG_SERVER}/{self.prefix}_{name}"

    def create(self, name: str, template: str | None = None) -> str:
        like = f" TEMPLATE {self.prefix}_{template}" if template else ""
        with self.admin.connect() as connection:
            connection.exec_driver_sql(f"CREATE DATABASE {self.prefix}_{name}{like}")
        return self.url(name)

    def drop(self, name: str) -> None:
        self._drop(f"{self.prefix}_{name}")

    def _drop(self, name: str) -> None:
        with self.admin.connect() as connection:
            connection.execute(
                text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :d"), {"d": name}
            )
            connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def drop_all(self) -> None:
        with self.admin.connect() as connection:
            names = connection.scalars(
                text("SELECT datname FROM pg_database WHERE datname LIKE :p"), {"p": f"{self.prefix}\\_%"}
            ).all()
        for name in names:
            self._drop(name)
        self.admin.dispose()


@contextmanager
def engine_of(url: str) -> Iterator[Engine]:
    engine = create_engine(url, pool_pre_ping=True)
    try:
        yield engine
    finally:
        engine.dispose()


def scalar(engine: Engine, sql: str, **params: Any) -> Any:
    with engine.connect() as connection:
        return connection.execute(text(sql), params).scalar()


def finished_ticks(engine: Engine, run_id: str) -> int:
    return int(scalar(engine, "SELECT count(*) FROM ticks WHERE run_id = :r AND status <> 'running'", r=run_id) or 0)


def backlog(engine: Engine, run_id: str) -> int:
    """Tick jobs of the fleet queued and not taken: the personas due that wait for a free slot."""
    return int(
        scalar(
            engine,
            "SELECT count(*) FROM procrastinate_jobs WHERE queue_name = :q AND status = 'todo'",
            q=f"ticks:{run_id}",
        )
        or 0
    )


def enqueue_due(url: str, label: str, catalog: Path, every: str) -> int:
    """What `persona-runner schedule` does, in this process: the workers start on a full queue."""
    import anyio

    from persona_runner.commands.options import interval_from, queue_store_from
    from persona_runner.run.fleet import fleet_run_id
    from persona_runner.run.worker import enqueue_due as enqueue
    from persona_runner.run.worker import queue_app

    personas = load_catalog(catalog).personas
    _, store = queue_store_from(url)
    run_id = fleet_run_id(label)

    async def go() -> int:
        app = queue_app(url, run_id)
        async with app.open_async():
            done = await enqueue(app, store, run_id, personas, interval_from(every, "--every"))
        return len(done.added)

    try:
        return anyio.run(go)
    finally:
        store.dispose()


# ---- setting up ----------------------------------------------------------------------------


@dataclass
class Bench:
    args: argparse.Namespace
    children: Children
    dbs: Databases
    tmp: Path

    def catalog(self, size: int) -> Path:
        """The first `size` of the seeded personas (the scaled catalog's names are a prefix of a bigger one's)."""
        path = self.tmp / f"catalog-{size}.json"
        if not path.exists():
            scaled = load_catalog(default_catalog_path()).scaled(size, BENCH_DOMAIN)
            path.write_text(scaled.model_dump_json(by_alias=True, exclude_none=True))
        return path

    def seed(self, personas: int) -> None:
        """Seed the product's data and a template results store once; each part copies the template."""
        self.dbs.create("seed")
        started = time.perf_counter()
        say(f"seeding {personas} personas...")
        with product(self.children, self.tmp, None) as (url, _):
            run_cli(
                self.children,
                "seed",
                "--target",
                url,
                "--catalog",
                str(self.catalog(personas)),
                "--db",
                self.dbs.url("seed"),
            )
        say(f"seeded in {time.perf_counter() - started:.0f} s")

    def fresh_db(self, name: str) -> str:
        return self.dbs.create(name, template="seed")

    def runner_args(
        self, command: str, url: str, db: str, label: str, catalog: Path, concurrency: int, turns: int
    ) -> list[str]:
        """The command line of a long-lived runner (`worker` or `soak`: they take the same flags here)."""
        return [
            command,
            "--target",
            url,
            "--db",
            db,
            "--label",
            label,
            "--catalog",
            str(catalog),
            "--concurrency",
            str(concurrency),
            "--every",
            self.args.every,
            "--max-turns",
            str(turns),
            "--grace",
            STOP_GRACE,
        ]


def wait_ready(workers: list[Child]) -> None:
    wait_until(
        f"{len(workers)} worker(s) ready",
        lambda: all("worker ready" in w.log.read_text(errors="replace") for w in workers),
        STARTUP_SECONDS,
        workers,
    )


# ---- throughput ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Window:
    workers: int
    ticks: int
    calls: int
    seconds: float
    failed: int
    mean_tick_seconds: float
    min_backlog: int
    max_in_flight: int
    product_cpu: float  # share of one core over the window
    workers_cpu: float  # all the workers together, share of one core
    load: float

    @property
    def rate(self) -> float:
        return self.ticks / self.seconds

    @property
    def call_rate(self) -> float:
        return self.calls / self.seconds


def throughput_once(bench: Bench, url: str, product_pid: int, k: int) -> Window:
    args = bench.args
    label = f"k{k}"
    run_id = f"fleet-{label}"
    db = bench.fresh_db(label)
    catalog = bench.catalog(args.personas)
    queued = enqueue_due(db, label, catalog, args.every)
    workers = [
        bench.children.start(
            f"worker-{label}", *bench.runner_args("worker", url, db, label, catalog, args.concurrency, args.max_turns)
        )
        for _ in range(k)
    ]
    try:
        wait_ready(workers)
        say(f"k={k}: {k} worker(s) ready, {queued} personas queued; warming up {args.warmup:g} s")
        with engine_of(db) as engine:
            time.sleep(args.warmup)
            for w in workers:
                w.check_alive()
            cpu0 = cpu_seconds(product_pid), sum(cpu_seconds(w.pid) for w in workers)
            start, clock = datetime.now(UTC), time.perf_counter()
            min_backlog, max_in_flight = 10**9, 0
            while time.perf_counter() - clock < args.window:
                min_backlog = min(min_backlog, backlog(engine, run_id))
                max_in_flight = max(
                    max_in_flight,
                    int(
                        scalar(engine, "SELECT count(*) FROM ticks WHERE run_id = :r AND status = 'running'", r=run_id)
                    ),
                )
                for w in workers:
                    w.check_alive()
                time.sleep(min(2.0, max(0.0, args.window - (time.perf_counter() - clock))))
            end, seconds = datetime.now(UTC), time.perf_counter() - clock
            cpu1 = cpu_seconds(product_pid), sum(cpu_seconds(w.pid) for w in workers)
            load = os.getloadavg()[0]
            with engine.connect() as connection:
                row = connection.execute(
                    text(
                        "SELECT count(*) AS ticks, count(*) FILTER (WHERE status <> 'ok') AS failed,"
                        " coalesce(avg(extract(epoch FROM ended_at - started_at)), 0) AS mean"
                        " FROM ticks WHERE run_id = :r AND status <> 'running'"
                        " AND ended_at >= :start AND ended_at < :end"
                    ),
                    {"r": run_id, "start": start, "end": end},
                ).one()
                calls = connection.execute(
                    text(
                        "SELECT count(*) FROM persona_actions a JOIN ticks t ON t.tick_id = a.tick_id"
                        " WHERE t.run_id = :r AND a.created_at >= :start AND a.created_at < :end"
                    ),
                    {"r": run_id, "start": start, "end": end},
                ).scalar()
    finally:
        bench.children.stop(workers)
        bench.dbs.drop(label)
    return Window(
        workers=k,
        ticks=int(row.ticks),
        calls=int(calls or 0),
        seconds=seconds,
        failed=int(row.failed),
        mean_tick_seconds=float(row.mean),
        min_backlog=min_backlog,
        max_in_flight=max_in_flight,
        product_cpu=(cpu1[0] - cpu0[0]) / seconds,
        workers_cpu=(cpu1[1] - cpu0[1]) / seconds,
        load=load,
    )


def throughput(bench: Bench) -> list[str]:
    args = bench.args
    windows: list[Window] = []
    with product(bench.children, bench.tmp, args.delay) as (url, server):
        for k in args.workers:
            window = throughput_once(bench, url, server.pid, k)
            windows.append(window)
            say(f"k={k}: {window.rate:.3f} ticks/s, {window.call_rate:.2f} calls/s")
    base = windows[0]
    lines = [
        f"throughput: worker processes x --concurrency {args.concurrency}, {args.personas} personas every "
        f"{args.every}, --max-turns {args.max_turns}, every tool delayed {args.delay}; "
        f"{args.window:g} s window after {args.warmup:g} s warm-up",
        "  k  ticks  ticks/s  ratio  target   calls/s  ratio   tick s  failed  backlog>=  in-flight<=  "
        "product CPU  workers CPU  load",
    ]
    targets = {2: TARGET_2, 4: TARGET_4}
    for w in windows:
        ratio = w.rate / base.rate if base.rate else float("nan")
        call_ratio = w.call_rate / base.call_rate if base.call_rate else float("nan")
        target = f">={targets[w.workers]:.1f}x" if w.workers in targets else "-"
        if w.workers in targets:
            target += " ok" if ratio >= targets[w.workers] else " MISS"
        lines.append(
            f"  {w.workers}  {w.ticks:5d}  {w.rate:7.3f}  {ratio:4.2f}x  {target:9s} {w.call_rate:7.2f}  "
            f"{call_ratio:4.2f}x  {w.mean_tick_seconds:6.1f}  {w.failed:6d}  {w.min_backlog:8d}  "
            f"{w.max_in_flight:11d}  {w.product_cpu * 100:10.0f}%  {w.workers_cpu * 100:10.0f}%  {w.load:4.1f}"
        )
    lines.append(
        "  (backlog>=: fewest tick jobs queued and waiting, sampled every 2 s; in-flight<=: most ticks running; "
        "CPU in % of one core over the window)"
    )
    return lines


# ---- memory: 200 in flight -----------------------------------------------------------------


def gauge(port: int, name: str) -> float | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as answer:
            body = answer.read().decode()
    except OSError:
        return None
    for line in body.splitlines():
        if line.startswith(f"{name} "):
            return float(line.split()[1])
    return None


def in_flight_rss(bench: Bench) -> list[str]:
    args = bench.args
    personas = args.in_flight + max(10, args.in_flight // 10)
    db = bench.fresh_db("rss")
    catalog = bench.catalog(personas)
    with product(bench.children, bench.tmp, args.rss_delay) as (url, _):
        queued = enqueue_due(db, "rss", catalog, args.every)
        port = free_port()
        worker = bench.children.start(
            "worker-rss",
            *bench.runner_args("worker", url, db, "rss", catalog, args.in_flight, args.rss_turns),
            "--metrics-port",
            str(port),
        )
        try:
            wait_ready([worker])
            ready_rss = rss_bytes(worker.pid) or 0
            say(f"rss: worker ready at {ready_rss / MIB:.0f} MiB, {queued} personas queued")
            with engine_of(db) as engine:
                peak_full = peak_any = 0
                most = most_mid_day = 0
                mid_day_at_peak = 0
                reached_at: float | None = None
                clock = time.perf_counter()
                while True:
                    worker.check_alive()
                    rss = rss_bytes(worker.pid) or 0
                    flying = int(gauge(port, "persona_runner_ticks_in_flight") or 0)
                    mid_day = int(
                        scalar(
                            engine,
                            "SELECT count(DISTINCT a.tick_id) FROM persona_actions a JOIN ticks t"
                            " ON t.tick_id = a.tick_id WHERE t.run_id = 'fleet-rss' AND t.status = 'running'",
                        )
                        or 0
                    )
                    peak_any = max(peak_any, rss)
                    most, most_mid_day = max(most, flying), max(most_mid_day, mid_day)
                    if flying >= args.in_flight:
                        reached_at = reached_at or time.perf_counter()
                        if rss > peak_full:
                            peak_full, mid_day_at_peak = rss, mid_day
                    # Until the first wave begins to end (the personas past the concurrency have had a turn).
                    if reached_at is not None and flying < args.in_flight:
                        break
                    if time.perf_counter() - clock > args.rss_budget:
                        break
                    time.sleep(0.5)
                finished = finished_ticks(engine, "fleet-rss")
        finally:
            bench.children.stop([worker])
            bench.dbs.drop("rss")
    if reached_at is None:
        raise BenchError(
            f"the worker never had {args.in_flight} ticks in flight (at most {most}) within {args.rss_budget:g} s"
        )
    verdict = "ok" if peak_full / 1e6 < TARGET_RSS_MB else "MISS"
    return [
        f"rss: one worker, --concurrency {args.in_flight}, {personas} personas, --max-turns {args.rss_turns}, "
        f"every tool delayed {args.rss_delay}",
        f"  peak RSS while >= {args.in_flight} ticks in flight: {peak_full / 1e6:.0f} MB ({peak_full / MIB:.0f} MiB)"
        f"  target < {TARGET_RSS_MB:.0f} MB {verdict}",
        f"  ({mid_day_at_peak} of them past their first call at that peak; at most {most} in flight, "
        f"{most_mid_day} past their first call at once; RSS {ready_rss / MIB:.0f} MiB when ready, "
        f"peak {peak_any / MIB:.0f} MiB overall; {finished} ticks finished)",
    ]


# ---- memory: growth over 1,000 ticks -------------------------------------------------------


@dataclass
class Growth:
    kind: str
    marks: dict[int, int]  # finished ticks -> RSS
    seconds: float
    failed: int


def growth_of(bench: Bench, kind: str, url: str) -> Growth:
    args = bench.args
    db = bench.fresh_db(f"growth_{kind}")
    catalog = bench.catalog(args.growth_personas)
    label = f"growth-{kind}"
    if kind == "worker":
        enqueue_due(db, label, catalog, args.every)
    child = bench.children.start(
        f"{kind}-growth",
        *bench.runner_args(kind, url, db, label, catalog, args.growth_concurrency, args.growth_turns),
    )
    if kind == "worker":
        wait_ready([child])
    marks: dict[int, int] = {}
    step = max(1, args.growth_ticks // 10)
    checkpoints = sorted({args.growth_warm, *range(step, args.growth_ticks + 1, step), args.growth_ticks})
    try:
        with engine_of(db) as engine:
            run_id: str | None = f"fleet-{label}" if kind == "worker" else None
            clock = time.perf_counter()
            while len(marks) < len(checkpoints):
                child.check_alive()
                if run_id is None:
                    run_id = scalar(engine, "SELECT run_id FROM runs WHERE label = :l", l=label)
                done = finished_ticks(engine, run_id) if run_id else 0
                rss = rss_bytes(child.pid) or 0
                for mark in checkpoints:
                    if done >= mark and mark not in marks:
                        marks[mark] = rss
                if time.perf_counter() - clock > args.growth_budget:
                    raise BenchError(
                        f"{kind}: only {done} of {args.growth_ticks} ticks finished in {args.growth_budget:g} s"
                    )
                time.sleep(0.5)
            seconds = time.perf_counter() - clock
            failed = int(
                scalar(
                    engine,
                    "SELECT count(*) FROM ticks WHERE run_id = :r AND status NOT IN ('ok', 'running')",
                    r=run_id,
                )
                or 0
            )
    finally:
        bench.children.stop([child])
        bench.dbs.drop(f"growth_{kind}")
    return Growth(kind, marks, seconds, failed)


def growth(bench: Bench) -> list[str]:
    args = bench.args
    lines = [
        f"growth: --concurrency {args.growth_concurrency}, {args.growth_personas} personas every {args.every}, "
        f"--max-turns {args.growth_turns}, every tool delayed {args.growth_delay}; RSS after {args.growth_warm} "
        f"finished ticks vs after {args.growth_ticks}"
    ]
    with product(bench.children, bench.tmp, args.growth_delay) as (url, _):
        for kind in args.growth_of:
            say(f"growth: {kind} until {args.growth_ticks} ticks have finished...")
            result = growth_of(bench, kind, url)
            warm, last = result.marks[args.growth_warm], result.marks[args.growth_ticks]
            change = (last - warm) / warm
            verdict = "ok" if change < TARGET_GROWTH else "MISS"
            lines.append(
                f"  {kind:6s} {warm / MIB:.0f} MiB -> {last / MIB:.0f} MiB: {change * 100:+.1f}%  "
                f"target < {TARGET_GROWTH * 100:.0f}% {verdict}  ({args.growth_ticks} ticks in {result.seconds:.0f} s, "
                f"{args.growth_ticks / result.seconds:.1f} ticks/s, {result.failed} not ok)"
            )
            lines.append(
                "         RSS MiB by ticks finished: "
                + ", ".join(f"{mark}: {rss / MIB:.0f}" for mark, rss in sorted(result.marks.items()))
            )
    return lines


# ---- driving it all ------------------------------------------------------------------------


def duration(text_value: str) -> str:
    if not re.fullmatch(r"\d+(\.\d+)?(ms|s|m)", text_value):
        raise argparse.ArgumentTypeError(f"a duration such as 500ms, 2s or 1m, got {text_value!r}")
    return text_value


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Throughput of 1, 2 and 4 worker processes on one PostgreSQL; RSS of one worker with 200 "
        "ticks in flight; RSS growth of a soak and of a worker over 1,000 ticks."
    )
    parser.add_argument("--part", choices=["throughput", "rss", "growth", "all"], default="all")
    group = parser.add_argument_group("throughput")
    group.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4], help="worker counts (default 1 2 4)")
    group.add_argument("--concurrency", type=int, default=4, help="--concurrency of each worker (default 4)")
    group.add_argument(
        "--personas", type=int, default=0, help="personas ticking (default 4 x most workers x concurrency)"
    )
    group.add_argument("--delay", type=duration, default="2s", help="delay of every tool (default 2s)")
    group.add_argument("--max-turns", type=int, default=4, help="calls per tick (default 4)")
    group.add_argument("--warmup", type=float, default=15.0, help="seconds before the window (default 15)")
    group.add_argument("--window", type=float, default=50.0, help="seconds counted (default 50)")
    parser.add_argument("--every", type=duration, default="1s", help="--every of the workers (default 1s)")
    group = parser.add_argument_group("rss")
    group.add_argument("--in-flight", type=int, default=200, help="ticks in flight in one worker (default 200)")
    group.add_argument("--rss-delay", type=duration, default="10s", help="delay of every tool (default 10s)")
    group.add_argument("--rss-turns", type=int, default=3, help="calls per tick (default 3)")
    group.add_argument("--rss-budget", type=float, default=120.0, help="give up after this many seconds")
    group = parser.add_argument_group("growth")
    group.add_argument("--growth-ticks", type=int, default=1000, help="ticks to finish (default 1000)")
    group.add_argument("--growth-warm", type=int, default=100, help="ticks before the first sample (default 100)")
    group.add_argument("--growth-concurrency", type=int, default=8, help="--concurrency (default 8)")
    group.add_argument("--growth-personas", type=int, default=100, help="personas (default 100)")
    group.add_argument("--growth-delay", type=duration, default="20ms", help="delay of every tool (default 20ms)")
    group.add_argument("--growth-turns", type=int, default=5, help="calls per tick (default 5)")
    group.add_argument("--growth-budget", type=float, default=600.0, help="give up after this many seconds")
    group.add_argument(
        "--growth-of",
        choices=GROWTH_KINDS,
        nargs="+",
        default=list(GROWTH_KINDS),
        help="whose RSS to follow over the ticks: a soak process, a worker process (default both)",
    )
    args = parser.parse_args(argv)
    args.personas = args.personas or 4 * max(args.workers) * args.concurrency
    if args.workers[0] != 1:
        parser.error("--workers must start with 1: the ratios are against one worker")
    if not 0 < args.growth_warm < args.growth_ticks:
        parser.error("--growth-warm must be between 0 and --growth-ticks")
    return args


def needed_personas(args: argparse.Namespace) -> int:
    sizes = []
    if args.part in ("throughput", "all"):
        sizes.append(args.personas)
    if args.part in ("rss", "all"):
        sizes.append(args.in_flight + max(10, args.in_flight // 10))
    if args.part in ("growth", "all"):
        sizes.append(args.growth_personas)
    return max(sizes)


def on_sigterm(_signum: int, _frame: FrameType | None) -> None:
    raise Interrupted


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, on_sigterm)
    started = time.perf_counter()
    env = {**os.environ, "PERSONA_ADMIN_TOKEN": secrets.token_urlsafe(24), "PERSONA_SEED_SECRET": SECRET}
    env.pop("PERSONA_RUNNER_DB", None)
    dbs = Databases(prefix=f"pr_soak_bench_{os.getpid()}")
    lines: list[str] = []
    with tempfile.TemporaryDirectory(prefix="soak-scale-bench-") as tmp:
        children = Children(logs=Path(tmp), env=env)
        bench = Bench(args, children, dbs, Path(tmp))
        try:
            say(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
            bench.seed(needed_personas(args))
            if args.part in ("throughput", "all"):
                lines += throughput(bench)
            if args.part in ("rss", "all"):
                lines += in_flight_rss(bench)
            if args.part in ("growth", "all"):
                lines += growth(bench)
        except BenchError as exc:
            if lines:
                print("\n".join(lines))
            print(f"soak_scale: {exc}", file=sys.stderr)
            return 1
        except (KeyboardInterrupt, Interrupted):
            if lines:
                print("\n".join(lines))
            print("soak_scale: interrupted", file=sys.stderr)
            return 130
        finally:
            children.stop_all()
            dbs.drop_all()
    lines.append(f"bench took {time.perf_counter() - started:.0f} s in all")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
