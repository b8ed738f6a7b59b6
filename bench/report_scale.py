"""How long `report` and `gate` take on a big store, from the command line, and how much memory they need.

Generates a store with a million actions (a week of 200 personas, ~10 calls
and 3 ratings per tick, recorded as two runs of half a million: `baseline`
then `candidate`), once on SQLite and once on PostgreSQL, and times the
console script as a user runs it:

- `report --since 8d`: the whole week, window-scoped (default HTML into ./reports);
- `report --run baseline --run candidate`: the same million actions, run-scoped;
- `gate --baseline baseline --candidate candidate`: 500k actions against 500k.

Each command runs `--rounds` times; the median wall time and the largest peak
RSS of its process are printed, side by side for both stores. With `--before
DIR`, a source tree holding another `persona_runner` (e.g. `git archive HEAD
persona_runner | tar -x -C DIR`), each command also runs from that tree, in
turn with this one, on the same stores. Targets: report < 2 s, gate < 3 s.

    .venv/bin/python bench/report_scale.py
    .venv/bin/python bench/report_scale.py --before /tmp/main-before --rounds 5
    .venv/bin/python bench/report_scale.py --postgres ''   # SQLite only

On PostgreSQL the store is a database of its own, `bench_report_<random>`,
created on the server of `--postgres` and dropped at the end.

Prints figures; never asserts timings.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from sqlalchemy import JSON, Table
from sqlalchemy.engine import Connection, make_url

from persona_runner.reporting.tables import ACTIONS, FEEDBACK, PERSONAS, RUNS, TICKS, TRANSCRIPTS
from persona_runner.store.db import open_store
from persona_runner.util.canonical import canonical_json, input_hash

MODULES = {
    "todo": ["create", "list", "complete", "delete"],
    "notes": ["create", "search", "update"],
    "journal": ["write", "read"],
    "habits": ["track", "list"],
    "mood": ["log", "history"],
    "calendar": ["add", "list", "move"],
    "contacts": ["add", "find"],
}
TOOLS = [f"{module}.{verb}" for module, verbs in MODULES.items() for verb in verbs]
#: The tools offered as a tick's row keeps them (`store.models.Tick.tools_offered`).
OFFERED = canonical_json(sorted(TOOLS))
ERRORS = ["503 upstream unavailable", "validation error: title required", "timeout after 30s", "not found"]
BATCH = 20_000
DAYS = 7
RUN_IDS = ("baseline", "candidate")
DEFAULT_POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
REPORT_TARGET_S = 2.0
GATE_TARGET_S = 3.0
#: What a user types, after `persona-runner`, and the seconds it must take at most.
COMMANDS: dict[str, tuple[list[str], float]] = {
    "report --since 8d": (["report", "--since", f"{DAYS + 1}d"], REPORT_TARGET_S),
    "report --run (both runs)": (["report", "--run", RUN_IDS[0], "--run", RUN_IDS[1]], REPORT_TARGET_S),
    "gate 500k vs 500k": (["gate", "--baseline", RUN_IDS[0], "--candidate", RUN_IDS[1]], GATE_TARGET_S),
}


def _batched(rows: Iterator[tuple[Any, ...]]) -> Iterator[list[tuple[Any, ...]]]:
    batch: list[tuple[Any, ...]] = []
    for row in rows:
        batch.append(row)
        if len(batch) == BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


def bulk_insert(conn: Connection, table: Table, columns: list[str], rows: Iterator[tuple[Any, ...]]) -> None:
    """COPY on PostgreSQL, batched executemany elsewhere: the row-at-a-time ORM would dominate the run."""
    if conn.dialect.name == "postgresql":
        as_json = [isinstance(table.c[name].type, JSON) for name in columns]
        cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
        with cursor.copy(f"COPY {table.name} ({', '.join(columns)}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(
                    [json.dumps(value) if encode else value for value, encode in zip(row, as_json, strict=True)]
                )
        return
    statement = table.insert()
    for batch in _batched(rows):
        conn.execute(statement, [dict(zip(columns, row, strict=True)) for row in batch])


def generate(conn: Connection, actions: int, personas: int, seed: int) -> None:
    """A week of ticks: each persona favours a few modules, a few tools misbehave, latencies are log-normal."""
    rng = random.Random(seed)
    end = datetime.now(UTC) - timedelta(minutes=5)
    mixes = [{module: rng.randint(0, 5) for module in MODULES} for _ in range(personas)]
    now = datetime.now(UTC)
    bulk_insert(
        conn,
        PERSONAS,
        [
            "user_id",
            "email",
            "name",
            "archetype",
            "system_prompt",
            "module_mix",
            "tick_cadence",
            "created_at",
            "updated_at",
        ],
        (
            (f"p{i}", f"p{i}@personas.test", f"Persona {i}", "bench", "", mix, "daily", now, now)
            for i, mix in enumerate(mixes)
        ),
    )
    bulk_insert(
        conn,
        RUNS,
        ["run_id", "label", "started_at", "status", "target", "driver", "seed", "config"],
        (
            (
                run_id,
                run_id,
                end - timedelta(days=DAYS - half * DAYS / 2),
                "ok",
                "http://127.0.0.1/mcp",
                "scripted",
                half,
                {},
            )
            for half, run_id in enumerate(RUN_IDS)
        ),
    )
    ticks = actions // 10
    bulk_insert(
        conn,
        TICKS,
        [
            "tick_id",
            "run_id",
            "persona_id",
            "persona_name",
            "tick_date",
            "started_at",
            "status",
            "driver",
            "seed",
            "tool_calls",
            "errors",
            "tokens_in",
            "tokens_out",
            "tools_offered",
        ],
        _ticks(ticks, personas, end),
    )
    bulk_insert(conn, TRANSCRIPTS, ["tick_id", "body"], ((f"t{i}", _transcript(i)) for i in range(ticks)))
    bulk_insert(
        conn,
        ACTIONS,
        [
            "id",
            "persona_id",
            "tick_id",
            "run_id",
            "seq",
            "tool_name",
            "module",
            "input_hash",
            "result",
            "error_message",
            "latency_ms",
            "created_at",
        ],
        _actions(rng, actions, personas, mixes, end),
    )
    bulk_insert(
        conn,
        FEEDBACK,
        ["id", "persona_id", "tick_id", "run_id", "module", "rating", "notes", "created_at"],
        _feedback(rng, ticks, personas, end),
    )


def _tick_time(tick: int, ticks: int, end: datetime) -> tuple[str, datetime]:
    """The first half of the week's ticks are the baseline run, the second half the candidate."""
    day = tick * DAYS // ticks
    return RUN_IDS[tick * 2 // ticks], end - timedelta(days=DAYS - day) + timedelta(seconds=tick % 80_000)


def _ticks(ticks: int, personas: int, end: datetime) -> Iterator[tuple[Any, ...]]:
    for tick in range(ticks):
        run_id, at = _tick_time(tick, ticks, end)
        yield (
            f"t{tick}",
            run_id,
            f"p{tick % personas}",
            f"Persona {tick % personas}",
            at.date().isoformat(),
            at,
            "ok",
            "scripted",
            0,
            10,
            0,
            0,
            0,
            OFFERED,
        )


def _transcript(tick: int) -> dict[str, Any]:
    """A small transcript shaped as the runner writes one: the tools offered, then each call with its arguments
    and the start of its answer (real ones keep up to 16k characters of each structured answer)."""
    calls = []
    for seq in range(10):
        tool = TOOLS[(tick + seq) % len(TOOLS)]
        arguments = {"title": f"errand {tick}-{seq}", "notes": "pick up the parcel before noon"}
        answer = {"id": f"{tick:08d}-{seq:02d}", "title": arguments["title"], "done": False}
        calls.append(
            {
                "seq": seq,
                "tool": tool,
                "module": tool.split(".")[0],
                "arguments": arguments,
                "input_hash": input_hash(arguments),
                "outcome": "ok",
                "probe": False,
                "latency_ms": 40.0,
                "error": None,
                "result_excerpt": canonical_json(answer),
                "structured": answer,
                "at": None,
            }
        )
    return {"tools_offered": TOOLS, "calls": calls}


def _actions(
    rng: random.Random, actions: int, personas: int, mixes: list[dict[str, int]], end: datetime
) -> Iterator[tuple[Any, ...]]:
    ticks = actions // 10
    for n in range(actions):
        tick, seq = divmod(n, 10)
        run_id, at = _tick_time(tick, ticks, end)
        persona = tick % personas
        mix = mixes[persona]
        module = rng.choices(list(mix), weights=[weight + 0.1 for weight in mix.values()])[0]
        tool = f"{module}.{rng.choice(MODULES[module])}"
        failed = rng.random() < (0.2 if tool == "calendar.move" else 0.02)
        yield (
            f"t{tick}:{seq}",
            f"p{persona}",
            f"t{tick}",
            run_id,
            seq,
            tool,
            module,
            "0" * 64,
            "error" if failed else "ok",
            rng.choice(ERRORS) if failed else None,
            rng.lognormvariate(3.5, 0.6),
            at,
        )


def _feedback(rng: random.Random, ticks: int, personas: int, end: datetime) -> Iterator[tuple[Any, ...]]:
    for tick in range(ticks):
        run_id, at = _tick_time(tick, ticks, end)
        for module in rng.sample(list(MODULES), 3):
            rating = rng.choice([2, 3, 4, 4, 5]) if module != "calendar" else rng.choice([1, 2, 3, 4])
            yield (
                f"t{tick}:{module}",
                f"p{tick % personas}",
                f"t{tick}",
                run_id,
                module,
                rating,
                rng.choice(["", "", "fine", "slow today", "lost an entry"]),
                at,
            )


@dataclass(frozen=True)
class Timing:
    seconds: float  # median wall time of the rounds
    peak_mb: float  # largest peak RSS of the rounds' processes
    failed: str | None  # stderr of a round that exited other than 0 or 1 (a gate's FAIL is an answer)


#: Runs a command and reports, as the last line of stderr, its wall time, peak RSS and exit code. A small
#: process of its own, because a child's peak RSS counts the pages of the process it was forked from.
LAUNCHER = """
import os, sys, time
started = time.perf_counter()
pid = os.posix_spawn(sys.argv[1], sys.argv[1:], os.environ)
_, status, usage = os.wait4(pid, 0)
print(time.perf_counter() - started, usage.ru_maxrss, os.waitstatus_to_exitcode(status), file=sys.stderr)
"""


def _run_cli(argv: list[str], db: str, tree: Path | None, cwd: Path) -> tuple[float, float, str | None]:
    """One command as a user runs it: the console script in a fresh process; wall time and its own peak RSS."""
    script = Path(sys.executable).parent / "persona-runner"
    env = {**os.environ, "PYTHONPATH": str(tree)} if tree else dict(os.environ)
    done = subprocess.run(
        [sys.executable, "-c", LAUNCHER, str(script), *argv, "--db", db],
        cwd=cwd,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        check=True,
    )
    *errors, last = done.stderr.strip().splitlines()
    seconds, peak_kib, code = last.split()
    failed = "\n".join(errors) or f"exit {code}" if int(code) not in (0, 1) else None
    return float(seconds), int(peak_kib) / 1024, failed  # Linux reports KiB


def time_commands(db: str, trees: dict[str, Path | None], rounds: int, scratch: Path) -> dict[tuple[str, str], Timing]:
    """Every command from every tree, the trees in turn within each round so a drifting machine slows all alike."""
    samples: dict[tuple[str, str], list[tuple[float, float, str | None]]] = {}
    for _ in range(rounds):
        for command, (argv, _) in COMMANDS.items():
            for name, tree in trees.items():
                samples.setdefault((command, name), []).append(_run_cli(argv, db, tree, scratch))
    return {
        key: Timing(
            seconds=statistics.median(seconds for seconds, _, _ in runs),
            peak_mb=max(peak for _, peak, _ in runs),
            failed=next((failed for _, _, failed in runs if failed), None),
        )
        for key, runs in samples.items()
    }


@contextmanager
def postgres_database(server: str) -> Iterator[str]:
    """A database of our own on a shared server, dropped afterwards: the URL of the store in it."""
    url = make_url(server)
    name = f"bench_report_{secrets.token_hex(4)}"
    admin = url.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield url.set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def fill_store(db: str, actions: int, personas: int, seed: int) -> float:
    """The generated week in a new store; seconds it took."""
    engine = open_store(db)
    started = time.perf_counter()
    with engine.begin() as conn:
        generate(conn, actions, personas, seed)
    if engine.dialect.name == "postgresql":
        # What autovacuum does to any store that has been sitting a while; without it the first
        # scan after a bulk load pays for setting hint bits on every page.
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("VACUUM ANALYZE")
    engine.dispose()
    return time.perf_counter() - started


def _cell(timing: Timing | None, target: float) -> str:
    if timing is None:
        return "-"
    if timing.failed:
        return "FAILED"
    verdict = "ok" if timing.seconds < target else "MISSED"
    return f"{timing.seconds:6.2f} s {timing.peak_mb:5.0f} MB {verdict:>6}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--actions", type=int, default=1_000_000)
    parser.add_argument("--personas", type=int, default=200)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--postgres", default=DEFAULT_POSTGRES, help="server to make a database on; '' for none")
    parser.add_argument("--before", type=Path, help="a source tree with another persona_runner to time beside this")
    args = parser.parse_args()
    trees: dict[str, Path | None] = {"now": None} | ({"before": args.before.resolve()} if args.before else {})
    results: dict[str, dict[tuple[str, str], Timing]] = {}
    with tempfile.TemporaryDirectory() as scratch_dir:
        scratch = Path(scratch_dir)
        stores = {"sqlite": f"sqlite:///{scratch / 'bench.db'}"}
        with postgres_database(args.postgres) if args.postgres else _no_database() as postgres:
            if postgres:
                stores["postgresql"] = postgres
            for kind, db in stores.items():
                generated = fill_store(db, args.actions, args.personas, args.seed)
                print(f"{kind}: generated {args.actions:,} actions in {generated:.0f} s", flush=True)
                results[kind] = time_commands(db, trees, args.rounds, scratch)
    width = max(len(command) for command in COMMANDS) + 8
    columns = [(kind, tree) for kind in results for tree in trees]
    print(f"\nmedian wall time of {args.rounds} rounds, largest peak RSS (each command a fresh process)")
    print(" " * width + "".join(f"{f'{kind} {tree}':<27}" for kind, tree in columns))
    for command, (_, target) in COMMANDS.items():
        label = f"{command} (< {target:g} s)"
        cells = [_cell(results[kind].get((command, tree)), target) for kind, tree in columns]
        print(f"{label:<{width}}" + "".join(f"{cell:<27}" for cell in cells))
    for kind, timings in results.items():
        for (command, tree), timing in timings.items():
            if timing.failed:
                print(f"{kind} {tree} {command} failed: {timing.failed}", file=sys.stderr)


@contextmanager
def _no_database() -> Iterator[None]:
    yield None


if __name__ == "__main__":
    main()
