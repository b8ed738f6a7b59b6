"""Mood: quick 1-5 check-ins, today's view, and the trend over recent days."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from statistics import fmean
from typing import Literal

from pydantic import Field
from sqlmodel import Session, col

from tool_registry.backend import MoodEntry, in_space
from tool_registry.modules._fields import (
    Days,
    NoInput,
    Score,
    Tags,
    ToolInput,
    ToolOutput,
    create_handler,
    start_of_day,
    utc_today,
)
from tool_registry.spec import ToolContext, ToolSpec

# How far the later half's average must move from the earlier half's to count as a trend.
TREND_THRESHOLD = 0.25


class MoodLog(ToolInput):
    score: Score = Field(description="How the mood is right now, 1 (awful) to 5 (great).")
    note: str | None = Field(default=None, max_length=500, description="Optional remark on why.")
    tags: Tags = Field(default=[])


class MoodInsightsInput(ToolInput):
    days: Days = 14


class MoodOut(ToolOutput):
    id: str
    score: int
    note: str | None
    tags: list[str]
    logged_at: dt.datetime


class MoodToday(ToolOutput):
    entries: list[MoodOut]
    average: float | None = Field(description="Average score of today's entries; null when there are none.")


class MoodInsights(ToolOutput):
    count: int
    average: float | None
    trend: Literal["up", "down", "flat", "unknown"] = Field(
        description="Later days against earlier days of the window; unknown with fewer than two days logged."
    )
    lowest_day: dt.date | None
    highest_day: dt.date | None


def _entries_since(session: Session, space_id: str, day: dt.date) -> list[MoodEntry]:
    since = col(MoodEntry.logged_at) >= start_of_day(day)
    query = in_space(MoodEntry, space_id).where(since).order_by(col(MoodEntry.logged_at))
    return list(session.exec(query))


def _average(scores: list[float]) -> float | None:
    return round(fmean(scores), 2) if scores else None


def _trend(daily: dict[dt.date, float]) -> Literal["up", "down", "flat", "unknown"]:
    """Compare the mean of the later half of the logged days with the earlier half."""
    if len(daily) < 2:
        return "unknown"
    values = [daily[day] for day in sorted(daily)]
    half = len(values) // 2
    change = fmean(values[-half:]) - fmean(values[:half])
    if change > TREND_THRESHOLD:
        return "up"
    if change < -TREND_THRESHOLD:
        return "down"
    return "flat"


async def today(inp: NoInput, ctx: ToolContext) -> MoodToday:
    def work(session: Session) -> MoodToday:
        entries = [MoodOut.model_validate(entry) for entry in _entries_since(session, ctx.space_id, utc_today())]
        return MoodToday(entries=entries, average=_average([entry.score for entry in entries]))

    return await ctx.backend.run(ctx, work)


async def insights(inp: MoodInsightsInput, ctx: ToolContext) -> MoodInsights:
    def work(session: Session) -> MoodInsights:
        entries = _entries_since(session, ctx.space_id, utc_today() - dt.timedelta(days=inp.days - 1))
        by_day: dict[dt.date, list[float]] = defaultdict(list)
        for entry in entries:
            by_day[entry.logged_at.astimezone(dt.UTC).date()].append(entry.score)
        daily = {day: fmean(scores) for day, scores in by_day.items()}
        ranked = sorted(daily, key=lambda day: (daily[day], day))
        return MoodInsights(
            count=len(entries),
            average=_average([entry.score for entry in entries]),
            trend=_trend(daily),
            lowest_day=ranked[0] if ranked else None,
            highest_day=ranked[-1] if ranked else None,
        )

    return await ctx.backend.run(ctx, work)


SPECS: list[ToolSpec] = [
    ToolSpec(
        name="mood.log",
        description="Record how the mood is right now, from 1 (awful) to 5 (great), with an optional note and tags.",
        input=MoodLog,
        output=MoodOut,
        handler=create_handler(MoodEntry, MoodOut),
        policy_hint="write",
    ),
    ToolSpec(
        name="mood.today",
        description="Show today's mood check-ins (UTC day) and their average.",
        input=NoInput,
        output=MoodToday,
        handler=today,
    ),
    ToolSpec(
        name="mood.insights",
        description="Summarise mood over the last days: how many check-ins, the average, "
        "whether it is trending up or down, and the lowest and highest days.",
        input=MoodInsightsInput,
        output=MoodInsights,
        handler=insights,
    ),
]
