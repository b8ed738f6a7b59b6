"""Validation errors in the caller's terms: which field, and what is wrong with it.

Tool arguments (the gateway) and HTTP bodies (the identity and admin API) are
reported with one wording, so an agent and a script read the same messages.
"""

from __future__ import annotations

from pydantic import ValidationError


def field_problems(error: ValidationError, whole: str, limit: int | None = None) -> list[tuple[str, str]]:
    """(field, message) per problem, e.g. ("title", "String should have at most 200 characters"); the first `limit`.

    A check across fields has no location of its own and is reported under `whole`.
    """
    problems = []
    for item in error.errors(include_url=False)[:limit]:
        where = ".".join(str(part) for part in item["loc"]) or whole
        # The product's own checks already say what is wrong: their messages lose pydantic's prefix.
        message = "unknown field" if item["type"] == "extra_forbidden" else item["msg"].removeprefix("Value error, ")
        problems.append((where, message))
    return problems
