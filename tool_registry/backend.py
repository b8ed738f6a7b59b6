"""The reference product's data: one table per module, every row owned by a space.

Isolation is the point of this file. Every module row carries the `space_id`
it belongs to and the `created_by` user who wrote it; `Backend.run` refuses a
caller who is not a member of the space before any module code runs (asking
the database unless the membership was just seen, see `MembershipCache`), and
modules read rows through the query helpers here (`in_space`, `get_in_space`),
or, for a hot listing built once, filter on `space_id` themselves, so no answer
ever mixes two spaces.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from functools import partial
from typing import ClassVar, TypeVar

import anyio.to_thread
from sqlalchemy import JSON, UniqueConstraint
from sqlalchemy.engine import Engine
from sqlmodel import Field, Session, select
from sqlmodel.sql.expression import SelectOfScalar

from tool_registry import ids
from tool_registry.db import ProductTable, serialize_writes, utcnow
from tool_registry.identity import is_member
from tool_registry.membership import MembershipCache
from tool_registry.spec import ToolContext, ToolError

T = TypeVar("T")


class SpaceRow(ProductTable):
    """Columns every module row has: who owns it (the space) and who wrote it."""

    noun: ClassVar[str] = "item"

    id: str = Field(default_factory=ids.new_id, primary_key=True)
    space_id: str = Field(index=True, foreign_key="spaces.id")
    created_by: str = Field(foreign_key="users.id")
    created_at: dt.datetime = Field(default_factory=utcnow)


RowT = TypeVar("RowT", bound=SpaceRow)


class Task(SpaceRow, table=True):
    __tablename__ = "todo_tasks"
    noun: ClassVar[str] = "task"

    title: str
    notes: str | None = None
    due: dt.date | None = Field(default=None, index=True)
    priority: str = "normal"  # low | normal | high
    completed: bool = False
    completed_at: dt.datetime | None = None


class Note(SpaceRow, table=True):
    __tablename__ = "notes"
    noun: ClassVar[str] = "note"

    title: str
    body: str = ""
    tags: list[str] = Field(default_factory=list, sa_type=JSON)
    updated_at: dt.datetime = Field(default_factory=utcnow)


class JournalEntry(SpaceRow, table=True):
    __tablename__ = "journal_entries"
    noun: ClassVar[str] = "journal entry"

    date: dt.date = Field(index=True)
    text: str
    mood: int | None = None


class Habit(SpaceRow, table=True):
    __tablename__ = "habits"
    noun: ClassVar[str] = "habit"

    name: str
    cadence: str = "daily"  # daily | weekly
    color: str | None = None
    archived: bool = False


class HabitLog(SpaceRow, table=True):
    """One day a habit was done; a habit is logged at most once a day."""

    __tablename__ = "habit_logs"
    __table_args__ = (UniqueConstraint("habit_id", "date", name="uq_habit_log_day"),)
    noun: ClassVar[str] = "habit log"

    habit_id: str = Field(index=True, foreign_key="habits.id")
    date: dt.date = Field(index=True)
    note: str | None = None


class MoodEntry(SpaceRow, table=True):
    __tablename__ = "mood_entries"
    noun: ClassVar[str] = "mood entry"

    score: int
    note: str | None = None
    tags: list[str] = Field(default_factory=list, sa_type=JSON)
    logged_at: dt.datetime = Field(default_factory=utcnow, index=True)


class Event(SpaceRow, table=True):
    __tablename__ = "calendar_events"
    noun: ClassVar[str] = "event"

    title: str
    start: dt.datetime = Field(index=True)
    end: dt.datetime
    location: str | None = None
    color: str | None = None


class Contact(SpaceRow, table=True):
    __tablename__ = "contacts"
    noun: ClassVar[str] = "contact"

    name: str = Field(index=True)
    email: str | None = None
    phone: str | None = None
    notes: str | None = None


def in_space(model: type[RowT], space_id: str) -> SelectOfScalar[RowT]:
    """`SELECT model WHERE space_id = …`: the starting point of every module query."""
    return select(model).where(model.space_id == space_id)


def get_in_space(session: Session, model: type[RowT], row_id: str, space_id: str) -> RowT:
    """The row with this id in this space; a row of another space is as absent as a missing one.

    The row is locked until the transaction ends (PostgreSQL's row lock; SQLite
    transactions hold the write lock throughout), because callers fetch a row
    by id to change it, and two concurrent changes must not overwrite each other.
    """
    row = session.get(model, row_id, with_for_update=True)
    if row is None or row.space_id != space_id:
        raise ToolError(f"no {model.noun} with id {row_id!r} in this space")
    return row


class Backend:
    """The product's data access: one short transaction per tool call, in a worker thread.

    Database drivers here are blocking, so work runs off the event loop; each
    call commits before it returns, so the next call (from any session) reads
    what this one wrote. Only a call that writes serializes with other writers
    (`serialize_writes`); a read runs beside them.
    """

    def __init__(self, engine: Engine, memberships: MembershipCache | None = None) -> None:
        self.engine = engine
        self.memberships = memberships or MembershipCache()

    async def run(self, ctx: ToolContext, fn: Callable[[Session], T]) -> T:
        """Run `fn(session)` in one transaction, after checking the caller belongs to the space."""
        return await anyio.to_thread.run_sync(partial(self._run_sync, ctx, fn))

    def _run_sync(self, ctx: ToolContext, fn: Callable[[Session], T]) -> T:
        with ids.scoped(ctx.space_id), Session(self.engine, expire_on_commit=False) as session, session.begin():
            if ctx.writes:
                serialize_writes(session)
            if not self.memberships.known(ctx.user_id, ctx.space_id):
                if not is_member(session, ctx.user_id, ctx.space_id):
                    raise ToolError(f"you are not a member of space {ctx.space_id}")
                self.memberships.remember(ctx.user_id, ctx.space_id)
            return fn(session)
