"""Lengths of time a user writes on the command line (`--grace 30s`, later `--duration 8h`, `--every 10m`).

One rule for every such flag: a number with a unit (ms, s, m, h, d), or plain seconds,
so the same text means the same wait wherever it is typed.
"""

from __future__ import annotations

import math
import re

from persona_runner.util.errors import UserError

_DURATION = re.compile(r"(?P<amount>[0-9]+(?:\.[0-9]+)?)\s*(?P<unit>ms|s|m|h|d)?")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(text: str, flag: str) -> float:
    """Seconds in `text` (`30s`, `2m`, `1.5h`, `500ms`, or `30` meaning seconds); a UserError naming `flag` else."""
    match = _DURATION.fullmatch(text.strip())
    seconds = float(match["amount"]) * _UNIT_SECONDS[match["unit"] or "s"] if match else math.nan
    if not math.isfinite(seconds):  # not a duration, or more digits than a float holds
        raise UserError(f"{flag} {text!r} is not a duration: write it like 30s, 2m, 1h or a number of seconds")
    return seconds
