"""What the scope's actions add up to, in two grouped passes that feed every per-action figure of a report.

A million actions must report in a second or two, and on SQLite every GROUP BY
is a sort of the rows it reads, so the report reads `persona_actions` in as few
passes as its figures allow, each shaped so that only small results leave the
database:

- per tool and whole millisecond: calls, errors, the latency histogram the
  gate's rank test compares, and which few milliseconds hold the ranks the
  p50/p95/p99 need; one narrow query then ranks the actions inside only those;
- per persona, module and trend bucket: the calls and errors of each persona,
  each trend point, and pass^k (ticks and personas that used a module and
  never met a product error in it). By run on SQLite it is one pass counting
  each group's distinct ticks; by the day a tick's persona lived, or on
  PostgreSQL, the actions are grouped per tick first.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Literal
from weakref import WeakKeyDictionary

from sqlalchemy import Integer, String, and_, case, cast, distinct, func, select
from sqlalchemy.engine import Connection
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.expression import FromClause, Select

from persona_runner.reporting.model import Reliability, Scope, ToolStats
from persona_runner.reporting.tables import ACTIONS, in_scope, rows_to_join, trend_bucket
from persona_runner.store.models import IS_PRODUCT_ERROR, PRODUCT_ERROR

#: The covering indexes a report's passes stream their groups from on SQLite (see `through`).
TOOL_MS_INDEX = "ix_actions_tool_ms"
TICK_MODULE_INDEX = "ix_actions_tick_module"
MODULE_PERSONA_RUN_INDEX = "ix_actions_module_persona_run"

PERCENTILES = {"p50_ms": 0.50, "p95_ms": 0.95, "p99_ms": 0.99}

Histogram = list[tuple[int, int]]


def whole_ms(conn: Connection) -> ColumnElement[int]:
    """An action's latency cut to whole milliseconds (truncated): finer differences are not regressions anyone
    ships a fix for, and a tool's histogram stays small."""
    latency = ACTIONS.c.latency_ms
    return cast(func.trunc(latency) if conn.dialect.name == "postgresql" else latency, Integer)


#: Below this many rows (actions, ratings) a scope is read through the index that narrows it (its time or runs):
#: a covering index holds the whole store, and streaming all of it for a small scope costs more than sorting.
SMALL_SCOPE = 10_000


def through(conn: Connection, scope: Scope, stmt: Select[Any], index: str, table: FromClause = ACTIONS) -> Select[Any]:
    """`stmt` reading `table` (`persona_actions` unless said) through `index` on SQLite, when the store has it and
    the scope is not small.

    Without statistics (no `ANALYZE`) SQLite's planner takes the index that
    narrows the scope (a window's `created_at`, a run's `run_id`) and then sorts
    every row it read to group them; the covering indexes ordered like a report's
    groupings stream the groups instead. A store an earlier version wrote lacks
    them (they are made only with a new store) and is read as before.
    """
    if conn.dialect.name != "sqlite" or _is_small(conn, scope, table):
        return stmt
    found = conn.exec_driver_sql("SELECT 1 FROM sqlite_master WHERE type = 'index' AND name = ?", (index,)).first()
    return stmt.with_hint(table, f"INDEXED BY {index}", "sqlite") if found else stmt


#: Per connection, what `_is_small` found for each (table, scope): a report's passes ask it again and again.
_SMALL: WeakKeyDictionary[Connection, dict[tuple[str, str], bool]] = WeakKeyDictionary()


def _is_small(conn: Connection, scope: Scope, table: FromClause) -> bool:
    """Whether the scope holds fewer than `SMALL_SCOPE` rows of `table`, counted no further than that, once per
    connection."""
    found = _SMALL.setdefault(conn, {})
    key = (str(table), scope.model_dump_json())
    if key not in found:
        first = select(table.c.id).where(in_scope(table, scope)).limit(SMALL_SCOPE).subquery()
        found[key] = conn.execute(select(func.count()).select_from(first)).scalar_one() < SMALL_SCOPE
    return found[key]


def _ranks(calls: int) -> dict[str, tuple[float, int]]:
    """Per percentile, its position h = (n-1)p and the rank below it, floor h: the value is v[floor h] +
    frac(h) * (v[floor h + 1] - v[floor h]), linear between ranked values as PostgreSQL's `percentile_cont`
    and `persona_runner.util.stats.percentile` read it."""
    return {name: ((calls - 1) * p, int((calls - 1) * p)) for name, p in PERCENTILES.items()}


