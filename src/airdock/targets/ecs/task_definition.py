"""The task definition a container spec needs, and when an existing revision is the same one.

Pure: no AWS calls. The task definition holds what ECS must have registered — the image pinned to
its digest, entry point, working directory, user, cpu/memory, roles, the awslogs configuration and
the secrets' ARNs. What varies per run (command, environment, secret values resolved on the worker)
goes in RunTask's container overrides, so runs with different commands share one revision.

Two definitions are the same when their normalised forms are equal: what ECS adds at registration
is dropped (ARN, revision, status, timestamps, requiresAttributes, compatibilities), defaults are
filled (``essential``), empty values are dropped (ECS returns ``[]`` for lists it was not given),
and lists whose order means nothing are sorted.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from typing import Any

from airdock.targets.ecs.settings import EcsSettings
from airdock.targets.spec import MANAGED_TAG, ContainerSpec

__all__ = [
    "CONTAINER_NAME",
    "STREAM_PREFIX",
    "desired_definition",
    "family_for",
    "log_stream_for",
    "normalise",
    "same_definition",
]

CONTAINER_NAME = "main"
STREAM_PREFIX = "airdock"
MAX_FAMILY = 255
DEFAULT_CPU = 256
DEFAULT_MEMORY = 512
_NOT_FAMILY = re.compile(r"[^A-Za-z0-9_-]+")
_POST_REGISTRATION = frozenset(
    {
        "taskDefinitionArn",
        "revision",
        "status",
        "registeredAt",
        "registeredBy",
        "deregisteredAt",
        "deleteRequestedAt",
        "requiresAttributes",
        "compatibilities",
    }
)
_SORTED_BY_NAME = ("secrets", "environment")


def family_for(dag_id: str, task_id: str) -> str:
    """``airdock-<dag_id>-<task_id>`` within ECS's rules (≤ 255 of ``[A-Za-z0-9_-]``).

    Other characters become ``-``; a name cut to fit ends with a hash of the whole, so two long
    names that share a prefix stay apart.
    """
    whole = f"airdock-{dag_id}-{task_id}"
    name = _NOT_FAMILY.sub("-", whole)
    if len(name) <= MAX_FAMILY and name == whole:
        return name
    suffix = hashlib.sha256(whole.encode()).hexdigest()[:10]
    return f"{name[: MAX_FAMILY - len(suffix) - 1]}-{suffix}"


def log_stream_for(task_arn: str) -> str:
    """The awslogs stream ECS writes the container's output to: ``<prefix>/<container>/<task id>``."""
    return f"{STREAM_PREFIX}/{CONTAINER_NAME}/{task_arn.rsplit('/', 1)[-1]}"


def desired_definition(spec: ContainerSpec, image: str, family: str, settings: EcsSettings) -> dict[str, Any]:
    """RegisterTaskDefinition's arguments (without tags) for ``spec`` running ``image`` (pinned)."""
    container: dict[str, Any] = {
        "name": CONTAINER_NAME,
        "image": image,
        "essential": True,
        "logConfiguration": {
            "logDriver": "awslogs",
            "options": {
                "awslogs-group": settings.log_group,
                "awslogs-region": settings.region,
                "awslogs-stream-prefix": STREAM_PREFIX,
                "awslogs-create-group": "true",
            },
        },
    }
    if spec.entrypoint is not None:
        container["entryPoint"] = list(spec.entrypoint)
    if spec.working_dir:
        container["workingDirectory"] = spec.working_dir
    if spec.user:
        container["user"] = spec.user
    if spec.secret_arns:
        container["secrets"] = [
            {"name": name, "valueFrom": arn} for name, arn in sorted(spec.secret_arns.items())
        ]
    definition: dict[str, Any] = {
        "family": family,
        "containerDefinitions": [container],
        "networkMode": "awsvpc" if settings.fargate or settings.subnets else "bridge",
        "cpu": str(spec.cpu or DEFAULT_CPU),
        "memory": str(spec.memory or DEFAULT_MEMORY),
    }
    if settings.fargate:
        definition["requiresCompatibilities"] = ["FARGATE"]
    if settings.execution_role_arn:
        definition["executionRoleArn"] = settings.execution_role_arn
    if settings.task_role_arn:
        definition["taskRoleArn"] = settings.task_role_arn
    return definition


def registration_tags() -> list[dict[str, str]]:
    """Tags on every revision airdock registers: only those are ever deregistered by airdock."""
    return [{"key": MANAGED_TAG, "value": "true"}]


def normalise(definition: Mapping[str, Any]) -> dict[str, Any]:
    """A comparable form of a task definition (a RegisterTaskDefinition request or a described one)."""
    out = {k: v for k, v in definition.items() if k not in _POST_REGISTRATION}
    out["containerDefinitions"] = sorted(
        (_container(c) for c in definition.get("containerDefinitions") or []), key=lambda c: str(c["name"])
    )
    for key in ("cpu", "memory"):
        if out.get(key) is not None:
            out[key] = str(out[key])
    if out.get("requiresCompatibilities"):
        out["requiresCompatibilities"] = sorted(out["requiresCompatibilities"])
    cleaned = _drop_empty(out)
    assert isinstance(cleaned, dict)
    return cleaned


def same_definition(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    return normalise(a) == normalise(b)


def _container(container: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(container)
    out.setdefault("essential", True)
    if out.get("cpu") == 0:
        del out["cpu"]  # ECS reports an unset container cpu as 0
    for key in _SORTED_BY_NAME:
        if out.get(key):
            out[key] = sorted(out[key], key=lambda item: str(item.get("name")))
    return out


def _drop_empty(value: Any) -> Any:
    if isinstance(value, Mapping):
        items = {k: _drop_empty(v) for k, v in value.items()}
        return {k: v for k, v in items.items() if v not in (None, "", [], {})}
    if isinstance(value, list):
        return [_drop_empty(v) for v in value]
    return value
