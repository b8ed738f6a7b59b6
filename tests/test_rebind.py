"""Rebinding ids, comparing answers' shapes, and the verdict on each call: the rules a replay judges by."""

from __future__ import annotations

from typing import Any

from persona_runner.run.rebind import LOGIN, Rebinder
from persona_runner.run.replay import compare_calls
from persona_runner.run.shape import describe_shape_change, shape_changes
from persona_runner.store.recorded import DayCall
from persona_runner.util.canonical import input_hash


def test_an_id_is_replaced_by_what_the_replay_got_at_the_same_place() -> None:
    rebinder = Rebinder()
    rebinder.learn(0, {"items": [{"id": "a1"}, {"id": "a2", "title": "milk"}]}, {"items": [{"id": "b1"}, {"id": "b2"}]})
    sent, rebound, unbound = rebinder.rebind({"id": "a2", "title": "milk", "tag_ids": ["a1"]})
    assert sent == {"id": "b2", "title": "milk", "tag_ids": ["b1"]}
    assert [(r.argument, r.recorded, r.replayed, r.source_seq, r.source_place) for r in rebound] == [
        ("id", "a2", "b2", 0, "items[1].id"),
        ("tag_ids[0]", "a1", "b1", 0, "items[0].id"),
    ]
    assert unbound == []


def test_the_first_answer_that_held_an_id_is_its_source() -> None:
    rebinder = Rebinder()
    rebinder.learn(0, {"id": "a1"}, {"id": "b1"})
    rebinder.learn(1, {"items": [{"id": "zz"}, {"id": "a1"}]}, {"items": [{"id": "b1"}]})
    sent, rebound, _ = rebinder.rebind({"todo_id": "a1"})
    assert sent == {"todo_id": "b1"} and rebound[0].source_seq == 0


def test_an_id_never_handed_out_or_lost_in_the_replay_is_sent_as_recorded_and_said() -> None:
    rebinder = Rebinder()
    rebinder.learn(0, {"items": [{"id": "a1"}, {"id": "a2"}]}, {"items": [{"id": "b1"}]})
    rebinder.learn(1, {"id": "c1"}, None)  # failed in the replay
    sent, rebound, unbound = rebinder.rebind({"id": "nope", "spaceId": "a2", "parent_id": "c1"})
    assert sent == {"id": "nope", "spaceId": "a2", "parent_id": "c1"}
    assert rebound == []
    assert [(u.argument, u.reason) for u in unbound] == [
        ("id", "no earlier answer held it"),
        ("spaceId", "the replay's answer to call 0 has nothing at items[1].id"),
        ("parent_id", "call 1, whose answer held it, failed in the replay"),
    ]


def test_plain_values_are_left_alone_and_numbers_are_ids_only_by_name() -> None:
    rebinder = Rebinder()
    rebinder.learn(LOGIN, {"spaces": [{"id": 5}]}, {"spaces": [{"id": 9}]})
    sent, rebound, unbound = rebinder.rebind({"limit": 5, "space_id": 5, "done": True, "title": "", "note": "x"})
    assert sent == {"limit": 5, "space_id": 9, "done": True, "title": "", "note": "x"}
    assert [r.source_place for r in rebound] == ["spaces[0].id"]
    assert unbound == []


def test_a_shape_change_names_keys_types_and_counts_but_not_values() -> None:
    before = {"items": [{"id": "a", "due": "2026-11-20"}], "count": 1}
    assert describe_shape_change(before, {"items": [{"id": "b", "due": "2026-12-01"}], "count": 1}) is None
    assert shape_changes(before, {"items": [], "count": "0", "next": None}) == [
        "next new",
        "items: 1 -> 0 items",
        "count: number -> string",
    ]
    assert shape_changes(before, {"items": [{"id": "a"}], "count": 1}) == ["items[0].due gone"]
    many = {f"k{n}": n for n in range(6)}
    assert describe_shape_change(many, {}) == "k0 gone; k1 gone; k2 gone; 3 more"


def call(seq: int, tool: str = "todo.list", *, ok: bool = True, ms: float = 10.0, **fields: Any) -> DayCall:
    arguments = fields.pop("arguments", {})
    return DayCall(
        seq=seq,
        tool=tool,
        module=tool.split(".")[0],
        arguments=arguments,
        input_hash=input_hash(arguments),
        outcome="ok" if ok else "error",
        latency_ms=ms,
        error=None if ok else "boom",
        **fields,
    )


def verdict(before: DayCall | None, after: DayCall | None, *, driver: bool = False) -> tuple[str, str | None]:
    row = compare_calls(before, after, same_call_expected=driver, latency_ratio=2.0)
    return row.verdict, row.detail


def test_each_call_gets_the_one_verdict_that_says_most() -> None:
    listed = {"items": [{"id": "a"}], "count": 1}
    assert verdict(call(0, structured=listed), call(0, structured=listed)) == ("same", None)
    assert verdict(call(0), call(0, ok=False)) == ("outcome changed", "boom")
    assert verdict(call(0, structured=listed), call(0, structured={"items": [], "count": 1}))[0] == "shape changed"
    assert verdict(call(0, ms=40), call(0, ms=400)) == ("slower", "40 -> 400 ms")
    assert verdict(call(0, ms=400), call(0, ms=100)) == ("faster", "400 -> 100 ms")
    assert verdict(call(0, ms=4), call(0, ms=40))[0] == "same"  # under the floor, a doubling is noise
    assert verdict(call(0), call(0, "todo.create"), driver=True) == ("other call", "todo.create instead")
    other_arguments = call(0, arguments={"filter": "open"})
    assert verdict(call(0), other_arguments, driver=True)[0] == "other call"
    assert verdict(call(0), other_arguments)[0] == "same"  # calls mode sends rebound arguments: not a change
    assert verdict(call(3), None, driver=True)[0] == "missing"
    assert verdict(None, call(3), driver=True)[0] == "extra"
