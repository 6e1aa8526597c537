"""airdock's ``[airdock]`` options in Airflow's configuration (``AIRFLOW__AIRDOCK__<KEY>`` works too)."""

from __future__ import annotations


def option(key: str) -> str | None:
    """The value of ``[airdock] <key>``, or None when it is unset or empty.

    Read through the task SDK's public ``airflow.sdk.conf`` (what task code may use on a worker).
    """
    from airflow.sdk import conf

    value = conf.get("airdock", key, fallback=None)
    return str(value) if value not in (None, "") else None


def cli_option(key: str) -> str | None:
    """``option(key)`` for the ``airdock`` CLI: None where Airflow is not installed.

    Importing Airflow takes seconds, so the CLI reads what it can settle alone: the environment
    variable ``AIRFLOW__AIRDOCK__<KEY>`` (which wins over every other source in Airflow too), or
    the option set nowhere (no ``_CMD``/``_SECRET`` variable, and no ``[airdock]`` line for it in
    Airflow's config file) — which reads as None, and the CLI applies the option's default itself.
    Anything else is read by Airflow.

    Importing Airflow installs its logging on the root logger (to stdout); the CLI's stdout is its
    output (tables, JSON), so the root logger is put back as it was.
    """
    import logging

    settled, value = _settled_without_airflow(key)
    if settled:
        return value
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        return option(key)
    except ImportError:
        return None
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)


def _settled_without_airflow(key: str) -> tuple[bool, str | None]:
    import configparser
    import os
    from pathlib import Path

    name = f"AIRFLOW__AIRDOCK__{key.upper()}"
    if name in os.environ:
        return True, os.environ[name] or None
    if f"{name}_CMD" in os.environ or f"{name}_SECRET" in os.environ:
        return False, None
    home = Path(os.environ.get("AIRFLOW_HOME") or Path.home() / "airflow").expanduser()
    path = Path(os.environ.get("AIRFLOW_CONFIG") or home / "airflow.cfg").expanduser()
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    try:
        parser.read(path, encoding="utf-8")
    except (OSError, configparser.Error):
        return False, None
    if not parser.has_section("airdock"):
        return True, None
    named = {option.lower() for option in parser.options("airdock")}
    return not named & {key, f"{key}_cmd", f"{key}_secret"}, None


def log_lines_per_record() -> int:
    """``[airdock] log_lines_per_record``: how many lines of a container's output one task-log
    record may carry (default ``DEFAULT_LINES_PER_RECORD``; 1: a record per line). A bad value is
    a ``ConfigError`` naming the option."""
    from airdock.engine.logs import DEFAULT_LINES_PER_RECORD
    from airdock.errors import ConfigError

    value = option("log_lines_per_record")
    if value is None:
        return DEFAULT_LINES_PER_RECORD
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 1:
        raise ConfigError(
            f"[airdock] log_lines_per_record = {value!r}: use a whole number of lines, 1 or more "
            "(1: one log record per line)"
        )
    return number
