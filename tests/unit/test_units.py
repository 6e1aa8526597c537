from __future__ import annotations

import pytest

from airdock.errors import ConfigError
from airdock.hygiene.units import parse_size


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("0", 0),
        ("1048576", 1048576),
        ("500MB", 500_000_000),
        ("500mb", 500_000_000),
        ("2GiB", 2 * 1024**3),
        ("10G", 10_000_000_000),
        ("1.5 GB", 1_500_000_000),
        ("64KiB", 65536),
        ("3T", 3 * 10**12),
    ],
)
def test_sizes(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "MB", "-5MB", "5 XB", "5iB", "five", "1e9"])
def test_bad_sizes(text: str) -> None:
    with pytest.raises(ConfigError, match=r"invalid size .*: use bytes or a unit, e\.g\. 500MB, 2GiB, 10G"):
        parse_size(text)
