"""Workers on real PostgreSQL: `persona-runner worker` processes ticking a served product from the job queue.

Each persona ticks once per due slot however many workers and schedulers there are;
a worker killed outright has its persona ticked by another, its own tick kept as
`interrupted`; a worker stopped by SIGTERM records its tick `aborted` and exits 0;
`pause` holds every worker and `resume` lets them go; `status` shows all of it.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import anyio
import pytest
from sqlalchemy import create_engine, text

from persona_runner.catalog import Catalog, default_catalog_path, load_catalog
from persona_runner.run.fleet import FIRST_SLOT, fleet_run_id
from persona_runner.run.worker import SCHEDULE_SECONDS, defer_tick, queue_app, schedule_seconds
from tests.cli_helpers import ADMIN, ALL_TOOLS, SCRIPT, cli, one_line_error, served_product

pytestmark = pytest.mark.postgres

#: Long enough that no persona falls due twice while a test runs: each has one slot, "first".
ONCE = ("--every", "1h")
#: A worker silent this long in the queue is taken for dead (30 s outside tests).
STALLED = ("--stalled-after", "3s")
#: The workers look for due personas every 10 s.
SCHEDULE_ROUND = 11


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


def ticks(db: str) -> list[dict[str, object]]:
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


def test_three_workers_tick_thirty_due_personas_exactly_once_each(tmp_path: Path, pg_url: str) -> None:
    catalog = write_catalog(tmp_path, 30)
    common = ("--db", pg_url, "--catalog", str(catalog), *ONCE)
    with served_product(tmp_path) as (url, _):
        seeded(url, catalog, pg_url)
        queued = cli("schedule", *common)
        assert queued.returncode == 0, queued.stderr
        assert queued.stdout.startswith("queued 30 due personas for run fleet-workers")
        again = cli("schedule", *common)  # a second scheduler sees the same slots: nothing is queued twice
        assert "queued 0 due personas" in again.stdout and "30 were already waiting" in again.stdout
        with workers(3, "--target", url, "--concurrency", "4", *common):
            wait_for("30 finished ticks", lambda: sum(t["status"] != "running" for t in ticks(pg_url)) >= 30)
            time.sleep(SCHEDULE_ROUND)  # a scheduling round of the workers' own comes and goes
            status = cli("status", *common, "--format", "json")
    played = ticks(pg_url)
    assert len(played) == 30
    assert sorted(t["persona_name"] for t in played) == sorted(p.name for p in load_catalog(catalog).personas)
    assert {t["status"] for t in played} == {"ok"}
    assert {t["slot"] for t in played} == {"first"}
    assert len({str(t["runner"]).rsplit(":", 1)[0] for t in played}) >= 2, "the work was shared"
    assert status.returncode == 0, status.stderr
    seen = json.loads(status.stdout)
    assert seen["run_id"] == "fleet-workers" and seen["queue_workers"] == 6  # each process: ticks and control
    assert seen["in_flight"] == [] and seen["queued"] == [] and seen["due"] == []


def slow_product_flags() -> list[str]:
    return [flag for tool in ALL_TOOLS for flag in ("--delay", f"{tool}=400ms")]


@pytest.mark.parametrize("queued_again", [False, True], ids=["alone", "queued-again-meanwhile"])
def test_a_worker_killed_mid_tick_leaves_it_interrupted_and_another_worker_plays_the_slot(
    tmp_path: Path, pg_url: str, queued_again: bool
) -> None:
    """Killed outright, the worker stops beating; its job goes back to the queue and another worker plays
    the slot. When a scheduler queued the slot again while the job was taken, that job plays it instead."""
    catalog = write_catalog(tmp_path, 1)
    common = ("--db", pg_url, "--catalog", str(catalog), *ONCE)
    with served_product(tmp_path, *slow_product_flags()) as (url, _):
        seeded(url, catalog, pg_url)
        assert cli("schedule", *common).returncode == 0
        with workers(1, "--target", url, *STALLED, *common) as [doomed]:
            wait_for(
                "a tick with calls on record", lambda: any(actions_of(pg_url, t["tick_id"]) >= 2 for t in ticks(pg_url))
            )
            doomed.send_signal(signal.SIGKILL)
            doomed.wait(timeout=10)
        if queued_again:
            anyio.run(defer_waiting_again, pg_url, "maya-0")
        with workers(1, "--target", url, *STALLED, *common):
            wait_for("the slot played to the end", lambda: any(t["status"] == "ok" for t in ticks(pg_url)), 120)
            time.sleep(SCHEDULE_ROUND)  # nothing else plays the slot, whatever is left in the queue
    cut, finished = ticks(pg_url)
    assert (cut["status"], finished["status"]) == ("interrupted", "ok")
    assert cut["slot"] == finished["slot"] == "first"
    assert str(cut["tick_id"]).endswith(":1") and str(finished["tick_id"]).endswith(":2")
    assert int(str(cut["tool_calls"])) >= 2 and actions_of(pg_url, str(cut["tick_id"])) == cut["tool_calls"]
    assert "cut short" in str(cut["error"])
    assert finished["started_at"] >= cut["ended_at"]  # type: ignore[operator]


async def defer_waiting_again(db: str, persona: str) -> None:
    """A second job for the persona's first slot, waiting while the first is still taken by a dead worker."""
    app = queue_app(db, fleet_run_id(None))
    async with app.open_async():
        await defer_tick(app, fleet_run_id(None), persona, FIRST_SLOT)


