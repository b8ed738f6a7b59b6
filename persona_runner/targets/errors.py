"""What goes wrong reaching a target, as the ticks and commands tell it: one line each."""

from __future__ import annotations

#: Characters of a product's or server's message kept with a tick or a call.
ERROR_LIMIT = 500


class ProductError(Exception):
    """The target could not be used (unreachable, refused login, broken answer)."""


class ProductUnreachable(ProductError):
    pass


class LoginFailed(ProductError):
    pass


class GatewayLost(ProductError):
    """The MCP server stopped answering in the middle of a tick."""


def root_cause(exc: BaseException) -> BaseException:
    """The first leaf of an exception group: what actually failed, under the task groups that carried it."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc
