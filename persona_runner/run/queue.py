"""The job queue workers share: procrastinate, in the results store's PostgreSQL database.

procrastinate keeps jobs, locks, retries, periodic tasks and worker heartbeats
in tables of its own beside the results tables, so one database (and one
backup) holds both, and a tick's job and its row can be read side by side.

Each fleet (the workers of one label, see `fleet`) has two queues: its ticks,
and its control jobs (scheduling, recovering the ticks of dead workers), which
run on a worker of their own in each process so a full house of ticks never
holds them up. Fleets on one database never take each other's jobs.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import inspect, text
from sqlalchemy.engine import Engine, make_url

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
    """Create the queue's tables in the store's database unless they are there (a no-op after the first time).

    Workers starting together take turns on an advisory lock, so the tables are created once.
    """
    from procrastinate.schema import SchemaManager

    with store.begin() as connection:
        connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_INSTALL_LOCK})")
        if not inspect(connection).has_table("procrastinate_jobs"):
            # The schema is many statements: sent as one script, without parameters to bind.
            connection.connection.driver_connection.execute(SchemaManager.get_schema())  # type: ignore[union-attr]


@dataclass(frozen=True)
class QueueState:
    """What the queue holds for a fleet: the workers beating on the database, and its tick jobs by persona."""

    workers: list[tuple[int, datetime]]  # (worker id, latest heartbeat), every fleet's
    waiting: list[str]  # personas with a tick job queued
    taken: list[str]  # personas whose tick job a worker took


def queue_state(store: Engine, run_id: str) -> QueueState:
    """Read from the queue's own tables (procrastinate 3's schema), so a look needs no worker and no job."""
    with store.connect() as connection:
        workers = [
            (row.id, row.last_heartbeat)
            for row in connection.execute(text("SELECT id, last_heartbeat FROM procrastinate_workers ORDER BY id"))
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
