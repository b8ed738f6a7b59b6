"""A tick is on record from its start, and nothing of it is lost to a crash or a store that
falters: its row is `running` while it plays, its calls follow about a second behind, a later
process marks what a dead one left `interrupted`, writes wait out a locked or unreachable store,
and a store an earlier version wrote opens and records.

Real parts throughout: the reference product over HTTP on 127.0.0.1 (a slow one, so a tick
lasts long enough to watch), a real SQLite file, a real PostgreSQL, real processes killed for real.
"""

from __future__ import annotations

import contextlib
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import anyio
import pytest
from sqlalchemy import create_engine, event, func, inspect, select, text
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col

from persona_runner.catalog import Catalog, PersonaSpec, default_catalog_path, load_catalog
from persona_runner.credentials import derive_password
from persona_runner.drivers.scripted import ScriptedDriver
from persona_runner.run import live_tick
from persona_runner.run.cadence import next_due
from persona_runner.run.owner import Owner, this_process
from persona_runner.run.reaper import STALE_AFTER, reap_interrupted, recent_history
from persona_runner.run.recorder import RecordError, TickRecord, start_tick
from persona_runner.run.runner import RunResult, RunSettings, begin_run, end_run
from persona_runner.run.seeding import seed_catalog
from persona_runner.run.stopping import Stop
from persona_runner.run.tick import TickPlan, run_tick
from persona_runner.store import retry
from persona_runner.store.db import open_store
from persona_runner.store.models import Persona, PersonaAction, PersonaFeedback, Run, Tick, utcnow
from persona_runner.targets.product import ProductClient
from persona_runner.targets.spec import TargetSpec
from tests.cli_helpers import ADMIN as CLI_ADMIN
from tests.cli_helpers import SCRIPT, cli, served_product
from tests.product_helpers import ADMIN, running_product
from tool_registry.modules import build_registry

CATALOG = load_catalog(default_catalog_path())
SECRET = "recording-test-secret"
ALL_TOOLS = [spec.name for spec in build_registry().proposable()]
TICK_DATE = date(2026, 11, 22)


def persona(name: str) -> PersonaSpec:
    return next(p for p in CATALOG.personas if p.name == name)


def slowed(per_call: str) -> list[str]:
    """Every tool of the product answering after `per_call`: a tick long enough to watch it play."""
    return [f"{tool}={per_call}" for tool in ALL_TOOLS]


@dataclass(frozen=True)
class Snapshot:
    """The tick as another reader of the store saw it at one moment."""

    status: str | None
    actions: int
    lag: float | None  # seconds between the newest call on record being made and this reading


def snapshot(store: Engine, tick_id: str) -> Snapshot:
    with Session(store) as session:
        status = session.scalar(select(col(Tick.status)).where(col(Tick.tick_id) == tick_id))
        actions, newest = session.execute(
            select(func.count(), func.max(col(PersonaAction.created_at))).where(col(PersonaAction.tick_id) == tick_id)
        ).one()
    lag = (utcnow() - as_utc(newest)).total_seconds() if newest else None
    return Snapshot(status, actions, lag)


