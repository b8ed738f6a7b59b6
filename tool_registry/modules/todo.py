"""To-do tasks: create, list by state, complete by id or by title, and count."""

from __future__ import annotations

import datetime as dt
import functools
from typing import Any, Literal

from pydantic import Field
from sqlalchemy import ColumnElement, Date, Select, bindparam, func
from sqlmodel import Session, col, select

from tool_registry.backend import Task, get_in_space, in_space
from tool_registry.db import utcnow
from tool_registry.modules._fields import (
    IsoDate,
    Limit,
    Listing,
    NoInput,
    RowId,
    ToolInput,
    ToolOutput,
    create_handler,
    utc_today,
)
from tool_registry.spec import ToolContext, ToolError, ToolSpec

Priority = Literal["low", "normal", "high"]
TaskFilter = Literal["open", "completed", "overdue", "today", "all"]


class TaskCreate(ToolInput):
    title: str = Field(min_length=1, max_length=200, description="What needs doing, e.g. 'Buy milk'.")
    notes: str | None = Field(default=None, max_length=2000, description="Optional details about the task.")
    due: IsoDate | None = Field(default=None, description="Optional due date, YYYY-MM-DD.")
    priority: Priority = Field(default="normal", description="How urgent the task is.")


class TaskList(ToolInput):
    filter: TaskFilter = Field(
        default="open",
        description="Which tasks: open, completed, overdue (open and due before today), "
        "today (open and due today; UTC), or all.",
    )
    limit: Limit = 50


class TaskId(ToolInput):
    id: RowId = Field(description="The task's id, as returned by todo.create or todo.list.")


class TaskTitle(ToolInput):
    title: str = Field(min_length=1, max_length=200, description="The open task's exact title (case does not matter).")


class TaskOut(ToolOutput):
    id: str
    title: str
    notes: str | None
    due: dt.date | None
    priority: Priority
    completed: bool
    created_at: dt.datetime


TaskListing = Listing[TaskOut]


class TaskStats(ToolOutput):
    open: int
    completed: int
    overdue: int
    due_today: int
    total: int


#: "Today" in every filter, bound when a query runs: the statements are built once, not per call.
TODAY = bindparam("today", type_=Date)


def _conditions(which: TaskFilter) -> list[ColumnElement[bool]]:
    """The WHERE clauses of one filter; `todo.list` and `todo.stats` share them so they always agree."""
    is_open = col(Task.completed).is_(False)
    by_filter: dict[TaskFilter, list[ColumnElement[bool]]] = {
        "open": [is_open],
        "completed": [col(Task.completed).is_(True)],
        "overdue": [is_open, col(Task.due) < TODAY],
        "today": [is_open, col(Task.due) == TODAY],
        "all": [],
    }
    return by_filter[which]


@functools.cache
def _listing(which: TaskFilter) -> Select[Any]:
    """The `todo.list` query of one filter, reading only the columns of the answer.

    A listing is the hottest read: built once and run as a plain select of
    columns, it skips both building the statement and making an ORM object
    per row, which cost ten times the query itself.
    """
    columns = [getattr(Task, name) for name in TaskOut.model_fields]
    return (
        select(*columns)
        .where(col(Task.space_id) == bindparam("space_id"), *_conditions(which))
        .order_by(col(Task.completed), col(Task.due).is_(None), col(Task.due), col(Task.created_at))
        .limit(bindparam("limit"))
    )


async def list_tasks(inp: TaskList, ctx: ToolContext) -> Listing[TaskOut]:
    def work(session: Session) -> Listing[TaskOut]:
        rows = session.execute(
            _listing(inp.filter), {"space_id": ctx.space_id, "today": utc_today(), "limit": inp.limit}
        )
        return TaskListing.of(rows)

    return await ctx.backend.run(ctx, work)


def _complete(task: Task) -> TaskOut:
    if task.completed:
        raise ToolError(f"task {task.title!r} is already completed")
    task.completed = True
    task.completed_at = utcnow()
    return TaskOut.model_validate(task)


async def complete(inp: TaskId, ctx: ToolContext) -> TaskOut:
    def work(session: Session) -> TaskOut:
        return _complete(get_in_space(session, Task, inp.id, ctx.space_id))

    return await ctx.backend.run(ctx, work)


async def complete_by_title(inp: TaskTitle, ctx: ToolContext) -> TaskOut:
    def work(session: Session) -> TaskOut:
        same_title = func.lower(Task.title) == func.lower(inp.title)
        open_titled = in_space(Task, ctx.space_id).where(*_conditions("open"), same_title)
        matches = list(session.exec(open_titled.with_for_update()))
        if not matches:
            raise ToolError(f"no open task titled {inp.title!r} in this space")
        if len(matches) > 1:
            raise ToolError(
                f"{len(matches)} open tasks are titled {inp.title!r}; find the one you mean with todo.list "
                "and complete it by id with todo.complete"
            )
        return _complete(matches[0])

    return await ctx.backend.run(ctx, work)


STAT_FILTERS: dict[str, TaskFilter] = {
    "open": "open",
    "completed": "completed",
    "overdue": "overdue",
    "due_today": "today",
    "total": "all",
}


async def stats(inp: NoInput, ctx: ToolContext) -> TaskStats:
    def work(session: Session) -> TaskStats:
        def count(which: TaskFilter) -> Any:
            conditions = _conditions(which)
            return func.count().filter(*conditions) if conditions else func.count()

        query = select(*(count(which).label(name) for name, which in STAT_FILTERS.items()))
        row = session.execute(query.where(col(Task.space_id) == ctx.space_id), {"today": utc_today()}).one()
        return TaskStats.model_validate(row._asdict())

    return await ctx.backend.run(ctx, work)


SPECS: list[ToolSpec] = [
    ToolSpec(
        name="todo.create",
        description="Add a task to the to-do list of the current space, "
        "optionally with notes, a due date and a priority.",
        input=TaskCreate,
        output=TaskOut,
        handler=create_handler(Task, TaskOut),
        policy_hint="write",
    ),
    ToolSpec(
        name="todo.list",
        description="List tasks in the current space: open (default), completed, overdue, due today, or all. "
        "Open tasks come soonest-due first.",
        input=TaskList,
        output=TaskListing,
        handler=list_tasks,
    ),
    ToolSpec(
        name="todo.complete",
        description="Mark one open task as done, by its id.",
        input=TaskId,
        output=TaskOut,
        handler=complete,
        policy_hint="write",
    ),
    ToolSpec(
        name="todo.complete_by_title",
        description="Mark an open task as done by its exact title (case-insensitive); "
        "fails if no open task or several open tasks have that title.",
        input=TaskTitle,
        output=TaskOut,
        handler=complete_by_title,
        policy_hint="write",
    ),
    ToolSpec(
        name="todo.stats",
        description="Count the tasks in the current space: open, completed, overdue, due today, and in total.",
        input=NoInput,
        output=TaskStats,
        handler=stats,
    ),
]
