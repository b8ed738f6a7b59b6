"""The ticks a report sends its reader to: each that did not finish, and each that rated a module 1 or 2.

A report says "notes rated 2.1" or "3 ticks failed at login"; whoever reads it
next wants the day behind the figure (`persona-runner ticks show`). This is a
small query of its own beside the report's aggregation: the scope's ticks
filtered on status and on low ratings, the first `LIMIT` of them with a count
of the rest, then the low ratings of those few, so its cost does not grow with
the store.
"""

from __future__ import annotations

import shlex
from collections import defaultdict

from sqlalchemy import and_, case, func, or_, select
from sqlalchemy.engine import Connection, Engine

from persona_runner.reporting.model import FAILED_TICK_STATUSES, LowRating, Scope, TicksToLookAt, TickToLookAt
from persona_runner.reporting.tables import FEEDBACK, TICKS, in_scope
from persona_runner.store.db import describe, resolve_url

#: Ticks a report names; the rest are counted. It bounds the report and the tick pages written beside its HTML.
LIMIT = 50
#: The highest rating a report sends its reader to look at.
LOW_RATING = 2


def store_argument(engine: Engine) -> str | None:
    """What `--db` must say for a command to open this store again; None for the store a command opens by default.

    A SQLite store is named by its absolute path, so the command works from
    any directory; a PostgreSQL URL loses its password, which a report must
    not print (libpq finds it in PGPASSWORD or ~/.pgpass).
    """
    url = engine.url
    if describe(url.render_as_string(hide_password=False)) == describe(resolve_url(None)):
        return None
    if url.get_backend_name() == "sqlite":
        return describe(url.render_as_string(hide_password=False))
    return url.set(password=None).render_as_string(hide_password=False)


def show_command(tick_id: str, db: str | None) -> str:
    """`persona-runner ticks show TICK_ID [--db STORE]`, quoted for a POSIX shell."""
    store = f" --db {shlex.quote(db)}" if db is not None else ""
    return f"persona-runner ticks show {shlex.quote(tick_id)}{store}"


def ticks_to_look_at(conn: Connection, scope: Scope, db: str | None) -> TicksToLookAt:
    """The scope's ticks that did not finish (first) or rated a module 1 or 2, newest first, at most `LIMIT`.

    `db` is the store as `--db` names it in each tick's command (see `store_argument`).
    """
    failed = TICKS.c.status.in_(FAILED_TICK_STATUSES)
    rated_low = select(FEEDBACK.c.tick_id).where(in_scope(FEEDBACK, scope), FEEDBACK.c.rating <= LOW_RATING)
    rows = conn.execute(
        select(
            TICKS.c.tick_id,
            TICKS.c.persona_name,
            TICKS.c.started_at,
            TICKS.c.status,
            TICKS.c.error,
            func.count().over().label("total"),
        )
        .where(or_(and_(in_scope(TICKS, scope), failed), TICKS.c.tick_id.in_(rated_low)))
        .order_by(case((failed, 0), else_=1), TICKS.c.started_at.desc(), TICKS.c.tick_id)
        .limit(LIMIT)
    ).all()
    if not rows:
        return TicksToLookAt()
    low: dict[str, list[LowRating]] = defaultdict(list)
    for row in conn.execute(
        select(FEEDBACK.c.tick_id, FEEDBACK.c.module, FEEDBACK.c.rating, FEEDBACK.c.notes)
        .where(FEEDBACK.c.tick_id.in_([row.tick_id for row in rows]), FEEDBACK.c.rating <= LOW_RATING)
        .order_by(FEEDBACK.c.rating, FEEDBACK.c.module)
    ):
        low[row.tick_id].append(LowRating(module=row.module, rating=row.rating, notes=row.notes))
    ticks = [
        TickToLookAt(
            tick_id=row.tick_id,
            persona=row.persona_name,
            started_at=row.started_at,
            status=row.status,
            reason=row.error if row.status in FAILED_TICK_STATUSES else None,
            low_ratings=low[row.tick_id],
            command=show_command(row.tick_id, db),
        )
        for row in rows
    ]
    return TicksToLookAt(ticks=ticks, left_out=rows[0].total - len(rows))
