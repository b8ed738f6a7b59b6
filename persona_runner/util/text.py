"""Cutting text to fit a column, a cell or a log line: one rule everywhere, marked with "…"."""

from __future__ import annotations


def truncate(text: str, limit: int) -> str:
    """`text` cut to at most `limit` characters, the cut marked with "…"."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def one_line(text: str, limit: int) -> str:
    """`text` with every run of white space (newlines too) made one space, then cut to `limit`."""
    return truncate(" ".join(text.split()), limit)
