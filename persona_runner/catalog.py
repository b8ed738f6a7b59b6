"""The persona catalog: who the simulated users are, and which spaces they share.

`catalog.json` is written by people, so the loader's job is to tell them
everything that is wrong in one go, each problem on its own line with the file
and the place in it (`catalog.json: personas[3].email: ...`), rather than stop
at the first one. Field rules live on the pydantic models; rules that span
entries (unique names and emails, space members that exist) are checked on the
raw JSON, so they are reported even when some entries fail their field rules.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError
from pydantic.alias_generators import to_camel
from pydantic_core import ErrorDetails

from persona_runner.domain import PersonaProfile
from persona_runner.targets.spec import TargetSpec
from persona_runner.util.errors import UserError

CATALOG_FILE = "catalog.json"
#: Personas log in to a real product: their addresses must never route to a real mailbox.
RESERVED_EMAIL_SUFFIXES = (".test", ".example", ".invalid")

Archetype = Literal[
    "adhd-student",
    "ceo-busy",
    "creative-parent",
    "solo-dev",
    "researcher",
    "freelancer",
    "overwhelmed-newbie",
    "chaos",
    "technical-founder",
    "retiree",
]
Cadence = Literal["daily", "weekdays", "hourly"]
Style = Literal["terse", "verbose", "typos", "formal", "casual", "chaotic"]
SpaceType = Literal["family", "team", "practice", "brand"]

_NAME = re.compile(r"^[a-z][a-z0-9-]{1,39}$")
_EMAIL = re.compile(r"^[^@\s]+@([^@\s.]+\.)+[^@\s.]+$")
#: Module names are made of the characters MCP allows in tool names, so a module can be named after a tool
#: (`get-sum`) or after the part before its first separator (`git` of `git_status`, `todo` of `todo.create`).
_MODULE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
#: Language, optional script, optional region: the subset of BCP 47 personas need.
_LOCALE = re.compile(r"^[a-z]{2,3}(-[A-Z][a-z]{3})?(-(?:[A-Z]{2}|[0-9]{3}))?$")

Loc = tuple[str | int, ...]
Problem = tuple[Loc, str]


class CatalogError(UserError):
    """A catalog that cannot be used; the message holds every problem, one per line."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems), exit_code=2)
        self.problems = problems


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be empty")
    return value


def _persona_name(value: str) -> str:
    if not _NAME.match(value):
        raise ValueError(
            f"must be 2-40 characters of lowercase letters, digits and '-', starting with a letter (got {value!r})"
        )
    return value


def _reserved_email(value: str) -> str:
    if not _EMAIL.match(value):
        raise ValueError(f"not an email address (got {value!r}); write it as name@domain.test")
    domain = value.rsplit("@", 1)[1]
    if not domain.lower().endswith(RESERVED_EMAIL_SUFFIXES):
        raise ValueError(f"domain must be .test, .example or .invalid (got {domain!r})")
    return value


def _module_name(value: str) -> str:
    if not _MODULE.match(value):
        raise ValueError(f"module names are 1-64 letters, digits, '_', '-' and '.' (got {value!r})")
    return value


def _locale(value: str) -> str:
    if not _LOCALE.match(value):
        raise ValueError(f"must be a BCP 47 language tag such as en-GB, de-DE or ja-JP (got {value!r})")
    return value


def _some_weight(mix: dict[str, float]) -> dict[str, float]:
    if not mix:
        raise ValueError("must give at least one module a weight")
    if not any(mix.values()):
        raise ValueError("all weights are zero; give at least one module a positive weight")
    return mix


NonBlank = Annotated[str, AfterValidator(_not_blank)]
Weight = Annotated[float, Field(ge=0, allow_inf_nan=False)]
ModuleMix = Annotated[dict[Annotated[str, AfterValidator(_module_name)], Weight], AfterValidator(_some_weight)]


