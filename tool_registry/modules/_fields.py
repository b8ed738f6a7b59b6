"""Field types, model bases and the one handler shape every module shares.

An agent reads the JSON schema and the validation messages, so one rule (what
an ISO date is, what a tag may contain) has one definition and one wording
across the whole product. Every message names the field it is about.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import re
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, Generic, TypeVar

from annotated_types import GroupedMetadata, MaxLen
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationInfo, WithJsonSchema

from tool_registry.client_input import ClientInput
from tool_registry.db import utcnow

if TYPE_CHECKING:
    from sqlmodel import Session

    from tool_registry.backend import SpaceRow
    from tool_registry.spec import ToolContext


class ToolInput(ClientInput):
    """Base of every tool input (the rules of `ClientInput`, shown to agents as field errors)."""


class NoInput(ToolInput):
    """The input of a tool that takes no arguments."""


class ToolOutput(BaseModel):
    """Base of every tool output; built straight from the table rows."""

    model_config = ConfigDict(from_attributes=True)


ItemT = TypeVar("ItemT")


class Listing(ToolOutput, Generic[ItemT]):
    """The shape of every list answer: the items and how many there are."""

    items: list[ItemT]
    count: int

    @classmethod
    def of(cls, items: Iterable[Any]) -> Listing[ItemT]:
        """A listing of items, or of table rows that validate into them."""
        collected = list(items)
        return cls(items=collected, count=len(collected))


OutT = TypeVar("OutT", bound=ToolOutput)


def create_handler(model: type[SpaceRow], output: type[OutT]) -> Callable[[ToolInput, ToolContext], Awaitable[OutT]]:
    """The handler of a plain `<module>.create` tool: the input, field for field,
    becomes a new row of `model` in the caller's space, written by the caller."""

    async def create(inp: ToolInput, ctx: ToolContext) -> OutT:
        def work(session: Session) -> OutT:
            row = model(space_id=ctx.space_id, created_by=ctx.user_id, **inp.model_dump())
            session.add(row)
            return output.model_validate(row)

        return await ctx.backend.run(ctx, work)

    return create


def utc_today() -> dt.date:
    """The product's calendar day: UTC, so every member of a space agrees on "today"."""
    return utcnow().date()


def start_of_day(day: dt.date) -> dt.datetime:
    """Midnight UTC at the start of a product day."""
    return dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC)


FIRST_YEAR, LAST_YEAR = 1900, 2999


def _in_year_range(value: dt.date, info: ValidationInfo) -> None:
    """Dates far from now are typos, and near the ends of Python's calendar a day's
    arithmetic (the next day, a streak walking back, a UTC offset) overflows."""
    if not FIRST_YEAR <= value.year <= LAST_YEAR:
        raise ValueError(f"{info.field_name} must be in the years {FIRST_YEAR} to {LAST_YEAR}, got {value.isoformat()}")


def _iso_date(value: Any, info: ValidationInfo) -> Any:
    parsed = value
    if isinstance(value, str) and re.fullmatch(r"\d{4}-\d{2}-\d{2}", value.strip()):
        with contextlib.suppress(ValueError):
            parsed = dt.date.fromisoformat(value.strip())
    if not isinstance(parsed, dt.date) or isinstance(parsed, dt.datetime):
        raise ValueError(f"{info.field_name} must be an ISO date like 2026-11-22, got {value!r}")
    _in_year_range(parsed, info)
    return parsed


def _iso_datetime(value: Any, info: ValidationInfo) -> Any:
    """Parse an ISO datetime; one without an offset is taken as UTC. Always answers in UTC."""
    parsed = value
    if isinstance(value, str) and "T" in value:
        with contextlib.suppress(ValueError):
            parsed = dt.datetime.fromisoformat(value.strip())
    if not isinstance(parsed, dt.datetime):
        raise ValueError(f"{info.field_name} must be an ISO datetime like 2026-11-22T09:30:00Z, got {value!r}")
    _in_year_range(parsed, info)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    return parsed.astimezone(dt.UTC)


IsoDate = Annotated[dt.date, BeforeValidator(_iso_date)]
IsoDateTime = Annotated[dt.datetime, BeforeValidator(_iso_datetime)]


@dataclass(frozen=True)
class Matching(GroupedMetadata):
    """`Annotated[str, Matching(...)]`: a string that must match `pattern`; the error names the field and states
    `rule`, and the JSON schema shows `example`. `max_length` is checked first, so an oversized value never
    reaches the pattern."""

    pattern: str
    rule: str
    example: str
    max_length: int | None = None

    def __iter__(self) -> Iterator[object]:
        """The constraints pydantic applies, in order: the length, the pattern, then the schema shown."""
        compiled = re.compile(self.pattern)

        def check(value: str, info: ValidationInfo) -> str:
            if not compiled.fullmatch(value):
                raise ValueError(f"{info.field_name} must be {self.rule}, got {value!r}")
            return value

        schema: dict[str, Any] = {"type": "string", "pattern": self.pattern, "examples": [self.example]}
        if self.max_length is not None:
            schema["maxLength"] = self.max_length
            yield MaxLen(self.max_length)
        yield AfterValidator(check)
        yield WithJsonSchema(schema)


Color = Annotated[str, Matching(r"^#[0-9A-Fa-f]{6}$", "a hex color like #3366FF", "#3366FF")]
# The product's one email rule: tool arguments and the HTTP API (register, login, seeding) share it.
Email = Annotated[
    str,
    Matching(
        r"^[^@\s]+@[^@\s]+\.[^@\s.]+$", "an email address like ada@example.com", "ada@example.com", max_length=254
    ),
]
Phone = Annotated[str, Matching(r"^[0-9 +\-()]{1,40}$", "up to 40 digits, spaces and + - ( )", "+1 (555) 010-2030")]
Tag = Annotated[
    str,
    Matching(
        r"^[a-z0-9][a-z0-9-]{0,31}$",
        "lowercase letters, digits and hyphens (1-32 characters, not starting with a hyphen)",
        "errands",
    ),
]


def _dedupe(values: list[str]) -> list[str]:
    return list(dict.fromkeys(values))


# The limit applies to the list as sent, before repeats are removed: 800,000 copies of one tag are
# 800,000 tags to validate, not one.
Tags = Annotated[
    list[Tag],
    Field(max_length=10, description="Up to 10 tags, each lowercase letters, digits and hyphens, e.g. ['work', 'q3']."),
    AfterValidator(_dedupe),
]
Limit = Annotated[int, Field(ge=1, le=100, description="Maximum number of items to return (1-100).")]
RowId = Annotated[str, Field(min_length=1, max_length=64)]
Score = Annotated[int, Field(ge=1, le=5)]
Days = Annotated[int, Field(ge=1, le=90, description="How many days back to look, today included (1-90).")]
