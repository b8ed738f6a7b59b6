"""Who belongs to which space, remembered for a few seconds so a tool call costs no membership query."""

from __future__ import annotations

import time
from collections.abc import Callable

#: Long enough that a persona's burst of calls asks the database once, short enough to stay fresh.
MEMBERSHIP_TTL_SECONDS = 5.0
MAX_REMEMBERED = 10_000


class MembershipCache:
    """Recent positive membership answers, keyed by (user, space).

    Only "yes" is remembered: a refusal is always asked again, so a member
    added a moment ago is never turned away. Whatever removes a membership
    calls `forget` once it has committed, so a removed member is refused at
    once, not when the entry expires. Safe to share between the event loop and
    worker threads: every operation is a single dict operation.
    """

    def __init__(
        self,
        ttl_seconds: float = MEMBERSHIP_TTL_SECONDS,
        max_entries: int = MAX_REMEMBERED,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._ttl = ttl_seconds
        self._max = max_entries
        self._clock = clock
        self._until: dict[tuple[str, str], float] = {}

    def known(self, user_id: str, space_id: str) -> bool:
        """Whether the user was seen to be a member of the space within the last few seconds."""
        return self._until.get((user_id, space_id), 0.0) > self._clock()

    def remember(self, user_id: str, space_id: str) -> None:
        if len(self._until) >= self._max:
            # Oldest first: dicts keep insertion order, and every entry lives the same time.
            self._until.pop(next(iter(self._until)), None)
        self._until[(user_id, space_id)] = self._clock() + self._ttl

    def forget(self) -> None:
        """Memberships changed: ask the database again for everyone."""
        self._until.clear()
