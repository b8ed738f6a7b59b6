"""A recorded tick read back: the day as the persona lived it, for `ticks show` and `replay`.

The transcript holds the whole day (arguments, result excerpts, model
exchanges); the tick row holds how it ended. A tick whose process died before
its end was written has no transcript: its calls are then read from
`persona_actions`, which keep the tool, outcome and latency but not the
arguments, so such a day can be shown but not replayed.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlmodel import Session, col

from persona_runner.store.models import PersonaAction, PersonaFeedback, Tick, Transcript


class _Read(BaseModel):
    """What an older or newer transcript adds is ignored; what it lacks takes the default."""

    model_config = ConfigDict(extra="ignore", frozen=True)


class DayCall(_Read):
    """One tool call of the day, in the order it was made."""

    seq: int
    tool: str
    module: str
    arguments: dict[str, Any] | None = None  # None: not kept (the tick has no transcript)
    input_hash: str
    outcome: Literal["ok", "error"]
    probe: bool = False
    latency_ms: float
    error: str | None = None
    result_excerpt: str = ""
    #: The product's structured answer, when it was small enough to keep whole.
    structured: dict[str, Any] | None = None
    at: str | None = None

    def result(self) -> Any:
        """What the product answered, as data: the structured result, else the excerpt when it is whole JSON."""
        if self.structured is not None:
            return self.structured
        if self.outcome != "ok" or not self.result_excerpt:
            return None
        try:
            return json.loads(self.result_excerpt)
        except ValueError:
            return None


class DayRating(_Read):
    module: str
    rating: int
    notes: str = ""


class DaySpace(_Read):
    id: str
    name: str
    type: str
    role: str | None = None


class RecordedDay(_Read):
    """A tick as it was recorded: who, when, how it ended, and everything it did."""

    tick_id: str
    run_id: str
    persona: str
    persona_id: str
    tick_date: str
    started_at: datetime
    ended_at: datetime | None
    status: str
    error: str | None
    driver: str
    model: str | None
    seed: int
    tokens_in: int = 0
    tokens_out: int = 0
    #: False: the tick's end was never written, so arguments, results and exchanges are not known.
    has_transcript: bool
    space: DaySpace | None = None
    spaces: list[DaySpace] = Field(default_factory=list)
    tools_offered: list[str] = Field(default_factory=list)
    calls: list[DayCall] = Field(default_factory=list)
    ratings: list[DayRating] = Field(default_factory=list)
    surprises: list[str] = Field(default_factory=list)
    #: Model requests and answers of an LLM driver, in order; empty for the scripted driver.
    exchanges: list[dict[str, Any]] = Field(default_factory=list)
    verdict: dict[str, Any] | None = None

    @property
    def replayable(self) -> bool:
        """Every call's arguments are known."""
        return self.has_transcript and all(call.arguments is not None for call in self.calls)


class TickListing(_Read):
    """A tick in a list: enough to pick the one to show."""

    tick_id: str
    run_id: str
    persona: str
    tick_date: str
    started_at: datetime
    status: str
    tool_calls: int
    errors: int
    error: str | None
    ratings: dict[str, int] = Field(default_factory=dict)


def load_day(engine: Engine, tick_id: str) -> RecordedDay | None:
    """The recorded tick `tick_id`, or None when the store has no such tick."""
    with Session(engine) as session:
        tick = session.get(Tick, tick_id)
        if tick is None:
            return None
        transcript = session.get(Transcript, tick_id)
        ratings = session.scalars(
            select(PersonaFeedback).where(col(PersonaFeedback.tick_id) == tick_id).order_by(col(PersonaFeedback.module))
        ).all()
        body: dict[str, Any] = dict(transcript.body) if transcript is not None else {}
        if transcript is None:
            actions = session.scalars(
                select(PersonaAction).where(col(PersonaAction.tick_id) == tick_id).order_by(col(PersonaAction.seq))
            ).all()
            body["calls"] = [_call_from_action(action) for action in actions]
    if not body.get("ratings"):
        body["ratings"] = [{"module": r.module, "rating": r.rating, "notes": r.notes} for r in ratings]
    return RecordedDay.model_validate(
        {
            **body,
            "tick_id": tick.tick_id,
            "run_id": tick.run_id,
            "persona": tick.persona_name,
            "persona_id": tick.persona_id,
            "tick_date": tick.tick_date,
            "started_at": tick.started_at,
            "ended_at": tick.ended_at,
            "status": tick.status,
            "error": tick.error,
            "driver": tick.driver,
            "model": tick.model,
            "seed": tick.seed,
            "tokens_in": tick.tokens_in,
            "tokens_out": tick.tokens_out,
            "has_transcript": transcript is not None,
        }
    )


def _call_from_action(action: PersonaAction) -> dict[str, Any]:
    return {
        "seq": action.seq,
        "tool": action.tool_name,
        "module": action.module,
        "input_hash": action.input_hash,
        "outcome": action.result,
        "probe": action.probe,
        "latency_ms": action.latency_ms,
        "error": action.error_message,
        "at": action.created_at.isoformat(),
    }


def list_ticks(
    engine: Engine,
    *,
    run_id: str | None = None,
    persona: str | None = None,
    statuses: Sequence[str] = (),
    limit: int = 50,
) -> list[TickListing]:
    """Ticks newest first, narrowed to a run, a persona and statuses, each with its ratings."""
    query = select(Tick).order_by(col(Tick.started_at).desc(), col(Tick.tick_id).desc()).limit(limit)
    if run_id is not None:
        query = query.where(col(Tick.run_id) == run_id)
    if persona is not None:
        query = query.where(col(Tick.persona_name) == persona)
    if statuses:
        query = query.where(col(Tick.status).in_(statuses))
    with Session(engine) as session:
        ticks = session.scalars(query).all()
        ratings: dict[str, dict[str, int]] = {}
        rows = session.execute(
            select(col(PersonaFeedback.tick_id), col(PersonaFeedback.module), col(PersonaFeedback.rating))
            .where(col(PersonaFeedback.tick_id).in_([t.tick_id for t in ticks]))
            .order_by(col(PersonaFeedback.module))
        )
        for tick_id, module, rating in rows:
            ratings.setdefault(tick_id, {})[module] = rating
    return [
        TickListing(
            tick_id=t.tick_id,
            run_id=t.run_id,
            persona=t.persona_name,
            tick_date=t.tick_date,
            started_at=t.started_at,
            status=t.status,
            tool_calls=t.tool_calls,
            errors=t.errors,
            error=t.error,
            ratings=ratings.get(t.tick_id, {}),
        )
        for t in ticks
    ]


def ticks_of_run(engine: Engine, run_id: str, persona: str | None = None) -> list[str]:
    """The ids of a run's ticks (of one persona), in the order they started."""
    query = (
        select(col(Tick.tick_id)).where(col(Tick.run_id) == run_id).order_by(col(Tick.started_at), col(Tick.tick_id))
    )
    if persona is not None:
        query = query.where(col(Tick.persona_name) == persona)
    with Session(engine) as session:
        return list(session.scalars(query))
