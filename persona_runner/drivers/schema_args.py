"""Tool arguments from a JSON schema alone: valid ones, and deliberately broken ones.

The scripted driver must use any product that speaks MCP, including tools it
has never heard of, so everything it sends starts from the `inputSchema` the
product published (pydantic-generated: `properties`, `required`, `$ref` into
`$defs`, `anyOf` with null for optional fields). A `Filler` lets the caller
put human content into the fields it recognises by name; the schema keeps the
last word on type, length, range and pattern.

Broken variants (`probes`) change exactly one thing in an otherwise valid
call, so a rejection can be traced to that field, and each says whether the
schema itself rules it out: only then is a rejection owed.
"""

from __future__ import annotations

import datetime as dt
import re
import string
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from random import Random
from typing import TYPE_CHECKING, Any

# The stdlib's own regex parser: the only exact reading of a pattern. Since Python 3.11 it is
# `re._parser`; the stubs describe it under its old name, `sre_parse`, which now only warns and
# forwards to it.
if TYPE_CHECKING:
    import sre_parse as sre
else:
    from re import _parser as sre

#: Suggests a value for a field by name, given the arguments built so far; None lets the schema decide.
Filler = Callable[[str, Mapping[str, Any]], Any]

INVALID_KINDS = (
    "out_of_range",
    "wrong_type",
    "overlong",
    "bad_pattern",
    "bad_date",
    "missing_required",
    "unknown_field",
)

#: Optional fields are sent this often when the caller says nothing about them.
DEFAULT_OPTIONAL_RATE = 0.3
UNKNOWN_FIELD = "unexpected_extra"
#: What people type into a wide numeric field ("last 7 days", "show 20"), not a uniform draw.
ROUND_NUMBERS = (5, 7, 10, 14, 20, 30, 50, 90, 100)
UNBOUNDED_TEXT = 5000
BAD_DATES = ("2026-13-45", "31/12/2026", "next tuesday", "2026-02-30")
BAD_DATETIMES = ("2026-11-22 25:61", "tomorrow at noon", "2026-02-30T09:00:00", "22/11/2026T10:00")
NOT_MATCHING = ("blue", "??", "x y z", "-")


def no_fill(_field: str, _built: Mapping[str, Any]) -> Any:
    """The filler of a caller with nothing to say: every value comes from the schema."""
    return None


@dataclass(frozen=True)
class Probe:
    """One call that breaks one field, and whether the schema says it must be refused."""

    kind: str
    field: str
    arguments: dict[str, Any]
    expect_rejection: bool


@dataclass(frozen=True)
class Prop:
    """A property with `$ref` and nullable `anyOf` resolved: what a value must look like."""

    node: dict[str, Any]
    nullable: bool

    @property
    def kind(self) -> str:
        declared = self.node.get("type")
        if isinstance(declared, str):
            return declared
        if isinstance(declared, list):
            return next((t for t in declared if t != "null"), "null")
        fixed = self.node.get("enum", [self.node["const"]] if "const" in self.node else None)
        return _json_kind(fixed[0]) if fixed else "any"

    @property
    def format(self) -> str | None:
        return self.node.get("format")

    @property
    def free_text(self) -> bool:
        """A string with no format, pattern or fixed choices: where people write in their own words."""
        return self.kind == "string" and not ({"format", "pattern", "enum", "const"} & self.node.keys())

    def bounds(self) -> tuple[int | float | None, int | float | None]:
        """Inclusive numeric bounds; exclusive ones are moved one step inward."""
        step = 1 if self.kind == "integer" else 0.5
        low = self.node.get("minimum")
        high = self.node.get("maximum")
        if "exclusiveMinimum" in self.node:
            low = self.node["exclusiveMinimum"] + step
        if "exclusiveMaximum" in self.node:
            high = self.node["exclusiveMaximum"] - step
        return low, high


