"""Where and how ECS runs airdock's tasks: cluster, launch type, network, roles, logs."""

from __future__ import annotations

import re
from dataclasses import dataclass

from airdock.errors import ConfigError

__all__ = ["LAUNCH_TYPES", "EcsSettings"]

LAUNCH_TYPES = ("FARGATE", "EC2")
_ROLE = re.compile(r"arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]{1,512}")


@dataclass(frozen=True)
class EcsSettings:
    """The ECS side of a task; every field has an ``[airdock] ecs_*`` option of the same name.

    A capacity provider strategy (``("FARGATE_SPOT:1", ...)`` as ``provider[:weight[:base]]``)
    replaces the launch type, as in RunTask.
    """

    region: str
    cluster: str = "default"
    launch_type: str = "FARGATE"
    subnets: tuple[str, ...] = ()
    security_groups: tuple[str, ...] = ()
    assign_public_ip: bool = False
    execution_role_arn: str | None = None
    task_role_arn: str | None = None
    log_group: str = "/airdock/tasks"
    capacity_provider_strategy: tuple[str, ...] = ()
    keep_revisions: int = 5

    def __post_init__(self) -> None:
        if self.launch_type not in LAUNCH_TYPES:
            raise ConfigError(f"invalid ecs_launch_type {self.launch_type!r}: use FARGATE or EC2")
        for name in ("execution_role_arn", "task_role_arn"):
            value = getattr(self, name)
            if value is not None and not _ROLE.fullmatch(value):
                raise ConfigError(
                    f"invalid ecs_{name} {value!r}: expected arn:aws:iam::<account>:role/<name>"
                )
        if self.keep_revisions < 1:
            raise ConfigError(f"invalid ecs_keep_revisions {self.keep_revisions}: keep at least 1")
        for item in self.capacity_provider_strategy:
            parts = item.split(":")
            if not parts[0] or len(parts) > 3 or not all(p.isdigit() for p in parts[1:]):
                raise ConfigError(
                    f"invalid ecs_capacity_provider_strategy item {item!r}: use provider[:weight[:base]]"
                )
        if self.launch_type == "FARGATE" and not self.capacity_provider_strategy and not self.subnets:
            raise ConfigError(
                "ECS FARGATE tasks need subnets: set [airdock] ecs_subnets (comma-separated subnet ids) "
                "or pass ecs_overrides={'subnets': [...]}"
            )
        if self.fargate and self.execution_role_arn is None:
            raise ConfigError(
                "ECS FARGATE tasks that log to CloudWatch need a task execution role: set [airdock] "
                "ecs_execution_role_arn (a role with the AmazonECSTaskExecutionRolePolicy)"
            )

    @property
    def fargate(self) -> bool:
        if self.capacity_provider_strategy:
            return all(item.split(":")[0].startswith("FARGATE") for item in self.capacity_provider_strategy)
        return self.launch_type == "FARGATE"

    def run_task_placement(self) -> dict[str, object]:
        """RunTask's launch type or capacity provider strategy, and its network configuration."""
        out: dict[str, object] = {}
        if self.capacity_provider_strategy:
            strategy = []
            for item in self.capacity_provider_strategy:
                name, *numbers = item.split(":")
                entry: dict[str, object] = {"capacityProvider": name}
                if numbers:
                    entry["weight"] = int(numbers[0])
                if len(numbers) > 1:
                    entry["base"] = int(numbers[1])
                strategy.append(entry)
            out["capacityProviderStrategy"] = strategy
        else:
            out["launchType"] = self.launch_type
        if self.subnets:
            vpc: dict[str, object] = {
                "subnets": list(self.subnets),
                "assignPublicIp": "ENABLED" if self.assign_public_ip else "DISABLED",
            }
            if self.security_groups:
                vpc["securityGroups"] = list(self.security_groups)
            out["networkConfiguration"] = {"awsvpcConfiguration": vpc}
        return out
