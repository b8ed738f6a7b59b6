"""What the store knows about each persona: activity, ratings, recent ticks and actions (aggregated in SQL)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from sqlmodel import Session, col

from persona_runner.store.models import (
    IS_PRODUCT_ERROR,
    Persona,
    PersonaAction,
    PersonaFeedback,
    Tick,
    utcnow,
)

RECENT_DAYS = 7


@dataclass(frozen=True)
class PersonaActivity:
    persona: Persona
    actions_recent: int
    errors_recent: int
    ratings: dict[str, tuple[float, int]]  # module -> (mean, count)


def activity(engine: Engine, names: list[str] | None = None) -> list[PersonaActivity]:
    """Every persona (or those called `names`) with its last week's actions and errors and its ratings per module."""
    since = utcnow() - timedelta(days=RECENT_DAYS)
    with Session(engine) as session:
        query = select(Persona).order_by(Persona.name)
        if names:
            query = query.where(col(Persona.name).in_(names))
        personas = list(session.scalars(query))
        ids = [p.user_id for p in personas]
        counts = {
            row.persona_id: (row.actions, row.errors or 0)
            for row in session.execute(
                select(
                    col(PersonaAction.persona_id),
                    func.count().label("actions"),
                    func.sum(IS_PRODUCT_ERROR).label("errors"),
                )
                .where(col(PersonaAction.persona_id).in_(ids), col(PersonaAction.created_at) >= since)
                .group_by(PersonaAction.persona_id)
            )
        }
        ratings: dict[str, dict[str, tuple[float, int]]] = {}
        for row in session.execute(
            select(
                col(PersonaFeedback.persona_id),
                col(PersonaFeedback.module),
                func.avg(PersonaFeedback.rating),
                func.count(),
            )
            .where(col(PersonaFeedback.persona_id).in_(ids))
            .group_by(PersonaFeedback.persona_id, PersonaFeedback.module)
            .order_by(PersonaFeedback.module)
        ):
            ratings.setdefault(row[0], {})[row[1]] = (float(row[2]), int(row[3]))
    return [PersonaActivity(p, *counts.get(p.user_id, (0, 0)), ratings=ratings.get(p.user_id, {})) for p in personas]


def persona_ids(engine: Engine, names: Sequence[str]) -> dict[str, str]:
    """The store's id of each persona called `names` that it knows, by name: what the due rule needs to read their
    ticks, without the week of activity `activity` adds up."""
    with Session(engine) as session:
        rows = session.execute(select(col(Persona.name), col(Persona.user_id)).where(col(Persona.name).in_(names)))
        return {name: user_id for name, user_id in rows}


def recent_ticks(engine: Engine, persona_ids: Sequence[str], depth: int) -> dict[str, list[tuple[datetime, str]]]:
    """The (started_at, status) of each persona's `depth` latest ticks, newest first; a persona without ticks is absent.

    One query for every persona (a numbering of each persona's ticks, newest first), so a
    listing of many personas does not read the store once per persona.
    """
    place = (
        func.row_number()
        .over(partition_by=col(Tick.persona_id), order_by=(col(Tick.started_at).desc(), col(Tick.tick_id).desc()))
        .label("place")
    )
    numbered = (
        select(col(Tick.persona_id), col(Tick.started_at), col(Tick.status), place)
        .where(col(Tick.persona_id).in_(persona_ids))
        .subquery()
    )
    query = (
        select(numbered.c.persona_id, numbered.c.started_at, numbered.c.status)
        .where(numbered.c.place <= depth)
        .order_by(numbered.c.persona_id, numbered.c.place)
    )
    history: dict[str, list[tuple[datetime, str]]] = {}
    with Session(engine) as session:
        for persona_id, started_at, status in session.execute(query):
            history.setdefault(persona_id, []).append((started_at, status))
    return history


def recent_actions(engine: Engine, persona_id: str, limit: int = 15) -> list[PersonaAction]:
    with Session(engine) as session:
        query = (
            select(PersonaAction)
            .where(col(PersonaAction.persona_id) == persona_id)
            .order_by(col(PersonaAction.created_at).desc(), col(PersonaAction.seq).desc())
            .limit(limit)
        )
        return list(session.scalars(query))
