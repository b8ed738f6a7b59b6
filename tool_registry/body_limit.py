"""The size cap on what a client may send to `/mcp`, enforced before anything reads the body."""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Receive, Scope, Send

#: Ample for any tool call (a note's 20,000 characters, escaped, are under 128 KiB), and small
#: enough that parsing and validating the largest body allowed stays in the milliseconds.
MAX_BODY_BYTES = 256 * 1024


class BodyLimit:
    """ASGI middleware: a request declaring a body over `limit` bytes gets 413 at once, unread.

    A body sent without a declared length is counted as it streams by the MCP
    SDK's own limit, which the gateway sets to the same size.
    """

    def __init__(self, app: ASGIApp, limit: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.limit = limit
        self._refusal = json.dumps(
            {"error": f"request body too large: at most {limit} bytes; send smaller tool arguments"}
        ).encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            declared = next((value for key, value in scope["headers"] if key == b"content-length"), None)
            if declared is not None and (not declared.isdigit() or int(declared) > self.limit):
                await self._refuse(send)
                return
        await self.app(scope, receive, send)

    async def _refuse(self, send: Send) -> None:
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(self._refusal)).encode())]
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": self._refusal})
