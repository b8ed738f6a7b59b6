"""Cutting text to fit a column, a cell, a log line or a model's context, and counting in it: one rule
for each, everywhere.

A cut text keeps its start and ends in a mark, so a reader (a person or a
model) knows something was left out; the mark counts towards the limit.
"""

from __future__ import annotations

#: The mark of a cut where nothing else needs saying.
CUT = "…"


def truncate(text: str, limit: int, mark: str = CUT) -> str:
    """`text` cut to at most `limit` characters, the cut marked with `mark` (which counts towards `limit`)."""
    if len(text) <= limit:
        return text
    return (text[: max(0, limit - len(mark))] + mark)[:limit]


def one_line(text: str, limit: int) -> str:
    """`text` with every run of white space (newlines too) made one space, then cut to `limit`."""
    return truncate(" ".join(text.split()), limit)


def counted(count: int, noun: str, plural: str | None = None) -> str:
    """ "1 rating", "0 ratings", "3 ratings": the count and the noun, plural unless the count is one.

    `plural` is for a noun that does not just take an s ("1 entry", "2 entries").
    """
    return f"{count} {noun if count == 1 else plural or noun + 's'}"