def as_utc(moment: datetime) -> datetime:
    """SQLite gives timestamps back without their zone; the store holds UTC only."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def tick_rows(store: Engine, tick_id: str) -> tuple[Tick, list[PersonaAction]]:
    with Session(store) as session:
        tick = session.get_one(Tick, tick_id)
        actions = list(session.scalars(select(PersonaAction).where(col(PersonaAction.tick_id) == tick_id)))
    return tick, sorted(actions, key=lambda a: a.seq)


@asynccontextmanager
async def seeded_product(tmp_path: Path, store: Engine, spec: PersonaSpec, per_call: str) -> AsyncIterator[str]:
    """The reference product in this process, slowed down, with `spec` among its users and in the store."""
    with running_product(
        str(tmp_path / "product.db"), tmp_path, delays=slowed(per_call), rate_limit=1_000_000
    ) as product:
        async with ProductClient(product.url, admin_token=ADMIN) as admin:
            await seed_catalog(Catalog(version=1, personas=[spec]), admin, SECRET, store)
        yield product.url


def plan_for(spec: PersonaSpec, max_turns: int) -> TickPlan:
    return TickPlan(
        run_id="run-recording",
        persona=spec.to_profile(),
        cadence=spec.tick_cadence,
        password=derive_password(spec.email, SECRET),
        tick_date=TICK_DATE,
        seed=1,
        max_turns=max_turns,
        timeout=120,
    )


async def tick_watched(url: str, plan: TickPlan, store: Engine) -> tuple[TickRecord, list[Snapshot]]:
    """Play the tick, reading it from the store every 0.2 s while it plays, as another reader would."""
    seen: list[Snapshot] = []
    finished: list[TickRecord] = []
    async with ProductClient(url, timeout=30) as client, anyio.create_task_group() as tasks:

        async def play() -> None:
            finished.append(await run_tick(plan, target=client, driver=ScriptedDriver(), store=store))

        tasks.start_soon(play)
        while not finished:
            seen.append(snapshot(store, plan.tick_id))
            await anyio.sleep(0.2)
    return finished[0], seen


# ---- on record from its start ------------------------------------------------------------------


@pytest.mark.anyio
async def test_a_tick_is_running_on_record_and_its_calls_follow_about_a_second_behind(
    store_url: str, tmp_path: Path
) -> None:
    store = open_store(store_url)
    spec = persona("ravi")
    plan = plan_for(spec, max_turns=12)
    async with seeded_product(tmp_path, store, spec, "300ms") as url:
        record, seen = await tick_watched(url, plan, store)
    playing = [s for s in seen if s.status == "running"]
    assert {s.status for s in seen} <= {None, "running", "ok"}
    # While it still played, other readers saw it running, and saw its calls come in.
    assert any(s.actions >= 2 for s in playing), seen
    # Never more than about a second behind: a call every 0.3 s, written within FLUSH_SECONDS of being made.
    lags = [s.lag for s in playing if s.lag is not None]
    assert lags and max(lags) < live_tick.FLUSH_SECONDS + 2.0, lags
    tick, actions = tick_rows(store, plan.tick_id)
    assert record.status == tick.status == "ok" and record.store_error is None
    assert [a.seq for a in actions] == list(range(tick.tool_calls)) and tick.tool_calls == len(record.calls) == 12
    assert tick.runner == str(this_process()) and tick.heartbeat_at is not None and tick.ended_at is not None
    with Session(store) as session:
        assert session.scalar(select(func.count()).where(col(PersonaFeedback.tick_id) == plan.tick_id))


@pytest.mark.anyio
async def test_cancelling_a_tick_records_it_aborted_with_its_calls(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "results.db"))
    spec = persona("maya")
    plan = plan_for(spec, max_turns=40)
    async with seeded_product(tmp_path, store, spec, "200ms") as url, ProductClient(url, timeout=30) as client:
        with anyio.move_on_after(3):
            await run_tick(plan, target=client, driver=ScriptedDriver(), store=store)
    tick, actions = tick_rows(store, plan.tick_id)
    assert tick.status == "aborted" and "stopped" in (tick.error or "")
    assert tick.tool_calls == len(actions) >= 3 and [a.seq for a in actions] == list(range(len(actions)))


# ---- a dead process's ticks --------------------------------------------------------------------


def store_rows(db: Path, sql: str, *params: object) -> list[tuple]:
    with contextlib.closing(sqlite3.connect(db)) as conn:
        return conn.execute(sql, params).fetchall()


def run_process(url: str, db: Path, *flags: str) -> subprocess.Popen[str]:
    """`persona-runner run` against `url` into `db`, a process of its own (it can be killed)."""
    command = [SCRIPT, "run", "--target", url, "--db", str(db), *flags]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def recorded_calls(db: Path) -> dict[str, int]:
    """The calls on record in `db` by tick; none while the run has not made the store yet."""
    try:
        return dict(store_rows(db, "SELECT tick_id, COUNT(*) FROM persona_actions GROUP BY tick_id"))
    except sqlite3.OperationalError:  # no such table
        return {}


def wait_for(what: str, condition: Callable[[], bool], seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"waited {seconds:g} s for {what}"
        time.sleep(0.1)


@pytest.fixture(scope="module")
def slow_served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`persona-runner serve` in a process of its own, every tool taking 150 ms, the catalog's personas
    seeded into it; shared by the tests that run `persona-runner run` as a process against it."""
    where = tmp_path_factory.mktemp("served")
    with served_product(where, *(flag for delay in slowed("150ms") for flag in ("--delay", delay))) as (url, _):
        seeded = cli("seed", "--target", url, "--admin-token", CLI_ADMIN, "--db", str(where / "seeding.db"))
        assert seeded.returncode == 0, seeded.stderr
        yield url