class _CatalogModel(BaseModel):
    """camelCase in the file, snake_case in Python; unknown keys are typos, so they are refused."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        validate_by_alias=True,
        validate_by_name=True,
        serialize_by_alias=True,
        extra="forbid",
        strict=True,
        frozen=True,
    )


class PersonaSpec(_CatalogModel):
    """One simulated user: the account it logs in as and the person it plays."""

    name: Annotated[str, AfterValidator(_persona_name)]
    email: Annotated[str, AfterValidator(_reserved_email)]
    archetype: Archetype
    system_prompt: NonBlank
    #: Relative weights: how often the persona reaches for each module. Zero parks a module.
    module_mix: ModuleMix
    tick_cadence: Cadence
    style: Style | None = None
    locale: Annotated[str, AfterValidator(_locale)] | None = None
    #: Sent with this persona's MCP requests to an mcp-http target, e.g. its own token: values may hold `${VAR}`.
    headers: dict[str, str] = Field(default_factory=dict)

    def to_profile(self) -> PersonaProfile:
        """The slice of this entry a driver plays from."""
        return PersonaProfile(
            name=self.name,
            email=self.email,
            archetype=self.archetype,
            system_prompt=self.system_prompt,
            module_mix=dict(self.module_mix),
            style=self.style,
            locale=self.locale,
        )


class SpaceSpec(_CatalogModel):
    """A space several personas share, so the product's sharing is exercised too."""

    name: NonBlank
    type: SpaceType
    members: list[str] = Field(min_length=2)