def _bucket_of(histogram: Histogram, rank: int) -> tuple[int, int] | None:
    """The millisecond holding the `rank`-th fastest call (from 0), and the calls faster than that millisecond."""
    before = 0
    for ms, calls in histogram:
        if rank < before + calls:
            return ms, before
        before += calls
    return None


def tool_stats(conn: Connection, scope: Scope) -> list[ToolStats]:
    """Calls, errors, latency histogram and exact p50/p95/p99 of every tool the scope's actions called.

    Sorting every action to rank it would cost more than the whole report may,
    so the histogram says which milliseconds hold the ranks each percentile
    needs, and only the actions inside those few milliseconds are ranked. The
    result is exact, not an estimate.
    """
    ms = whole_ms(conn).label("ms")
    rows = conn.execute(
        through(
            conn,
            scope,
            select(ACTIONS.c.module, ACTIONS.c.tool_name, ms, func.count().label("calls"), func.sum(IS_PRODUCT_ERROR))
            .where(in_scope(ACTIONS, scope))
            .group_by(ACTIONS.c.module, ACTIONS.c.tool_name, ms)
            .order_by(ACTIONS.c.module, ACTIONS.c.tool_name, ms),
            TOOL_MS_INDEX,
        )
    )
    histograms: dict[tuple[str, str], Histogram] = defaultdict(list)
    errors: dict[tuple[str, str], int] = defaultdict(int)
    for module, tool_name, whole, calls, failed in rows:
        histograms[(module, tool_name)].append((int(whole), int(calls)))
        errors[(module, tool_name)] += int(failed)
    ranked = _ranked_values(conn, scope, histograms)
    stats = []
    for (module, tool_name), histogram in histograms.items():
        calls = sum(count for _, count in histogram)
        latencies: dict[str, float | None] = {}
        for name, (position, below) in _ranks(calls).items():
            low = ranked.get((module, tool_name, below))
            high = ranked.get((module, tool_name, below + 1), low)
            latencies[name] = None if low is None or high is None else low + (position - below) * (high - low)
        stats.append(
            ToolStats(
                tool=tool_name,
                module=module,
                calls=calls,
                errors=errors[(module, tool_name)],
                error_rate=errors[(module, tool_name)] / calls,
                latency_histogram=histogram,
                **latencies,
            )
        )
    return stats


def _ranked_values(
    conn: Connection, scope: Scope, histograms: dict[tuple[str, str], Histogram]
) -> dict[tuple[str, str, int], float]:
    """The latency of each call a percentile needs, by tool and rank: the actions of the few milliseconds holding
    those ranks, ranked within their millisecond by the database."""
    wanted: dict[tuple[str, str, int], set[int]] = defaultdict(set)  # (module, tool, ms) -> ranks within it
    starts: dict[tuple[str, str, int], int] = {}
    for (module, tool_name), histogram in histograms.items():
        calls = sum(count for _, count in histogram)
        for _, below in _ranks(calls).values():
            for rank in (below, below + 1):
                found = _bucket_of(histogram, rank)
                if found is not None:
                    wanted[(module, tool_name, found[0])].add(rank - found[1])
                    starts[(module, tool_name, found[0])] = found[1]
    if not wanted:
        return {}
    ms = whole_ms(conn)
    buckets = rows_to_join("wanted", list(wanted), module=String, tool_name=String, ms=Integer)
    inside = through(
        conn,
        scope,
        select(
            ACTIONS.c.module,
            ACTIONS.c.tool_name,
            ms.label("ms"),
            ACTIONS.c.latency_ms,
            (
                func.row_number().over(
                    partition_by=(ACTIONS.c.module, ACTIONS.c.tool_name, ms), order_by=ACTIONS.c.latency_ms
                )
                - 1
            ).label("i"),
        )
        .select_from(buckets)
        .join(
            ACTIONS,
            and_(
                ACTIONS.c.module == buckets.c.module,
                ACTIONS.c.tool_name == buckets.c.tool_name,
                ms == buckets.c.ms,
            ),
        )
        .where(in_scope(ACTIONS, scope)),
        TOOL_MS_INDEX,
    ).subquery()
    within = sorted(set().union(*wanted.values()))
    ranked = {}
    for module, tool_name, whole, latency, i in conn.execute(select(inside).where(inside.c.i.in_(within))):
        key = (module, tool_name, int(whole))
        if i in wanted.get(key, ()):
            ranked[(module, tool_name, starts[key] + i)] = float(latency)
    return ranked


@dataclass
class Counts:
    calls: int = 0
    errors: int = 0

    def add(self, calls: int, errors: int) -> None:
        self.calls += calls
        self.errors += errors


