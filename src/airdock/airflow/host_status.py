"""Airflow → the "Container hosts" page's data: each worker host's record, published by its tasks.

A task notes what it did on the host (a pull, a GC run, a sweep) in the host's history
(``airdock.hosts``), then — at most once a minute, and always after a GC or a sweep — publishes
the host's record as the Airflow Variable ``airdock.host.<hostname>`` through the Task SDK (a
worker has no metadata DB; tasks may set Variables). The api-server's page
(``airdock.airflow.hosts_page``) reads those. Publishing never fails a task: a problem is one
warning line.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from airdock import hosts

__all__ = ["VARIABLE_PREFIX", "note", "publish"]

VARIABLE_PREFIX = "airdock.host."


def _state_dir() -> Path:
    from airdock.airflow.hygiene import usage_store

    return Path(usage_store().path).parent


def note(kind: str, entry: dict[str, Any]) -> None:
    """Add ``entry`` to this host's history of ``kind`` (``pulls``, ``gc``, ``sweeps``)."""
    hosts.record_event(_state_dir(), kind, {"at": time.time(), **entry})


def publish(client: Any, log: Any, *, force: bool = False) -> None:
    """Publish this host's record (``client``: a docker ``DockerClient`` of the host's engine) when
    due, or now with ``force`` (after a GC or a sweep)."""
    try:
        state_dir = _state_dir()
        if not hosts.due(state_dir, time.time(), force=force):
            return
        from airflow.sdk import Variable
        from airflow.utils.net import get_hostname

        from airdock.airflow.credentials import token_cache
        from airdock.airflow.hygiene import gc_policy

        host = get_hostname()
        record = hosts.build_record(
            client,
            host,
            token_dir=token_cache().directory,
            state_dir=state_dir,
            budget_bytes=gc_policy().max_image_bytes,
        )
        Variable.set(
            f"{VARIABLE_PREFIX}{host}",
            json.dumps(record, separators=(",", ":")),
            description="airdock: this worker host's status, for the Container hosts page",
        )
    except Exception as exc:  # the page's data is information: it never fails the task
        log.warning("could not publish this host's status for the Container hosts page: %s", exc)
