"""Parse human durations such as ``0s``, ``20s``, ``10m``, ``12h``, ``7d`` (a bare number is seconds)."""

from __future__ import annotations

import re

from airdock.errors import ConfigError

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")


def parse_duration(text: str) -> float:
    """Return the number of seconds ``text`` denotes; raise ConfigError when it is not a duration."""
    match = _DURATION.match(text)
    if not match:
        raise ConfigError(
            f"invalid duration {text!r}: use a number with an optional unit s, m, h or d (e.g. 20s, 12h)"
        )
    return float(match.group(1)) * _UNITS[match.group(2) or "s"]
