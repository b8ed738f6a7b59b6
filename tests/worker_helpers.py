"""Workers under test: `persona-runner worker` processes against a served product, on real PostgreSQL."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text

from persona_runner.catalog import Catalog, default_catalog_path, load_catalog
from tests.cli_helpers import ADMIN, ALL_TOOLS, SCRIPT, cli

#: Long enough that no persona falls due twice while a test runs: each has one slot, "first".
ONCE = ("--every", "1h")
#: A worker silent this long in the queue is taken for dead (30 s outside tests).
STALLED = ("--stalled-after", "2s")


def write_catalog(tmp_path: Path, size: int) -> Path:
    catalog: Catalog = load_catalog(default_catalog_path()).scaled(size, "workers.test")
    path = tmp_path / "catalog.json"
    path.write_text(catalog.model_dump_json(by_alias=True, exclude_none=True))
    return path


def seeded(url: str, catalog: Path, db: str) -> None:
    done = cli("seed", "--target", url, "--admin-token", ADMIN, "--catalog", str(catalog), "--db", db)
    assert done.returncode == 0, done.stderr


@contextmanager
def workers(count: int, *flags: str) -> Iterator[list[subprocess.Popen[str]]]:
    """`count` worker processes; on the way out each is stopped with SIGTERM and must exit 0 within its grace.
    Their logs are printed, so a failing test shows what the workers said."""
    started = [
        subprocess.Popen([SCRIPT, "worker", *flags], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(count)
    ]
    try:
        yield started
    finally:
        for process in started:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for number, process in enumerate(started):
            try:
                _, logs = process.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                _, logs = process.communicate()
            print(f"--- worker {number} (exit {process.returncode}):\n{logs}")
    for process in started:
        assert process.returncode in (0, -signal.SIGKILL), f"a worker exited {process.returncode}"


def ticks(db: str) -> list[dict[str, Any]]:
    engine = create_engine(db)
    try:
        with engine.connect() as connection:
            found = connection.execute(
                text(
                    "SELECT tick_id, persona_name, status, slot, runner, tool_calls, error, started_at, ended_at"
                    " FROM ticks ORDER BY started_at"
                )
            )
            return [dict(row._mapping) for row in found]
    finally:
        engine.dispose()


def actions_of(db: str, tick_id: str) -> int:
    engine = create_engine(db)
    try:
        with engine.connect() as connection:
            count = connection.scalar(text("SELECT count(*) FROM persona_actions WHERE tick_id = :t"), {"t": tick_id})
            return int(count or 0)
    finally:
        engine.dispose()


def calls_streamed(db: str) -> int:
    return max((actions_of(db, str(tick["tick_id"])) for tick in ticks(db)), default=0)


def wait_for(what: str, ready: Callable[[], bool], timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.25)


def slow_product_flags() -> list[str]:
    return [flag for tool in ALL_TOOLS for flag in ("--delay", f"{tool}=400ms")]
