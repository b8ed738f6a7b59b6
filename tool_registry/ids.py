"""Row ids: random by default, reproducible when the product is started with a seed.

A persona passes ids it was given back to the product (`todo.complete {id}`),
so a run can only be repeated call for call if the product hands out the same
ids. Under a seed, each space draws from its own seeded stream: personas
working in their own spaces at the same time do not perturb each other's ids.
Identity rows (users, spaces) draw from the unscoped stream, which seeding
walks in catalog order.
"""

from __future__ import annotations

import random
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager


class IdSource:
    def __init__(self, seed: int | None = None) -> None:
        self.seed = seed
        self._streams: dict[str, random.Random] = {}
        self._lock = threading.Lock()

    def new(self, scope: str = "") -> str:
        if self.seed is None:
            return uuid.uuid4().hex
        with self._lock:
            stream = self._streams.setdefault(scope, random.Random(f"{self.seed}:{scope}"))
            return f"{stream.getrandbits(128):032x}"


_source = IdSource()
_scope = threading.local()


def use(source: IdSource) -> None:
    """Make `source` the process's id source (the product configures it at start-up)."""
    global _source
    _source = source


@contextmanager
def scoped(scope: str) -> Iterator[None]:
    """Ids made in this thread inside the block come from `scope`'s stream."""
    previous = getattr(_scope, "name", "")
    _scope.name = scope
    try:
        yield
    finally:
        _scope.name = previous


def new_id() -> str:
    return _source.new(getattr(_scope, "name", ""))