@dataclass
class TickRollup:
    """The per-tick pass, rolled up: what personas, trend points and pass^k read."""

    by_persona: dict[str, Counts] = field(default_factory=lambda: defaultdict(Counts))
    #: Per (trend bucket, module); actions whose tick is not on record have no day and are left out.
    by_bucket: dict[tuple[str, str], Counts] = field(default_factory=lambda: defaultdict(Counts))
    reliability: dict[str, Reliability] = field(default_factory=dict)


def tick_rollup(conn: Connection, scope: Scope, by: Literal["day", "run"]) -> TickRollup:
    """Calls and errors per persona, module and trend bucket (the day the tick's persona lived, or the run), with
    the ticks that used the module and those that met no product error in it.

    A persona met no product error in a module when none of its ticks did, so
    pass^k needs no finer rows than these.
    """
    one_pass = by == "run" and conn.dialect.name == "sqlite"
    rows = conn.execute(_per_run(conn, scope) if one_pass else _per_tick(conn, scope, by))
    rollup = TickRollup()
    ticks: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    persona_errors: dict[tuple[str, str], int] = defaultdict(int)
    for row in rows:
        calls, failed = int(row.calls), int(row.errors)
        rollup.by_persona[row.persona_id].add(calls, failed)
        if row.bucket is not None:
            rollup.by_bucket[(str(row.bucket), row.module)].add(calls, failed)
        ticks[row.module][0] += int(row.ticks)
        ticks[row.module][1] += int(row.clean_ticks)
        persona_errors[(row.module, row.persona_id)] += failed
    for module, (used, clean) in ticks.items():
        mine = [failed for (name, _), failed in persona_errors.items() if name == module]
        rollup.reliability[module] = Reliability(
            ticks=used, clean_ticks=clean, personas=len(mine), clean_personas=sum(1 for failed in mine if not failed)
        )
    return rollup


def _per_run(conn: Connection, scope: Scope) -> Select[Any]:
    """The rollup's rows by run, in one grouped pass on SQLite: a run is on every action, and a tick's actions
    share its persona and run, so a group's ticks are its distinct tick ids, counted as the index streams them."""
    tick = ACTIONS.c.tick_id
    ticks = func.count(distinct(tick))
    failed_ticks = func.count(distinct(case((PRODUCT_ERROR, tick))))
    keys = (ACTIONS.c.module, ACTIONS.c.persona_id, ACTIONS.c.run_id)
    return through(
        conn,
        scope,
        select(
            ACTIONS.c.persona_id,
            ACTIONS.c.module,
            ACTIONS.c.run_id.label("bucket"),
            ticks.label("ticks"),
            (ticks - failed_ticks).label("clean_ticks"),
            func.count().label("calls"),
            func.sum(IS_PRODUCT_ERROR).label("errors"),
        )
        .where(in_scope(ACTIONS, scope))
        .group_by(*keys),
        MODULE_PERSONA_RUN_INDEX,
    )


def _per_tick(conn: Connection, scope: Scope, by: Literal["day", "run"]) -> Select[Any]:
    """The rollup's rows from actions grouped per tick and module first: the day is the tick's, not the action's,
    and PostgreSQL hashes a million rows into ticks faster than it sorts them for distinct counts."""
    errors = func.sum(IS_PRODUCT_ERROR).label("errors")
    # A tick's actions share its persona and run. SQLite groups on the tick and module alone, in the order of the
    # index it streams them from, and takes the persona and run from any row of the group (a bare column).
    groups = (ACTIONS.c.tick_id, ACTIONS.c.module)
    keys = (*groups, ACTIONS.c.persona_id, ACTIONS.c.run_id)
    per_tick = through(
        conn,
        scope,
        select(*keys, func.count().label("calls"), errors)
        .where(in_scope(ACTIONS, scope))
        .group_by(*(groups if conn.dialect.name == "sqlite" else keys)),
        TICK_MODULE_INDEX,
    ).subquery()
    bucket, source = trend_bucket(per_tick, by)
    return (
        select(
            per_tick.c.persona_id,
            per_tick.c.module,
            bucket,
            func.count().label("ticks"),
            func.sum(case((per_tick.c.errors == 0, 1), else_=0)).label("clean_ticks"),
            func.sum(per_tick.c.calls).label("calls"),
            func.sum(per_tick.c.errors).label("errors"),
        )
        .select_from(source)
        .group_by(per_tick.c.persona_id, per_tick.c.module, bucket)
    )
