"""Bearer tokens as the MCP SDK's auth middleware sees them: verified against the JWKS once, then remembered."""

from __future__ import annotations

import time
from collections.abc import Callable

from mcp.server.auth.provider import AccessToken

from tool_registry.tokens import TokenVerifier

#: Enough for every persona of a large run holding a token at once.
MAX_REMEMBERED_TOKENS = 10_000


class JwksAccessVerifier:
    """Adapts our JWKS verifier to the SDK's `TokenVerifier` protocol, verifying each token once.

    An EdDSA signature check costs about 30 times a dictionary lookup, and a
    persona presents the same token on every request of its day. A verified
    token is remembered until it expires (never longer), in a bounded table
    that drops its oldest entry when full. Rejected tokens are not remembered,
    so garbage cannot push good tokens out.
    """

    def __init__(
        self,
        verifier: TokenVerifier,
        max_entries: int = MAX_REMEMBERED_TOKENS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._verifier = verifier
        self._max = max_entries
        self._clock = clock
        self._verified: dict[str, AccessToken] = {}

    async def verify_token(self, token: str) -> AccessToken | None:
        known = self._verified.get(token)
        if known is not None:
            if known.expires_at is not None and known.expires_at > self._clock():
                return known
            self._verified.pop(token, None)
        access = self._verify(token)
        if access is not None:
            if len(self._verified) >= self._max:
                self._verified.pop(next(iter(self._verified)), None)
            self._verified[token] = access
        return access

    def _verify(self, token: str) -> AccessToken | None:
        claims = self._verifier.verify(token)
        if claims is None:
            return None
        return AccessToken(
            token=token,
            client_id=claims.sub,
            subject=claims.sub,
            scopes=[],
            expires_at=claims.exp,
            claims={"iss": self._verifier.issuer, "email": claims.email, "kind": claims.kind},
        )
