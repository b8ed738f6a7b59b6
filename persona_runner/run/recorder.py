"""Writing a tick to the results store, in three kinds of write.

Its row goes in as `running` when it starts (`start_tick`); its calls follow
in batches while it plays (`append_actions`, which also beats the heartbeat
of the ticks in flight); when it ends, its status, counts, feedback,
transcript and the persona's last activity go in one transaction
(`save_tick`). Each write is retried while the store is briefly locked or
unreachable (`store.retry`), and ends in a RecordError when it stays so.

Ids are deterministic (`{tick_id}:{seq}`, `{tick_id}:{module}`) and rows are
merged, so writing the same rows twice leaves exactly one copy of them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from functools import cached_property
from typing import Any, TypeVar

from sqlalchemy import Table, delete, inspect, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session, SQLModel, col, select

from persona_runner.domain import CallOutcome, PersonaProfile, Rating
from persona_runner.run.owner import this_process
from persona_runner.store.models import (
    TICK_RUNNING,
    Persona,
    PersonaAction,
    PersonaFeedback,
    Tick,
    Transcript,
    utcnow,
)
from persona_runner.store.retry import retrying
from persona_runner.util.canonical import canonical_json, input_hash
from persona_runner.util.text import truncate

#: A `persona_actions` row as the values of its columns (see `action_row`).
ActionRow = dict[str, Any]
ACTIONS_TABLE = PersonaAction.metadata.tables["persona_actions"]
EXCERPT_LIMIT = 2000
#: Characters of canonical JSON up to which a call's structured result is kept whole in the transcript: the ids a
#: replay rebinds are found by their place in it. A larger result keeps only its excerpt.
STRUCTURED_LIMIT = 16_000
#: Rows in one INSERT: a batch of many ticks' calls stays under every database's limit on bound parameters.
ROWS_PER_INSERT = 1000
T = TypeVar("T")


class RecordError(Exception):
    """A write (of a tick, its calls, the persona rows) could not be made; nothing of that write was."""


@dataclass
class RecordedCall:
    seq: int
    module: str
    outcome: CallOutcome
    at: datetime

    @cached_property
    def input_hash(self) -> str:
        """Hashed once: the transcript and the action row both carry it."""
        return input_hash(self.outcome.arguments)

    @property
    def product_error(self) -> bool:
        """An error the product caused: a refused probe is the persona's doing (`models.PRODUCT_ERROR` in SQL)."""
        return not self.outcome.ok and not self.outcome.probe

    def transcript_entry(self) -> dict[str, Any]:
        o = self.outcome
        excerpt = o.text if o.ok else (o.error or "")
        return {
            "seq": self.seq,
            "tool": o.tool,
            "module": self.module,
            "arguments": o.arguments,
            "input_hash": self.input_hash,
            "outcome": o.outcome,
            "probe": o.probe,
            "latency_ms": round(o.latency_ms, 3),
            "error": o.error,
            "result_excerpt": truncate(excerpt, EXCERPT_LIMIT),
            "structured": self._structured_kept(),
            "at": self.at.isoformat(),
        }

    def _structured_kept(self) -> dict[str, Any] | None:
        structured = self.outcome.structured
        try:
            fits = structured is not None and len(canonical_json(structured)) <= STRUCTURED_LIMIT
        except ValueError:  # NaN or infinity, which JSON cannot carry
            fits = False
        return structured if fits else None


@dataclass
class TickRecord:
    """Everything a tick produced, ready to be written."""

    tick_id: str
    run_id: str
    persona: PersonaProfile
    persona_id: str | None
    tick_date: str
    seed: int
    driver: str
    model: str | None
    started_at: datetime = field(default_factory=utcnow)
    ended_at: datetime | None = None
    status: str = "running"
    error: str | None = None
    #: Why the results store would not take this tick (None: it did), for the run to say so.
    store_error: str | None = None
    calls: list[RecordedCall] = field(default_factory=list)
    ratings: list[Rating] = field(default_factory=list)
    tokens_in: int = 0
    tokens_out: int = 0
    transcript: dict[str, Any] = field(default_factory=dict)
    slot: str | None = None  # the due slot a worker played (see `Tick.slot`)

    @property
    def errors(self) -> int:
        """Errors the product caused (see `RecordedCall.product_error`)."""
        return sum(1 for call in self.calls if call.product_error)

    def modules_used(self) -> list[str]:
        """Each module called, in the order of its first call."""
        return list(dict.fromkeys(call.module for call in self.calls))

    def summary(self) -> str:
        modules = ", ".join(self.modules_used()) or "no modules"
        return f"{len(self.calls)} calls ({self.errors} errors) across {modules}"

    def settled(self) -> TickRecord:
        """The record once it is in the store, as a run's summary reads it (status, ratings, each call's module and
        outcome), without the transcript and the calls' arguments and results: a soak keeps thousands."""
        calls = [
            replace(call, outcome=replace(call.outcome, arguments={}, structured=None, text="")) for call in self.calls
        ]
        return replace(self, calls=calls, transcript={})


