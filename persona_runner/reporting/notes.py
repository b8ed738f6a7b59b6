"""Personas' notes as a report lists them: the same note said again is one line with a count.

Scripted personas, and model-driven ones on a bad day, say the same thing
tick after tick ("slow, p95 1.4 s on notes.search"); listed once per tick,
one complaint would fill the few lines a module gets and hide the others.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from persona_runner.reporting.model import Note

PERSONAS_NAMED = 3


@dataclass
class FoldedNote:
    """One note as written, how many times it was given with that rating, and by whom (first givers first)."""

    rating: int
    notes: str
    count: int = 0
    personas: list[str] = field(default_factory=list)


def fold_notes(notes: Sequence[Note]) -> list[FoldedNote]:
    """Identical notes (same rating, same text up to white space) as one, where their first copy stood.

    The report lists notes lowest rated first, so the folded list keeps that order.
    """
    folded: dict[tuple[int, str], FoldedNote] = {}
    for note in notes:
        key = (note.rating, " ".join(note.notes.split()))
        same = folded.setdefault(key, FoldedNote(note.rating, note.notes))
        same.count += note.count
        for persona in note.personas or [note.persona]:
            if persona not in same.personas:
                same.personas.append(persona)
    return list(folded.values())


def given_by(note: FoldedNote) -> str:
    """ "Ann", "Ann, Bob", "Ann, Bob, Cy and 2 others": who gave a note, short enough for one line."""
    named, others = note.personas[:PERSONAS_NAMED], len(note.personas) - PERSONAS_NAMED
    return ", ".join(named) + (f" and {others} other{'s' if others != 1 else ''}" if others > 0 else "")


def times(note: FoldedNote) -> str:
    """ " (×4)" after a note given four times; nothing after a note given once."""
    return f" (×{note.count})" if note.count > 1 else ""
