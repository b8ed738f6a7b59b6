"""Load is not a bug: a request the product cannot serve right now is told when to come back (503 +
Retry-After), never answered 500."""

from __future__ import annotations

from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

#: The pool frees a connection within milliseconds once the burst passes.
RETRY_AFTER_SECONDS = 1
BUSY_MESSAGE = f"the product is busy: try again in {RETRY_AFTER_SECONDS} s"


def is_overload(exc: BaseException) -> bool:
    """Every database connection is in use, or SQLite's write lock stayed taken past its busy timeout."""
    return isinstance(exc, PoolTimeout) or (isinstance(exc, OperationalError) and "database is locked" in str(exc))


async def busy_response(_request: Request, exc: Exception) -> Response:
    """The HTTP answer to an overload; anything else goes on to the server's own error handling."""
    if not is_overload(exc):
        raise exc
    return JSONResponse({"error": BUSY_MESSAGE}, status_code=503, headers={"retry-after": str(RETRY_AFTER_SECONDS)})
