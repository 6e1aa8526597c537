from __future__ import annotations

from pathlib import Path

import pytest

from airdock.errors import ConfigError
from airdock.local.settings import StackSettings


def test_round_trip_and_derived_addresses(tmp_path: Path) -> None:
    settings = StackSettings(data_dir=tmp_path, gateway_port=6000, api_port=6001, registry_port=6002)
    settings.save()
    loaded = StackSettings.load(tmp_path)
    assert loaded == settings
    assert loaded.registry_host == "127.0.0.1:6000"
    assert loaded.gateway_url == "http://127.0.0.1:6000"
    assert loaded.api_url == "http://127.0.0.1:6001"
    assert loaded.registry_root == tmp_path / "registry"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"gateway_port": 0}, "invalid port 0"),
        ({"api_port": 70000}, "invalid port 70000"),
        ({"gateway_port": 6000, "api_port": 6000}, "must differ"),
        ({"account_id": "12345"}, "invalid account id"),
        ({"token_ttl_seconds": 0}, "token TTL must be positive"),
    ],
)
def test_rejects_bad_values(tmp_path: Path, kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        StackSettings(data_dir=tmp_path, **kwargs)  # type: ignore[arg-type]


def test_load_without_a_stack_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"no local stack in .*run `airdock local up` first"):
        StackSettings.load(tmp_path)


def test_load_of_a_damaged_file_says_what_to_do(tmp_path: Path) -> None:
    (tmp_path / "stack.json").write_text("{not json")
    with pytest.raises(ConfigError, match="unreadable"):
        StackSettings.load(tmp_path)
