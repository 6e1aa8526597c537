from __future__ import annotations

import pytest

from airdock.durations import parse_duration
from airdock.errors import ConfigError


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("0s", 0),
        ("20", 20),
        ("20s", 20),
        ("10m", 600),
        ("12h", 43200),
        ("7d", 604800),
        ("1.5m", 90),
        (" 5s ", 5),
    ],
)
def test_parses(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "s", "-5s", "10x", "10 minutes", "1e3", "five"])
def test_rejects_with_a_hint(text: str) -> None:
    with pytest.raises(ConfigError, match=r"invalid duration .*use a number with an optional unit"):
        parse_duration(text)
