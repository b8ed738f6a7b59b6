"""Persona passwords, derived rather than stored.

A persona's password is a pure function of its email and one shared secret, so
the product's seed script (in whatever language) and the runner arrive at the
same password without ever exchanging one. The rule must stay bit-identical
across implementations: HMAC-SHA256(key=secret, msg=email) over UTF-8, standard
base64, every character outside [A-Za-z0-9] dropped, first 32 characters kept.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
from collections.abc import Mapping

from persona_runner.util.errors import UserError

SECRET_VAR = "PERSONA_SEED_SECRET"
ENV_VAR = "PERSONA_ENV"
#: Anyone can read this secret, so anyone can log in as a persona seeded with it:
#: fine on a laptop, refused in production.
DEV_SECRET = "persona-runner-dev-secret"
PASSWORD_LENGTH = 32

_NOT_ALPHANUMERIC = re.compile(r"[^A-Za-z0-9]")


def derive_password(email: str, secret: str) -> str:
    """The password of the persona with `email` when the product was seeded with `secret`."""
    digest = hmac.new(secret.encode("utf-8"), email.encode("utf-8"), hashlib.sha256).digest()
    encoded = base64.b64encode(digest).decode("ascii")
    return _NOT_ALPHANUMERIC.sub("", encoded)[:PASSWORD_LENGTH]


def seed_secret(env: Mapping[str, str] = os.environ) -> str:
    """The secret personas were seeded with: `PERSONA_SEED_SECRET`, else the development one.

    An empty variable is a mistake rather than a request for the default (a
    failed `$(cat secret-file)` looks exactly like that), and production never
    runs on a secret that is published in this file.
    """
    configured = env.get(SECRET_VAR)
    if configured is not None and not configured.strip():
        raise UserError(
            f"{SECRET_VAR} is set but empty; set it to the product's seed secret "
            "or unset it to use the development secret"
        )
    secret = DEV_SECRET if configured is None else configured
    if env.get(ENV_VAR, "").strip().lower() == "production" and secret == DEV_SECRET:
        raise UserError(
            f"{SECRET_VAR} is unset (or the development secret) while {ENV_VAR}=production; "
            f"set {SECRET_VAR} to the secret the product was seeded with"
        )
    return secret
