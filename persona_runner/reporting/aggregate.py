"""Feedback reports: what the personas did and thought, module by module.

Every figure is aggregated by the database (group-bys and window functions), so
a store with a million actions reports in seconds and in little memory: Python
only ever sees one row per module, tool, persona or trend bucket. The `Report`
model (`report_model`) carries every figure; the JSON format is its dump, the
HTML and Markdown renderers read it, and the gate compares two of them (an
exported baseline is one), so all three outputs and the gate agree by
construction.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import astuple
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from sqlalchemy import Integer, String, and_, func, inspect, select, true
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.sql.elements import ColumnElement

from persona_runner.domain import module_of_tool
from persona_runner.reporting.actions import Counts, TickRollup, through, tick_rollup, tool_stats
from persona_runner.reporting.failures import failure_groups
from persona_runner.reporting.gate import Thresholds, what_changed
from persona_runner.reporting.look_at import store_argument, ticks_to_look_at
from persona_runner.reporting.model import (
    ErrorCount,
    ModuleReport,
    Note,
    PersonaReport,
    RatingStats,
    Reliability,
    Report,
    RunInfo,
    RunKind,
    Scope,
    ToolStats,
    Totals,
    TrendPoint,
    closest_earlier,
    error_rate,
    injected_faults,
)
from persona_runner.reporting.ratings import RatingRollup, Sums, rating_rollup
from persona_runner.reporting.tables import (
    ACTIONS,
    FEEDBACK,
    PERSONAS,
    RUNS,
    TICKS,
    TRANSCRIPTS,
    in_scope,
    rows_to_join,
)
from persona_runner.store.db import describe
from persona_runner.store.models import (
    PRODUCT_ERROR,
)
from persona_runner.util.errors import UserError

TOP_ERRORS = 5
#: The covering index a report's notes stream from on SQLite (see `through`).
NOTES_INDEX = "ix_feedback_notes"
NOTES_PER_MODULE = 10


def store_name(engine: Engine) -> str:
    """Where a report's figures came from, without a password."""
    return describe(engine.url.render_as_string(hide_password=False))


