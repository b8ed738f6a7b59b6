"""The results store schema: the same tables on SQLite and PostgreSQL.

Row ids are deterministic (`"{tick_id}:{seq}"` for actions,
`"{tick_id}:{module}"` for feedback) so that a retried write replaces rather
than duplicates. `run_id` is carried on actions and feedback, not only on
ticks, because every report and gate aggregates by run and should not need a
join to do it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    CheckConstraint,
    Column,
    Index,
    Integer,
    Text,
    and_,
    case,
    cast,
    false,
    func,
    literal_column,
)
from sqlalchemy.orm import registry
from sqlmodel import Field, SQLModel, col


class ResultsTable(SQLModel, registry=registry()):
    """Base of the results tables: its own metadata, so the product's tables
    (same process when the product is embedded) never land in this store."""


def utcnow() -> datetime:
    """Aware UTC: the only kind of timestamp the store accepts."""
    return datetime.now(UTC)


class Persona(ResultsTable, table=True):
    __tablename__ = "personas"

    user_id: str = Field(primary_key=True)
    email: str = Field(unique=True)
    name: str = Field(unique=True)
    archetype: str
    system_prompt: str = Field(sa_column=Column(Text, nullable=False))
    module_mix: dict[str, float] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    tick_cadence: str = "daily"
    style: str | None = None
    locale: str | None = None
    last_active_at: datetime | None = None
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


class Run(ResultsTable, table=True):
    __tablename__ = "runs"

    run_id: str = Field(primary_key=True)
    label: str | None = None  # the build, commit or purpose of the run (`--label`)
    started_at: datetime = Field(default_factory=utcnow, index=True)
    ended_at: datetime | None = None
    #: running | ok | failed | aborted | stopped (by a signal) | interrupted (its process died)
    status: str = "running"
    #: Why the run could not do all it should, e.g. ticks the results store would not take.
    error: str | None = Field(default=None, sa_column=Column(Text))
    #: The process running it, "host:pid:nonce" (see `Tick.runner`); None for a fleet, which many share.
    runner: str | None = None
    target: str
    driver: str
    model: str | None = None
    seed: int = 0
    config: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))


class Tick(ResultsTable, table=True):
    __tablename__ = "ticks"
    __table_args__ = (
        Index("ix_ticks_persona_started", "persona_id", "started_at"),
        # A report's window: the ticks it covers by their start.
        Index("ix_ticks_started", "started_at"),
    )

    tick_id: str = Field(primary_key=True)
    run_id: str = Field(index=True)
    persona_id: str
    persona_name: str
    tick_date: str  # ISO date the persona lived through
    started_at: datetime = Field(default_factory=utcnow)
    ended_at: datetime | None = None
    #: running (being played, or left so by a process that died) | ok | failed | timeout | aborted
    #: | interrupted (its process died; the calls it recorded are kept) | rating_unparsed
    status: str
    driver: str
    model: str | None = None
    seed: int = 0
    tool_calls: int = 0
    errors: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    summary: str | None = Field(default=None, sa_column=Column(Text))
    error: str | None = Field(default=None, sa_column=Column(Text))
    #: The process playing (or that played) the tick, "host:pid:nonce": a later process can tell it is gone.
    runner: str | None = None
    #: Refreshed every few seconds while the tick runs: a `running` tick without one lately lost its process.
    heartbeat_at: datetime | None = None
    #: For a tick a worker played: the moment its persona fell due ("first": it had never ticked). Workers
    #: play a persona's slot once; a tick cut short by the harness leaves the slot to be played again.
    slot: str | None = None
    #: The names of the tools the target offered the persona, sorted, as canonical JSON (also in the transcript):
    #: a report reads the few distinct lists here instead of every transcript in its scope.
    tools_offered: str | None = Field(default=None, sa_column=Column(Text))


#: A tick still being played, or left so by a process that died. The value is a literal, not a
#: bound parameter, so the partial index below (ticks in flight only) serves the query.
TICK_RUNNING = col(Tick.status) == literal_column("'running'")
Index("ix_ticks_running", col(Tick.heartbeat_at), sqlite_where=TICK_RUNNING, postgresql_where=TICK_RUNNING)


class WorkerPause(ResultsTable, table=True):
    """While a row is here, workers start no tick (`persona-runner pause`; `resume` deletes it)."""

    __tablename__ = "worker_pause"

    scope: str = Field(default="all", primary_key=True)
    paused_at: datetime = Field(default_factory=utcnow)
    paused_by: str
    reason: str | None = Field(default=None, sa_column=Column(Text))


class PersonaAction(ResultsTable, table=True):
    __tablename__ = "persona_actions"
    __table_args__ = (
        Index("ix_actions_persona_created", "persona_id", "created_at"),
        Index("ix_actions_run_tool", "run_id", "tool_name"),
        # A report's window: the actions it covers by when they were made.
        Index("ix_actions_created", "created_at"),
    )

    id: str = Field(primary_key=True)  # "{tick_id}:{seq}"
    persona_id: str
    tick_id: str = Field(index=True)
    run_id: str
    seq: int
    tool_name: str
    module: str
    input_hash: str
    result: str  # ok | error
    #: Sent on purpose to be refused (a persona probing bad input): its error is not counted against the product.
    probe: bool = Field(default=False, sa_column_kwargs={"server_default": false()})
    error_message: str | None = Field(default=None, sa_column=Column(Text))
    latency_ms: float
    created_at: datetime = Field(default_factory=utcnow)


_A = PersonaAction
#: What a report reads of an action besides its grouping keys: its scope (a window or runs) and whether it failed.
_SCOPE_AND_RESULT = (col(_A.created_at), col(_A.run_id), col(_A.result), col(_A.probe))
#: The indexes below serve only reports, and are made with a new store. An existing store is not given them when
#: it is opened for recording (`store.upgrade` skips what this marks): building them there takes seconds per
#: million actions, and a report reads a store without them as before, only slower.
_REPORT_ONLY = {"report_only": True}
#: A report's per-tick pass, in the order it groups by, covering every column it reads: SQLite streams the groups
#: off the index instead of sorting a million rows (PostgreSQL hashes them either way).
Index(
    "ix_actions_tick_module",
    col(_A.tick_id),
    col(_A.module),
    col(_A.persona_id),
    *_SCOPE_AND_RESULT,
    info=_REPORT_ONLY,
)
#: A report's rollup by run, in the order it groups by: SQLite streams the groups off the index and counts each
#: group's ticks as they come (PostgreSQL hashes them either way).
Index(
    "ix_actions_module_persona_run",
    col(_A.module),
    col(_A.persona_id),
    col(_A.run_id),
    col(_A.tick_id),
    col(_A.result),
    col(_A.probe),
    col(_A.created_at),
    info=_REPORT_ONLY,
).ddl_if(dialect="sqlite")
#: A report's per-tool latency histogram, grouped by whole millisecond as `reporting.actions.whole_ms` cuts it,
#: so the groups stream off the index and a percentile's millisecond is found by a seek. One expression per
#: database, each index made only on its own.
Index(
    "ix_actions_tool_ms",
    col(_A.module),
    col(_A.tool_name),
    cast(col(_A.latency_ms), Integer),
    col(_A.latency_ms),
    *_SCOPE_AND_RESULT,
    info=_REPORT_ONLY,
).ddl_if(dialect="sqlite")
Index(
    "ix_actions_tool_ms_pg",
    col(_A.module),
    col(_A.tool_name),
    cast(func.trunc(col(_A.latency_ms)), Integer),
    col(_A.latency_ms),
    info=_REPORT_ONLY,
).ddl_if(dialect="postgresql")
#: A report's most frequent errors: the few failed actions, already in the order they are counted in.
Index(
    "ix_actions_result_module",
    col(_A.result),
    col(_A.module),
    col(_A.error_message),
    col(_A.probe),
    col(_A.created_at),
    col(_A.run_id),
    info=_REPORT_ONLY,
)

#: In SQL, an action that is an error the product caused: a refused probe (bad input sent on
#: purpose) is the persona's doing. `RecordedCall.product_error` is the same rule in Python.
PRODUCT_ERROR = and_(col(PersonaAction.result) == "error", col(PersonaAction.probe) == false())
#: 1 for an action that is a product error, else 0: summed, the errors of a group of actions.
IS_PRODUCT_ERROR = case((PRODUCT_ERROR, 1), else_=0)


class PersonaFeedback(ResultsTable, table=True):
    __tablename__ = "persona_feedback"
    __table_args__ = (
        CheckConstraint("rating >= 1 AND rating <= 5", name="ck_feedback_rating_range"),
        Index("ix_feedback_module_created", "module", "created_at"),
        Index("ix_feedback_persona_created", "persona_id", "created_at"),
        Index("ix_feedback_run_module", "run_id", "module"),
        # A report's window: the ratings it covers by when they were given.
        Index("ix_feedback_created", "created_at"),
    )

    id: str = Field(primary_key=True)  # "{tick_id}:{module}"
    persona_id: str
    tick_id: str = Field(index=True)
    run_id: str
    module: str
    rating: int
    notes: str = Field(default="", sa_column=Column(Text, nullable=False))
    created_at: datetime = Field(default_factory=utcnow)


#: A report's notes, in the order it groups them, covering what it reads: SQLite streams the groups off the index
#: and finds a kept note's givers by a seek. SQLite only: PostgreSQL refuses index entries over a few kilobytes,
#: and notes have no such bound.
Index(
    "ix_feedback_notes",
    col(PersonaFeedback.module),
    col(PersonaFeedback.rating),
    col(PersonaFeedback.notes),
    col(PersonaFeedback.created_at),
    col(PersonaFeedback.run_id),
    col(PersonaFeedback.tick_id),
    col(PersonaFeedback.persona_id),
    info=_REPORT_ONLY,
).ddl_if(dialect="sqlite")


class Transcript(ResultsTable, table=True):
    __tablename__ = "transcripts"

    tick_id: str = Field(primary_key=True)
    body: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
