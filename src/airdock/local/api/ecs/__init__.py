"""The local stack's ECS API: backend (names, errors), clusters, task definitions, tasks, service."""

from airdock.local.api.ecs.backend import TARGET_PREFIX, EcsBackend, TaskLauncher
from airdock.local.api.ecs.service import OPERATIONS, ecs_service

__all__ = ["OPERATIONS", "TARGET_PREFIX", "EcsBackend", "TaskLauncher", "ecs_service"]
