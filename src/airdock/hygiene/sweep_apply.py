"""The orphan sweep, applied: stop and remove the plan's containers, checked again right before.

Containers are touched only when they carry ``airdock.managed=true`` on the engine's current view;
one planned as stopped (the age rule) that runs by now is kept.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from airdock import metrics
from airdock.hygiene.inventory import read_containers
from airdock.hygiene.model import (
    MANAGED_LABEL,
    ContainerDecision,
    SweepPlan,
    SweepPolicy,
    TaskKey,
    TaskStatus,
)
from airdock.hygiene.sweep_plan import plan_sweep

__all__ = ["apply_sweep", "collect_sweep"]

LOG = logging.getLogger("airdock.hygiene")


def collect_sweep(
    client: Any, statuses: Mapping[TaskKey, TaskStatus] | None, policy: SweepPolicy, now: float
) -> SweepPlan:
    """Plan which labelled containers are orphans (``statuses`` None: Airflow was not asked)."""
    return plan_sweep(read_containers(client), statuses, policy, now)


def apply_sweep(
    client: Any, plan: SweepPlan, grace_seconds: int = 10, log: logging.Logger | None = None
) -> list[ContainerDecision]:
    """Stop (``grace_seconds`` before SIGKILL) and remove the plan's REMOVE containers; returns those removed.

    The label is checked again on the engine's current view before anything is touched; a
    container planned as stopped that runs now is kept (only Airflow's word stops a running one);
    a container already gone is skipped, a refusal is logged as a warning and skipped.
    """
    import docker.errors

    logger = log or LOG
    removed: list[ContainerDecision] = []
    for decision in plan.removals:
        container_id = decision.container.id
        try:
            details = client.api.inspect_container(container_id)
            labels = (details.get("Config") or {}).get("Labels") or {}
            if labels.get(MANAGED_LABEL) != "true":
                logger.warning("sweep: container %s is not airdock's: left alone", container_id[:12])
                continue
            running = bool((details.get("State") or {}).get("Running"))
            if running and decision.container.stopped:
                # Planned as a stopped container (the age rule), started since: not what was decided on.
                logger.info("sweep: kept container %s: started since the plan was made", container_id[:12])
                continue
            if running:
                client.api.stop(container_id, timeout=grace_seconds)
            client.api.remove_container(container_id, v=True, force=False)
        except docker.errors.NotFound:
            continue  # gone already (its task's own cleanup, or another sweep)
        except docker.errors.APIError as exc:
            logger.warning(
                "sweep: failed to remove container %s: %s", container_id[:12], exc.explanation or exc
            )
            continue
        removed.append(decision)
        logger.info(
            "sweep: removed container %s (image %s): %s",
            container_id[:12],
            decision.container.image_id[:19],
            decision.reason,
        )
    metrics.emit(metrics.SWEEP_CONTAINERS_REMOVED, len(removed))
    return removed
