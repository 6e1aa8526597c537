"""The orphan sweep, planned: containers + what Airflow says + policy + clock → a plan with reasons.

Pure, like :mod:`airdock.hygiene.gc_plan`: no I/O, ``now`` is an argument.

Orphan sweep (``plan_sweep``): a container without ``airdock.managed=true`` is never removed.
A labelled one is removed when Airflow says its task instance is gone or finished. A *running*
container (any state but exited, created and dead) is removed only then: a job is never killed
because of its age. When Airflow cannot be asked (or the labels do not name a task instance), a
running container is kept ("running; Airflow not asked") and a stopped one is removed once older
than ``max_container_age`` (from ``airdock.started_at``, else the container's creation time).
Airflow's states: finished (success, failed, skipped, upstream_failed, removed) → remove;
active (running, queued, scheduled, restarting, deferred, up_for_reschedule, up_for_retry) →
keep; anything else (no state, shutdown, a state added later) → remove a stopped container, keep
a running one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

from airdock.hygiene.model import (
    ACTIVE_TASK_STATES,
    FINISHED_TASK_STATES,
    LABEL_DAG_ID,
    LABEL_MAP_INDEX,
    LABEL_RUN_ID,
    LABEL_STARTED_AT,
    LABEL_TASK_ID,
    ContainerDecision,
    ContainerInfo,
    SweepPlan,
    SweepPolicy,
    TaskKey,
    TaskStatus,
    Verdict,
)
from airdock.hygiene.units import format_age

__all__ = ["plan_sweep", "task_key"]


def task_key(container: ContainerInfo) -> TaskKey | None:
    """The task instance named by the container's ``airdock.*`` labels; None when they are incomplete.

    A missing map index means an unmapped task (-1); a malformed one makes the labels incomplete.
    """
    labels = container.labels
    dag_id = labels.get(LABEL_DAG_ID)
    run_id = labels.get(LABEL_RUN_ID)
    task_id = labels.get(LABEL_TASK_ID)
    if not dag_id or not run_id or not task_id:
        return None
    raw_map_index = labels.get(LABEL_MAP_INDEX)
    map_index = -1
    if raw_map_index:
        try:
            map_index = int(raw_map_index)
        except ValueError:
            return None
    return TaskKey(dag_id=dag_id, run_id=run_id, task_id=task_id, map_index=map_index)


def _started_at(container: ContainerInfo) -> float:
    raw = container.labels.get(LABEL_STARTED_AT)
    if raw:
        try:
            parsed = datetime.fromisoformat(raw)
        except ValueError:
            return container.created
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        return parsed.timestamp()
    return container.created


def _without_airflow(
    container: ContainerInfo, policy: SweepPolicy, now: float, why: str
) -> ContainerDecision:
    """The age rule, for stopped containers only: a running one may be a job that runs for days."""
    if not container.stopped:
        return ContainerDecision(container, Verdict.KEEP, f"{container.state or 'running'}; {why}")
    limit = format_age(policy.max_container_age_seconds)
    if now - _started_at(container) > policy.max_container_age_seconds:
        return ContainerDecision(container, Verdict.REMOVE, f"older than {limit} ({why})")
    return ContainerDecision(container, Verdict.KEEP, f"younger than {limit} ({why})")


def _by_status(container: ContainerInfo, status: TaskStatus | None) -> ContainerDecision:
    if status is None:
        return ContainerDecision(container, Verdict.REMOVE, "task instance not found")
    state = status.state
    if state in FINISHED_TASK_STATES:
        return ContainerDecision(container, Verdict.REMOVE, f"task finished ({state})")
    if state in ACTIVE_TASK_STATES:
        return ContainerDecision(container, Verdict.KEEP, f"task {state}")
    what = "no state" if state is None else state
    if container.stopped:
        return ContainerDecision(container, Verdict.REMOVE, f"task not running ({what})")
    # Neither finished nor gone: a running container is not killed on a guess.
    return ContainerDecision(container, Verdict.KEEP, f"{container.state}; task not finished ({what})")


def plan_sweep(
    containers: Sequence[ContainerInfo],
    statuses: Mapping[TaskKey, TaskStatus] | None,
    policy: SweepPolicy,
    now: float,
) -> SweepPlan:
    """Decide, for every container, whether it is an orphan of airdock's and why.

    ``statuses`` is what Airflow says of the task instances named by the labels (None when Airflow
    cannot be asked); a key missing from it means Airflow does not know that task instance.
    Decisions keep the order of ``containers``.
    """
    decisions: list[ContainerDecision] = []
    for container in containers:
        if not container.managed:
            decisions.append(ContainerDecision(container, Verdict.KEEP, "not airdock's"))
            continue
        key = task_key(container)
        if statuses is None:
            decisions.append(_without_airflow(container, policy, now, "Airflow not asked"))
        elif key is None:
            decisions.append(_without_airflow(container, policy, now, "task labels incomplete"))
        else:
            decisions.append(_by_status(container, statuses.get(key)))
    return SweepPlan(decisions=tuple(decisions))
