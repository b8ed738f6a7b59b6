"""EdDSA access tokens: one Ed25519 key pair, JWTs signed with it, and the JWKS
that lets anyone verify them without the private key.

Verification goes through the JWKS, never the private key, so the gateway
checks tokens exactly the way an external resource server would.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
    load_pem_private_key,
)

DEFAULT_ISSUER = "persona-product"
DEFAULT_AUDIENCE = "persona-product-mcp"
DEFAULT_TTL_SECONDS = 3600


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def load_or_create_key(path: str | Path) -> Ed25519PrivateKey:
    """The signing key kept at `path` (PEM, PKCS#8), created with mode 0600 on first use,
    so tokens stay valid across restarts of the product.

    Any problem with the path is a ValueError of one line naming the path, the
    cause and the fix: the caller reports it to the operator as it is.
    """
    path = Path(path)
    fix = "choose a readable Ed25519 PEM file, or a new file in an existing, writable directory"
    try:
        return _read_key(path) if path.exists() else _create_key(path)
    except FileNotFoundError:
        raise ValueError(f"signing key {path}: directory {path.parent} does not exist; {fix}") from None
    except OSError as exc:
        raise ValueError(f"signing key {path}: {(exc.strerror or str(exc)).lower()}; {fix}") from None
    except (ValueError, UnsupportedAlgorithm):
        raise ValueError(f"signing key {path}: not an Ed25519 private key in PEM (PKCS#8) form; {fix}") from None


def _read_key(path: Path) -> Ed25519PrivateKey:
    key = load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError("not Ed25519")
    return key


def _create_key(path: Path) -> Ed25519PrivateKey:
    key = Ed25519PrivateKey.generate()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()))
    return key


@dataclass(frozen=True)
class Claims:
    """The verified facts a token carries."""

    sub: str
    email: str
    kind: str
    exp: int
    iat: int


class TokenIssuer:
    """Signs access tokens and publishes the public half as a JWKS."""

    def __init__(
        self,
        key: Ed25519PrivateKey | None = None,
        *,
        issuer: str = DEFAULT_ISSUER,
        audience: str = DEFAULT_AUDIENCE,
        ttl_seconds: int = DEFAULT_TTL_SECONDS,
    ) -> None:
        self._key = key or Ed25519PrivateKey.generate()
        self.issuer = issuer
        self.audience = audience
        self.ttl_seconds = ttl_seconds
        raw = self._key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        self._public_jwk = {"crv": "Ed25519", "kty": "OKP", "x": _b64url(raw)}
        # RFC 7638 thumbprint: members in lexicographic order, no whitespace.
        thumbprint = hashlib.sha256(
            json.dumps(self._public_jwk, separators=(",", ":"), sort_keys=True).encode()
        ).digest()
        self.kid = _b64url(thumbprint)

    def jwks(self) -> dict[str, Any]:
        return {"keys": [{**self._public_jwk, "kid": self.kid, "alg": "EdDSA", "use": "sig"}]}

    def issue(
        self, *, sub: str, email: str, kind: str, now: float | None = None, ttl_seconds: int | None = None
    ) -> tuple[str, int]:
        """Return (token, expires_at as Unix seconds)."""
        iat = int(now if now is not None else time.time())
        exp = iat + (self.ttl_seconds if ttl_seconds is None else ttl_seconds)
        payload = {
            "sub": sub,
            "email": email,
            "kind": kind,
            "aud": self.audience,
            "iss": self.issuer,
            "iat": iat,
            "exp": exp,
        }
        token = jwt.encode(payload, self._key, algorithm="EdDSA", headers={"kid": self.kid})
        return token, exp


class TokenVerifier:
    """Verifies tokens against a JWKS: EdDSA only, audience and issuer pinned, expiry enforced."""

    def __init__(
        self, jwks: dict[str, Any], *, issuer: str = DEFAULT_ISSUER, audience: str = DEFAULT_AUDIENCE, leeway: int = 5
    ) -> None:
        self._keys = {k.key_id: k for k in jwt.PyJWKSet.from_dict(jwks).keys}
        self.issuer = issuer
        self.audience = audience
        self.leeway = leeway

    def verify(self, token: str) -> Claims | None:
        """Claims of a valid token, or None for anything else (malformed, forged, expired, foreign)."""
        try:
            header = jwt.get_unverified_header(token)
            key = self._keys.get(header.get("kid")) if header.get("kid") else next(iter(self._keys.values()))
            if key is None or header.get("alg") != "EdDSA":
                return None
            payload = jwt.decode(
                token,
                key.key,
                algorithms=["EdDSA"],
                audience=self.audience,
                issuer=self.issuer,
                leeway=self.leeway,
                options={"require": ["sub", "email", "kind", "aud", "iss", "iat", "exp"]},
            )
        except (jwt.PyJWTError, ValueError, TypeError):
            return None
        return Claims(
            sub=payload["sub"], email=payload["email"], kind=payload["kind"], exp=payload["exp"], iat=payload["iat"]
        )
