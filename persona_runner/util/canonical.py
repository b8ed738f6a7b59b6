"""Canonical JSON and input hashes: same arguments, same bytes, same hash, on every machine."""

from __future__ import annotations

import hashlib
import json
from typing import Any


def canonical_json(value: Any) -> str:
    """Sorted keys, no whitespace, non-ASCII kept as UTF-8 (not \\u escapes)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def input_hash(arguments: Any) -> str:
    """SHA-256 (hex) of the canonical JSON of a tool call's arguments."""
    return hashlib.sha256(canonical_json(arguments).encode("utf-8")).hexdigest()
