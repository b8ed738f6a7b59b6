"""URLs a user passes (`--target`, `--base-url`), checked once, up front.

The HTTP clients take anything: a URL without a scheme or with port 99999
would fail every request of every tick, as a retried connection error or a
traceback from deep in the client, instead of once, in one line, before
anything starts.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from persona_runner.util.errors import UserError


def require_http_url(url: str, source: str, example: str) -> str:
    """`url` when it is an http(s) URL with a host and a valid port; else a UserError naming `source`."""
    parts = urlsplit(url)
    try:
        valid = parts.scheme in ("http", "https") and bool(parts.hostname) and (parts.port is None or parts.port > 0)
    except ValueError:  # a port that is not a number, or out of range
        valid = False
    if not valid:
        raise UserError(f"{source} {url!r} is not an http(s) URL with a host: write it like {example}")
    return url
