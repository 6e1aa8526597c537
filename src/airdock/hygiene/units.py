"""Sizes and ages as people write and read them: ``500MB``, ``2GiB``, ``1048576``; ``4m``, ``7d``."""

from __future__ import annotations

import re

from airdock.errors import ConfigError

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(i?)(b?)\s*$", re.IGNORECASE)
_POWERS = {"": 0, "k": 1, "m": 2, "g": 3, "t": 4}


def parse_size(text: str) -> int:
    """Bytes for ``text``: decimal units (kB, MB, GB, TB) are powers of 1000, binary ones (KiB...) of 1024."""
    match = _SIZE.match(text)
    if not match or (match.group(3) and not match.group(2)):
        raise ConfigError(f"invalid size {text!r}: use bytes or a unit, e.g. 500MB, 2GiB, 10G")
    number, unit, binary = float(match.group(1)), match.group(2).lower(), bool(match.group(3))
    return int(number * (1024 if binary else 1000) ** _POWERS[unit])


_BYTE_UNITS = ("kB", "MB", "GB", "TB", "PB")


def format_bytes(n: int) -> str:
    """Decimal units, as Docker prints them: ``512 B``, ``1.5 GB``, ``100 MB``."""
    if n < 0:
        return "-" + format_bytes(-n)
    if n < 1000:
        return f"{n} B"
    value = float(n)
    index = 0
    while True:
        value /= 1000.0
        if round(value, 1) < 1000.0 or index == len(_BYTE_UNITS) - 1:
            break
        index += 1
    text = f"{value:.1f}"
    return f"{text.removesuffix('.0')} {_BYTE_UNITS[index]}"


def format_age(seconds: float) -> str:
    """A coarse duration, rounded down: ``45s``, ``4m``, ``3h`` (up to 47h), ``7d``."""
    s = max(0.0, seconds)
    if s < 60:
        return f"{int(s)}s"
    if s < 3600:
        return f"{int(s // 60)}m"
    if s < 48 * 3600:
        return f"{int(s // 3600)}h"
    return f"{int(s // 86400)}d"
