"""Durations in config files, written as Synapse writes them.

A duration is a number of milliseconds (`3600000`) or a number with one unit:
`ms`, `s`, `m`, `h`, `d`, `w` or `y` (365 days), as in `"1h"` or `"30s"`.
Section schemas use DURATION_SCHEMA; models call parse_duration_ms.
"""

from __future__ import annotations

import re
from typing import Any

DURATION_PATTERN = r"^[0-9]+(ms|s|m|h|d|w|y)?$"
DURATION_SCHEMA: dict[str, Any] = {
    "type": ["integer", "string"],
    "pattern": DURATION_PATTERN,
    "minimum": 0,
}

_UNIT_MS = {
    "ms": 1,
    "s": 1000,
    "m": 60 * 1000,
    "h": 60 * 60 * 1000,
    "d": 24 * 60 * 60 * 1000,
    "w": 7 * 24 * 60 * 60 * 1000,
    "y": 365 * 24 * 60 * 60 * 1000,
}


def parse_duration_ms(value: int | str) -> int:
    """Milliseconds for `3600000`, `"3600000"`, `"1h"`, `"30s"`, `"500ms"`, ..."""
    if isinstance(value, int):
        return value
    match = re.fullmatch(DURATION_PATTERN, value)
    if match is None:
        raise ValueError(f"{value!r} is not a duration")
    unit = match.group(1)
    if unit is None:
        return int(value)
    return int(value[: -len(unit)]) * _UNIT_MS[unit]
