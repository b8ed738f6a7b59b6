"""How two answers of a tool differ in shape: keys, types and counts, never values.

A replay on a fresh product gets other ids, dates and texts; what it must not
get is an answer of another form: a key gone, a number become a string, a list
that used to hold three items now empty. Those are what a developer reading a
replay needs to see, in a few words each.
"""

from __future__ import annotations

from typing import Any

from persona_runner.run.rebind import Place, show_place

#: Differences named per call; more are counted, not listed.
SHOWN_CHANGES = 3


def kind(value: Any) -> str:
    """The JSON type of a value, as a reader says it."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "list"
    return "object"


def shape_changes(before: Any, after: Any, place: Place = ()) -> list[str]:
    """Every difference of form between `before` and `after`: keys that came or went, types that changed,
    lists whose length changed (their items compared by the first of each)."""
    where = show_place(place)
    if kind(before) != kind(after):
        return [f"{where}: {kind(before)} -> {kind(after)}"]
    if isinstance(before, dict):
        changes = [f"{show_place((*place, key))} gone" for key in before if key not in after]
        changes += [f"{show_place((*place, key))} new" for key in after if key not in before]
        for key in before:
            if key in after:
                changes += shape_changes(before[key], after[key], (*place, key))
        return changes
    if isinstance(before, list):
        changes = [f"{where}: {len(before)} -> {len(after)} items"] if len(before) != len(after) else []
        if before and after:
            changes += shape_changes(before[0], after[0], (*place, 0))
        return changes
    return []


def describe_shape_change(before: Any, after: Any) -> str | None:
    """The differences of form in one line (the first few, and how many more), None when there are none."""
    changes = shape_changes(before, after)
    if not changes:
        return None
    more = len(changes) - SHOWN_CHANGES
    return "; ".join(changes[:SHOWN_CHANGES]) + (f"; {more} more" if more > 0 else "")
