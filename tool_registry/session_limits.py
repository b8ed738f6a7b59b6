"""MCP sessions (the 2025-11-25 protocol era): a cap per user, and one request per id at a time."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from typing import Any
from uuid import uuid4

import pydantic_core
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser, AuthorizationContext, authorization_context
from mcp.server.streamable_http import MCP_SESSION_ID_HEADER, StreamableHTTPServerTransport
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp_types import INVALID_REQUEST
from starlette.requests import Request
from starlette.types import Message, Receive, Scope, Send

logger = logging.getLogger("tool_registry.gateway")

#: Far more than one user's agents need at once; far fewer than the SDK's total of 10,000.
MAX_SESSIONS_PER_USER = 32
#: A persona's day is minutes long; a session idle for this long is left behind, not paused.
SESSION_IDLE_SECONDS = 300.0
#: When every session of a user is busy, one of its requests is likely to end within this.
BUSY_RETRY_AFTER_SECONDS = 1
#: The answer to `initialize` is about a kilobyte; this much is enough to tell a result from an error.
OPENING_REPLY_BYTES = 64 * 1024

_SESSION_HEADER = MCP_SESSION_ID_HEADER.encode("ascii")


@dataclass
class _Use:
    """How a session is being used: requests in flight now, and when the last one ended."""

    busy: int = 0
    last: float = 0.0


class _AllBusy(Exception):
    """The user holds the per-user cap of sessions and every one is serving a request."""


class OneRequestPerIdTransport(StreamableHTTPServerTransport):
    """The SDK's session transport, answering a request whose id is already in flight with an error.

    The SDK routes each answer by request id; a second request with the same
    id, sent while the first is unanswered, would take over the first one's
    route and leave it waiting for ever (and, with it, the server's shutdown).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._ids_in_flight: set[str] = set()

    async def _handle_post_request(self, scope: Scope, request: Request, receive: Receive, send: Send) -> None:
        # Starlette keeps the body it read, so the SDK below reads the same bytes again for free.
        request_id = _request_id(await request.body())
        if request_id is None:
            await super()._handle_post_request(scope, request, receive, send)
            return
        if request_id in self._ids_in_flight:
            await _send_error(
                send,
                409,
                f"request id {request_id} is already in flight on this session: give every request its own id",
                request_id=json.loads(request_id),
            )
            return
        self._ids_in_flight.add(request_id)
        try:
            await super()._handle_post_request(scope, request, receive, send)
        finally:
            self._ids_in_flight.discard(request_id)


def _request_id(body: bytes) -> str | None:
    """The id of a JSON-RPC request, as JSON text (so 1 and "1" differ), or None for anything else."""
    try:
        message = pydantic_core.from_json(body)
    except ValueError:
        return None
    if not isinstance(message, dict) or "method" not in message or message.get("id") is None:
        return None
    return json.dumps(message["id"])


class PerUserSessionManager(StreamableHTTPSessionManager):
    """The SDK's session manager with a cap per user on top of its cap in total.

    The SDK keeps every session until its client ends it or it idles out, and
    refuses new ones only once 10,000 are open, whoever holds them. Common
    clients never end their sessions, so one user is held to
    `max_per_user`: a user at the cap who opens another session gets it, and
    their least recently used idle session is closed to make room. Only when
    every one of their sessions is serving a request is the new one refused
    (429, Retry-After). A session counts from the moment it is opened; one
    whose `initialize` fails is discarded at once. Sessionless requests (the
    2026 protocol era) are not affected.

    It builds on the SDK's session bookkeeping (`_server_instances`,
    `_session_owners`, `_serve_opening_request`, `_discard_session`), which
    the gateway tests cover.
    """

    def __init__(self, *args: Any, max_per_user: int = MAX_SESSIONS_PER_USER, **kwargs: Any) -> None:
        kwargs.setdefault("session_idle_timeout", SESSION_IDLE_SECONDS)
        super().__init__(*args, **kwargs)
        self.max_per_user = max_per_user
        self._uses: dict[str, _Use] = {}

    async def _handle_stateful_request(self, scope: Scope, receive: Receive, send: Send) -> None:
        session_id = next((value for key, value in scope["headers"] if key == _SESSION_HEADER), None)
        if session_id is None:
            await self._open_session(scope, receive, send)
            return
        use = self._uses.get(session_id.decode("latin-1"))
        if use is None:  # unknown, expired or ended: the SDK answers 404
            await super()._handle_stateful_request(scope, receive, send)
            return
        use.busy += 1
        try:
            await super()._handle_stateful_request(scope, receive, send)
        finally:
            use.busy -= 1
            use.last = time.monotonic()

    async def _open_session(self, scope: Scope, receive: Receive, send: Send) -> None:
        user = scope.get("user")
        requestor = authorization_context(user) if isinstance(user, AuthenticatedUser) else None
        try:
            async with self._session_creation_lock:
                transport = self._admit_session(requestor)
        except _AllBusy:
            logger.warning("refusing a new MCP session: its user holds %d, all busy", self.max_per_user)
            await _send_error(
                send,
                429,
                f"too many MCP sessions: each user may hold {self.max_per_user} at once and all of yours are "
                f"serving requests; end one (DELETE /mcp) or retry after {BUSY_RETRY_AFTER_SECONDS} s",
                retry_after=BUSY_RETRY_AFTER_SECONDS,
            )
            return
        if transport is None:
            logger.warning("refusing a new MCP session: the server holds its maximum of %s", self.max_sessions)
            await _send_error(
                send, 503, f"too many open MCP sessions on this server; retry after {BUSY_RETRY_AFTER_SECONDS} s"
            )
            return
        session_id = transport.mcp_session_id
        assert session_id is not None
        use = self._uses[session_id] = _Use(busy=1)
        reply = _OpeningReply(send)
        try:
            await self._serve_opening_request(transport, scope, receive, reply.send)
        finally:
            use.busy -= 1
            use.last = time.monotonic()
        if reply.failed and session_id in self._server_instances:
            await self._discard_session(session_id, transport)

    def _admit_session(self, requestor: AuthorizationContext | None) -> StreamableHTTPServerTransport | None:
        """A new session for `requestor`, closing their least recently used idle one when they are at the cap.

        None when the server as a whole is full; raises _AllBusy when the user is at the cap with no idle session.
        """
        if requestor is not None:
            own = [sid for sid, owner in self._session_owners.items() if owner == requestor]
            if len(own) >= self.max_per_user:
                idle = [sid for sid in own if self._uses.get(sid, _Use()).busy == 0]
                if not idle:
                    raise _AllBusy
                self._close(min(idle, key=lambda sid: self._uses.get(sid, _Use()).last))
        if self.max_sessions is not None and len(self._server_instances) >= self.max_sessions:
            return None
        transport = OneRequestPerIdTransport(
            mcp_session_id=uuid4().hex,
            is_json_response_enabled=self.json_response,
            event_store=self.event_store,
            security_settings=self.security_settings,
            retry_interval=self.retry_interval,
            idle_timeout=self.session_idle_timeout,
        )
        session_id = transport.mcp_session_id
        assert session_id is not None
        if requestor is not None:
            self._session_owners[session_id] = requestor
        self._server_instances[session_id] = transport
        return transport

    def _close(self, session_id: str) -> None:
        """Forget a session now (its id answers 404 from here on) and end its transport in the background."""
        transport = self._server_instances.pop(session_id)
        self._session_owners.pop(session_id, None)
        self._uses.pop(session_id, None)
        logger.info("closing idle MCP session %s: its user opened one more than the cap", session_id[:8])
        assert self._task_group is not None
        self._task_group.start_soon(transport.terminate)

    async def _discard_session(self, session_id: str, transport: StreamableHTTPServerTransport) -> None:
        self._uses.pop(session_id, None)
        await super()._discard_session(session_id, transport)


class _OpeningReply:
    """Watches the answer to the request that opens a session: an HTTP error, or a JSON-RPC error
    (an `initialize` the server refused), means no session was established."""

    def __init__(self, send: Send) -> None:
        self._send = send
        self._status = 0
        self._body = bytearray()

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self._status = message["status"]
        elif message["type"] == "http.response.body" and len(self._body) < OPENING_REPLY_BYTES:
            self._body.extend(message.get("body", b""))
        await self._send(message)

    @property
    def failed(self) -> bool:
        if not 200 <= self._status < 300:
            return True
        try:
            answer = json.loads(self._body)
        except ValueError:
            return False  # not JSON (an event stream): the SDK's own check on the status stands
        return not isinstance(answer, dict) or "error" in answer


async def _send_error(
    send: Send, status: int, message: str, *, request_id: Any = None, retry_after: int | None = None
) -> None:
    """A JSON-RPC error (with the request's id, when known) as the whole HTTP answer."""
    body = json.dumps(
        {"jsonrpc": "2.0", "id": request_id, "error": {"code": INVALID_REQUEST, "message": message}}
    ).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if retry_after is not None:
        headers.append((b"retry-after", str(retry_after).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
