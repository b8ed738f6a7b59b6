"""The base of everything a client sends: tool arguments and HTTP bodies alike."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, field_validator


def _holds_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, list | tuple | set | frozenset):
        return any(_holds_nul(item) for item in value)
    if isinstance(value, dict):
        return any(_holds_nul(key) or _holds_nul(item) for key, item in value.items())
    return False


class ClientInput(BaseModel):
    """Strict about what a client may send, so its mistakes are named, not absorbed.

    Unknown fields are an error rather than silently dropped, so a misspelt
    argument is reported instead of ignored. Text may not hold NUL characters:
    no person types one, PostgreSQL cannot store one, and refusing it here
    makes it the field's mistake instead of a failure deep in the database.
    """

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    @field_validator("*", mode="after")
    @classmethod
    def _refuse_nul(cls, value: Any) -> Any:
        if _holds_nul(value):
            raise ValueError("text must not contain NUL characters (\\u0000)")
        return value