def start_tick(engine: Engine, record: TickRecord, cadence: str) -> str:
    """Put the tick on record as `running`, its persona's row too; the persona's id in the store.

    Before the login, the product's id for the persona is not known: a persona
    the store has never seen is keyed by its email (see `ensure_persona`).
    """

    def write() -> str:
        with Session(engine) as session, session.begin():
            persona = ensure_persona(session, record.persona, cadence, None)
            session.flush()
            _upsert(session, [_tick(record, persona.user_id, None)])
            return persona.user_id

    return _recorded(f"tick {record.tick_id}", write)


def append_actions(engine: Engine, actions: Sequence[ActionRow], beating: Sequence[str]) -> None:
    """One transaction: refresh the heartbeat of the ticks `beating` (those still running), then add `actions`.

    The tick rows are touched before the actions, in the order `save_tick`
    takes them, so two writers of one tick never wait on each other in a circle.
    """

    def write() -> None:
        with Session(engine) as session, session.begin():
            if beating:
                session.execute(
                    update(Tick).where(col(Tick.tick_id).in_(beating), TICK_RUNNING).values(heartbeat_at=utcnow())
                )
            _upsert_values(session, ACTIONS_TABLE, actions)

    _recorded(f"the calls of {len({a['tick_id'] for a in actions})} ticks", write)


def save_tick(engine: Engine, record: TickRecord, cadence: str, *, calls_written: int = 0) -> None:
    """Write the finished tick, its feedback, transcript, the calls not yet written and (once it logged in)
    the persona's last activity, atomically.

    `calls_written` says how many of the first calls `append_actions` already
    wrote: only the rest are sent. Each table gets one upsert keyed by the
    deterministic ids, and rows a previous attempt at the same tick wrote beyond
    this one are removed, so after a retry the store holds exactly this record.
    """
    ended = record.ended_at or utcnow()

    def write() -> None:
        with Session(engine) as session, session.begin():
            persona = ensure_persona(session, record.persona, cadence, record.persona_id)
            if record.persona_id is not None:  # it logged in: a refused login is no activity
                persona.last_active_at = ended
                session.add(persona)
            session.flush()
            feedback = _feedback(record, persona.user_id, ended)
            _upsert(session, [_tick(record, persona.user_id, ended)])
            actions = [action_row(record, call, persona.user_id) for call in record.calls[calls_written:]]
            _upsert_values(session, ACTIONS_TABLE, actions)
            _upsert(session, feedback)
            _upsert(session, [Transcript(tick_id=record.tick_id, body=record.transcript)])
            session.execute(
                delete(PersonaAction).where(
                    col(PersonaAction.tick_id) == record.tick_id, col(PersonaAction.seq) >= len(record.calls)
                )
            )
            kept = [row.module for row in feedback]
            session.execute(
                delete(PersonaFeedback).where(
                    col(PersonaFeedback.tick_id) == record.tick_id, col(PersonaFeedback.module).not_in(kept)
                )
            )

    _recorded(f"tick {record.tick_id}", write)


def _recorded(what: str, write: Callable[[], T]) -> T:
    """`write()` through the store's retry; a write it could not make in the end is a RecordError naming `what`."""
    try:
        return retrying(write)
    except SQLAlchemyError as exc:
        raise RecordError(f"could not record {what}: {getattr(exc, 'orig', None) or exc}") from None


def _tick(record: TickRecord, persona_id: str, ended: datetime | None) -> Tick:
    """The tick's row as it stands: `running` with no end yet, or finished at `ended`."""
    return Tick(
        tick_id=record.tick_id,
        run_id=record.run_id,
        persona_id=persona_id,
        persona_name=record.persona.name,
        tick_date=record.tick_date,
        started_at=record.started_at,
        ended_at=ended,
        status=record.status,
        driver=record.driver,
        model=record.model,
        seed=record.seed,
        tool_calls=len(record.calls),
        errors=record.errors,
        tokens_in=record.tokens_in,
        tokens_out=record.tokens_out,
        summary=None if record.status == "running" else record.summary(),
        error=record.error,
        runner=str(this_process()),
        heartbeat_at=ended or utcnow(),
        slot=record.slot,
        tools_offered=_tools_offered(record.transcript),
    )


