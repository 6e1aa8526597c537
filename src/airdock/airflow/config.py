"""airdock's ``[airdock]`` options in Airflow's configuration (``AIRFLOW__AIRDOCK__<KEY>`` works too)."""

from __future__ import annotations


def option(key: str) -> str | None:
    """The value of ``[airdock] <key>``, or None when it is unset or empty."""
    from airflow.configuration import conf

    value = conf.get("airdock", key, fallback=None)
    return str(value) if value not in (None, "") else None
