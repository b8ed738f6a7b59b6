"""The results tables as the reports read them, and which of their rows a scope covers."""

from __future__ import annotations

from typing import Any

from sqlalchemy import and_, inspect
from sqlalchemy.sql.elements import ColumnElement

from persona_runner.reporting.model import Scope
from persona_runner.store.models import Persona, PersonaAction, PersonaFeedback, Run, Tick, Transcript

ACTIONS = inspect(PersonaAction).local_table
FEEDBACK = inspect(PersonaFeedback).local_table
TICKS = inspect(Tick).local_table
TRANSCRIPTS = inspect(Transcript).local_table
PERSONAS = inspect(Persona).local_table
RUNS = inspect(Run).local_table


def in_scope(table: Any, scope: Scope) -> ColumnElement[bool]:
    """The rows of `table` the scope covers: those of its runs, or those of its window (a tick by its start,
    anything else by when it was made)."""
    if scope.kind == "runs":
        return table.c.run_id.in_(scope.run_ids)
    moment = table.c.started_at if table is TICKS else table.c.created_at
    return and_(moment >= scope.since, moment < scope.until)
