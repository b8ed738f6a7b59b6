"""Journal: dated free-text entries, optionally with the day's mood."""

from __future__ import annotations

import datetime as dt

from pydantic import Field, model_validator
from sqlmodel import Session, col

from tool_registry.backend import JournalEntry, in_space
from tool_registry.modules._fields import IsoDate, Limit, Listing, Score, ToolInput, ToolOutput, utc_today
from tool_registry.spec import ToolContext, ToolSpec


class EntryAdd(ToolInput):
    text: str = Field(min_length=1, max_length=10000, description="What happened, in the writer's words.")
    date: IsoDate | None = Field(
        default=None, description="The day the entry is about, YYYY-MM-DD; today (UTC) if left out."
    )
    mood: Score | None = Field(default=None, description="Optional mood that day, 1 (awful) to 5 (great).")


class EntryList(ToolInput):
    since: IsoDate | None = Field(default=None, description="Only entries on or after this day, YYYY-MM-DD.")
    until: IsoDate | None = Field(default=None, description="Only entries on or before this day, YYYY-MM-DD.")
    limit: Limit = 50

    @model_validator(mode="after")
    def _ordered(self) -> EntryList:
        if self.since and self.until and self.until < self.since:
            raise ValueError(f"until ({self.until}) must be on or after since ({self.since})")
        return self


class EntryOut(ToolOutput):
    id: str
    date: dt.date
    text: str
    mood: int | None


async def add(inp: EntryAdd, ctx: ToolContext) -> EntryOut:
    def work(session: Session) -> EntryOut:
        entry = JournalEntry(
            space_id=ctx.space_id,
            created_by=ctx.user_id,
            date=inp.date or utc_today(),
            text=inp.text,
            mood=inp.mood,
        )
        session.add(entry)
        return EntryOut.model_validate(entry)

    return await ctx.backend.run(ctx, work)


async def list_entries(inp: EntryList, ctx: ToolContext) -> Listing[EntryOut]:
    def work(session: Session) -> Listing[EntryOut]:
        query = in_space(JournalEntry, ctx.space_id)
        if inp.since:
            query = query.where(JournalEntry.date >= inp.since)
        if inp.until:
            query = query.where(JournalEntry.date <= inp.until)
        query = query.order_by(col(JournalEntry.date).desc(), col(JournalEntry.created_at).desc()).limit(inp.limit)
        return Listing[EntryOut].of(session.exec(query))

    return await ctx.backend.run(ctx, work)


SPECS: list[ToolSpec] = [
    ToolSpec(
        name="journal.add",
        description="Write a journal entry for a day (today by default), optionally noting the mood from 1 to 5.",
        input=EntryAdd,
        output=EntryOut,
        handler=add,
        policy_hint="write",
    ),
    ToolSpec(
        name="journal.list",
        description="Read journal entries of the current space, newest day first, optionally between two days.",
        input=EntryList,
        output=Listing[EntryOut],
        handler=list_entries,
    ),
]