def test_sigterm_records_the_tick_in_flight_as_aborted_and_the_worker_exits_0(tmp_path: Path, pg_url: str) -> None:
    catalog = write_catalog(tmp_path, 1)
    common = ("--db", pg_url, "--catalog", str(catalog), *ONCE)
    with served_product(tmp_path, *slow_product_flags()) as (url, _):
        seeded(url, catalog, pg_url)
        assert cli("schedule", *common).returncode == 0
        with workers(1, "--target", url, "--grace", "1s", *common) as [worker]:
            wait_for("a tick in flight", lambda: any(t["status"] == "running" for t in ticks(pg_url)))
            asked = time.monotonic()
            worker.send_signal(signal.SIGTERM)
            worker.wait(timeout=30)
            took = time.monotonic() - asked
        assert worker.returncode == 0
        status = cli("status", *common, "--format", "json")
    assert took < 1 + 5
    [cut] = ticks(pg_url)
    assert cut["status"] == "aborted" and cut["slot"] == "first"
    # Cut short by the harness, the slot is the persona's still: due again, or queued already.
    seen = json.loads(status.stdout)
    assert seen["queued"] + seen["due"] == ["maya-0"]


def test_pause_holds_every_worker_until_resume(tmp_path: Path, pg_url: str) -> None:
    catalog = write_catalog(tmp_path, 2)
    common = ("--db", pg_url, "--catalog", str(catalog), *ONCE)
    with served_product(tmp_path) as (url, _):
        seeded(url, catalog, pg_url)
        held = cli("pause", "--db", pg_url, "--reason", "deploying 1.4")
        assert held.returncode == 0 and "workers paused since" in held.stdout and "(deploying 1.4)" in held.stdout
        assert cli("schedule", *common).returncode == 0
        with workers(1, "--target", url, *common):
            time.sleep(4)
            assert ticks(pg_url) == []
            status = cli("status", *common)
            assert "PAUSED by" in status.stdout and "(deploying 1.4)" in status.stdout
            assert "queued: 2" in status.stdout
            assert cli("resume", "--db", pg_url).stdout.strip() == "workers resumed"
            wait_for("both personas ticked", lambda: sum(t["status"] == "ok" for t in ticks(pg_url)) == 2, 30)
    assert cli("resume", "--db", pg_url).stdout.strip() == "workers were not paused"


def test_workers_need_postgresql_and_a_target(tmp_path: Path) -> None:
    sqlite = str(tmp_path / "results.db")
    for args in (
        ("worker", "--target", "http://127.0.0.1:9", "--db", sqlite),
        ("schedule", "--db", sqlite),
        ("status", "--db", sqlite),
        ("pause", "--db", sqlite),
    ):
        done = cli(*args)
        assert done.returncode == 2
        assert one_line_error(done.stderr).startswith("error: workers share a job queue in PostgreSQL")
    done = cli("worker", "--db", "postgresql+psycopg://nobody@127.0.0.1:9/none")
    assert done.returncode == 2 and "worker needs --target" in one_line_error(done.stderr)
    assert not (tmp_path / "results.db").exists()


def test_workers_look_for_due_personas_often_enough_for_their_interval() -> None:
    assert schedule_seconds(None) == SCHEDULE_SECONDS == 10
    assert schedule_seconds(timedelta(hours=1)) == 10
    assert schedule_seconds(timedelta(seconds=9)) == 4  # half the interval late at most, on a regular beat
    assert schedule_seconds(timedelta(seconds=2)) == 1
    assert schedule_seconds(timedelta(milliseconds=500)) == 1
