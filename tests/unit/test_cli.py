"""The `airdock` command's surface: help, version, and one-line errors for bad input."""

from __future__ import annotations

from pathlib import Path

from airdock import __version__
from tests.conftest import airdock


def test_help_lists_the_local_stack_commands() -> None:
    top = airdock("--help").stdout
    assert "local" in top
    local = airdock("local", "--help").stdout
    for command in ("up", "down", "status", "env"):
        assert command in local
    assert "--token-ttl" in airdock("local", "up", "--help").stdout


def test_version() -> None:
    assert airdock("--version").stdout.strip() == f"airdock {__version__}"


def test_unknown_command_is_a_usage_error() -> None:
    result = airdock("frobnicate", check=False)
    assert result.returncode == 2
    assert "No such command" in result.stderr


def test_bad_port_is_one_line_and_changes_nothing(tmp_path: Path) -> None:
    result = airdock("local", "up", "--data-dir", str(tmp_path), "--gateway-port", "0", check=False)
    assert result.returncode == 1
    assert result.stderr.strip() == "airdock: error: invalid port 0: use a number from 1 to 65535"
    assert list(tmp_path.iterdir()) == []


def test_same_port_twice_is_refused(tmp_path: Path) -> None:
    result = airdock(
        "local",
        "up",
        "--data-dir",
        str(tmp_path),
        "--gateway-port",
        "6100",
        "--api-port",
        "6100",
        check=False,
    )
    assert result.returncode == 1
    assert "must differ" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_down_without_a_stack_is_a_no_op(tmp_path: Path) -> None:
    result = airdock("local", "down", "--data-dir", str(tmp_path))
    assert "not running" in result.stderr


def test_exit_codes_of_commands_reach_the_shell(tmp_path: Path) -> None:
    """`airdock local status` exits 1 when the stack is not running (a typer.Exit inside the command)."""
    result = airdock("local", "status", "--data-dir", str(tmp_path), check=False)
    assert result.returncode == 1
    assert "run `airdock local up`" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
