"""Workers on real PostgreSQL: `persona-runner worker` processes ticking a served product from the job queue.

Each persona ticks once per due slot however many workers and schedulers there are;
`pause` holds every worker and `resume` lets them go; `status` shows all of it, each
fleet's workers apart, their silence judged by the fleet's --stalled-after.
(A worker that dies or is stopped: test_worker_recovery.py.)
"""

from __future__ import annotations

import json
import signal
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func
from sqlmodel import Session, select

from persona_runner.catalog import load_catalog
from persona_runner.run.fleet import ensure_fleet_run, stalled_after_of
from persona_runner.run.queue import STALLED_AFTER
from persona_runner.run.runner import RunSettings
from persona_runner.run.worker import RECOVER_SECONDS, SCHEDULE_SECONDS, WorkerSettings
from persona_runner.store.db import open_store
from persona_runner.store.models import Run
from persona_runner.targets.spec import TargetSpec
from tests.cli_helpers import cli, one_line_error, served_product
from tests.worker_helpers import ONCE, seeded, ticks, wait_for, workers, write_catalog

pytestmark = pytest.mark.postgres

#: More personas than the three workers take at once (4 each), so each worker has to come back for more.
FLEET = 30
#: Ticks at once per worker, and calls per tick: thirty short ticks keep the test to seconds.
SMALL_WORKER = ("--concurrency", "4", "--max-turns", "4")


