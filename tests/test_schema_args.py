"""Arguments from JSON schemas, judged by the pydantic models the schemas came from.

The product's own tool models are the referee: whatever `valid` arguments the
driver builds must pass `model_validate`, and every probe the schema says must
be refused must fail it.
"""

from __future__ import annotations

import datetime as dt
import enum
import re
from random import Random
from typing import Literal

import pytest
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from persona_runner.drivers.content import HOSTILE, Writer
from persona_runner.drivers.schema_args import INVALID_KINDS, Builder, matching_string, probes, shown_values
from persona_runner.drivers.scripted import CONTRACTS, GENERIC
from tool_registry.modules import build_registry
from tool_registry.spec import ToolSpec

TODAY = dt.date(2026, 11, 22)
SPECS = list(build_registry())
ARCHETYPES = ("researcher", "ceo-busy", "overwhelmed-newbie", "adhd-student", "chaos")


def builder(
    schema: dict, seed: int, archetype: str = "researcher", module: str = "todo", hostile: bool = False
) -> Builder:
    rng = Random(seed)
    writer = Writer(archetype, None, rng, TODAY)
    fill = writer.hostile_filler(module) if hostile else writer.filler(module)
    return Builder(schema, rng, TODAY, fill)


def passes(model: type[BaseModel], arguments: dict) -> bool:
    try:
        model.model_validate(arguments)
    except ValidationError:
        return False
    return True


@pytest.mark.parametrize("spec", SPECS, ids=lambda spec: spec.name)
def test_valid_arguments_pass_the_real_models(spec: ToolSpec) -> None:
    schema = spec.input.model_json_schema()
    optional = CONTRACTS.get(spec.name, GENERIC).optional
    for seed in range(60):
        for hostile in (False, True):
            build = builder(schema, seed, ARCHETYPES[seed % len(ARCHETYPES)], spec.module, hostile)
            arguments = build.arguments(schema, optional)
            assert passes(spec.input, arguments), (arguments, spec.name)


@pytest.mark.parametrize("spec", SPECS, ids=lambda spec: spec.name)
def test_probes_the_schema_rules_out_fail_the_real_models(spec: ToolSpec) -> None:
    schema = spec.input.model_json_schema()
    optional = CONTRACTS.get(spec.name, GENERIC).optional
    for seed in range(10):
        build = builder(schema, seed, module=spec.module)
        base = build.arguments(schema, optional)
        found = probes(build, schema, base)
        assert found, spec.name
        for probe in found:
            assert probe.expect_rejection, probe  # the product forbids extras and bounds every text
            assert not passes(spec.input, probe.arguments), probe


def test_every_invalid_kind_is_produced_across_the_product() -> None:
    kinds = set()
    for spec in SPECS:
        schema = spec.input.model_json_schema()
        build = builder(schema, 1, module=spec.module)
        kinds |= {probe.kind for probe in probes(build, schema, build.arguments(schema, {}))}
    assert kinds == set(INVALID_KINDS)


class Colour(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Inner(BaseModel):
    label: str = Field(min_length=2, max_length=5)


class Lenient(BaseModel):
    """A schema of another product: extra fields ignored, unbounded text, every JSON Schema feature we read."""

    name: str
    colour: Colour
    kind: Literal["x"]
    ratio: float = Field(gt=0, lt=1)
    count: int = Field(ge=10, le=1000)
    when: dt.date | None = None
    at: dt.datetime
    code: str = Field(pattern=r"^[A-Z]{2}-\d{3}(-[a-z]+)?$")
    tags: set[str] = Field(min_length=1, max_length=3)
    inner: Inner
    flag: bool = False


class Strict(Lenient):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(max_length=10)


@pytest.mark.parametrize("model", [Lenient, Strict])
def test_schema_features_valid_and_broken(model: type[BaseModel]) -> None:
    schema = model.model_json_schema()
    for seed in range(40):
        build = builder(schema, seed)
        base = build.arguments(schema, optional=None)
        assert passes(model, base), base
        for probe in probes(build, schema, base):
            assert passes(model, probe.arguments) != probe.expect_rejection, probe
    unbounded = [p for p in probes(builder(schema, 0), schema, base) if not p.expect_rejection]
    expected = {("overlong", "name"), ("unknown_field", "unexpected_extra")} if model is Lenient else set()
    assert {(p.kind, p.field) for p in unbounded} == expected


def test_same_seed_same_arguments() -> None:
    schema = Strict.model_json_schema()
    first, again, other = (builder(schema, seed).arguments(schema) for seed in (3, 3, 4))
    assert first == again != other


def test_overrides_win_but_only_for_known_fields() -> None:
    schema = Strict.model_json_schema()
    arguments = builder(schema, 1).arguments(schema, {}, overrides={"count": 42, "nonsense": 1})
    assert arguments["count"] == 42 and "nonsense" not in arguments


def test_hand_written_schema_with_type_lists() -> None:
    schema = {
        "type": "object",
        "properties": {
            "note": {"type": ["string", "null"], "maxLength": 8},
            "n": {"type": "integer", "exclusiveMinimum": 0, "exclusiveMaximum": 3},
        },
        "required": ["note", "n"],
    }
    for seed in range(20):
        arguments = builder(schema, seed).arguments(schema)
        assert isinstance(arguments["note"], str) and len(arguments["note"]) <= 8
        assert arguments["n"] in (1, 2)


PATTERNS = (r"^#[0-9A-Fa-f]{6}$", r"^[^@\s]+@[^@\s]+\.[^@\s.]+$", r"^(ab|cd)+x?\w{2,}$", r"^\d{4}-\d{2}$")


@pytest.mark.parametrize("pattern", PATTERNS)
def test_matching_string(pattern: str) -> None:
    for seed in range(30):
        assert re.search(pattern, matching_string(pattern, Random(seed)))


def test_hostile_text_is_really_hostile() -> None:
    schema = {"type": "object", "properties": {"title": {"type": "string"}}, "required": ["title"]}
    titles = [builder(schema, seed, hostile=True).arguments(schema)["title"] for seed in range(30)]
    pieces = {piece for title in titles for piece in HOSTILE if piece in title}
    assert pieces == set(HOSTILE)


def test_a_string_is_written_as_its_schema_shows_one_when_it_does() -> None:
    rng = Random(5)
    timezone = {"type": "string", "description": "IANA timezone name (e.g., 'America/New_York', 'Europe/London')."}
    assert shown_values(timezone, rng) == ["America/New_York", "Europe/London"]
    assert shown_values({"type": "string", "examples": ["acme", 3], "default": "main"}, rng) == ["acme", "main"]
    clock = shown_values({"type": "string", "description": "Time in 24-hour format (HH:MM)"}, rng)
    assert len(clock) == 1 and re.fullmatch(r"\d\d:\d\d", clock[0])
    assert shown_values({"type": "string", "description": "What needs doing."}, rng) == []
    builder = Builder({}, Random(1), dt.date(2026, 11, 22))
    schema = {"type": "object", "properties": {"timezone": timezone}, "required": ["timezone"]}
    assert builder.arguments(schema)["timezone"] in ("America/New_York", "Europe/London")
