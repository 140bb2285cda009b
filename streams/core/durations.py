"""Durations as users write them (``5m``, ``1h``, ``30d``) and as the core uses them (ms)."""

from __future__ import annotations

import re

_UNITS_MS = {"ms": 1, "s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}
_PATTERN = re.compile(r"^\s*(\d+)\s*(ms|s|m|h|d|w)\s*$")


def parse_duration(text: str) -> int:
    """Parse ``<int><unit>`` with unit in ms, s, m, h, d, w into milliseconds.

    >>> parse_duration("5m")
    300000
    """
    match = _PATTERN.match(text)
    if not match:
        raise ValueError(f"not a duration: {text!r} (expected e.g. 30s, 5m, 1h, 1d)")
    return int(match.group(1)) * _UNITS_MS[match.group(2)]


def format_duration(ms: int) -> str:
    """Shortest exact spelling of a duration: 300000 -> ``5m``; 90000 -> ``90s``."""
    if ms <= 0:
        return f"{ms}ms"
    for unit in ("w", "d", "h", "m", "s"):
        size = _UNITS_MS[unit]
        if ms % size == 0:
            # prefer days over weeks for the KPI windows users know (30d, 7d)
            if unit == "w":
                continue
            return f"{ms // size}{unit}"
    return f"{ms}ms"
