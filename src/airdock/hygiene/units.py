"""Byte sizes as people write them: ``500MB``, ``2GiB``, ``1.5 G``, ``1048576``."""

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
