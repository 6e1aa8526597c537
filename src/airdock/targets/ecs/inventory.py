"""What airdock has on an ECS cluster now, for the Container hosts page: a small bounded snapshot.

``snapshot`` asks ECS itself (ListTasks + DescribeTasks with tags: the running tasks airdock
started, by their ``airdock.managed`` tag; ListTaskDefinitions: the ACTIVE revisions of airdock's
``airdock-`` families), so it is true as of its ``at`` whoever started the tasks. At most
``MAX_TASKS`` running tasks and ``MAX_FAMILIES`` families are listed; the counts say when there
were more. A few API calls: callers take one at most once a minute per cluster, and in between
``amend`` a snapshot with what they know without asking (a task they started, a task that ended).
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

from airdock.targets.spec import MANAGED_TAG

__all__ = [
    "FAMILY_PREFIX",
    "MAX_FAMILIES",
    "MAX_TASKS",
    "amend",
    "as_of",
    "snapshot",
    "snapshot_key",
    "task_entry",
]

FAMILY_PREFIX = "airdock-"
MAX_TASKS = 20
MAX_FAMILIES = 20
MAX_REVISION_ARNS = 300  # ListTaskDefinitions results read (three pages)


def snapshot_key(region: str, cluster: str) -> str:
    return f"{region}/{cluster}"


def _epoch(value: Any) -> float | None:
    if isinstance(value, datetime):
        return value.timestamp()
    if isinstance(value, (int, float)):
        return float(value)
    return None


def task_entry(
    task_arn: str, definition: str, tags: dict[str, str], status: str, started_at: float | None
) -> dict[str, Any]:
    """One running task as a snapshot lists it."""
    return {
        "task": task_arn.rsplit("/", 1)[-1],
        "definition": definition.rsplit("/", 1)[-1],
        "dag_id": tags.get("airdock.dag_id", ""),
        "task_id": tags.get("airdock.task_id", ""),
        "status": status,
        "started_at": started_at,
    }


def _running(ecs: Any, cluster: str) -> tuple[list[dict[str, Any]], int]:
    """airdock's running (and pending) tasks on ``cluster``: the first ``MAX_TASKS``, and how many."""
    arns: list[str] = []
    for page in ecs.get_paginator("list_tasks").paginate(cluster=cluster, desiredStatus="RUNNING"):
        arns.extend(page.get("taskArns") or [])
    tasks: list[dict[str, Any]] = []
    for start in range(0, len(arns), 100):
        described = ecs.describe_tasks(cluster=cluster, tasks=arns[start : start + 100], include=["TAGS"])
        tasks.extend(described.get("tasks") or [])
    found = []
    for task in tasks:
        tags = {tag.get("key"): tag.get("value") for tag in task.get("tags") or []}
        if tags.get(MANAGED_TAG) != "true":
            continue
        started_at = _epoch(task.get("startedAt")) or _epoch(task.get("createdAt"))
        found.append(
            task_entry(
                str(task["taskArn"]),
                str(task.get("taskDefinitionArn", "")),
                tags,
                str(task.get("lastStatus", "?")),
                started_at,
            )
        )
    found.sort(key=lambda entry: entry["started_at"] or 0.0)
    return found[:MAX_TASKS], len(found)


def _families(ecs: Any) -> tuple[list[dict[str, Any]], int]:
    """airdock's task-definition families with their ACTIVE revisions, newest first."""
    revisions: dict[str, list[int]] = {}
    read = 0
    paginator = ecs.get_paginator("list_task_definitions")
    for page in paginator.paginate(familyPrefix=FAMILY_PREFIX, status="ACTIVE", sort="DESC"):
        for arn in page.get("taskDefinitionArns") or []:
            family, _, revision = arn.rsplit("/", 1)[-1].rpartition(":")
            revisions.setdefault(family, []).append(int(revision))
        read += len(page.get("taskDefinitionArns") or [])
        if read >= MAX_REVISION_ARNS:
            break
    families = [
        {"family": family, "revisions": sorted(numbers, reverse=True)[:10]}
        for family, numbers in sorted(revisions.items())
    ]
    return families[:MAX_FAMILIES], len(families)


def snapshot(ecs: Any, cluster: str, *, now: float | None = None) -> dict[str, Any]:
    """airdock's running tasks on ``cluster`` and its task-definition families (``ecs``: a boto3
    ECS client); JSON-ready, a few KB at most."""
    region = str(ecs.meta.region_name or "")
    running, running_count = _running(ecs, cluster)
    families, family_count = _families(ecs)
    return {
        "key": snapshot_key(region, cluster),
        "cluster": cluster,
        "region": region,
        "at": time.time() if now is None else now,
        "running": running,
        "running_count": running_count,
        "task_definitions": families,
        "family_count": family_count,
    }


def amend(
    snap: dict[str, Any], now: float, *, started: dict[str, Any] | None = None, ended: str | None = None
) -> dict[str, Any]:
    """``snap`` with a task this host just started (a ``task_entry``) added, or one that just ended
    (its task id) taken off, without asking ECS; ``changed_at`` says when."""
    running = [task for task in snap.get("running") or [] if task.get("task") != ended]
    count = int(snap.get("running_count") or 0) - (len(snap.get("running") or []) - len(running))
    if started is not None and all(task.get("task") != started["task"] for task in running):
        running.append(started)
        count += 1
    count = max(count, len(running))
    return {**snap, "running": running[-MAX_TASKS:], "running_count": count, "changed_at": now}


def as_of(snap: dict[str, Any]) -> float:
    """When ``snap`` was last known true (taken, or amended)."""
    return max(float(snap.get("at") or 0), float(snap.get("changed_at") or 0))