class Catalog(_CatalogModel):
    """The whole `catalog.json`."""

    version: Literal[1]
    personas: list[PersonaSpec] = Field(min_length=1)
    spaces: list[SpaceSpec] = Field(default_factory=list)
    #: Targets this catalog is played against, by name (`--target-name staging`).
    targets: dict[str, TargetSpec] = Field(default_factory=dict)

    @property
    def modules(self) -> frozenset[str]:
        """Every module a persona of the catalog names: what a foreign server's tools are mapped to."""
        return frozenset(module for persona in self.personas for module in persona.module_mix)

    def select(self, names: list[str]) -> list[PersonaSpec]:
        """The personas called `names`, in that order; every persona when `names` is empty."""
        if not names:
            return list(self.personas)
        by_name = {persona.name: persona for persona in self.personas}
        unknown = [name for name in names if name not in by_name]
        if unknown:
            raise UserError(f"unknown persona {', '.join(map(repr, unknown))}; the catalog has: {', '.join(by_name)}")
        return [by_name[name] for name in dict.fromkeys(names)]

    def scaled(self, size: int, domain: str) -> Catalog:
        """`size` personas cloned from these, round-robin, each with its own name and an address at `domain`:
        a load of any size for benches and scale tests, with every kind of persona in it.

        Copy k of a persona is `{name}-{k}`; each shared space is cloned for copy k when all its
        members have a copy k, so sharing is exercised at every size.
        """
        count = len(self.personas)
        personas = [
            PersonaSpec.model_validate({**base.model_dump(), "name": name, "email": f"{name}@{domain}"})
            for index in range(size)
            for base in [self.personas[index % count]]
            for name in [f"{base.name}-{index // count}"]
        ]
        names = {p.name for p in personas}
        spaces = [
            SpaceSpec(name=f"{space.name} {copy}", type=space.type, members=[f"{m}-{copy}" for m in space.members])
            for copy in range((size + count - 1) // count)
            for space in self.spaces
            if all(f"{m}-{copy}" in names for m in space.members)
        ]
        return Catalog(version=1, personas=personas, spaces=spaces)

    def unknown_modules(self, offered: set[str]) -> list[str]:
        """One line per module a persona wants that the target product does not offer."""
        offers = ", ".join(sorted(offered))
        return [
            f"personas[{index}].moduleMix.{module}: module not offered by the target (offers: {offers})"
            for index, persona in enumerate(self.personas)
            for module in persona.module_mix
            if module not in offered
        ]


def default_catalog_path() -> Path:
    """`./catalog.json` when the user keeps their own, else the catalog shipped with the runner.

    The shipped one is package data (a link to the repository's top-level
    file), so an installed wheel has it too, not only a source checkout.
    """
    local = Path(CATALOG_FILE)
    if local.exists():
        return local
    return Path(__file__).resolve().parent / CATALOG_FILE


def load_catalog(path: Path | str) -> Catalog:
    """Read and check a catalog; raise `CatalogError` naming every problem at once."""
    source = str(path)
    raw = _read_json(Path(path), source)
    if not isinstance(raw, dict):
        raise CatalogError([f'{source}: expected a JSON object with "version", "personas" and "spaces"'])
    problems: list[Problem] = []
    catalog: Catalog | None = None
    try:
        catalog = Catalog.model_validate(raw, by_alias=True, by_name=False)
    except ValidationError as exc:
        problems.extend((tuple(error["loc"]), _message(error)) for error in exc.errors())
    problems.extend(_cross_entry_problems(raw))
    if problems or catalog is None:
        problems.sort(key=_entry_order)
        raise CatalogError([_render(source, loc, message) for loc, message in problems])
    return catalog


def _read_json(path: Path, source: str) -> Any:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise CatalogError([f"{source}: no such file; pass the path of a catalog"]) from None
    except UnicodeDecodeError as exc:
        raise CatalogError([f"{source}: not UTF-8 text (byte {exc.start}); save it as UTF-8"]) from None
    except OSError as exc:
        message = f"{source}: cannot read ({exc.strerror}); pass the path of a catalog file"
        raise CatalogError([message]) from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise CatalogError([f"{source}: line {exc.lineno}, column {exc.colno}: invalid JSON ({exc.msg})"]) from None


def _message(error: ErrorDetails) -> str:
    """Pydantic's message in the file's terms: our validators' text as written, no model class names."""
    if error["type"] == "value_error" and "ctx" in error:
        return str(error["ctx"]["error"])
    if error["type"] == "model_type":
        return "must be a JSON object"
    return str(error["msg"])


def _entry_order(problem: Problem) -> tuple[str, int]:
    """Group the problems of one entry together; within an entry, keep the order they were found in."""
    loc = problem[0]
    section = str(loc[0]) if loc else ""
    index = loc[1] if len(loc) > 1 and isinstance(loc[1], int) else -1
    return section, index


def _render(source: str, loc: Loc, message: str) -> str:
    """`catalog.json: personas[3].moduleMix.todo: message`; dict-key markers are dropped."""
    where = ""
    for part in loc:
        if isinstance(part, int):
            where += f"[{part}]"
        elif part != "[key]":
            where += f".{part}" if where else part
    return f"{source}: {where}: {message}" if where else f"{source}: {message}"


def _entries(raw: dict[str, Any], section: str) -> list[tuple[int, dict[str, Any]]]:
    """The entries of a section that are at least objects (the field rules report the rest)."""
    items = raw.get(section)
    if not isinstance(items, list):
        return []
    return [(index, item) for index, item in enumerate(items) if isinstance(item, dict)]


def _cross_entry_problems(raw: dict[str, Any]) -> list[Problem]:
    personas = _entries(raw, "personas")
    spaces = _entries(raw, "spaces")
    known = {persona["name"] for _, persona in personas if isinstance(persona.get("name"), str)}
    problems = [
        *_duplicates(personas, "personas", "name"),
        *_duplicates(personas, "personas", "email", str.casefold),
        *_duplicates(spaces, "spaces", "name"),
    ]
    for index, space in spaces:
        members = space.get("members")
        if not isinstance(members, list):
            continue
        for position, member in enumerate(members):
            if not isinstance(member, str):
                continue
            loc: Loc = ("spaces", index, "members", position)
            if member not in known:
                problems.append((loc, f"no persona named {member!r} in this catalog"))
            elif members.index(member) != position:
                problems.append((loc, f"{member!r} is listed twice"))
    return problems


def _duplicates(
    entries: list[tuple[int, dict[str, Any]]],
    section: str,
    field: str,
    key: Callable[[str], str] = str,
) -> list[Problem]:
    """One problem per entry whose `field` repeats an earlier entry's (compared by `key`)."""
    first_index: dict[str, int] = {}
    problems: list[Problem] = []
    for index, entry in entries:
        value = entry.get(field)
        if not isinstance(value, str):
            continue
        first = first_index.setdefault(key(value), index)
        if first != index:
            problems.append(((section, index, field), f"{value!r} is already used by {section}[{first}]"))
    return problems