@pytest.fixture(scope="module")
def fleet_product(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """One served product for the module, with the fleet's personas seeded once: (its URL, their catalog)."""
    where = tmp_path_factory.mktemp("fleet")
    catalog = write_catalog(where, FLEET)
    with served_product(where) as (url, _):
        seeded(url, catalog, str(where / "seeding.db"))
        yield url, catalog


def test_three_workers_tick_thirty_due_personas_exactly_once_each(fleet_product: tuple[str, Path], pg_url: str) -> None:
    url, catalog = fleet_product
    common = ("--db", pg_url, "--catalog", str(catalog), *ONCE)
    queued = cli("schedule", *common)
    assert queued.returncode == 0, queued.stderr
    assert queued.stdout.startswith(f"queued {FLEET} due personas for run fleet-workers")
    again = cli("schedule", *common)  # a second scheduler sees the same slots: nothing is queued twice
    assert "queued 0 due personas" in again.stdout and f"{FLEET} were already waiting" in again.stdout
    with workers(3, "--target", url, *SMALL_WORKER, *common) as processes:
        wait_for(f"{FLEET} finished ticks", lambda: sum(t["status"] != "running" for t in ticks(pg_url)) >= FLEET)
        # A scheduler may have queued a slot again as a worker took it: that job ends without a tick.
        wait_for("the queue drained", lambda: fleet_status(common)["queued"] == [], 30)
        seen = fleet_status(common)
    played = ticks(pg_url)
    assert len(played) == FLEET
    assert sorted(t["persona_name"] for t in played) == sorted(p.name for p in load_catalog(catalog).personas)
    assert {t["status"] for t in played} == {"ok"}
    assert {t["slot"] for t in played} == {"first"}
    assert len({str(t["runner"]).rsplit(":", 1)[0] for t in played}) >= 2, "the work was shared"
    assert seen["run_id"] == "fleet-workers" and seen["stalled_after"] == 30
    assert queue_workers(seen) == {(p.pid, serves) for p in processes for serves in ("ticks", "control")}
    assert all(w["host"] == socket.gethostname() and not w["silent"] for w in seen["workers"])
    assert seen["in_flight"] == [] and seen["queued"] == [] and seen["due"] == []


def fleet_status(common: tuple[str, ...]) -> dict[str, Any]:
    done = cli("status", *common, "--format", "json")
    assert done.returncode == 0, done.stderr
    seen: dict[str, Any] = json.loads(done.stdout)
    return seen


def queue_workers(seen: dict[str, Any]) -> set[tuple[int, str]]:
    """The fleet's workers in a `status`, as (pid of their process, what they serve)."""
    return {(w["pid"], w["serves"]) for w in seen["workers"]}


def test_status_lists_each_fleets_own_workers_silent_past_its_stalled_after(
    fleet_product: tuple[str, Path], pg_url: str
) -> None:
    """Two fleets on one database: each `status` lists its own workers only. A worker frozen (SIGSTOP) for
    longer than its fleet's --stalled-after of 2 s is shown silent, and beating again once it goes on."""
    url, catalog = fleet_product
    ours = ("--db", pg_url, "--catalog", str(catalog), *ONCE)
    theirs = (*ours, "--label", "other")
    maya, ravi = ("--persona", "maya-0"), ("--persona", "ravi-0")
    assert cli("schedule", *ours, *maya).returncode == cli("schedule", *theirs, *ravi).returncode == 0
    with (
        workers(1, "--target", url, *ours, *maya, "--stalled-after", "2s") as [frozen],
        workers(1, "--target", url, *theirs, *ravi) as [other],
    ):
        wait_for("both personas ticked", lambda: sum(t["status"] == "ok" for t in ticks(pg_url)) == 2, 30)
        wait_for(
            "both fleets on the roll",
            lambda: len(fleet_status(ours)["workers"]) == len(fleet_status(theirs)["workers"]) == 2,
        )
        assert queue_workers(fleet_status(theirs)) == {(other.pid, "ticks"), (other.pid, "control")}
        frozen.send_signal(signal.SIGSTOP)
        try:
            time.sleep(3)
            seen, text = fleet_status(ours), cli("status", *ours).stdout
        finally:
            frozen.send_signal(signal.SIGCONT)
        assert seen["stalled_after"] == 2 and fleet_status(theirs)["stalled_after"] == 30
        assert queue_workers(seen) == {(frozen.pid, "ticks"), (frozen.pid, "control")}
        assert all(w["silent"] and w["beat_seconds_ago"] > 2 for w in seen["workers"])
        assert "0 queue workers beating, 2 silent for over 2 s" in text
        assert f"ticks    on {socket.gethostname()} pid {frozen.pid}  SILENT, last beat" in text
        wait_for("beating again", lambda: not any(w["silent"] for w in fleet_status(ours)["workers"]), 10)
        assert not any(w["silent"] for w in fleet_status(theirs)["workers"])


def test_pause_holds_every_worker_until_resume(fleet_product: tuple[str, Path], pg_url: str) -> None:
    url, catalog = fleet_product
    common = ("--db", pg_url, "--catalog", str(catalog), *ONCE)
    two = ("--persona", "maya-0", "--persona", "ravi-0")
    held = cli("pause", "--db", pg_url, "--reason", "deploying 1.4")
    assert held.returncode == 0 and "workers paused since" in held.stdout and "(deploying 1.4)" in held.stdout
    assert cli("schedule", *common, *two).returncode == 0
    with workers(1, "--target", url, *common, *two):
        time.sleep(4)
        assert ticks(pg_url) == []
        status = cli("status", *common)
        assert "PAUSED by" in status.stdout and "(deploying 1.4)" in status.stdout
        assert "queued: 2: maya-0, ravi-0" in status.stdout
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
    assert done.returncode == 2 and "worker needs a target that is already up" in one_line_error(done.stderr)
    assert not (tmp_path / "results.db").exists()


def test_workers_look_for_due_personas_and_silent_workers_often_enough() -> None:
    def looks(every: timedelta | None = None, stalled_after: float = 30.0) -> tuple[int, int]:
        run = RunSettings(target=TargetSpec.product("http://127.0.0.1:1"), driver="scripted")
        settings = WorkerSettings(run, every, stalled_after)
        return settings.schedule_seconds(), settings.recover_seconds()

    assert looks() == (SCHEDULE_SECONDS, RECOVER_SECONDS) == (10, 10)
    assert looks(timedelta(hours=1))[0] == 10
    assert looks(timedelta(seconds=9))[0] == 4  # half the interval late at most, on a regular beat
    assert looks(timedelta(seconds=2))[0] == looks(timedelta(milliseconds=500))[0] == 1
    assert looks(stalled_after=12)[1] == 4 and looks(stalled_after=3)[1] == 1


def test_workers_starting_together_join_one_fleet_run(tmp_path: Path, pg_url: str) -> None:
    personas = load_catalog(write_catalog(tmp_path, 2)).personas
    settings = RunSettings(target=TargetSpec.product("http://127.0.0.1:1"), driver="scripted", label="together")
    store = open_store(pg_url)
    starting = threading.Barrier(8)

    def start() -> str:
        starting.wait()
        return ensure_fleet_run(store, settings, personas, None, 30.0).run_id

    try:
        with ThreadPoolExecutor(8) as pool:
            joined = list(pool.map(lambda _: start(), range(8)))
        with Session(store) as session:
            assert session.exec(select(func.count()).select_from(Run)).one() == 1
        assert stalled_after_of(store, "fleet-together") == 30.0
        later = ensure_fleet_run(store, settings, personas, None, 5.0)  # restarted with another --stalled-after
        assert later.config["stalled_after"] == stalled_after_of(store, "fleet-together") == 5.0
        assert later.config["personas"] == [p.name for p in personas]
        assert stalled_after_of(store, "fleet-nobody-started") == STALLED_AFTER
    finally:
        store.dispose()
    assert joined == ["fleet-together"] * 8
