"""The job queue workers share: procrastinate, in the results store's PostgreSQL database.

procrastinate keeps jobs, locks, retries, periodic tasks and worker heartbeats
in tables of its own beside the results tables, so one database (and one
backup) holds both, and a tick's job and its row can be read side by side.

Each fleet (the workers of one label, see `fleet`) has two queues: its ticks,
and its control jobs (scheduling, recovering the ticks of dead workers), which
run on a worker of their own in each process so a full house of ticks never
holds them up. Fleets on one database never take each other's jobs.

The engine knows a worker by an id and a heartbeat only; the fleet's roll
(`fleet_workers`, beside its tables) adds the queue each serves and the process
it runs in, so `status` can list a fleet's workers. A worker's row on the roll
goes with the worker, whoever removes it (its own shutdown, or the engine
pruning it as stalled).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import bindparam, inspect, text
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import IntegrityError

from persona_runner.run.owner import Owner
from persona_runner.util.errors import UserError

#: Task names as the queue stores them.
TICK_TASK = "persona_runner.tick"
SCHEDULE_TASK = "persona_runner.schedule"
RECOVER_TASK = "persona_runner.recover"
#: A worker silent in the queue this long is taken for dead, its tick for interrupted. It beats three
#: times in that span, so a busy database or a long pause of the process is not mistaken for a death.
STALLED_AFTER = 30.0
#: Any two processes installing the queue's tables at once take turns on this advisory lock.
_INSTALL_LOCK = 0x70725F71  # "pr_q"
#: The fleet's roll: which fleet queue each of the engine's workers serves, on which process (host:pid:nonce).
_ROLL_TABLE = """
CREATE TABLE fleet_workers (
    worker_id bigint PRIMARY KEY REFERENCES procrastinate_workers (id) ON DELETE CASCADE,
    queue_name varchar(128) NOT NULL,
    runner varchar NOT NULL
)
"""


def tick_queue(run_id: str) -> str:
    return f"ticks:{run_id}"


def control_queue(run_id: str) -> str:
    return f"control:{run_id}"


def persona_lock(persona: str) -> str:
    """Jobs holding one lock run one at a time: a persona never ticks twice at once, whatever the fleet."""
    return f"persona:{persona}"


def slot_lock(run_id: str, persona: str, slot: str) -> str:
    """At most one job waits per persona and slot: a second scheduler's is refused by the queue."""
    return f"tick:{run_id}:{persona}:{slot}"


def require_postgresql(url: str) -> str:
    """The store URL, when it is PostgreSQL: the queue lives there, and SQLite cannot be shared by machines."""
    if not url.startswith("postgresql"):
        raise UserError(
            "workers share a job queue in PostgreSQL: pass --db postgresql+psycopg://USER@HOST/DATABASE "
            "(or set PERSONA_RUNNER_DB); SQLite serves `run` and `soak` on one machine"
        )
    return url


def conninfo(url: str) -> str:
    """The store's SQLAlchemy URL as libpq takes it (options such as a search_path kept)."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def install_queue(store: Engine) -> None:
    """Create the queue's tables and the fleet's roll in the store's database unless they are there (a no-op
    after the first time; a queue installed before the roll was gets the roll).

    Workers starting together take turns on an advisory lock, so the tables are created once.
    """
    from procrastinate.schema import SchemaManager

    with store.begin() as connection:
        connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_INSTALL_LOCK})")
        # Looked for first, rather than CREATE ... IF NOT EXISTS: that needs the right to create, which a role
        # that only runs `status` may not have.
        present = inspect(connection)
        if not present.has_table("procrastinate_jobs"):
            # The schema is many statements: sent as one script, without parameters to bind.
            connection.connection.driver_connection.execute(SchemaManager.get_schema())  # type: ignore[union-attr]
        if not present.has_table("fleet_workers"):
            connection.exec_driver_sql(_ROLL_TABLE)


def enrol(store: Engine, worker_id: int, queue: str, runner: str) -> None:
    """Put one of the engine's workers on the roll: it serves `queue`, in the process `runner`. A worker the
    engine removed meanwhile (stopped at once, or pruned) stays off it."""
    try:
        with store.begin() as connection:
            connection.execute(
                text(
                    "INSERT INTO fleet_workers (worker_id, queue_name, runner) VALUES (:id, :queue, :runner) "
                    "ON CONFLICT (worker_id) DO NOTHING"
                ),
                {"id": worker_id, "queue": queue, "runner": runner},
            )
    except IntegrityError:
        return  # its row in procrastinate_workers is gone: nothing to put on the roll


@dataclass(frozen=True)
class QueueWorker:
    """One of the engine's workers on a fleet's roll: what it serves ("ticks" or "control"), the process it runs
    in (None for a runner this version cannot read), and how long ago it last beat, by the database's clock."""

    worker_id: int
    serves: str
    runner: Owner | None
    beat_seconds_ago: float


@dataclass(frozen=True)
class QueueState:
    """What the queue holds for a fleet: its workers registered on the database, and its tick jobs by persona."""

    workers: list[QueueWorker]
    waiting: list[str]  # personas with a tick job queued
    taken: list[str]  # personas whose tick job a worker took


def queue_state(store: Engine, run_id: str) -> QueueState:
    """Read from the queue's own tables (procrastinate 3's schema) and the roll, so a look needs no worker and
    no job."""
    queues = {tick_queue(run_id): "ticks", control_queue(run_id): "control"}
    with store.connect() as connection:
        workers = [
            QueueWorker(row.id, queues[row.queue_name], Owner.parse(row.runner), row.beat_seconds_ago)
            for row in connection.execute(
                text(
                    "SELECT w.id, r.queue_name, r.runner, "
                    "EXTRACT(EPOCH FROM now() - w.last_heartbeat)::float AS beat_seconds_ago "
                    "FROM procrastinate_workers w JOIN fleet_workers r ON r.worker_id = w.id "
                    "WHERE r.queue_name IN :queues ORDER BY w.id"
                ).bindparams(bindparam("queues", expanding=True)),
                {"queues": list(queues)},
            )
        ]
        jobs = connection.execute(
            text(
                "SELECT args->>'persona' AS persona, status FROM procrastinate_jobs "
                "WHERE queue_name = :queue AND task_name = :task AND status IN ('todo', 'doing') ORDER BY id"
            ),
            {"queue": tick_queue(run_id), "task": TICK_TASK},
        ).all()
    return QueueState(
        workers=workers,
        waiting=[row.persona for row in jobs if row.status == "todo"],
        taken=[row.persona for row in jobs if row.status == "doing"],
    )
