"""How long a report takes on a big store, and how much memory it needs.

Generates a store with a million actions (a week of 200 personas, ~10 calls
and 3 ratings per tick), then builds the report over the whole week and
renders it as HTML. Prints generation time, report time and peak RSS; the
targets are under 10 s and under 1 GB, which only holds if aggregation stays
in the database.

    python bench/report_scale.py                      # SQLite file in a temp dir
    python bench/report_scale.py --db postgresql+psycopg://postgres@127.0.0.1:5432/bench
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import JSON, Table
from sqlalchemy.engine import Connection

from persona_runner.reporting.aggregate import (
    ACTIONS,
    FEEDBACK,
    PERSONAS,
    RUNS,
    TICKS,
    TRANSCRIPTS,
    build_report,
    window_scope,
)
from persona_runner.reporting.html import render_html
from persona_runner.store.db import describe, open_store, resolve_url

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
ERRORS = ["503 upstream unavailable", "validation error: title required", "timeout after 30s", "not found"]
BATCH = 20_000
DAYS = 7


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
                f"run{day}",
                f"day {day}",
                end - timedelta(days=DAYS - day),
                "ok",
                "http://127.0.0.1/mcp",
                "scripted",
                day,
                {},
            )
            for day in range(DAYS)
        ),
    )
    ticks = actions // 10
    offered = {"tools_offered": TOOLS}
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
        ],
        _ticks(ticks, personas, end),
    )
    bulk_insert(conn, TRANSCRIPTS, ["tick_id", "body"], ((f"t{i}", offered) for i in range(ticks)))
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
    day = tick * DAYS // ticks
    return f"run{day}", end - timedelta(days=DAYS - day) + timedelta(seconds=tick % 80_000)


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
        )


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", help="results store URL; default: a fresh SQLite file in a temporary directory")
    parser.add_argument("--actions", type=int, default=1_000_000)
    parser.add_argument("--personas", type=int, default=200)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        url = resolve_url(args.db or str(Path(scratch) / "bench.db"))
        engine = open_store(url)
        with engine.connect() as conn:
            if conn.execute(ACTIONS.select().limit(1)).first():
                sys.exit(f"{describe(url)} already holds actions; point --db at an empty store")
        started = time.perf_counter()
        with engine.begin() as conn:
            generate(conn, args.actions, args.personas, args.seed)
        generated = time.perf_counter() - started
        if engine.dialect.name == "postgresql":
            # What autovacuum does to any store that has been sitting a while; without it the first
            # scan after a bulk load pays for setting hint bits on every page.
            with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.exec_driver_sql("VACUUM ANALYZE")

        started = time.perf_counter()
        report = build_report(engine, window_scope(timedelta(days=DAYS + 1)))
        built = time.perf_counter() - started
        page = render_html(report)
        total = time.perf_counter() - started
        engine.dispose()

    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB
    print(f"store:      {describe(url)} ({engine.dialect.name})")
    print(
        f"generated:  {report.totals.calls:,} actions, {report.totals.ticks:,} ticks, {report.totals.ratings:,} "
        f"ratings in {generated:.1f} s"
    )
    print(
        f"report:     {total:.2f} s ({built:.2f} s aggregating, {total - built:.2f} s rendering "
        f"{len(page) / 1024:.0f} KiB of HTML: {len(report.modules)} modules, {len(report.personas)} personas)"
    )
    print(f"peak RSS:   {peak_mb:.0f} MB")
    print(
        f"targets:    time {'OK' if total < 10 else 'MISSED'} (< 10 s), "
        f"memory {'OK' if peak_mb < 1024 else 'MISSED'} (< 1 GB)"
    )


if __name__ == "__main__":
    main()
