"""Workers that die, are stopped or lose their database, on real PostgreSQL: a worker killed outright
has its tick kept as `interrupted` and its persona's slot played by another; one stopped by SIGTERM
records its tick `aborted`, exits 0 within the grace, and leaves the slot due again; one whose
database goes away for a few seconds loses no tick and goes on ticking."""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

from persona_runner.run.fleet import FIRST_SLOT, fleet_run_id
from persona_runner.run.worker import defer_tick, queue_app
from tests.cli_helpers import cli, served_product
from tests.test_recording import relayed
from tests.worker_helpers import (
    ONCE,
    STALLED,
    actions_of,
    calls_streamed,
    seeded,
    slow_product_flags,
    ticks,
    wait_for,
    workers,
    write_catalog,
)

pytestmark = pytest.mark.postgres


@pytest.fixture(scope="module")
def slow_product(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """One served product for the module, every tool taking 400 ms, one persona seeded: (its URL, its catalog).
    Each test has a store of its own, so the persona's ticks there start from nothing."""
    where = tmp_path_factory.mktemp("slow")
    catalog = write_catalog(where, 1)
    with served_product(where, *slow_product_flags()) as (url, _):
        seeded(url, catalog, str(where / "seeding.db"))
        yield url, catalog


#: Six calls of 400 ms: long enough to be killed in the middle of, short enough to play again quickly.
SHORT_DAY = ("--max-turns", "6")


@pytest.mark.parametrize("queued_again", [False, True], ids=["alone", "queued-again-meanwhile"])
def test_a_worker_killed_mid_tick_leaves_it_interrupted_and_another_worker_plays_the_slot(
    slow_product: tuple[str, Path], pg_url: str, queued_again: bool
) -> None:
    """Killed outright, the worker stops beating; its job goes back to the queue and another worker plays
    the slot. When a scheduler queued the slot again while the job was taken, that job plays it instead."""
    url, catalog = slow_product
    common = ("--db", pg_url, "--catalog", str(catalog), *ONCE)
    assert cli("schedule", *common).returncode == 0
    with workers(1, "--target", url, *STALLED, *SHORT_DAY, *common) as [doomed]:
        wait_for("a tick with calls on record", lambda: calls_streamed(pg_url) >= 2)
        doomed.send_signal(signal.SIGKILL)
        doomed.wait(timeout=10)
    if queued_again:
        anyio.run(defer_waiting_again, pg_url, "maya-0")
    with workers(1, "--target", url, *STALLED, *SHORT_DAY, *common):
        wait_for("the slot played to the end", lambda: any(t["status"] == "ok" for t in ticks(pg_url)), 120)
    cut, finished = ticks(pg_url)
    assert (cut["status"], finished["status"]) == ("interrupted", "ok")
    assert cut["slot"] == finished["slot"] == "first"
    assert str(cut["tick_id"]).endswith(":1") and str(finished["tick_id"]).endswith(":2")
    assert int(str(cut["tool_calls"])) >= 2 and actions_of(pg_url, str(cut["tick_id"])) == cut["tool_calls"]
    assert "cut short" in str(cut["error"])
    assert finished["started_at"] >= cut["ended_at"]


async def defer_waiting_again(db: str, persona: str) -> None:
    """A second job for the persona's first slot, waiting while the first is still taken by a dead worker."""
    app = queue_app(db, fleet_run_id(None))
    async with app.open_async():
        await defer_tick(app, fleet_run_id(None), persona, FIRST_SLOT)


def test_sigterm_records_the_tick_in_flight_as_aborted_and_the_worker_exits_0(
    slow_product: tuple[str, Path], pg_url: str
) -> None:
    url, catalog = slow_product
    common = ("--db", pg_url, "--catalog", str(catalog), *ONCE)
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


def test_a_worker_rides_out_postgresql_unreachable_for_3_s(slow_product: tuple[str, Path], pg_url: str) -> None:
    """The database goes away under a worker with a tick in flight and is back 3 s later: that tick ends `ok`
    with every call on record, and the same worker process goes on ticking the persona's next slots."""
    url, catalog = slow_product
    often = ("--catalog", str(catalog), "--every", "3s")
    assert cli("schedule", "--db", pg_url, *often).returncode == 0
    with (
        relayed(pg_url) as (relay, through_relay),
        workers(1, "--target", url, "--db", through_relay, *often, *SHORT_DAY) as [worker],
    ):
        wait_for("a tick in flight with a call on record", lambda: calls_streamed(pg_url) >= 1 and running(pg_url))
        [outlived] = running(pg_url)
        relay.down()
        time.sleep(3)
        relay.up = True
        wait_for("the tick in flight and two more played", lambda: played_since(pg_url, outlived) >= 3, 60)
        assert worker.poll() is None
    played = ticks(pg_url)
    assert {t["status"] for t in played} == {"ok"}
    assert all(actions_of(pg_url, str(t["tick_id"])) == t["tool_calls"] for t in played)
    assert len({t["slot"] for t in played}) == len(played), "each slot played once"


def running(db: str) -> list[str]:
    return [str(t["tick_id"]) for t in ticks(db) if t["status"] == "running"]


def played_since(db: str, tick_id: str) -> int:
    """The ticks played to the end from `tick_id` on (in the order they started), that one included."""
    played = ticks(db)
    start = [str(t["tick_id"]) for t in played].index(tick_id)
    return sum(t["status"] == "ok" for t in played[start:])