def _json_kind(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    return {str: "string", list: "array", dict: "object", type(None): "null"}.get(type(value), "any")


def _deref(node: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        target: Any = root
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        node = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
    return node


def resolve(node: dict[str, Any], root: dict[str, Any]) -> Prop:
    """The first non-null branch of a property, and whether null is also allowed."""
    node = _deref(node, root)
    branches = node.get("anyOf") or node.get("oneOf")
    if not branches:
        return Prop(node, nullable=False)
    resolved = [_deref(branch, root) for branch in branches]
    real = [branch for branch in resolved if branch.get("type") != "null"]
    outer = {k: v for k, v in node.items() if k not in ("anyOf", "oneOf", "default")}
    return Prop({**(real[0] if real else {"type": "null"}), **outer}, nullable=len(real) < len(resolved))


def kinds_accepted(node: dict[str, Any], root: dict[str, Any]) -> set[str]:
    """Every JSON kind some branch of the property accepts ("any" when untyped)."""
    node = _deref(node, root)
    branches = node.get("anyOf") or node.get("oneOf") or [node]
    return {Prop(_deref(branch, root), nullable=False).kind for branch in branches}


# ---- valid values -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Builder:
    """Everything value generation needs: the schema root, the dice, the persona's day, its voice."""

    root: dict[str, Any]
    rng: Random
    today: dt.date
    fill: Filler = no_fill

    def arguments(
        self,
        schema: dict[str, Any],
        optional: Mapping[str, float] | None = None,
        overrides: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """A valid argument object: every required field, optional ones by their rate.

        `optional` maps an optional field to how often it is sent (fields it
        leaves out are never sent); None sends each at `DEFAULT_OPTIONAL_RATE`.
        `overrides` win over everything, but only for fields the schema has, so
        a chain written for one product never sends unknown fields to another.
        """
        schema = _deref(schema, self.root)
        properties: dict[str, Any] = schema.get("properties", {})
        required = set(schema.get("required", []))
        overrides = overrides or {}
        built: dict[str, Any] = {}
        for name, node in properties.items():
            if name in overrides:
                built[name] = overrides[name]
                continue
            rate = 1.0 if name in required else (DEFAULT_OPTIONAL_RATE if optional is None else optional.get(name, 0.0))
            if rate > 0 and self.rng.random() < rate:
                built[name] = self.value(name, resolve(node, self.root), built)
        return built

    def value(self, name: str, field: Prop, built: Mapping[str, Any]) -> Any:
        """A value for one field: the filler's suggestion when it fits, else one made from the schema."""
        node = field.node
        suggestion = self.fill(name, built)
        if "const" in node:
            return node["const"]
        if "enum" in node:
            return suggestion if suggestion in node["enum"] else self.rng.choice(node["enum"])
        kind = field.kind
        if kind == "string":
            return self._string(field, suggestion)
        if kind in ("integer", "number"):
            return self._number(field, suggestion)
        if kind == "boolean":
            return suggestion if isinstance(suggestion, bool) else self.rng.random() < 0.5
        if kind == "array":
            return self._array(name, field, suggestion, built)
        if kind == "object":
            return self.arguments(node)
        return None if field.nullable or kind == "null" else self._string(field, suggestion)

    def _string(self, field: Prop, suggestion: Any) -> str:
        node = field.node
        if field.format == "date":
            return _date_of(suggestion, self.today + dt.timedelta(days=self.rng.randint(-3, 14))).isoformat()
        if field.format == "date-time":
            fallback = dt.datetime.combine(self.today, dt.time(self.rng.randint(8, 18)))
            return _datetime_of(suggestion, fallback).isoformat(timespec="seconds")
        if "pattern" in node:
            if isinstance(suggestion, str) and re.search(node["pattern"], suggestion):
                return suggestion
            return matching_string(node["pattern"], self.rng)
        if field.format == "email":
            return f"{self._word()}@example.test"
        if field.format == "uuid":
            return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))
        if field.format in ("uri", "url"):
            return f"https://example.test/{self._word()}"
        shown = [] if isinstance(suggestion, str) else shown_values(node, self.rng)
        text = suggestion if isinstance(suggestion, str) else (self.rng.choice(shown) if shown else self._word())
        return fit_length(text, node.get("minLength", 0), node.get("maxLength"))

    def _number(self, field: Prop, suggestion: Any) -> int | float:
        low, high = field.bounds()
        low = low if low is not None else (high - 9 if high is not None else 1)
        high = high if high is not None else low + 9
        round_numbers = [n for n in ROUND_NUMBERS if low <= n <= high]
        if isinstance(suggestion, int | float) and not isinstance(suggestion, bool):
            value = min(max(suggestion, low), high)
        elif field.kind == "integer" and high - low > 10 and round_numbers:
            value = self.rng.choice(round_numbers)
        else:
            value = self.rng.randint(int(low), int(high)) if field.kind == "integer" else self.rng.uniform(low, high)
        return int(value) if field.kind == "integer" else float(value)

    def _array(self, name: str, field: Prop, suggestion: Any, built: Mapping[str, Any]) -> list[Any]:
        node = field.node
        item = resolve(node.get("items", {}), self.root)
        low = node.get("minItems", 0)
        high = node.get("maxItems", low + 3)
        if isinstance(suggestion, list):
            items = [value for value in suggestion if _fits(item, value)]
        else:
            items = [self.value(name, item, built) for _ in range(self.rng.randint(low, min(high, low + 3)))]
        if node.get("uniqueItems") or item.node.get("pattern"):
            items = list(dict.fromkeys(items))
        while len(items) < low:
            items.append(matching_string(item.node["pattern"], self.rng) if "pattern" in item.node else self._word())
        return items[:high]

    def _word(self) -> str:
        return "".join(self.rng.choice(string.ascii_lowercase) for _ in range(self.rng.randint(4, 9)))


#: Where a description shows what a value looks like: "(e.g., 'America/New_York', 'Europe/London')".
_SHOWN = re.compile(r"(?:e\.g\.|for example|such as)(?P<after>[^.)]*)", re.IGNORECASE)
_QUOTED = re.compile(r"'([^']+)'|\"([^\"]+)\"")


def shown_values(node: Mapping[str, Any], rng: Random) -> list[str]:
    """The values a string field's schema shows as examples, as a person reading it would copy one: its
    `examples`, its `default`, the quoted values its description gives after "e.g." or "such as", or a time
    when it asks for HH:MM. A server that is not ours says in words what its strings must look like."""
    shown = [value for value in node.get("examples", []) if isinstance(value, str)]
    if isinstance(node.get("default"), str):
        shown.append(node["default"])
    description = str(node.get("description", ""))
    for match in _SHOWN.finditer(description):
        shown += [single or double for single, double in _QUOTED.findall(match["after"])]
    if "HH:MM" in description:
        shown.append(f"{rng.randint(7, 20):02d}:{rng.choice((0, 15, 30, 45)):02d}")
    return shown


def _fits(field: Prop, value: Any) -> bool:
    """Whether a suggested array item already satisfies its string schema."""
    node = field.node
    if field.kind != "string" or not isinstance(value, str):
        return False
    if "pattern" in node and not re.search(node["pattern"], value):
        return False
    return node.get("minLength", 0) <= len(value) <= node.get("maxLength", len(value))


def _date_of(value: Any, fallback: dt.date) -> dt.date:
    if isinstance(value, dt.datetime):
        return value.date()
    return value if isinstance(value, dt.date) else fallback


def _datetime_of(value: Any, fallback: dt.datetime) -> dt.datetime:
    if isinstance(value, dt.datetime):
        return value
    if isinstance(value, dt.date):
        return dt.datetime.combine(value, fallback.time())
    return fallback


def fit_length(text: str, low: int, high: int | None) -> str:
    """Cut or pad text to a length range (in code points, as JSON Schema counts)."""
    if high is not None and len(text) > high:
        text = text[:high].rstrip() or text[:high]
    return text + "." * (low - len(text)) if len(text) < low else text


def matching_string(pattern: str, rng: Random) -> str:
    """A string the regex matches, walked from the stdlib's parse tree of the pattern."""
    return _emit(sre.parse(pattern), rng)


_CATEGORIES = {
    sre.CATEGORY_DIGIT: string.digits,
    sre.CATEGORY_WORD: string.ascii_letters + string.digits + "_",
    sre.CATEGORY_SPACE: " ",
    sre.CATEGORY_NOT_DIGIT: string.ascii_letters,
    sre.CATEGORY_NOT_WORD: " -.",
    sre.CATEGORY_NOT_SPACE: string.ascii_letters + string.digits,
}
_SAFE = string.ascii_letters + string.digits


def _class_chars(items: list[tuple[Any, Any]]) -> str:
    chars = ""
    for op, arg in items:
        if op is sre.LITERAL:
            chars += chr(arg)
        elif op is sre.RANGE:
            chars += "".join(chr(c) for c in range(arg[0], arg[1] + 1))
        elif op is sre.CATEGORY:
            chars += _CATEGORIES[arg]
    return chars


def _emit(tokens: Any, rng: Random) -> str:
    out = []
    for op, arg in tokens:
        if op is sre.LITERAL:
            out.append(chr(arg))
        elif op is sre.NOT_LITERAL:
            out.append(rng.choice(_SAFE.replace(chr(arg), "")))
        elif op is sre.ANY:
            out.append(rng.choice(_SAFE))
        elif op is sre.IN:
            negated = bool(arg) and arg[0][0] is sre.NEGATE
            chars = _class_chars(arg[1:] if negated else arg)
            out.append(rng.choice([c for c in _SAFE if c not in chars] if negated else chars))
        elif op in (sre.MAX_REPEAT, sre.MIN_REPEAT):
            low, high, sub = arg
            count = rng.randint(low, min(high, low + 4) if high != sre.MAXREPEAT else low + 4)
            out.extend(_emit(sub, rng) for _ in range(count))
        elif op is sre.SUBPATTERN:
            out.append(_emit(arg[-1], rng))
        elif op is sre.BRANCH:
            out.append(_emit(rng.choice(arg[1]), rng))
    return "".join(out)


# ---- broken variants --------------------------------------------------------------------------


def probes(builder: Builder, schema: dict[str, Any], base: dict[str, Any]) -> list[Probe]:
    """Every way to break one field of the valid call `base` that the schema lets us name.

    Each probe changes one field (or drops one, or adds one), so the product's
    answer can be judged on whether it names that field.
    """
    schema = _deref(schema, builder.root)
    found: list[Probe] = []
    for name, node in schema.get("properties", {}).items():
        field = resolve(node, builder.root)
        for kind, value, rejected in _breakages(builder, field, kinds_accepted(node, builder.root)):
            found.append(Probe(kind, name, {**base, name: value}, rejected))
    for name in schema.get("required", []):
        found.append(Probe("missing_required", name, {k: v for k, v in base.items() if k != name}, True))
    forbids_extra = schema.get("additionalProperties") is False
    found.append(Probe("unknown_field", UNKNOWN_FIELD, {**base, UNKNOWN_FIELD: "surprise"}, forbids_extra))
    return found


def _breakages(builder: Builder, field: Prop, accepted: set[str]) -> list[tuple[str, Any, bool]]:
    """(kind, value, schema-says-reject) for one field."""
    node, rng = field.node, builder.rng
    out: list[tuple[str, Any, bool]] = []
    wrong = _wrong_type(accepted)
    if wrong is not None:
        out.append(("wrong_type", wrong, True))
    if "enum" in node or "const" in node:
        allowed = node.get("enum", [node.get("const")])
        out.append(("out_of_range", f"{allowed[0]}!!", True))
        return out
    kind = field.kind
    if kind in ("integer", "number"):
        low, high = field.bounds()
        if high is not None:
            out.append(("out_of_range", high + 1 if kind == "integer" else high + 0.5, True))
        elif low is not None:
            out.append(("out_of_range", low - 1 if kind == "integer" else low - 0.5, True))
    elif kind == "array":
        if "maxItems" in node:
            out.append(("out_of_range", [f"item-{i}" for i in range(node["maxItems"] + 1)], True))
        elif node.get("minItems", 0) > 0:
            out.append(("out_of_range", [], True))
    elif kind == "string" and field.format in ("date", "date-time"):
        out.append(("bad_date", rng.choice(BAD_DATES if field.format == "date" else BAD_DATETIMES), True))
    elif kind == "string" and "pattern" in node:
        out.append(("bad_pattern", next(s for s in NOT_MATCHING if not re.search(node["pattern"], s)), True))
    elif kind == "string":
        if node.get("minLength", 0) > 0:
            out.append(("out_of_range", "", True))
        high = node.get("maxLength")
        out.append(("overlong", "too long " * ((high or UNBOUNDED_TEXT) // 9 + 2), high is not None))
    return out


def _wrong_type(accepted: set[str]) -> Any:
    """A value of a JSON kind no branch accepts (numbers parse from digit strings, so words)."""
    if "any" in accepted:
        return None
    candidates: list[tuple[str, Any]] = [("string", "lots"), ("array", ["not", "this"]), ("object", {"what": "?"})]
    return next((value for kind, value in candidates if kind not in accepted), None)
