"""The catalog loader tells a person everything wrong with their file in one go."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from persona_runner.catalog import CatalogError, default_catalog_path, load_catalog
from persona_runner.commands.catalog import catalog_app
from persona_runner.domain import PersonaProfile
from persona_runner.run.runner import sharing_groups
from persona_runner.util.errors import UserError
from tests.cli_helpers import SCRIPT

REPO = Path(__file__).resolve().parent.parent
SHIPPED = REPO / "catalog.json"
REFERENCE_MODULES = {"todo", "notes", "journal", "habits", "mood", "calendar", "contacts", "spaces"}
#: The archetypes every catalog we ship must cover (the loader accepts more).
CORE_ARCHETYPES = {
    "adhd-student",
    "ceo-busy",
    "creative-parent",
    "solo-dev",
    "researcher",
    "freelancer",
    "overwhelmed-newbie",
    "chaos",
}


def persona(name: str, **changes: Any) -> dict[str, Any]:
    entry = {
        "name": name,
        "email": f"{name}@personas.test",
        "archetype": "solo-dev",
        "systemPrompt": f"You are {name}, and you test things.",
        "moduleMix": {"todo": 2, "notes": 1},
        "tickCadence": "daily",
    }
    entry.update(changes)
    return entry


def write(tmp_path: Path, document: Any) -> Path:
    path = tmp_path / "catalog.json"
    path.write_text(json.dumps(document, ensure_ascii=False), encoding="utf-8")
    return path


def problems_of(path: Path) -> list[str]:
    with pytest.raises(CatalogError) as caught:
        load_catalog(path)
    assert caught.value.exit_code == 2
    assert str(caught.value).splitlines() == caught.value.problems
    return caught.value.problems


# --- the shipped catalog -------------------------------------------------------------


def test_shipped_catalog_is_valid_and_covers_every_archetype() -> None:
    catalog = load_catalog(SHIPPED)
    archetypes = [p.archetype for p in catalog.personas]
    assert len(catalog.personas) >= 10
    assert set(archetypes) >= CORE_ARCHETYPES
    assert archetypes.count("chaos") == 1


def test_shipped_catalog_has_roommates_and_founders() -> None:
    catalog = load_catalog(SHIPPED)
    by_type = {space.type: space for space in catalog.spaces}
    assert len(by_type["family"].members) == 2
    assert len(by_type["team"].members) == 2


def test_shipped_personas_are_written_to_be_played() -> None:
    for entry in load_catalog(SHIPPED).personas:
        assert entry.system_prompt.startswith("You are "), entry.name
        assert len(entry.system_prompt.split()) >= 100, entry.name
        assert set(entry.module_mix) <= REFERENCE_MODULES, entry.name


def test_to_profile_carries_what_a_driver_needs() -> None:
    entry = load_catalog(SHIPPED).select(["helena"])[0]
    profile = entry.to_profile()
    assert isinstance(profile, PersonaProfile)
    assert (profile.name, profile.email, profile.archetype) == (entry.name, entry.email, entry.archetype)
    assert profile.system_prompt == entry.system_prompt
    assert profile.module_mix == entry.module_mix
    assert (profile.style, profile.locale) == ("terse", "de-DE")


# --- problems, all at once -----------------------------------------------------------


def test_every_problem_is_reported_one_per_line(tmp_path: Path) -> None:
    bad_domain = persona("maya", email="maya@gmail.com")
    missing_field = persona("sam")
    del missing_field["tickCadence"]
    unknown_cadence = persona("ravi", tickCadence="monthly", locale="english")
    duplicate_name = persona("maya", email="maya2@personas.test", moduleMix={"todo": 0})
    document = {
        "version": 1,
        "personas": [bad_domain, missing_field, unknown_cadence, duplicate_name],
        "spaces": [{"name": "Flat", "type": "family", "members": ["maya", "zed"]}],
    }
    path = write(tmp_path, document)

    assert problems_of(path) == [
        f"{path}: personas[0].email: domain must be .test, .example or .invalid (got 'gmail.com')",
        f"{path}: personas[1].tickCadence: Field required",
        f"{path}: personas[2].tickCadence: Input should be 'daily', 'weekdays' or 'hourly'",
        f"{path}: personas[2].locale: must be a BCP 47 language tag such as en-GB, de-DE or ja-JP (got 'english')",
        f"{path}: personas[3].moduleMix: all weights are zero; give at least one module a positive weight",
        f"{path}: personas[3].name: 'maya' is already used by personas[0]",
        f"{path}: spaces[0].members[1]: no persona named 'zed' in this catalog",
    ]


def test_file_name_is_reported_as_given(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path, {"version": 1, "personas": [persona("maya", email="maya@example.com")]})
    monkeypatch.chdir(tmp_path)
    assert problems_of(Path("catalog.json")) == [
        "catalog.json: personas[0].email: domain must be .test, .example or .invalid (got 'example.com')"
    ]


def test_field_shapes_and_unknown_keys(tmp_path: Path) -> None:
    document = {
        "version": 2,
        "personas": [
            persona("Maya O", email="not-an-email", style="loud", favouriteColour="teal"),
            persona("sam", moduleMix={"todo": -1, "Todo 2": 1, "notes": "3"}, systemPrompt="  "),
            "ravi",
        ],
        "spaces": [{"name": "Solo", "type": "club", "members": ["sam"]}],
    }
    path = write(tmp_path, document)

    assert problems_of(path) == [
        f"{path}: personas[0].name: must be 2-40 characters of lowercase letters, digits and '-',"
        " starting with a letter (got 'Maya O')",
        f"{path}: personas[0].email: not an email address (got 'not-an-email'); write it as name@domain.test",
        f"{path}: personas[0].style: Input should be 'terse', 'verbose', 'typos', 'formal', 'casual' or 'chaotic'",
        f"{path}: personas[0].favouriteColour: Extra inputs are not permitted",
        f"{path}: personas[1].systemPrompt: must not be empty",
        f"{path}: personas[1].moduleMix.todo: Input should be greater than or equal to 0",
        f"{path}: personas[1].moduleMix.Todo 2: module names are 1-64 letters, digits, '_', '-' and '.' (got 'Todo 2')",
        f"{path}: personas[1].moduleMix.notes: Input should be a valid number",
        f"{path}: personas[2]: must be a JSON object",
        f"{path}: spaces[0].type: Input should be 'family', 'team', 'practice' or 'brand'",
        f"{path}: spaces[0].members: List should have at least 2 items after validation, not 1",
        f"{path}: version: Input should be 1",
    ]


def test_duplicates_across_entries(tmp_path: Path) -> None:
    document = {
        "version": 1,
        "personas": [persona("maya"), persona("sam", email="MAYA@personas.test"), persona("maya")],
        "spaces": [
            {"name": "Flat", "type": "family", "members": ["maya", "sam", "maya"]},
            {"name": "Flat", "type": "team", "members": ["maya", "sam"]},
        ],
    }
    path = write(tmp_path, document)

    assert problems_of(path) == [
        f"{path}: personas[1].email: 'MAYA@personas.test' is already used by personas[0]",
        f"{path}: personas[2].name: 'maya' is already used by personas[0]",
        f"{path}: personas[2].email: 'maya@personas.test' is already used by personas[0]",
        f"{path}: spaces[0].members[2]: 'maya' is listed twice",
        f"{path}: spaces[1].name: 'Flat' is already used by spaces[0]",
    ]


def test_malformed_json_is_one_line_with_position(tmp_path: Path) -> None:
    path = tmp_path / "catalog.json"
    path.write_text('{"version": 1,\n  "personas": [}\n', encoding="utf-8")
    assert problems_of(path) == [f"{path}: line 2, column 16: invalid JSON (Expecting value)"]


def test_top_level_must_be_an_object(tmp_path: Path) -> None:
    path = write(tmp_path, [persona("maya")])
    assert problems_of(path) == [f'{path}: expected a JSON object with "version", "personas" and "spaces"']


def test_missing_file_says_so(tmp_path: Path) -> None:
    path = tmp_path / "nope.json"
    assert problems_of(path) == [f"{path}: no such file; pass the path of a catalog"]


def test_a_directory_is_not_a_catalog(tmp_path: Path) -> None:
    [problem] = problems_of(tmp_path)
    assert problem.startswith(f"{tmp_path}: cannot read (")


# --- using a catalog -----------------------------------------------------------------


def test_select_keeps_the_requested_order_and_empty_means_everyone() -> None:
    catalog = load_catalog(SHIPPED)
    assert [p.name for p in catalog.select(["sam", "maya", "sam"])] == ["sam", "maya"]
    assert catalog.select([]) == catalog.personas


def test_select_names_the_unknown_and_the_known() -> None:
    catalog = load_catalog(SHIPPED)
    with pytest.raises(UserError) as caught:
        catalog.select(["maya", "bob", "alice"])
    message = str(caught.value)
    assert message.startswith("unknown persona 'bob', 'alice'; the catalog has: maya, sam, ")
    assert "\n" not in message and caught.value.exit_code == 2


def test_personas_sharing_a_space_directly_or_through_another_are_grouped(tmp_path: Path) -> None:
    document = {
        "version": 1,
        "personas": [persona(name) for name in ("ann", "bob", "cat", "dan", "eve", "fay")],
        "spaces": [
            {"name": "flat", "type": "family", "members": ["ann", "bob"]},
            {"name": "studio", "type": "team", "members": ["cat", "bob"]},
            {"name": "shop", "type": "brand", "members": ["fay", "eve"]},
        ],
    }
    catalog = load_catalog(write(tmp_path, document))

    def names(chosen: list[str]) -> list[list[str]]:
        return [[p.name for p in group] for group in sharing_groups(catalog.select(chosen), catalog.spaces)]

    assert names([]) == [["ann", "bob", "cat"], ["dan"], ["eve", "fay"]]
    # Without bob ticking, ann and cat have no space in common.
    assert names(["ann", "cat", "dan"]) == [["ann"], ["cat"], ["dan"]]
    shipped = load_catalog(SHIPPED)
    assert [[p.name for p in g] for g in sharing_groups(shipped.personas, shipped.spaces) if len(g) > 1] == [
        ["maya", "sam", "ines"],
        ["helena", "kofi"],
    ]


def test_unknown_modules_lists_what_the_target_lacks(tmp_path: Path) -> None:
    document = {
        "version": 1,
        "personas": [persona("maya"), persona("sam", moduleMix={"todo2": 1, "notes": 1, "mood": 0})],
    }
    catalog = load_catalog(write(tmp_path, document))
    assert catalog.unknown_modules({"todo", "notes", "calendar"}) == [
        "personas[1].moduleMix.todo2: module not offered by the target (offers: calendar, notes, todo)",
        "personas[1].moduleMix.mood: module not offered by the target (offers: calendar, notes, todo)",
    ]
    assert load_catalog(SHIPPED).unknown_modules(REFERENCE_MODULES) == []


def test_default_path_prefers_the_working_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    # The fallback is package data, so an installed wheel carries it: the repository's file, by a link.
    assert default_catalog_path() == REPO / "persona_runner" / "catalog.json"
    assert default_catalog_path().read_bytes() == SHIPPED.read_bytes()
    write(tmp_path, {"version": 1, "personas": [persona("maya")]})
    assert default_catalog_path() == Path("catalog.json")


# --- the command line ----------------------------------------------------------------


def test_validate_confirms_a_good_catalog() -> None:
    catalog = load_catalog(SHIPPED)
    result = CliRunner().invoke(catalog_app, ["validate", str(SHIPPED)])
    assert result.exit_code == 0, result.output
    assert result.output == f"{SHIPPED}: {len(catalog.personas)} personas, {len(catalog.spaces)} spaces, OK\n"


def test_validate_raises_every_problem(tmp_path: Path) -> None:
    path = write(tmp_path, {"version": 1, "personas": [persona("maya", email="m@x.com"), persona("maya")]})
    result = CliRunner().invoke(catalog_app, ["validate", str(path)])
    assert isinstance(result.exception, CatalogError)
    assert result.exception.exit_code == 2
    assert result.exception.problems == [
        f"{path}: personas[0].email: domain must be .test, .example or .invalid (got 'x.com')",
        f"{path}: personas[1].name: 'maya' is already used by personas[0]",
    ]


def test_show_lists_personas_and_spaces() -> None:
    result = CliRunner().invoke(catalog_app, ["show", str(SHIPPED)], env={"COLUMNS": "160"})
    assert result.exit_code == 0, result.output
    for entry in load_catalog(SHIPPED).personas:
        assert entry.name in result.output
    assert "Lanternfish" in result.output and "todo 36%" in result.output


def test_console_script_validate(tmp_path: Path) -> None:
    good = subprocess.run([SCRIPT, "catalog", "validate", SHIPPED], capture_output=True, text=True)
    assert good.returncode == 0, good.stderr
    assert good.stdout.endswith("spaces, OK\n")

    path = write(tmp_path, {"version": 1, "personas": [persona("maya", email="m@x.com"), persona("maya")]})
    bad = subprocess.run([SCRIPT, "catalog", "validate", path], capture_output=True, text=True)
    assert bad.returncode == 2
    assert bad.stderr.splitlines() == [
        f"{path}: personas[0].email: domain must be .test, .example or .invalid (got 'x.com')",
        f"{path}: personas[1].name: 'maya' is already used by personas[0]",
    ]
    assert "Traceback" not in bad.stderr