def test_kill_9_mid_run_leaves_running_ticks_the_next_run_marks_interrupted_keeping_their_calls(
    slow_served: str, tmp_path: Path
) -> None:
    db = tmp_path / "r.db"
    doomed = run_process(slow_served, db, "--persona", "ravi", "--persona", "yuki", "--max-turns", "60")
    wait_for("both ticks' calls on record", lambda: len(calls := recorded_calls(db)) == 2 and sum(calls.values()) >= 4)
    doomed.send_signal(signal.SIGKILL)
    doomed.communicate()
    left = store_rows(db, "SELECT status, runner FROM ticks")
    assert [status for status, _ in left] == ["running", "running"]
    owners = [Owner.parse(runner) for _, runner in left]
    assert all(owner and (owner.host, owner.pid) == (socket.gethostname(), doomed.pid) for owner in owners)
    kept = recorded_calls(db)

    after = cli("run", "--target", slow_served, "--persona", "maya", "--max-turns", "3", "--db", str(db))
    assert after.returncode == 0, after.stderr
    ticks = store_rows(db, "SELECT tick_id, persona_name, status, tool_calls, error FROM ticks ORDER BY persona_name")
    assert [(name, status) for _, name, status, _, _ in ticks] == [
        ("maya", "ok"),
        ("ravi", "interrupted"),
        ("yuki", "interrupted"),
    ]
    for tick_id, _, status, calls, error in ticks:
        if status == "interrupted":
            assert calls == kept[tick_id] >= 1
            assert f"pid {doomed.pid}) ended without finishing it" in error
            assert store_rows(db, "SELECT COUNT(*) FROM persona_actions WHERE tick_id = ?", tick_id) == [(calls,)]
    # The killed run says so too, ended when its ticks were last heard of.
    runs = store_rows(db, "SELECT status, ended_at IS NOT NULL, error FROM runs ORDER BY started_at")
    assert [(status, ended) for status, ended, _ in runs] == [("interrupted", 1), ("ok", 1)]
    assert f"pid {doomed.pid}) ended without finishing it" in runs[0][2]


def running_tick(
    session: Session, tick_id: str, runner: str | None, heartbeat: datetime, status: str = "running"
) -> None:
    session.add(
        Tick(
            tick_id=tick_id,
            run_id="r",
            persona_id="p",
            persona_name="p",
            tick_date="2026-11-22",
            started_at=heartbeat - timedelta(seconds=5),
            status=status,
            driver="scripted",
            runner=runner,
            heartbeat_at=heartbeat,
        )
    )


