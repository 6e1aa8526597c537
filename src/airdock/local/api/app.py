"""The local stack's control plane, assembled: ECR, ECS and CloudWatch Logs on one JSON 1.1 app."""

from __future__ import annotations

from starlette.applications import Starlette

from airdock.local.api.ecr import ecr_service
from airdock.local.api.ecs import EcsBackend, TaskLauncher, ecs_service
from airdock.local.api.logs import logs_service
from airdock.local.api.protocol import create_api_app
from airdock.local.api.rehearsal import Rehearsal
from airdock.local.ecs_store import EcsStore
from airdock.local.logstore import LogStore
from airdock.local.registry import RegistryStorage
from airdock.local.settings import StackSettings
from airdock.local.store import Store

__all__ = ["create_stack_api"]


def create_stack_api(
    settings: StackSettings,
    store: Store,
    storage: RegistryStorage,
    ecs_store: EcsStore,
    log_store: LogStore,
    launcher: TaskLauncher,
    rehearsal: Rehearsal | None = None,
) -> Starlette:
    """Every service of the stack on ``settings.api_port``, and the status route the CLI reads.

    ``rehearsal``: the faults armed through ``POST /_airdock/rehearsal`` (shared with the gateway,
    which plays the registry's); a fresh one by default."""
    ecs = EcsBackend(settings=settings, store=ecs_store, launcher=launcher, bump=store.bump)
    rehearsal = rehearsal if rehearsal is not None else Rehearsal()

    def status() -> dict[str, object]:
        return {
            "account_id": settings.account_id,
            "region": settings.region,
            "token_ttl_seconds": settings.token_ttl_seconds,
            "counters": store.counters(),
            "ecs_tasks": ecs_store.tasks_by_status(),
            "log_events": log_store.event_count(),
            "rehearsal": rehearsal.describe(),
        }

    services = [
        ecr_service(settings, store, storage, rehearsal),
        ecs_service(ecs),
        logs_service(log_store, account_id=settings.account_id, region=settings.region),
    ]
    return create_api_app(services, status, rehearsal)
