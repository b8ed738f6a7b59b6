"""The scope's ratings in one grouped pass: per persona, module and trend bucket, rolled up for every figure.

Counts, sums and sums of squares add up exactly, so the module's ratings, the
persona grid and the trend points all come from the same finest groups
instead of a read of `persona_feedback` each.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Literal

from sqlalchemy import func, select
from sqlalchemy.engine import Connection

from persona_runner.reporting.model import RatingStats, Scope
from persona_runner.reporting.tables import FEEDBACK, in_scope, trend_bucket


@dataclass
class Sums:
    """Count, sum and sum of squares of some ratings: all `RatingStats` needs, and they add up."""

    n: int = 0
    total: int = 0
    total_sq: int = 0

    def add(self, n: int, total: int, total_sq: int) -> None:
        self.n += n
        self.total += total
        self.total_sq += total_sq

    def stats(self) -> RatingStats:
        return RatingStats.from_sums(self.n, float(self.total), float(self.total_sq))


@dataclass
class RatingRollup:
    by_module: dict[str, Sums] = field(default_factory=lambda: defaultdict(Sums))
    by_persona: dict[tuple[str, str], Sums] = field(default_factory=lambda: defaultdict(Sums))
    #: Per (trend bucket, module); ratings whose tick is not on record have no day and are left out.
    by_bucket: dict[tuple[str, str], Sums] = field(default_factory=lambda: defaultdict(Sums))


def rating_rollup(conn: Connection, scope: Scope, by: Literal["day", "run"]) -> RatingRollup:
    """The scope's ratings per module, per persona and module, and per trend bucket (the day the rating's tick
    lived, or its run) and module."""
    rating = FEEDBACK.c.rating
    bucket, source = trend_bucket(FEEDBACK, by)
    keys = (FEEDBACK.c.persona_id, FEEDBACK.c.module, bucket)
    rows = conn.execute(
        select(*keys, func.count().label("n"), func.sum(rating).label("total"), func.sum(rating * rating).label("sq"))
        .select_from(source)
        .where(in_scope(FEEDBACK, scope))
        .group_by(*keys)
    )
    rollup = RatingRollup()
    for row in rows:
        sums = (int(row.n), int(row.total), int(row.sq))
        rollup.by_module[row.module].add(*sums)
        rollup.by_persona[(row.persona_id, row.module)].add(*sums)
        if row.bucket is not None:
            rollup.by_bucket[(str(row.bucket), row.module)].add(*sums)
    return rollup