def test_reaping_marks_only_the_ticks_whose_process_is_gone(store_url: str) -> None:
    store = open_store(store_url)
    now = utcnow()
    me = this_process()
    finished = subprocess.Popen([sys.executable, "-c", "pass"])
    finished.wait()
    dead_pid = finished.pid
    fresh, stale = now - timedelta(seconds=3), now - STALE_AFTER - timedelta(seconds=1)
    with Session(store) as session, session.begin():
        running_tick(session, "mine", str(me), stale)  # this process lives, whatever its heartbeat says
        running_tick(session, "dead-pid", str(Owner(me.host, dead_pid, "n1")), fresh)
        running_tick(session, "my-pid-earlier", str(Owner(me.host, me.pid, "another")), fresh)
        running_tick(session, "elsewhere-alive", str(Owner("other-host", 7, "n2")), fresh)
        running_tick(session, "elsewhere-silent", str(Owner("other-host", 8, "n3")), stale)
        running_tick(session, "nobody", None, stale)
        running_tick(session, "done", str(Owner(me.host, dead_pid, "n1")), stale, status="ok")
        for seq, result in enumerate(["ok", "error", "ok"]):
            session.add(
                PersonaAction(
                    id=f"dead-pid:{seq}",
                    persona_id="p",
                    tick_id="dead-pid",
                    run_id="r",
                    seq=seq,
                    tool_name="todo.list",
                    module="todo",
                    input_hash="h",
                    result=result,
                    latency_ms=1.0,
                )
            )
    reaped = reap_interrupted(store, now)
    assert sorted(reaped) == ["dead-pid", "elsewhere-silent", "my-pid-earlier", "nobody"]
    assert reap_interrupted(store, now) == []
    with Session(store) as session:
        status = {t.tick_id: t for t in session.scalars(select(Tick))}
    assert {tick_id for tick_id, t in status.items() if t.status == "interrupted"} == set(reaped)
    assert status["mine"].status == status["elsewhere-alive"].status == "running" and status["done"].status == "ok"
    dead = status["dead-pid"]
    assert (dead.tool_calls, dead.errors) == (3, 1) and f"{me.host} pid {dead_pid}" in (dead.error or "")
    assert dead.ended_at is not None and abs(as_utc(dead.ended_at) - fresh) < timedelta(seconds=1)  # last seen alive
    assert "no heartbeat" in (status["elsewhere-silent"].error or "")
    # The one elsewhere that still beat is taken for gone too, once its heartbeat is older than STALE_AFTER.
    assert reap_interrupted(store, now + STALE_AFTER) == ["elsewhere-alive"]


def test_a_persona_whose_tick_died_with_its_process_is_due_again_at_once(store_url: str) -> None:
    """The soak and the workers' scheduler read the history after reaping: a `running` tick its dead process
    left would otherwise count as the persona's latest day and hold it back a whole cadence."""
    store = open_store(store_url)
    finished = subprocess.Popen([sys.executable, "-c", "pass"])
    finished.wait()
    me = this_process()
    with Session(store) as session, session.begin():
        session.add(Persona(user_id="p", email="p@personas.test", name="p", archetype="a", system_prompt=""))
        running_tick(session, "died", str(Owner(me.host, finished.pid, "n1")), utcnow() - timedelta(seconds=3))
    history = recent_history(store, ["p"])
    assert [status for _, status in history["p"]] == ["interrupted"]
    assert next_due("daily", history["p"], utcnow()).due
    store.dispose()


# ---- a store that falters ------------------------------------------------------------------------


@contextmanager
def locked(db: Path) -> Iterator[None]:
    """Another process's exclusive hold on the SQLite file, as long as the block lasts."""
    with contextlib.closing(sqlite3.connect(db, timeout=30, isolation_level=None)) as conn:
        conn.execute("BEGIN EXCLUSIVE")
        try:
            yield
        finally:
            conn.execute("COMMIT")


def test_a_store_locked_for_5_s_mid_run_loses_no_tick(slow_served: str, tmp_path: Path) -> None:
    db = tmp_path / "r.db"
    names = ("lena", "ravi", "yuki")  # no space shared: they tick at once
    run = run_process(slow_served, db, *(flag for name in names for flag in ("--persona", name)), "--max-turns", "30")
    wait_for("calls on record", lambda: sum(recorded_calls(db).values()) >= 3)
    with locked(db):
        held = store_rows(db, "SELECT COUNT(*) FROM persona_actions")
        time.sleep(5)
        assert store_rows(db, "SELECT COUNT(*) FROM persona_actions") == held  # the run could not write
    _, stderr = run.communicate(timeout=120)
    assert run.returncode == 0, stderr
    ticks = store_rows(db, "SELECT tick_id, persona_name, status, tool_calls FROM ticks ORDER BY persona_name")
    assert [(name, status) for _, name, status, _ in ticks] == [(name, "ok") for name in names]
    for tick_id, _, _, calls in ticks:
        seqs = store_rows(db, "SELECT seq FROM persona_actions WHERE tick_id = ? ORDER BY seq", tick_id)
        assert calls and [seq for (seq,) in seqs] == list(range(calls))
    assert store_rows(db, "SELECT COUNT(*) FROM transcripts") == [(3,)]


