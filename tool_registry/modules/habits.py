"""Habits: things done daily or weekly, logged per day, with a running streak."""

from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import Field
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session, col, select

from tool_registry.backend import Habit, HabitLog, get_in_space, in_space
from tool_registry.modules._fields import (
    Color,
    Days,
    IsoDate,
    Listing,
    RowId,
    ToolInput,
    ToolOutput,
    create_handler,
    utc_today,
)
from tool_registry.spec import ToolContext, ToolError, ToolSpec

Cadence = Literal["daily", "weekly"]


class HabitCreate(ToolInput):
    name: str = Field(min_length=1, max_length=80, description="What the habit is, e.g. 'Read 20 pages'.")
    cadence: Cadence = Field(default="daily", description="How often it should be done: daily or weekly.")
    color: Color | None = Field(default=None, description="Optional display color, #RRGGBB.")


class HabitList(ToolInput):
    include_archived: bool = Field(default=False, description="Also list habits that were archived.")


class HabitId(ToolInput):
    id: RowId = Field(description="The habit's id, as returned by habits.create or habits.list.")


class HabitLogInput(HabitId):
    date: IsoDate | None = Field(default=None, description="The day it was done, YYYY-MM-DD; today (UTC) if left out.")
    note: str | None = Field(default=None, max_length=500, description="Optional remark about that day.")


class RecentLogs(ToolInput):
    id: RowId | None = Field(default=None, description="Only this habit's logs; every habit's if left out.")
    days: Days = 7


class HabitOut(ToolOutput):
    id: str
    name: str
    cadence: Cadence
    color: str | None
    archived: bool


class LogOut(ToolOutput):
    habit_id: str
    date: dt.date
    note: str | None
    streak: int = Field(
        description="Consecutive days (or weeks, for a weekly habit) done, up to and including this one."
    )


class RecentLog(ToolOutput):
    habit_id: str
    habit_name: str
    date: dt.date
    note: str | None


def _period(day: dt.date, cadence: str) -> dt.date:
    """The first day of the period a day belongs to: the day itself, or its week's Monday."""
    return day - dt.timedelta(days=day.weekday()) if cadence == "weekly" else day


def streak(days: set[dt.date], until: dt.date, cadence: str) -> int:
    """How many periods in a row, ending with the one holding `until`, have at least one log."""
    done = {_period(day, cadence) for day in days}
    step = dt.timedelta(days=7 if cadence == "weekly" else 1)
    period, count = _period(until, cadence), 0
    while period in done:
        count += 1
        period -= step
    return count


async def list_habits(inp: HabitList, ctx: ToolContext) -> Listing[HabitOut]:
    def work(session: Session) -> Listing[HabitOut]:
        query = in_space(Habit, ctx.space_id).order_by(col(Habit.archived), col(Habit.created_at))
        if not inp.include_archived:
            query = query.where(col(Habit.archived).is_(False))
        return Listing[HabitOut].of(session.exec(query))

    return await ctx.backend.run(ctx, work)


def _insert_unless_logged(session: Session, entry: HabitLog) -> None:
    """INSERT … ON CONFLICT DO NOTHING on the one-log-a-day constraint: two members logging
    the same shared habit on the same day at once both succeed, and one log is kept."""
    values, one_a_day = entry.model_dump(), ["habit_id", "date"]
    if session.get_bind().dialect.name == "postgresql":
        session.execute(postgresql.insert(HabitLog).values(values).on_conflict_do_nothing(index_elements=one_a_day))
    else:
        session.execute(sqlite.insert(HabitLog).values(values).on_conflict_do_nothing(index_elements=one_a_day))


async def log(inp: HabitLogInput, ctx: ToolContext) -> LogOut:
    """Logging a day twice keeps one log (the newer note wins), so a retry never double-counts."""

    def work(session: Session) -> LogOut:
        habit = get_in_space(session, Habit, inp.id, ctx.space_id)
        if habit.archived:
            raise ToolError(f"habit {habit.name!r} is archived and can no longer be logged")
        day = inp.date or utc_today()
        that_day = select(HabitLog).where(HabitLog.habit_id == habit.id, HabitLog.date == day)
        entry = session.exec(that_day).first()
        if entry is None:
            _insert_unless_logged(
                session, HabitLog(space_id=ctx.space_id, created_by=ctx.user_id, habit_id=habit.id, date=day)
            )
            entry = session.exec(that_day).one()  # inserted just now, or by whoever got there first
        if inp.note is not None:
            entry.note = inp.note
        session.flush()
        logged_days = select(col(HabitLog.date)).where(HabitLog.habit_id == habit.id, HabitLog.date <= day)
        logged = set(session.exec(logged_days))
        return LogOut(habit_id=habit.id, date=day, note=entry.note, streak=streak(logged, day, habit.cadence))

    return await ctx.backend.run(ctx, work)


async def recent_logs(inp: RecentLogs, ctx: ToolContext) -> Listing[RecentLog]:
    def work(session: Session) -> Listing[RecentLog]:
        since = utc_today() - dt.timedelta(days=inp.days - 1)
        query = (
            select(HabitLog, Habit.name)
            .join(Habit, col(Habit.id) == HabitLog.habit_id)
            .where(HabitLog.space_id == ctx.space_id, HabitLog.date >= since)
            .order_by(col(HabitLog.date).desc(), Habit.name)
        )
        if inp.id is not None:
            query = query.where(HabitLog.habit_id == get_in_space(session, Habit, inp.id, ctx.space_id).id)
        items = [
            RecentLog(habit_id=entry.habit_id, habit_name=name, date=entry.date, note=entry.note)
            for entry, name in session.exec(query)
        ]
        return Listing[RecentLog].of(items)

    return await ctx.backend.run(ctx, work)


async def archive(inp: HabitId, ctx: ToolContext) -> HabitOut:
    def work(session: Session) -> HabitOut:
        habit = get_in_space(session, Habit, inp.id, ctx.space_id)
        habit.archived = True
        return HabitOut.model_validate(habit)

    return await ctx.backend.run(ctx, work)


SPECS: list[ToolSpec] = [
    ToolSpec(
        name="habits.create",
        description="Start tracking a habit in the current space, done daily or weekly.",
        input=HabitCreate,
        output=HabitOut,
        handler=create_handler(Habit, HabitOut),
        policy_hint="write",
    ),
    ToolSpec(
        name="habits.list",
        description="List the habits tracked in the current space (archived ones only on request).",
        input=HabitList,
        output=Listing[HabitOut],
        handler=list_habits,
    ),
    ToolSpec(
        name="habits.log",
        description="Record that a habit was done on a day (today by default) and get its current streak. "
        "Logging the same day again does not count twice.",
        input=HabitLogInput,
        output=LogOut,
        handler=log,
        policy_hint="write",
    ),
    ToolSpec(
        name="habits.recent_logs",
        description="Show which habits were done over the last few days, for one habit or all of them.",
        input=RecentLogs,
        output=Listing[RecentLog],
        handler=recent_logs,
    ),
    ToolSpec(
        name="habits.archive",
        description="Stop tracking a habit: it leaves the habit list and can no longer be logged; its logs are kept.",
        input=HabitId,
        output=HabitOut,
        handler=archive,
        policy_hint="write",
    ),
]
