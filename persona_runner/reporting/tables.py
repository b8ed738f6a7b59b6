"""The results tables as the reports read them, and which of their rows a scope covers."""

from __future__ import annotations

from typing import Any, Literal

from sqlalchemy import and_, column, inspect, select, values
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.expression import CTE, FromClause
from sqlalchemy.types import TypeEngine

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
    anything else by when it was made), of the runs of its label and target when it names them."""
    if scope.kind == "runs":
        return table.c.run_id.in_(scope.run_ids)
    moment = table.c.started_at if table is TICKS else table.c.created_at
    within = and_(moment >= scope.since, moment < scope.until)
    if scope.run_label is None and scope.target is None:
        return within
    runs = select(RUNS.c.run_id)
    if scope.run_label is not None:
        runs = runs.where(RUNS.c.label == scope.run_label)
    if scope.target is not None:
        runs = runs.where(RUNS.c.target == scope.target)
    return and_(within, table.c.run_id.in_(runs.scalar_subquery()))


def trend_bucket(rows: FromClause, by: Literal["day", "run"]) -> tuple[ColumnElement[Any], FromClause]:
    """The trend bucket of `rows` (which carry `run_id` and `tick_id`), labelled "bucket", and what to select it
    from: their run, or the day their tick's persona lived (None for a tick not on record)."""
    if by == "run":
        return rows.c.run_id.label("bucket"), rows
    return TICKS.c.tick_date.label("bucket"), rows.outerjoin(TICKS, TICKS.c.tick_id == rows.c.tick_id)


def rows_to_join(name: str, rows: list[tuple[Any, ...]], **types: type[TypeEngine[Any]]) -> CTE:
    """`rows` as a table of their own (a VALUES common table expression), columns named and typed by `types`.

    Joined from, each row is a seek into an index ordered by those columns,
    where SQLite reads an IN list of tuples by scanning the whole scope.
    """
    return values(*(column(key, kind) for key, kind in types.items()), name=name).data(rows).cte()
