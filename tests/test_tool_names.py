"""Product tool names offered to providers and mapped back without loss."""

from __future__ import annotations

import pytest

from persona_runner.drivers.tool_names import PROVIDER_NAME, ToolNames


def test_dotted_names_become_double_underscores_and_map_back() -> None:
    names = ToolNames(["todo.create", "notes.list", "calendar.event-add"])
    assert names.provider("todo.create") == "todo__create"
    assert names.provider("calendar.event-add") == "calendar__event-add"
    assert names.product("todo__create") == "todo.create"
    assert names.product("notes__list") == "notes.list"


def test_names_that_meet_after_rewriting_all_get_distinct_short_forms() -> None:
    product = ["a.b", "a__b", "a b", "a_b"]  # a.b and a__b meet; "a b" and a_b meet
    names = ToolNames(product)
    provided = [names.provider(name) for name in product]
    assert len(set(provided)) == len(product)
    assert all(PROVIDER_NAME.match(p) for p in provided)
    assert [names.product(p) for p in provided] == product
    assert names.provider("a.b") != "a__b" and names.provider("a__b") != "a__b"


def test_too_long_and_odd_names_get_a_valid_deterministic_short_form() -> None:
    long_name = "module." + "x" * 80
    product = [long_name, "", "émoji.✓"]
    names = ToolNames(product)
    for name in product:
        provided = names.provider(name)
        assert PROVIDER_NAME.match(provided), provided
        assert names.product(provided) == name
    assert ToolNames(reversed(product)).provider(long_name) == names.provider(long_name)


def test_order_of_the_tool_list_does_not_change_the_names() -> None:
    product = ["a.b", "a__b", "todo.create"]
    forward, backward = ToolNames(product), ToolNames(list(reversed(product)))
    assert [forward.provider(n) for n in product] == [backward.provider(n) for n in product]


def test_reserved_names_are_never_handed_to_a_product_tool() -> None:
    names = ToolNames(["submit_ratings", "todo.create"], reserved=["submit_ratings"])
    assert names.provider("submit_ratings") != "submit_ratings"
    assert names.product("submit_ratings") is None
    assert names.product(names.provider("submit_ratings")) == "submit_ratings"


def test_unknown_provider_names_map_to_nothing() -> None:
    assert ToolNames(["todo.create"]).product("todo__delete") is None


def test_a_name_not_offered_today_is_an_error_not_a_guess() -> None:
    with pytest.raises(KeyError):
        ToolNames(["todo.create"]).provider("todo.delete")