def _tools_offered(transcript: Mapping[str, Any]) -> str | None:
    """The tick's offered tools as its row keeps them; None before (or without) a login."""
    offered = transcript.get("tools_offered")
    return None if offered is None else canonical_json(sorted(offered))


def action_row(record: TickRecord, call: RecordedCall, persona_id: str) -> ActionRow:
    """The `persona_actions` row of one call, as the values of its columns (one is made for every call a
    persona makes: an ORM object, instrumented attribute by attribute, cost a tenth of the runner's time per
    call); `persona_id` is the persona's id in the store."""
    return {
        "id": f"{record.tick_id}:{call.seq}",
        "persona_id": persona_id,
        "tick_id": record.tick_id,
        "run_id": record.run_id,
        "seq": call.seq,
        "tool_name": call.outcome.tool,
        "module": call.module,
        "input_hash": call.input_hash,
        "result": call.outcome.outcome,
        "probe": call.outcome.probe,
        "error_message": call.outcome.error,
        "latency_ms": call.outcome.latency_ms,
        "created_at": call.at,
    }


def _feedback(record: TickRecord, persona_id: str, ended: datetime) -> list[PersonaFeedback]:
    return [
        PersonaFeedback(
            id=f"{record.tick_id}:{rating.module}",
            persona_id=persona_id,
            tick_id=record.tick_id,
            run_id=record.run_id,
            module=rating.module,
            rating=rating.rating,
            notes=rating.notes,
            created_at=ended,
        )
        for rating in record.ratings
    ]


#: Each dialect's INSERT, which both grow the same `on_conflict_do_update` and `excluded`.
UPSERTS: dict[str, Callable[[Table], Any]] = {"sqlite": sqlite_insert, "postgresql": postgresql_insert}


def _upsert(session: Session, rows: Sequence[SQLModel]) -> None:
    """Insert rows of one table in one statement (per `ROWS_PER_INSERT`), replacing any with the same primary key."""
    if not rows:
        return
    table = inspect(type(rows[0])).local_table
    _upsert_values(
        session, table, [{column.name: getattr(row, column.name) for column in table.columns} for row in rows]
    )


def _upsert_values(session: Session, table: Table, rows: Sequence[Mapping[str, Any]]) -> None:
    """`_upsert` of rows given as the values of every column of `table`."""
    if not rows:
        return
    keys = [column.name for column in table.primary_key.columns]
    insert = UPSERTS[session.get_bind().dialect.name]
    for start in range(0, len(rows), ROWS_PER_INSERT):
        values = list(rows[start : start + ROWS_PER_INSERT])
        statement = insert(table).values(values)
        session.execute(
            statement.on_conflict_do_update(
                index_elements=keys, set_={name: statement.excluded[name] for name in values[0] if name not in keys}
            )
        )


PROFILE_FIELDS = ("email", "name", "archetype", "system_prompt", "module_mix", "tick_cadence", "style", "locale")


def ensure_persona(session: Session, profile: PersonaProfile, cadence: str, product_user_id: str | None) -> Persona:
    """The persona's row, found by email (else by name) and refreshed from the catalog.

    The store's persona id is fixed the first time a persona is seen: a new
    product (another target, a fresh embedded one) hands out new user ids, and
    the persona's history must not split or clash because of it. A persona
    first seen before the product named it (a tick goes on record before its
    login; a refused login) is keyed by its email, and stays so.
    """
    row = session.exec(select(Persona).where(Persona.email == profile.email)).first()
    row = row or session.exec(select(Persona).where(Persona.name == profile.name)).first()
    wanted = Persona(
        user_id=row.user_id if row else (product_user_id or f"email:{profile.email}"),
        email=profile.email,
        name=profile.name,
        archetype=profile.archetype,
        system_prompt=profile.system_prompt,
        module_mix=dict(profile.module_mix),
        tick_cadence=cadence,
        style=profile.style,
        locale=profile.locale,
    )
    if row is None:
        session.add(wanted)
        return wanted
    if any(getattr(row, f) != getattr(wanted, f) for f in PROFILE_FIELDS):
        for f in PROFILE_FIELDS:
            setattr(row, f, getattr(wanted, f))
        row.updated_at = utcnow()
        session.add(row)
    return row