def _duration_words(length: timedelta) -> str:
    """ "7 days", "24 hours", "90 minutes": the largest unit that still counts to two or more."""
    seconds = int(length.total_seconds())
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds % size == 0 and (seconds // size >= 2 or unit == "minute"):
            count = seconds // size
            return f"{count} {unit}{'s' if count != 1 else ''}"
    return f"{seconds} seconds"


def window_scope(
    length: timedelta, until: datetime | None = None, *, run_label: str | None = None, target: str | None = None
) -> Scope:
    end = until or datetime.now(UTC)
    only = [f"label {run_label}" if run_label else "", f"target {target}" if target else ""]
    kept = " and ".join(part for part in only if part)
    label = f"the last {_duration_words(length)}" + (f" ({kept})" if kept else "")
    return Scope(kind="window", label=label, since=end - length, until=end, run_label=run_label, target=target)


def runs_scope(conn: Connection, run_ids: Sequence[str]) -> Scope:
    """A scope over the given runs, ordered by start; an unknown id is a user mistake."""
    rows = conn.execute(select(RUNS.c.run_id).where(RUNS.c.run_id.in_(run_ids)).order_by(RUNS.c.started_at)).all()
    known = [row.run_id for row in rows]
    unknown = [run_id for run_id in dict.fromkeys(run_ids) if run_id not in known]
    if unknown:
        raise UserError(f"unknown run {', '.join(unknown)}; `persona-runner runs list` shows the recorded runs")
    label = f"run {known[0]}" if len(known) == 1 else f"runs {', '.join(known)}"
    return Scope(kind="runs", label=label, run_ids=known)


def previous_scope(conn: Connection, scope: Scope) -> Scope | None:
    """The scope "what changed" compares against: one like the reported scope, so a change it names is the
    product's, not a change in how the product was exercised.

    A window is compared with the window just before it, kept to the same
    label and target; when nothing was recorded there (`report --label
    nightly` in the week of the first nightly run), the scope says so.

    Runs are compared with the latest earlier run that recorded ticks and
    is most like the first of them (`RunKind.likeness`): the same label and
    injected faults first; then the same faults under another label (a label
    per build or per night, `nightly-2026-12-01`, is new every time); then,
    for a run with faults, a run without. A run with other faults is never
    chosen: a 300 ms delay read against a failing tool shows neither. A run
    without a label goes with the latest other run without one, even with a
    nightly run started in between: a label sets runs apart on purpose, so a
    try nobody named is compared with the previous such try.
    """
    if scope.kind == "window":
        assert scope.since is not None and scope.until is not None
        length = scope.until - scope.since
        previous = Scope(
            kind="window",
            label=f"the previous {_duration_words(length)}",
            since=scope.since - length,
            until=scope.since,
            run_label=scope.run_label,
            target=scope.target,
        )
        recorded = (
            select(table.c.run_id).where(in_scope(table, previous)).exists() for table in (TICKS, ACTIONS, FEEDBACK)
        )
        previous.recorded_nothing = not any(conn.execute(select(found)).scalar() for found in recorded)
        return previous
    first = conn.execute(
        select(RUNS.c.label, RUNS.c.config, RUNS.c.started_at).where(RUNS.c.run_id == scope.run_ids[0])
    ).one()
    has_ticks = select(TICKS.c.run_id).where(TICKS.c.run_id == RUNS.c.run_id).exists()
    earlier = conn.execute(
        select(RUNS.c.run_id, RUNS.c.label, RUNS.c.config)
        .where(RUNS.c.started_at < first.started_at, has_ticks)
        .order_by(RUNS.c.started_at.desc(), RUNS.c.run_id.desc())
    )
    kind = RunKind.of(first.label, first.config)
    previous_id = closest_earlier(kind, ((row.run_id, RunKind.of(row.label, row.config)) for row in earlier))
    return Scope(kind="runs", label=f"run {previous_id}", run_ids=[previous_id]) if previous_id else None


def _runs_covered(conn: Connection, scope: Scope) -> list[RunInfo]:
    """The runs with ticks in the scope, oldest first, each with what sets it apart."""
    ids = select(TICKS.c.run_id).where(in_scope(TICKS, scope)).distinct().scalar_subquery()
    rows = conn.execute(
        select(RUNS.c.run_id, RUNS.c.label, RUNS.c.target, RUNS.c.started_at, RUNS.c.status, RUNS.c.config)
        .where(RUNS.c.run_id.in_(ids))
        .order_by(RUNS.c.started_at)
    )
    return [
        RunInfo(
            run_id=row.run_id,
            label=row.label,
            target=row.target,
            started_at=row.started_at,
            status=row.status,
            injected=injected_faults(row.config),
        )
        for row in rows
    ]


def _top_per_module(conn: Connection, inner: Any, order_by: Sequence[ColumnElement[Any]], limit: int) -> list[Any]:
    """The first `limit` rows of each module of a subquery, ranked in SQL so only those leave the database."""
    rank = func.row_number().over(partition_by=inner.c.module, order_by=order_by).label("rank")
    ranked = select(inner, rank).subquery()
    return list(conn.execute(select(ranked).where(ranked.c.rank <= limit).order_by(ranked.c.module, ranked.c.rank)))


def _top_errors(conn: Connection, scope: Scope) -> dict[str, list[ErrorCount]]:
    message = func.coalesce(ACTIONS.c.error_message, "(no message)").label("message")
    grouped = through(
        conn,
        scope,
        select(ACTIONS.c.module, message, func.count().label("count"))
        .where(in_scope(ACTIONS, scope), PRODUCT_ERROR)
        .group_by(ACTIONS.c.module, message),
        "ix_actions_result_module",
    ).subquery()
    found: dict[str, list[ErrorCount]] = defaultdict(list)
    for row in _top_per_module(conn, grouped, (grouped.c.count.desc(), grouped.c.message), TOP_ERRORS):
        found[row.module].append(ErrorCount(message=row.message, count=row.count))
    return found


def _lowest_notes(conn: Connection, scope: Scope, names: dict[str, str]) -> dict[str, list[Note]]:
    """The NOTES_PER_MODULE lowest rated notes of each module, the latest first among equals, each note once with
    how often and by whom it was given: one complaint said every tick must not crowd out the others."""
    given = and_(in_scope(FEEDBACK, scope), FEEDBACK.c.notes != "")
    keys = (FEEDBACK.c.module, FEEDBACK.c.rating, FEEDBACK.c.notes)
    groups = through(
        conn,
        scope,
        select(
            *keys,
            func.count().label("times"),
            func.max(FEEDBACK.c.created_at).label("latest"),
            func.max(FEEDBACK.c.tick_id).label("tick_id"),
        )
        .where(given)
        .group_by(*keys),
        NOTES_INDEX,
        FEEDBACK,
    ).subquery()
    kept = _top_per_module(conn, groups, (groups.c.rating, groups.c.latest.desc(), groups.c.tick_id), NOTES_PER_MODULE)
    givers: dict[tuple[str, int, str], list[str]] = defaultdict(list)
    if kept:
        chosen = rows_to_join(
            "kept", [(row.module, row.rating, row.notes) for row in kept], module=String, rating=Integer, notes=String
        )
        same = and_(*(key == chosen.c[key.name] for key in keys))
        given_by = select(*keys, FEEDBACK.c.persona_id).select_from(chosen).join(FEEDBACK, same).where(given)
        for row in conn.execute(through(conn, scope, given_by.distinct(), NOTES_INDEX, FEEDBACK)):
            givers[(row.module, row.rating, row.notes)].append(names.get(row.persona_id, row.persona_id))
    found: dict[str, list[Note]] = defaultdict(list)
    for row in kept:
        personas = sorted(givers[(row.module, row.rating, row.notes)])
        found[row.module].append(
            Note(
                rating=row.rating,
                notes=row.notes,
                persona=personas[0] if personas else "",
                tick_id=row.tick_id,
                created_at=row.latest,
                count=row.times,
                personas=personas,
            )
        )
    return found


def _offered_tools(conn: Connection, scope: Scope) -> set[str]:
    """Distinct tool names the product offered in the scope's ticks: the few distinct lists their rows keep, and
    for ticks an earlier version wrote (no list on the row), their transcripts."""
    names: set[str] = set()
    in_transcripts = in_scope(TICKS, scope)
    if "tools_offered" in {column["name"] for column in inspect(conn).get_columns("ticks")}:
        kept = TICKS.c.tools_offered
        lists = select(kept).where(in_scope(TICKS, scope), kept.is_not(None)).distinct()
        for offered in conn.execute(lists).scalars():
            names.update(json.loads(offered))
        in_transcripts = and_(in_transcripts, kept.is_(None))
    tools_offered = TRANSCRIPTS.c.body["tools_offered"]
    if conn.dialect.name == "postgresql":
        listed = func.json_array_elements_text(tools_offered).table_valued("value")
    else:
        listed = func.json_each(TRANSCRIPTS.c.body, "$.tools_offered").table_valued("value")
    stmt = (
        select(listed.c.value)
        .distinct()
        .select_from(TICKS.join(TRANSCRIPTS, TRANSCRIPTS.c.tick_id == TICKS.c.tick_id))
        .join(listed, true())
        .where(in_transcripts)
    )
    return names | {str(name) for name in conn.execute(stmt).scalars()}


def _seen_tools(conn: Connection) -> dict[str, str]:
    """Every tool ever called in the store, with its module: the fallback when no transcript says what was offered."""
    rows = conn.execute(select(ACTIONS.c.tool_name, ACTIONS.c.module).group_by(ACTIONS.c.tool_name, ACTIONS.c.module))
    return {row.tool_name: row.module for row in rows}


def _intended_shares(personas: dict[str, dict[str, float]], calls_by_persona: dict[str, int]) -> dict[str, float]:
    """The module mix the personas meant to follow, each persona's normalised mix weighted by its calls.

    Weighting by calls makes the figure directly comparable to the actual
    share: if every persona followed its own mix exactly, the two would match.
    """
    weighted: dict[str, float] = defaultdict(float)
    weight = 0
    for persona_id, calls in calls_by_persona.items():
        mix = {module: share for module, share in personas.get(persona_id, {}).items() if share > 0}
        total = sum(mix.values())
        if not total:
            continue
        weight += calls
        for module, share in mix.items():
            weighted[module] += calls * share / total
    return {module: value / weight for module, value in weighted.items()} if weight else {}


def _trend(
    scope: Scope, by: Literal["day", "run"], counts: dict[tuple[str, str], Counts], ratings: dict[tuple[str, str], Sums]
) -> dict[str, list[TrendPoint]]:
    """Rating and error rate per day the personas lived (a window: the ticks' `tick_date`, so `run --repeat`
    draws its days) or per run (a set of runs), per module."""
    order = {run_id: i for i, run_id in enumerate(scope.run_ids)} if by == "run" else {}
    trend: dict[str, list[TrendPoint]] = defaultdict(list)
    for bucket, module in sorted(set(ratings) | set(counts), key=lambda key: (order.get(key[0], 0), key[0])):
        calls, errors = astuple(counts.get((bucket, module), Counts()))
        trend[module].append(
            TrendPoint(
                bucket=bucket,
                rating=ratings[(bucket, module)].stats() if (bucket, module) in ratings else RatingStats(),
                calls=calls,
                errors=errors,
                error_rate=error_rate(calls, errors),
            )
        )
    return trend


def _sorted_union(*groups: Iterable[str]) -> list[str]:
    return sorted(set().union(*groups))


def _offered_by_module(
    conn: Connection, scope: Scope, tools: list[ToolStats], rated: Iterable[str]
) -> tuple[Literal["offered", "seen"], dict[str, list[str]]]:
    """Tools offered per module: as the scope's transcripts recorded them, else every tool the store has seen.

    A scope without calls or ratings has no module to list them under, so the store is not read for them.
    """
    module_of = {tool.tool: tool.module for tool in tools}
    offered = _offered_tools(conn, scope)
    basis: Literal["offered", "seen"] = "offered"
    if not offered:
        seen = _seen_tools(conn) if tools or any(rated) else {}
        basis = "seen"
        offered, module_of = set(seen), seen | module_of
    by_module: dict[str, list[str]] = defaultdict(list)
    for tool_name in sorted(offered):
        by_module[module_of_tool(tool_name, module_of.get(tool_name))].append(tool_name)
    return basis, by_module


def _persona_reports(
    conn: Connection, scope: Scope, names: dict[str, str], by_persona: dict[str, Counts], ratings: RatingRollup
) -> list[PersonaReport]:
    """Ticks, calls, errors and the rating grid row of every persona active in the scope."""
    counts = {persona_id: astuple(count) for persona_id, count in by_persona.items()}
    ticks = {
        row.persona_id: (row.name, row.ticks)
        for row in conn.execute(
            select(TICKS.c.persona_id, func.max(TICKS.c.persona_name).label("name"), func.count().label("ticks"))
            .where(in_scope(TICKS, scope))
            .group_by(TICKS.c.persona_id)
        )
    }
    grid: dict[str, dict[str, RatingStats]] = defaultdict(dict)
    for (persona_id, module), sums in sorted(ratings.by_persona.items()):
        grid[persona_id][module] = sums.stats()
    personas = []
    for persona_id in _sorted_union(ticks, counts, grid):
        tick_name, tick_count = ticks.get(persona_id, (None, 0))
        calls, errors = counts.get(persona_id, (0, 0))
        name = names.get(persona_id) or tick_name or persona_id
        personas.append(
            PersonaReport(
                persona_id=persona_id,
                name=name,
                ticks=tick_count,
                calls=calls,
                errors=errors,
                ratings=grid.get(persona_id, {}),
            )
        )
    return sorted(personas, key=lambda persona: persona.name)


def _module_reports(
    conn: Connection,
    scope: Scope,
    personas: list[PersonaReport],
    persona_rows: Sequence[Any],
    rollup: TickRollup,
    rating_sums: RatingRollup,
    trend_by: Literal["day", "run"],
) -> list[ModuleReport]:
    """Everything per module: ratings, calls, errors, latency per tool, coverage, mix, errors, notes, trend."""
    tools = tool_stats(conn, scope)
    ratings = {module: sums.stats() for module, sums in rating_sums.by_module.items()}
    trend = _trend(scope, trend_by, rollup.by_bucket, rating_sums.by_bucket)
    reliability = rollup.reliability
    errors = _top_errors(conn, scope)
    notes = _lowest_notes(conn, scope, {row.user_id: row.name for row in persona_rows})
    basis, offered = _offered_by_module(conn, scope, tools, ratings)
    mixes = {row.user_id: dict(row.module_mix or {}) for row in persona_rows}
    intended = _intended_shares(mixes, {persona.persona_id: persona.calls for persona in personas})
    total_calls = sum(tool.calls for tool in tools)
    modules = []
    # A module offered in these ticks but never touched is news; one merely seen elsewhere in the store is not.
    untouched = offered if basis == "offered" else {}
    for module in _sorted_union((tool.module for tool in tools), ratings, untouched):
        module_tools = sorted((tool for tool in tools if tool.module == module), key=lambda tool: tool.tool)
        calls = sum(tool.calls for tool in module_tools)
        module_errors = sum(tool.errors for tool in module_tools)
        used = [tool.tool for tool in module_tools]
        offered_here = offered.get(module, [])
        modules.append(
            ModuleReport(
                module=module,
                rating=ratings.get(module, RatingStats()),
                calls=calls,
                errors=module_errors,
                error_rate=error_rate(calls, module_errors),
                tools=module_tools,
                tools_used=used,
                tools_offered=offered_here,
                coverage=len(set(used) & set(offered_here)) / len(offered_here) if offered_here else None,
                coverage_basis=basis,
                actual_share=calls / total_calls if total_calls else None,
                intended_share=intended.get(module, 0.0) if intended else None,
                top_errors=errors.get(module, []),
                notes=notes.get(module, []),
                trend=trend.get(module, []),
                reliability=reliability.get(module, Reliability()),
            )
        )
    return modules


def build_report(engine: Engine, scope: Scope, *, compare: bool = True) -> Report:
    """Aggregate everything the scope covers into a `Report`; `compare` adds the "what changed" section."""
    with engine.connect() as conn:
        persona_rows = conn.execute(select(PERSONAS.c.user_id, PERSONAS.c.name, PERSONAS.c.module_mix)).all()
        trend_by: Literal["day", "run"] = "run" if scope.kind == "runs" else "day"
        rollup = tick_rollup(conn, scope, trend_by)
        ratings = rating_rollup(conn, scope, trend_by)
        names = {row.user_id: row.name for row in persona_rows}
        personas = _persona_reports(conn, scope, names, rollup.by_persona, ratings)
        modules = _module_reports(conn, scope, personas, persona_rows, rollup, ratings, trend_by)
        statuses = conn.execute(
            select(TICKS.c.status, func.count()).where(in_scope(TICKS, scope)).group_by(TICKS.c.status)
        ).all()
        previous = previous_scope(conn, scope) if compare else None
        failures = failure_groups(conn, scope)
        runs = _runs_covered(conn, scope)
        look_at = ticks_to_look_at(conn, scope, store_argument(engine))
    report = Report(
        generated_at=datetime.now(UTC),
        store=store_name(engine),
        scope=scope,
        previous=previous,
        trend_by=trend_by,
        totals=Totals(
            ticks=sum(persona.ticks for persona in personas),
            calls=sum(module.calls for module in modules),
            errors=sum(module.errors for module in modules),
            ratings=sum(module.rating.n for module in modules),
            personas=len(personas),
            tick_statuses={status: count for status, count in sorted(statuses)},
        ),
        changes=[],
        modules=modules,
        personas=personas,
        failures=failures,
        runs=runs,
        look_at=look_at,
    )
    if previous:
        # The previous scope's full report, so "what changed" is the gate's verdict on the two.
        report.changes = what_changed(
            build_report(engine, previous, compare=False), report, Thresholds(), previous.label
        )
    return report
