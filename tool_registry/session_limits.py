"""A cap on the MCP sessions one user may hold open at once."""

from __future__ import annotations

import logging
from typing import Any

from mcp.server.auth.middleware.bearer_auth import AuthorizationContext
from mcp.server.streamable_http import StreamableHTTPServerTransport
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager

logger = logging.getLogger("tool_registry.gateway")

#: Far more than one user's agents need at once; far fewer than the SDK's total of 10,000.
MAX_SESSIONS_PER_USER = 32
#: A persona's day is minutes long; a session idle for this long is left behind, not paused.
SESSION_IDLE_SECONDS = 300.0


class PerUserSessionManager(StreamableHTTPSessionManager):
    """The SDK's session manager with a cap per user on top of its cap in total.

    The SDK keeps every session until its client ends it or it idles out, and
    refuses new ones only once 10,000 are open, whoever holds them: one leaked
    token, or one client that never ends its sessions, could hold every slot
    and lock all other users out of the session-based protocol era. Past the
    cap a user gets the SDK's own "too many open sessions" answer (503);
    sessionless requests are not affected. It builds on the SDK's admission
    step (`_admit_session`, `_session_owners`), which the gateway tests cover.
    """

    def __init__(self, *args: Any, max_per_user: int = MAX_SESSIONS_PER_USER, **kwargs: Any) -> None:
        kwargs.setdefault("session_idle_timeout", SESSION_IDLE_SECONDS)
        super().__init__(*args, **kwargs)
        self.max_per_user = max_per_user

    def _admit_session(self, requestor: AuthorizationContext | None) -> StreamableHTTPServerTransport | None:
        if (
            requestor is not None
            and sum(owner == requestor for owner in self._session_owners.values()) >= self.max_per_user
        ):
            logger.warning("refusing a new MCP session: its user already holds %d", self.max_per_user)
            return None
        return super()._admit_session(requestor)
