"""Writing one tick to the results store: everything in one transaction, or nothing.

Ids are deterministic (`{tick_id}:{seq}`, `{tick_id}:{module}`) and rows are
merged, so writing the same tick twice leaves exactly one copy of it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from typing import Any

from sqlalchemy import Table, delete, inspect
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session, SQLModel, col, select

from persona_runner.domain import CallOutcome, PersonaProfile, Rating
from persona_runner.store.models import Persona, PersonaAction, PersonaFeedback, Tick, Transcript, utcnow
from persona_runner.util.canonical import input_hash
from persona_runner.util.text import truncate

EXCERPT_LIMIT = 2000


class RecordError(Exception):
    """The tick (or the persona rows) could not be written; nothing of it was."""


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
            "at": self.at.isoformat(),
        }


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
    status: str = "ok"
    error: str | None = None
    calls: list[RecordedCall] = field(default_factory=list)
    ratings: list[Rating] = field(default_factory=list)
    tokens_in: int = 0
    tokens_out: int = 0
    transcript: dict[str, Any] = field(default_factory=dict)

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


def save_tick(engine: Engine, record: TickRecord, cadence: str) -> None:
    """Write the tick, its actions, feedback, transcript and (once it logged in) the persona's last activity atomically.

    Each table gets one upsert keyed by the deterministic ids, and rows a
    previous attempt at the same tick wrote beyond this one are removed, so
    after a retry the store holds exactly this record.
    """
    ended = record.ended_at or utcnow()
    try:
        with Session(engine) as session, session.begin():
            persona = ensure_persona(session, record.persona, cadence, record.persona_id)
            if record.persona_id is not None:  # it logged in: a refused login is no activity
                persona.last_active_at = ended
                session.add(persona)
            session.flush()
            actions, feedback = _actions(record, persona.user_id), _feedback(record, persona.user_id, ended)
            for rows in (
                [_tick(record, persona.user_id, ended)],
                actions,
                feedback,
                [Transcript(tick_id=record.tick_id, body=record.transcript)],
            ):
                _upsert(session, rows)
            session.execute(
                delete(PersonaAction).where(
                    col(PersonaAction.tick_id) == record.tick_id, col(PersonaAction.seq) >= len(actions)
                )
            )
            kept = [row.module for row in feedback]
            session.execute(
                delete(PersonaFeedback).where(
                    col(PersonaFeedback.tick_id) == record.tick_id, col(PersonaFeedback.module).not_in(kept)
                )
            )
    except SQLAlchemyError as exc:
        raise RecordError(f"could not record tick {record.tick_id}: {getattr(exc, 'orig', exc)}") from None


def _tick(record: TickRecord, persona_id: str, ended: datetime) -> Tick:
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
        summary=record.summary(),
        error=record.error,
    )


def _actions(record: TickRecord, persona_id: str) -> list[PersonaAction]:
    return [
        PersonaAction(
            id=f"{record.tick_id}:{call.seq}",
            persona_id=persona_id,
            tick_id=record.tick_id,
            run_id=record.run_id,
            seq=call.seq,
            tool_name=call.outcome.tool,
            module=call.module,
            input_hash=call.input_hash,
            result=call.outcome.outcome,
            probe=call.outcome.probe,
            error_message=call.outcome.error,
            latency_ms=call.outcome.latency_ms,
            created_at=call.at,
        )
        for call in record.calls
    ]


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
    """Insert rows of one table in one statement, replacing any with the same primary key."""
    if not rows:
        return
    table = inspect(type(rows[0])).local_table
    values = [{column.name: getattr(row, column.name) for column in table.columns} for row in rows]
    statement = UPSERTS[session.get_bind().dialect.name](table).values(values)
    keys = [column.name for column in table.primary_key.columns]
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
    that has never logged in is keyed by its email until it does.
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
