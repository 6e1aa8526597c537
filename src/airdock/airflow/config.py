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

    Importing Airflow installs its logging on the root logger (to stdout); the CLI's stdout is its
    output (tables, JSON), so the root logger is put back as it was.
    """
    import logging

    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        return option(key)
    except ImportError:
        return None
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
