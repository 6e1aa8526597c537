"""Airflow → the "Container hosts" page's data: each worker host's record, published by its tasks.

A task notes what it did on the host (a pull, a GC run, a sweep) in the host's history
(``airdock.hosts``); an ECS task, when it starts and ends, updates the host's snapshot of its
cluster (``note_ecs``: airdock's running tasks and task-definition families, asked of ECS at most
once a minute per cluster, amended with the task in between). Then — at most once a minute, and
always after a GC, a sweep or an ECS task's start or end — the task publishes
the host's record as the Airflow Variable ``airdock.host.<hostname>`` through the Task SDK (a
worker has no metadata DB; tasks may set Variables). The api-server's page
(``airdock.airflow.hosts_page``) reads those. Publishing never fails a task: a problem is one
warning line.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from airdock import hosts

__all__ = ["ECS_SNAPSHOT_EVERY_S", "VARIABLE_PREFIX", "note", "note_ecs", "publish"]

VARIABLE_PREFIX = "airdock.host."
ECS_SNAPSHOT_EVERY_S = 60.0


def _state_dir() -> Path:
    from airdock.airflow.hygiene import state_dir

    return state_dir()


def note(kind: str, entry: dict[str, Any]) -> None:
    """Add ``entry`` to this host's history of ``kind`` (``pulls``, ``gc``, ``sweeps``)."""
    hosts.record_event(_state_dir(), kind, {"at": time.time(), **entry})


def note_ecs(
    ecs: Any,
    cluster: str,
    engine: Callable[[], Any],
    log: Any,
    *,
    started: dict[str, Any] | None = None,
    ended_task: str | None = None,
) -> None:
    """Bring this host's snapshot of ``cluster`` up to date and publish it: a new snapshot from ECS
    (``ecs``: a boto3 ECS client) when the last is a minute old or more, else the last one amended
    with what the caller knows — ``started`` (an ``inventory.task_entry`` of a task it started) or
    ``ended_task`` (the id of one that ended). ``engine()``: the host's ``DockerClient``, or None;
    called only to publish.
    Never fails the task: a problem is one warning line."""
    from airdock.targets.ecs import inventory

    try:
        state_dir = _state_dir()
        now = time.time()
        key = inventory.snapshot_key(str(ecs.meta.region_name or ""), cluster)
        last = next((s for s in reversed(hosts.history(state_dir, "ecs")) if s.get("key") == key), None)
        if last is not None and now - float(last.get("at") or 0) < ECS_SNAPSHOT_EVERY_S:
            if started is None and ended_task is None:
                return
            snap = inventory.amend(last, now, started=started, ended=ended_task)
        else:
            snap = inventory.snapshot(ecs, cluster, now=now)
        hosts.record_event(state_dir, "ecs", snap, replace="key")
    except Exception as exc:  # the page's data is information: it never fails the task
        log.warning("could not take a snapshot of ECS cluster %s for the hosts page: %s", cluster, exc)
        return
    publish(engine(), log, force=True)


def publish(client: Any, log: Any, *, force: bool = False) -> None:
    """Publish this host's record (``client``: a docker ``DockerClient`` of the host's engine, or
    None on a host without one) when due, or now with ``force`` (after a GC, a sweep or an ECS
    snapshot)."""
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