def _no_busy_wait(dbapi_connection: DBAPIConnection, _record: object) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA busy_timeout=0")
    cursor.close()


def a_record(name: str = "maya") -> TickRecord:
    return TickRecord(
        tick_id=f"run-x:{name}:{TICK_DATE}",
        run_id="run-x",
        persona=persona(name).to_profile(),
        persona_id=None,
        tick_date=TICK_DATE.isoformat(),
        seed=0,
        driver="scripted",
        model=None,
    )


def test_a_write_waits_out_a_lock_beyond_sqlites_own_busy_wait(tmp_path: Path) -> None:
    db = tmp_path / "r.db"
    open_store(str(db)).dispose()
    impatient = create_engine(f"sqlite:///{db}")  # fails at once on a lock: only the retry can wait it out
    event.listen(impatient, "connect", _no_busy_wait)
    with ThreadPoolExecutor(1) as pool:
        with locked(db):
            started = time.monotonic()
            written = pool.submit(start_tick, impatient, a_record(), "daily")
            time.sleep(1)
            assert not written.done()
        assert written.result(timeout=30) == f"email:{persona('maya').email}"  # a persona the store never saw
    assert time.monotonic() - started >= 1
    assert store_rows(db, "SELECT status FROM ticks") == [("running",)]


def test_what_no_retry_can_mend_fails_at_once(tmp_path: Path) -> None:
    no_tables = create_engine(f"sqlite:///{tmp_path / 'empty.db'}")
    started = time.monotonic()
    with pytest.raises(RecordError, match="no such table"):
        start_tick(no_tables, a_record(), "daily")
    assert time.monotonic() - started < 1


