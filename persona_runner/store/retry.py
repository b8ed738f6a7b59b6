"""Writing through a results store that is briefly locked or unreachable: try again, with backoff, for a while.

A SQLite file another process holds locked past SQLite's own busy wait, a
PostgreSQL server restarting or a connection cut by the network all pass in
seconds; a tick should not be lost to them. What does not pass (a constraint
broken, a table missing, a store still unusable after `STORE_RETRY_SECONDS`)
is raised as it is.
"""

from __future__ import annotations

import logging
import random
import sqlite3
import time
from collections.abc import Callable
from typing import TypeVar

from sqlalchemy.exc import DBAPIError, OperationalError, SQLAlchemyError
from sqlalchemy.exc import TimeoutError as PoolTimeout

logger = logging.getLogger("persona_runner.store.retry")
T = TypeVar("T")

#: How long a write keeps trying before the store is given up on (SQLite's own busy wait comes on top of it).
STORE_RETRY_SECONDS = 60.0
FIRST_PAUSE_SECONDS = 0.05
LONGEST_PAUSE_SECONDS = 5.0


def is_transient(error: SQLAlchemyError) -> bool:
    """Worth another try: SQLite busy or locked, a connection lost or refused, every pooled connection in use,
    or PostgreSQL's operational failures (server going away, deadlock, serialization)."""
    if isinstance(error, PoolTimeout):
        return True
    if not isinstance(error, DBAPIError):
        return False
    if error.connection_invalidated:
        return True
    if isinstance(error.orig, sqlite3.Error):
        return error.orig.sqlite_errorcode & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
    return isinstance(error, OperationalError)


def retrying(write: Callable[[], T]) -> T:
    """`write()`, tried again while the store is transiently unavailable, pausing longer each time
    (with jitter, so writers that failed together do not come back together), until
    `STORE_RETRY_SECONDS` have passed; then the last error is raised. Blocks: call it off the event loop."""
    give_up_at = time.monotonic() + STORE_RETRY_SECONDS
    pause = FIRST_PAUSE_SECONDS
    while True:
        try:
            return write()
        except SQLAlchemyError as exc:
            left = give_up_at - time.monotonic()
            if not is_transient(exc) or left <= 0:
                raise
            # The last pause is cut to end at the limit, for one more try then: a store back just before the limit
            # is not given up on, and giving up never comes much before it.
            wait = min(pause * random.uniform(0.5, 1.5), left)
            logger.debug("results store unavailable, trying again in %.2f s: %s", wait, exc)
            time.sleep(wait)
            pause = min(pause * 2, LONGEST_PAUSE_SECONDS)
