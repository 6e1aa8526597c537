"""Why an ECS task did not succeed, in one line a person can act on.

ECS reports a stopped task with a ``stopCode``, a ``stoppedReason`` and, per container, an
``exitCode`` and a ``reason``. Its wording is for ECS engineers (``CannotPullContainerError:
Error response from daemon: ...``); these functions name the thing to fix: the image, the
execution role and its ECR permissions, the memory setting, the cluster, the subnets.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from airdock.targets.ecs.settings import EcsSettings

__all__ = ["explain_run_task_error", "explain_stopped"]

_PULL_ACTIONS = (
    "ecr:GetAuthorizationToken, ecr:BatchCheckLayerAvailability, ecr:GetDownloadUrlForLayer, "
    "ecr:BatchGetImage"
)


def _role(settings: EcsSettings) -> str:
    return settings.execution_role_arn or "(no ecs_execution_role_arn set)"


def _detail(text: str, limit: int = 300) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def explain_stopped(task: Mapping[str, Any], image: str, settings: EcsSettings) -> str | None:
    """None when the task's essential container exited 0; else the one line saying why not."""
    containers = task.get("containers") or [{}]
    container = containers[0]
    exit_code = container.get("exitCode")
    stop_code = str(task.get("stopCode") or "")
    reason = str(task.get("stoppedReason") or "")
    container_reason = str(container.get("reason") or "")
    if exit_code == 0 and stop_code == "EssentialContainerExited":
        return None
    if "CannotPullContainerError" in reason or "CannotPullContainerError" in container_reason:
        detail = _detail(reason if "CannotPull" in reason else container_reason)
        if "not found" in detail or "manifest unknown" in detail or "does not exist" in detail:
            return f"ECS could not pull {image}: it does not exist; push it or fix the reference ({detail})"
        return (
            f"ECS could not pull {image}: check that the task execution role {_role(settings)} may pull "
            f"from its ECR repository ({_PULL_ACTIONS}) and that the subnets reach ECR ({detail})"
        )
    if "ResourceInitializationError" in reason:
        return (
            f"ECS could not prepare the task (secrets, the log group {settings.log_group} or registry "
            f"auth, all through the execution role {_role(settings)}): {_detail(reason)}"
        )
    if "OutOfMemory" in container_reason or "OutOfMemory" in reason:
        memory = task.get("memory")
        return (
            f"the container ran out of memory (task memory {memory} MiB): raise memory, or make the job "
            "use less"
        )
    if stop_code == "UserInitiated":
        return f"the ECS task was stopped: {_detail(reason) or 'by a StopTask call'}"
    if stop_code in (
        "TaskFailedToStart",
        "SpotInterruption",
        "TerminationNotice",
        "ServiceSchedulerInitiated",
    ):
        return f"the ECS task ended before its container finished ({stop_code}): {_detail(reason)}"
    if exit_code is None:
        return f"the ECS task stopped without an exit code ({stop_code or 'no stop code'}): {_detail(reason)}"
    return f"the container exited with code {exit_code}"


def explain_run_task_error(code: str, message: str, settings: EcsSettings) -> str:
    """One line for a RunTask (or task-definition) call that ECS refused."""
    text = _detail(message)
    lowered = message.lower()
    if code == "ClusterNotFoundException":
        return (
            f"ECS cluster {settings.cluster!r} does not exist in {settings.region}: create it or set "
            "[airdock] ecs_cluster"
        )
    if code == "AccessDeniedException" and "passrole" in lowered:
        return (
            "the worker's AWS identity may not pass the task's roles to ECS: allow iam:PassRole on "
            f"{_role(settings)} and {settings.task_role_arn or 'the task role'} ({text})"
        )
    if code == "AccessDeniedException":
        return (
            f"the worker's AWS identity may not run ECS tasks: see `airdock iam-policy ecs-runner` ({text})"
        )
    if "subnet" in lowered:
        return (
            f"ECS refused the task's network: check [airdock] ecs_subnets {list(settings.subnets)} ({text})"
        )
    if "security group" in lowered or "securitygroup" in lowered:
        return (
            f"ECS refused the task's security groups {list(settings.security_groups)}: check [airdock] "
            f"ecs_security_groups ({text})"
        )
    if "role" in lowered:
        return f"ECS refused a role of the task: check ecs_execution_role_arn / ecs_task_role_arn ({text})"
    return f"ECS refused the task ({code}): {text}"