class Relay:
    """A TCP relay on 127.0.0.1 in front of PostgreSQL that can go down: every connection through
    it cut and new ones closed on arrival, until it is up again. An unreachable server, for real."""

    def __init__(self, host: str, port: int) -> None:
        self.upstream = (host, port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.listener.getsockname()[1]
        self.up = True
        self.live: set[socket.socket] = set()
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if not self.up:
                client.close()
                continue
            server = socket.create_connection(self.upstream)
            with self.lock:
                self.live |= {client, server}
            for source, sink in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        for end in (source, sink):
            with contextlib.suppress(OSError):
                end.shutdown(socket.SHUT_RDWR)

    def down(self) -> None:
        self.up = False
        with self.lock:
            for end in self.live:
                with contextlib.suppress(OSError):
                    end.shutdown(socket.SHUT_RDWR)
            self.live.clear()

    def close(self) -> None:
        self.down()
        self.listener.close()


@contextmanager
def relayed(pg_url: str) -> Iterator[tuple[Relay, str]]:
    """A relay to the test's PostgreSQL, and the URL of the test's schema through it."""
    url = make_url(pg_url)
    relay = Relay(url.host or "127.0.0.1", url.port or 5432)
    try:
        yield relay, url.set(host="127.0.0.1", port=relay.port).render_as_string(hide_password=False)
    finally:
        relay.close()


@pytest.mark.postgres
@pytest.mark.anyio
async def test_postgresql_unreachable_for_3_s_mid_tick_loses_nothing(pg_url: str, tmp_path: Path) -> None:
    direct = create_engine(pg_url)
    spec = persona("ravi")
    plan = plan_for(spec, max_turns=30)
    with relayed(pg_url) as (relay, through_relay):
        store = open_store(through_relay)
        finished: list[TickRecord] = []
        async with (
            seeded_product(tmp_path, store, spec, "200ms") as url,
            ProductClient(url, timeout=30) as client,
            anyio.create_task_group() as tasks,
        ):

            async def play() -> None:
                finished.append(await run_tick(plan, target=client, driver=ScriptedDriver(), store=store))

            tasks.start_soon(play)
            while snapshot(direct, plan.tick_id).actions < 2:
                await anyio.sleep(0.1)
            relay.down()
            on_record = snapshot(direct, plan.tick_id).actions
            await anyio.sleep(3)
            assert snapshot(direct, plan.tick_id).actions == on_record  # nothing reached the server meanwhile
            relay.up = True
    [record] = finished
    tick, actions = tick_rows(direct, plan.tick_id)
    assert record.status == tick.status == "ok" and record.store_error is None
    assert [a.seq for a in actions] == list(range(30)) and tick.tool_calls == 30
    store.dispose()
    direct.dispose()


@pytest.mark.postgres
@pytest.mark.anyio
async def test_a_store_unreachable_past_the_retry_limit_fails_the_tick_and_says_why(
    pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(retry, "STORE_RETRY_SECONDS", 1.0)
    spec = persona("ravi")
    plan = plan_for(spec, max_turns=5)
    with relayed(pg_url) as (relay, through_relay):
        store = open_store(through_relay)
        async with seeded_product(tmp_path, store, spec, "1ms") as url, ProductClient(url, timeout=30) as client:
            relay.down()
            started = time.monotonic()
            record = await run_tick(plan, target=client, driver=ScriptedDriver(), store=store)
            took = time.monotonic() - started
    assert record.status == "failed" and record.calls == []
    assert record.store_error == record.error and (record.error or "").startswith(
        f"could not record tick {plan.tick_id}: "
    )
    assert 0.5 < took < 10
    direct = create_engine(pg_url)
    with Session(direct) as session:
        assert session.get(Tick, plan.tick_id) is None
    store.dispose()
    direct.dispose()


# ---- a store an earlier version wrote ---------------------------------------------------------------

#: The results tables as the version before ticks were recorded live created them: no `runs.error`,
#: no `ticks.runner` or `ticks.heartbeat_at`, no index of running ticks. Types both databases read.
PREVIOUS_SCHEMA = """
CREATE TABLE personas (
    user_id VARCHAR NOT NULL PRIMARY KEY, email VARCHAR NOT NULL UNIQUE, name VARCHAR NOT NULL UNIQUE,
    archetype VARCHAR NOT NULL, system_prompt TEXT NOT NULL, module_mix JSON NOT NULL,
    tick_cadence VARCHAR NOT NULL, style VARCHAR, locale VARCHAR, last_active_at TIMESTAMP,
    created_at TIMESTAMP NOT NULL, updated_at TIMESTAMP NOT NULL, lease_owner VARCHAR, lease_expires_at TIMESTAMP
);
CREATE TABLE runs (
    run_id VARCHAR NOT NULL PRIMARY KEY, label VARCHAR, started_at TIMESTAMP NOT NULL, ended_at TIMESTAMP,
    status VARCHAR NOT NULL, target VARCHAR NOT NULL, driver VARCHAR NOT NULL, model VARCHAR,
    seed INTEGER NOT NULL, config JSON NOT NULL
);
CREATE INDEX ix_runs_started_at ON runs (started_at);
CREATE TABLE ticks (
    tick_id VARCHAR NOT NULL PRIMARY KEY, run_id VARCHAR NOT NULL, persona_id VARCHAR NOT NULL,
    persona_name VARCHAR NOT NULL, tick_date VARCHAR NOT NULL, started_at TIMESTAMP NOT NULL, ended_at TIMESTAMP,
    status VARCHAR NOT NULL, driver VARCHAR NOT NULL, model VARCHAR, seed INTEGER NOT NULL,
    tool_calls INTEGER NOT NULL, errors INTEGER NOT NULL, tokens_in INTEGER NOT NULL, tokens_out INTEGER NOT NULL,
    summary TEXT, error TEXT
);
CREATE INDEX ix_ticks_run_id ON ticks (run_id);
CREATE INDEX ix_ticks_persona_started ON ticks (persona_id, started_at);
CREATE TABLE persona_actions (
    id VARCHAR NOT NULL PRIMARY KEY, persona_id VARCHAR NOT NULL, tick_id VARCHAR NOT NULL, run_id VARCHAR NOT NULL,
    seq INTEGER NOT NULL, tool_name VARCHAR NOT NULL, module VARCHAR NOT NULL, input_hash VARCHAR NOT NULL,
    result VARCHAR NOT NULL, probe BOOLEAN DEFAULT FALSE NOT NULL, error_message TEXT, latency_ms FLOAT NOT NULL,
    created_at TIMESTAMP NOT NULL
);
CREATE INDEX ix_persona_actions_tick_id ON persona_actions (tick_id);
CREATE INDEX ix_actions_persona_created ON persona_actions (persona_id, created_at);
CREATE INDEX ix_actions_run_tool ON persona_actions (run_id, tool_name);
CREATE TABLE persona_feedback (
    id VARCHAR NOT NULL PRIMARY KEY, persona_id VARCHAR NOT NULL, tick_id VARCHAR NOT NULL, run_id VARCHAR NOT NULL,
    module VARCHAR NOT NULL, rating INTEGER NOT NULL, notes TEXT NOT NULL, created_at TIMESTAMP NOT NULL,
    CONSTRAINT ck_feedback_rating_range CHECK (rating >= 1 AND rating <= 5)
);
CREATE INDEX ix_feedback_run_module ON persona_feedback (run_id, module);
CREATE INDEX ix_feedback_module_created ON persona_feedback (module, created_at);
CREATE INDEX ix_persona_feedback_tick_id ON persona_feedback (tick_id);
CREATE INDEX ix_feedback_persona_created ON persona_feedback (persona_id, created_at);
CREATE TABLE transcripts (tick_id VARCHAR NOT NULL PRIMARY KEY, body JSON NOT NULL);
INSERT INTO ticks VALUES ('old-tick', 'old-run', 'p', 'maya', '2026-01-01', '2026-01-01 10:00:00',
    '2026-01-01 10:01:00', 'ok', 'scripted', NULL, 0, 0, 0, 0, 0, NULL, NULL);
"""


def indexes(store: Engine) -> set[str]:
    inspector = inspect(store)
    return {str(index["name"]) for table in inspector.get_table_names() for index in inspector.get_indexes(table)}


@pytest.mark.anyio
async def test_a_store_the_previous_version_wrote_opens_and_records_a_tick(store_url: str, tmp_path: Path) -> None:
    old = create_engine(store_url)
    with old.begin() as conn:
        for statement in PREVIOUS_SCHEMA.split(";"):
            if statement.strip():
                conn.execute(text(statement))
    before = indexes(old)
    old.dispose()

    store = open_store(store_url)
    assert indexes(store) == before | {
        "ix_ticks_running",
        "ix_actions_created",
        "ix_ticks_started",
        "ix_feedback_created",
    }
    spec = persona("maya")
    plan = plan_for(spec, max_turns=6)
    async with seeded_product(tmp_path, store, spec, "1ms") as url, ProductClient(url, timeout=30) as client:
        record = await run_tick(plan, target=client, driver=ScriptedDriver(), store=store)
    assert record.status == "ok", record.error
    tick, actions = tick_rows(store, plan.tick_id)
    assert tick.status == "ok" and tick.runner == str(this_process()) and len(actions) == tick.tool_calls == 6
    with Session(store) as session:
        old_tick = session.get_one(Tick, "old-tick")
        assert (old_tick.status, old_tick.runner, old_tick.heartbeat_at) == ("ok", None, None)
        session.add(
            PersonaFeedback(id="x", persona_id="p", tick_id="old-tick", run_id="old-run", module="todo", rating=6)
        )
        with pytest.raises(IntegrityError):  # the CHECK on ratings is still there
            session.commit()
    # Opening it again finds nothing left to add.
    open_store(store_url).dispose()
    store.dispose()


@pytest.mark.anyio
async def test_a_run_whose_ticks_the_store_refused_says_so_in_its_own_row(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'r.db'}")
    spec = persona("ravi")
    settings = RunSettings(target=TargetSpec.product("http://127.0.0.1:9"), driver="scripted")
    run = await begin_run(store, settings, [spec])
    refused, kept = (
        TickRecord(f"{run.run_id}:{name}", run.run_id, spec.to_profile(), None, "2026-11-20", 0, "scripted", None)
        for name in ("ravi", "yuki")
    )
    refused.status, refused.store_error = "failed", "could not record tick: database is locked"
    kept.status = "ok"
    await end_run(store, run, RunResult(run.run_id, [kept, refused]), Stop())
    with Session(store) as session:
        row = session.get(Run, run.run_id)
    assert row is not None and row.status == "failed"
    assert row.error == f"1 of 2 ticks could not be recorded; first {refused.tick_id}: {refused.store_error}"
    store.dispose()
