"""Rebinding ids: a recorded day's later calls carry ids its earlier calls were given; a replay hands in its own.

A persona completes the todo it created (`todo.create` answers `{"id": "7f3a..."}`,
`todo.complete {"id": "7f3a..."}` follows). On a fresh product the create answers
another id, so the recorded complete would miss. Each value the product handed
out in the recorded day is remembered by where it stood: which call answered it
and at which place in that answer (`items[2].id`). When a later call's
arguments carry it, the value at the same place in the replay's own answer to
that call takes its place. The spaces the persona was given at login count as
an answer too, matched by their name and type.

An id-like argument (`id`, `*_id`, `*Ids`...) whose value no earlier answer
held, or whose place the replay's answer lacks, is sent as recorded and
reported: a replay never guesses an id.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

#: The "call" that answered the persona's spaces: its login, before any tool call.
LOGIN = -1
#: Names of fields that hold an id: `id`, `ids`, `uuid`, and `todo_id`, `spaceId`, `tag_ids`...
_ID_NAME = re.compile(r"^(id|ids|uuid)$|_(id|ids|uuid)$|[a-z0-9](Id|Ids|ID|IDs|Uuid)$")

Place = tuple[str | int, ...]


class Rebound(BaseModel):
    """An argument the replay sent with the value its own earlier answer gave."""

    argument: str
    recorded: str | int
    replayed: str | int
    #: The call whose answer held it (`LOGIN`: the spaces given at login), and where in that answer.
    source_seq: int
    source_place: str


class Unbound(BaseModel):
    """An id-like argument sent as recorded, because the replay has nothing to put in its place."""

    argument: str
    value: str | int
    reason: str


def show_place(place: Place) -> str:
    """`("items", 2, "id")` -> `items[2].id`; the whole answer or arguments -> `$`."""
    text = ""
    for step in place:
        text += f"[{step}]" if isinstance(step, int) else (f".{step}" if text else step)
    return text or "$"


def _leaves(value: Any, place: Place = ()) -> Iterator[tuple[Place, Any]]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _leaves(item, (*place, str(key)))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _leaves(item, (*place, index))
    else:
        yield place, value


def _names_an_id(place: Place) -> bool:
    """Whether the field at `place` (the last named step: a list of ids counts) holds an id."""
    name = next((step for step in reversed(place) if isinstance(step, str)), None)
    return name is not None and _ID_NAME.search(name) is not None


def _id_value(value: Any) -> bool:
    """A value that can be an id: a non-empty string or an integer (never a flag)."""
    return (isinstance(value, str) and value != "") or (isinstance(value, int) and not isinstance(value, bool))


_MISSING = object()


def _at(value: Any, place: Place) -> Any:
    """The value at `place`, or `_MISSING` when the answer has nothing there."""
    for step in place:
        if isinstance(step, int):
            if not isinstance(value, list) or step >= len(value):
                return _MISSING
        elif not isinstance(value, dict) or step not in value:
            return _MISSING
        value = value[step]
    return value


def _put(value: Any, place: Place, new: Any) -> Any:
    """A copy of `value` with `new` at `place` (the originals are the recorded day's: never changed)."""
    if not place:
        return new
    step, rest = place[0], place[1:]
    if isinstance(value, dict):
        return {**value, step: _put(value[step], rest, new)}
    assert isinstance(step, int), "a list is entered by position"
    copied = list(value)
    copied[step] = _put(copied[step], rest, new)
    return copied


@dataclass
class Rebinder:
    """What the recorded day was handed, where, and what the replay was handed in its place."""

    #: A value the recorded day was handed -> the first (call, place) that handed it out.
    _origins: dict[tuple[type, str | int], tuple[int, Place]] = field(default_factory=dict)
    #: The replay's answer to each call (and its login), by the recorded call's seq.
    _answers: dict[int, Any] = field(default_factory=dict)

    def learn(self, seq: int, recorded: Any, replayed: Any) -> None:
        """Call `seq` answered `recorded` in the recorded day and `replayed` in the replay (None: it failed)."""
        for place, value in _leaves(recorded):
            if _names_an_id(place) and _id_value(value):
                self._origins.setdefault((type(value), value), (seq, place))
        self._answers[seq] = replayed

    def rebind(self, arguments: dict[str, Any]) -> tuple[dict[str, Any], list[Rebound], list[Unbound]]:
        """The arguments to send in the replay, what was rebound, and what could not be."""
        sent: Any = arguments
        rebound: list[Rebound] = []
        unbound: list[Unbound] = []
        for place, value in _leaves(arguments):
            if not _id_value(value):
                continue
            argument = show_place(place)
            origin = self._origins.get((type(value), value))
            # An integer is taken for an id only in a field named like one: `limit: 5` is not todo 5.
            if origin is None or (isinstance(value, int) and not _names_an_id(place)):
                if _names_an_id(place):
                    unbound.append(Unbound(argument=argument, value=value, reason="no earlier answer held it"))
                continue
            seq, source = origin
            answer = self._answers.get(seq)
            new = _at(answer, source)
            if not _id_value(new):
                if answer is None:
                    reason = f"call {seq}, whose answer held it, failed in the replay"
                else:
                    where = "the spaces given at login" if seq == LOGIN else f"the replay's answer to call {seq}"
                    reason = f"{where} has nothing at {show_place(source)}"
                unbound.append(Unbound(argument=argument, value=value, reason=reason))
                continue
            sent = _put(sent, place, new)
            rebound.append(
                Rebound(
                    argument=argument,
                    recorded=value,
                    replayed=new,
                    source_seq=seq,
                    source_place=show_place(source),
                )
            )
        return sent, rebound, unbound
