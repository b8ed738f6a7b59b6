"""Tool names as the product spells them, and as a model provider accepts them.

The product names tools `module.verb`; Anthropic and OpenAI only accept
`^[a-zA-Z0-9_-]{1,64}$`. A dot becomes a double underscore (`todo.create` is
offered as `todo__create`) and any other forbidden character an underscore.
Those rewrites can make two product names meet, or leave one too long; every
name of such a group then gets a short form with a hash of the product name,
so no tool is ever dropped and a provider name always maps back to exactly one
product name. The forms depend only on the names offered, never on their order,
so the same tool list gives the same provider names on every run (which keeps
cassettes replayable).
"""

from __future__ import annotations

import hashlib
import re
from collections import defaultdict
from collections.abc import Iterable

PROVIDER_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
MAX_LENGTH = 64
_FORBIDDEN = re.compile(r"[^a-zA-Z0-9_-]")
_HASH_LENGTH = 10


def plain_form(name: str) -> str:
    """The readable rewrite: dots to `__`, other forbidden characters to `_`."""
    return _FORBIDDEN.sub("_", name.replace(".", "__"))


def short_form(name: str) -> str:
    """A valid, deterministic name for a product name whose plain form cannot be used."""
    digest = hashlib.sha256(name.encode("utf-8")).hexdigest()[:_HASH_LENGTH]
    prefix = plain_form(name)[: MAX_LENGTH - _HASH_LENGTH - 1]
    return f"{prefix}_{digest}" if prefix else f"tool_{digest}"


class ToolNames:
    """A two-way mapping between product tool names and provider tool names for one day.

    `reserved` names belong to the driver itself (the rating tool): a product
    tool whose plain form would take one of them gets a short form instead.
    """

    def __init__(self, names: Iterable[str], reserved: Iterable[str] = ()) -> None:
        taken = set(reserved)
        by_plain: dict[str, list[str]] = defaultdict(list)
        for name in dict.fromkeys(names):
            by_plain[plain_form(name)].append(name)
        self._to_provider: dict[str, str] = {}
        for plain, group in by_plain.items():
            usable = len(group) == 1 and PROVIDER_NAME.match(plain) is not None and plain not in taken
            for name in group:
                self._to_provider[name] = plain if usable else short_form(name)
        self._to_product = {provider: name for name, provider in self._to_provider.items()}
        clashes = len(self._to_product) != len(self._to_provider) or taken & self._to_product.keys()
        if clashes:
            raise ValueError(
                f"tool names cannot be told apart once rewritten for the provider: {sorted(self._to_provider)}"
            )

    def provider(self, name: str) -> str:
        """The provider name of a product tool offered today (KeyError otherwise)."""
        return self._to_provider[name]

    def product(self, provider_name: str) -> str | None:
        """The product tool behind a provider name, or None when the model made one up."""
        return self._to_product.get(provider_name)
