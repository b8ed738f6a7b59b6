"""Ticks that did not finish, grouped by why: what a report shows before any figure.

A run whose personas could not log in has no ratings and few calls, so every
figure of it looks calm; only the ticks' own reasons say what went wrong. The
same failure comes back with a different persona, tick, count or time in its
text ("login refused for maya@x.test", "... for ann@x.test"), so reasons are
grouped on their text with those variable parts made alike, and the database
returns one count and a few example ticks per distinct text: the number of
distinct failure texts is small, however many ticks failed.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import func, select
from sqlalchemy.engine import Connection

from persona_runner.reporting.model import FAILED_TICK_STATUSES, RUNNING, FailureGroup, Report, Scope
from persona_runner.reporting.tables import TICKS, in_scope

EXAMPLES_PER_GROUP = 5
NO_REASON = "no reason recorded"
#: "What changed" without a scope to compare with: no earlier run like the one reported on (see `previous_scope`).
NO_PREVIOUS = "No earlier run like this one to compare against."

#: The parts of a reason that change from one tick to the next, each named by the placeholder shown
#: where the grouped ticks disagree. Left to right, the first that matches wins: a uuid or a date is
#: not read as numbers. Two things stay fixed text, because reasons that differ in them are different
#: failures: an HTTP status ("answered 503" is not "answered 401"), and quoted text, often the
#: product's own message (`{"detail": "disk full"}`).
_VARIABLE = re.compile(
    r"(?P<ID>\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b)"
    r"|(?P<EMAIL>[\w.+-]+@[\w-]+(?:\.[\w-]+)+)"
    r"|(?P<TIME>\d{4}-\d{2}-\d{2}(?:[ T]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?)?)"
    r"|(?P<HEX>\b(?=[0-9a-fA-F]*\d)(?=[0-9a-fA-F]*[a-fA-F])[0-9a-fA-F]{6,}\b)"
    # Not the digit of a name such as "oauth2", nor the middle of a number, nor an HTTP status.
    r"|(?P<N>(?<![A-Za-z\d])(?<!HTTP )(?<!answered )(?<!status )\d+(?:\.\d+)?)"
)
_PLACEHOLDER = {"ID": "ID", "EMAIL": "EMAIL", "TIME": "TIME", "HEX": "ID", "N": "N"}


class _Piece(NamedTuple):
    """A stretch of a reason: fixed text (`kind` None), or a variable part and the kind of it."""

    text: str
    kind: str | None


def _pieces(reason: str) -> list[_Piece]:
    """The reason, white space made single spaces, as fixed and variable pieces, alternating, fixed first and last."""
    flat = " ".join(reason.split())
    pieces, start = [], 0
    for match in _VARIABLE.finditer(flat):
        pieces += [_Piece(flat[start : match.start()], None), _Piece(match[0], match.lastgroup)]
        start = match.end()
    return [*pieces, _Piece(flat[start:], None)]


def _key(pieces: Sequence[_Piece]) -> tuple[tuple[str | None, str], ...]:
    """What reasons of one group share: the fixed text, and the kind of each variable part."""
    return tuple((piece.kind, "" if piece.kind else piece.text) for piece in pieces)


def _shown_reason(variants: Sequence[Sequence[_Piece]]) -> str:
    """The reason of a group: the text itself where its ticks agree, a placeholder where they differ.

    A group of one text shows it unchanged; "login refused for maya@x.test
    (HTTP 401)" and the same for ann@x.test show "login refused for EMAIL
    (HTTP 401)": the status code they share is kept, which a product team
    needs more than a template made of placeholders.
    """
    first = variants[0]
    shown = "".join(
        piece.text
        if piece.kind is None or all(variant[i].text == piece.text for variant in variants)
        else _PLACEHOLDER[piece.kind]
        for i, piece in enumerate(first)
    )
    return shown or NO_REASON


def _failed_rows(conn: Connection, scope: Scope) -> list[Any]:
    """Per status and distinct error text: its count and its latest few ticks (only those leave the database)."""
    reason = func.coalesce(TICKS.c.error, "")
    group = (TICKS.c.status, reason)
    ranked = (
        select(
            TICKS.c.status,
            reason.label("reason"),
            TICKS.c.tick_id,
            TICKS.c.started_at,
            func.count().over(partition_by=group).label("count"),
            func.row_number()
            .over(partition_by=group, order_by=(TICKS.c.started_at.desc(), TICKS.c.tick_id))
            .label("rank"),
        )
        .where(in_scope(TICKS, scope), TICKS.c.status.in_(FAILED_TICK_STATUSES))
        .subquery()
    )
    return list(conn.execute(select(ranked).where(ranked.c.rank <= EXAMPLES_PER_GROUP)))


class _Group:
    """Ticks of one status whose reasons differ only in their variable parts, while they are gathered."""

    def __init__(self) -> None:
        self.count = 0
        #: Each distinct text of the group, as pieces; every row of a text carries the count of that text.
        self.variants: dict[str, list[_Piece]] = {}
        self.examples: list[tuple[datetime, str]] = []

    def add(self, row: Any, pieces: list[_Piece]) -> None:
        if row.reason not in self.variants:
            self.variants[row.reason] = pieces
            self.count += row.count
        self.examples.append((row.started_at, row.tick_id))

    def failure(self, status: str) -> FailureGroup:
        latest = sorted(self.examples, key=lambda example: (-example[0].timestamp(), example[1]))
        return FailureGroup(
            status=status,
            reason=_shown_reason(list(self.variants.values())),
            count=self.count,
            tick_ids=[tick_id for _, tick_id in latest[:EXAMPLES_PER_GROUP]],
        )


def failure_groups(conn: Connection, scope: Scope) -> list[FailureGroup]:
    """The scope's failed, timed-out, aborted and interrupted ticks, grouped by status and reason, most first.

    Reasons group when they differ only in numbers, ids, e-mail addresses or
    times; the reason shown keeps whatever all the group's ticks agree on and
    puts N, ID, EMAIL or TIME where they differ (see `_shown_reason`), so it
    reads as the product said it. Each group names its latest few ticks, for
    `persona-runner ticks show`. Ties go by status (failed, timeout, aborted,
    interrupted), then by reason.
    """
    groups: dict[tuple[str, tuple[tuple[str | None, str], ...]], _Group] = defaultdict(_Group)
    for row in _failed_rows(conn, scope):
        pieces = _pieces(row.reason)
        groups[row.status, _key(pieces)].add(row, pieces)
    failures = [group.failure(status) for (status, _), group in groups.items()]
    return sorted(failures, key=lambda f: (-f.count, FAILED_TICK_STATUSES.index(f.status), f.reason))


def finished_ticks(report: Report) -> int:
    """How many ticks played their day to the end: neither among the failures nor still running."""
    return sum(
        count
        for status, count in report.totals.tick_statuses.items()
        if status not in FAILED_TICK_STATUSES and status != RUNNING
    )


def headline(report: Report) -> str:
    """ "10 of 12 ticks did not finish": the failed, timed-out, aborted and interrupted among all."""
    total = report.totals.ticks
    return f"{sum(group.count for group in report.failures)} of {total} tick{'s' if total != 1 else ''} did not finish"


def comparison_caveat(report: Report) -> str | None:
    """What "what changed" must say first when it compared nothing: the scope compared with recorded nothing,
    or the personas finished no tick; None when it compared what they did.

    Without it an empty earlier window (`report --label nightly` with no
    earlier nightly run), or a run whose every tick failed at login, would
    read "nothing moved beyond noise", as if all was well.
    """
    previous = report.previous
    if previous is None:
        return None
    if previous.recorded_nothing:
        return f"Nothing was recorded in {previous.label}, so there is nothing to compare with."
    if finished_ticks(report):
        return None
    ticks = report.totals.ticks
    if ticks == 0:
        return f"No ticks in {report.scope.label}, so nothing could be compared with {previous.label}."
    none_finished = "The one tick did not finish" if ticks == 1 else f"None of the {ticks} ticks finished"
    if report.changes:
        return f"{none_finished}; only the calls recorded until then were compared with {previous.label}:"
    return f"{none_finished}, so nothing could be compared with {previous.label}."


def changes_opening(report: Report) -> str | None:
    """The sentence "what changed" opens with, in every format; None when its list of changes speaks for itself.

    "Nothing moved beyond noise" is said only where two scopes with
    something in them were compared and the gate's checks found no change.
    """
    if report.previous is None:
        return NO_PREVIOUS
    caveat = comparison_caveat(report)
    if caveat or report.changes:
        return caveat
    return f"Nothing moved beyond noise since {report.previous.label}."
