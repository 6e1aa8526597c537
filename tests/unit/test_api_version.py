"""The per-host memory of each engine's API version (``airdock.engine.api_version``)."""

from __future__ import annotations

import json
import stat
import time
from pathlib import Path

import pytest

from airdock.engine.api_version import (
    CACHE_FILE,
    FRESH_SECONDS,
    forget,
    is_version_refusal,
    refusal,
    remember,
    remembered,
)

SOCKET = "unix:///run/docker.sock"
OTHER = "tcp://127.0.0.1:2375"


def test_a_remembered_version_is_returned_per_engine_and_kept_private(tmp_path: Path) -> None:
    assert remembered(tmp_path, SOCKET) is None
    remember(tmp_path, SOCKET, "1.41")
    remember(tmp_path, OTHER, "1.47")
    assert (remembered(tmp_path, SOCKET), remembered(tmp_path, OTHER)) == ("1.41", "1.47")
    assert stat.S_IMODE((tmp_path / CACHE_FILE).stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == [CACHE_FILE], "no temporary file left behind"


def test_an_old_entry_is_not_used(tmp_path: Path) -> None:
    remember(tmp_path, SOCKET, "1.41")
    assert remembered(tmp_path, SOCKET, now=time.time() + FRESH_SECONDS - 60) == "1.41"
    assert remembered(tmp_path, SOCKET, now=time.time() + FRESH_SECONDS + 1) is None
    assert remembered(tmp_path, SOCKET, now=time.time() - 3600) is None, "an entry from the future"


def test_forget_drops_only_that_engine(tmp_path: Path) -> None:
    remember(tmp_path, SOCKET, "1.41")
    remember(tmp_path, OTHER, "1.47")
    forget(tmp_path, SOCKET)
    assert (remembered(tmp_path, SOCKET), remembered(tmp_path, OTHER)) == (None, "1.47")


@pytest.mark.parametrize(
    "content",
    [
        "not json",
        "[1, 2]",
        json.dumps({SOCKET: "1.41"}),
        json.dumps({SOCKET: {"version": "9; rm", "at": 1e12}}),
    ],
)
def test_a_corrupt_file_is_ignored_and_rewritten(tmp_path: Path, content: str) -> None:
    (tmp_path / CACHE_FILE).write_text(content)
    assert remembered(tmp_path, SOCKET) is None
    remember(tmp_path, SOCKET, "1.41")
    assert remembered(tmp_path, SOCKET) == "1.41"


def test_a_bad_version_is_not_remembered(tmp_path: Path) -> None:
    remember(tmp_path, SOCKET, "auto")
    assert not (tmp_path / CACHE_FILE).exists()


def test_an_unwritable_directory_costs_nothing_but_the_memory(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    remember(blocker / "state", SOCKET, "1.41")  # a file where the directory should be: no error
    assert remembered(blocker / "state", SOCKET) is None


def test_the_engine_refusals_are_recognised() -> None:
    too_new = "client version 1.45 is too new. Maximum supported API version is 1.41"
    assert is_version_refusal(Exception(f'400 Client Error: Bad Request ("{too_new}")'))
    too_old = "client version 1.22 is too old. Minimum supported API version is 1.24"
    assert is_version_refusal(Exception(too_old))
    assert not is_version_refusal(Exception("No such image: app:v1"))


def test_a_refusal_is_told_in_the_engines_own_words() -> None:
    wrapped = (
        "400 Client Error for http+docker://localhost/v1.99/_ping: Bad Request "
        '("client version 1.99 is too new. Maximum supported API version is 1.41")'
    )
    assert (
        refusal(Exception(wrapped)) == "client version 1.99 is too new. Maximum supported API version is 1.41"
    )
    assert refusal(Exception("client version 1.22 is too old. Minimum supported API version is 1.24\n")) == (
        "client version 1.22 is too old. Minimum supported API version is 1.24"
    )
    assert refusal(Exception("No such image: app:v1")) is None
