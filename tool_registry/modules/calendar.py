"""Calendar: timed events, listed by day or by a date range."""

from __future__ import annotations

import datetime as dt

from pydantic import Field, model_validator
from sqlmodel import Session, col

from tool_registry.backend import Event, in_space
from tool_registry.modules._fields import (
    Color,
    IsoDate,
    IsoDateTime,
    Listing,
    ToolInput,
    ToolOutput,
    create_handler,
    start_of_day,
)
from tool_registry.spec import ToolContext, ToolSpec

MAX_EVENT_LENGTH = dt.timedelta(days=14)
MAX_RANGE_DAYS = 92


class EventCreate(ToolInput):
    title: str = Field(min_length=1, max_length=200, description="What the event is.")
    start: IsoDateTime = Field(
        description="When it starts, ISO datetime such as 2026-11-22T09:30:00+01:00 (UTC if no offset)."
    )
    end: IsoDateTime = Field(description="When it ends: after start and at most 14 days later.")
    location: str | None = Field(default=None, max_length=200, description="Optional place.")
    color: Color | None = Field(default=None, description="Optional display color, #RRGGBB.")

    @model_validator(mode="after")
    def _sane_length(self) -> EventCreate:
        if self.end <= self.start:
            raise ValueError("end must be after start")
        if self.end - self.start > MAX_EVENT_LENGTH:
            raise ValueError("end must be at most 14 days after start")
        return self


class EventList(ToolInput):
    day: IsoDate | None = Field(
        default=None, description="One day to list, YYYY-MM-DD (UTC). Use this or start and end."
    )
    start: IsoDate | None = Field(default=None, description="First day of a range, YYYY-MM-DD; needs end.")
    end: IsoDate | None = Field(
        default=None, description=f"Last day of the range, included; at most {MAX_RANGE_DAYS} days in all."
    )

    @model_validator(mode="after")
    def _one_window(self) -> EventList:
        has_range = self.start is not None or self.end is not None
        if (self.day is None) == (not has_range):
            raise ValueError("give exactly one of: day, or both start and end")
        if has_range:
            if self.start is None or self.end is None:
                raise ValueError("start and end must be given together")
            if self.end < self.start:
                raise ValueError("end must be on or after start")
            if (self.end - self.start).days + 1 > MAX_RANGE_DAYS:
                raise ValueError(f"the range from start to end may cover at most {MAX_RANGE_DAYS} days")
        return self

    def window(self) -> tuple[dt.datetime, dt.datetime]:
        """The half-open UTC interval [from, to) the request covers."""
        first, last = (self.day, self.day) if self.day is not None else (self.start, self.end)
        assert first is not None and last is not None  # guaranteed by _one_window
        return start_of_day(first), start_of_day(last + dt.timedelta(days=1))


class EventOut(ToolOutput):
    id: str
    title: str
    start: dt.datetime
    end: dt.datetime
    location: str | None
    color: str | None


async def list_events(inp: EventList, ctx: ToolContext) -> Listing[EventOut]:
    """Every event that overlaps the window, including ones that began before it."""

    def work(session: Session) -> Listing[EventOut]:
        begin, finish = inp.window()
        query = in_space(Event, ctx.space_id).where(Event.start < finish, Event.end > begin).order_by(col(Event.start))
        return Listing[EventOut].of(session.exec(query))

    return await ctx.backend.run(ctx, work)


SPECS: list[ToolSpec] = [
    ToolSpec(
        name="calendar.create_event",
        description="Put an event on the current space's calendar, with a start and end time (at most 14 days long).",
        input=EventCreate,
        output=EventOut,
        handler=create_handler(Event, EventOut),
        policy_hint="write",
    ),
    ToolSpec(
        name="calendar.list_events",
        description="List the events on one day (give day) or over a range of up to 92 days (give start and end), "
        "earliest first.",
        input=EventList,
        output=Listing[EventOut],
        handler=list_events,
    ),
]
