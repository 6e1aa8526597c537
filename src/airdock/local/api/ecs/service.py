"""The ECS service of the local stack: its operations and how a request is served.

Errors carry ECS's codes (``ClientException``, ``InvalidParameterException``,
``ClusterNotFoundException``, ...), so botocore raises the exceptions its ECS client knows. Every
input is checked before any state changes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from airdock.local.api.ecs.backend import TARGET_PREFIX, EcsBackend
from airdock.local.api.ecs.clusters import (
    create_cluster,
    delete_cluster,
    describe_clusters,
    ensure_default_cluster,
    list_clusters,
)
from airdock.local.api.ecs.tagging import list_tags_for_resource, tag_resource, untag_resource
from airdock.local.api.ecs.task_definitions import (
    delete_task_definitions,
    deregister_task_definition,
    describe_task_definition,
    list_task_definition_families,
    list_task_definitions,
    register_task_definition,
)
from airdock.local.api.ecs.tasks import describe_tasks, list_tasks, run_task, stop_task
from airdock.local.api.params import JsonObject, Params
from airdock.local.api.protocol import JsonService

__all__ = ["OPERATIONS", "ecs_service"]

log = logging.getLogger("airdock.local.api.ecs")

Handler = Callable[[EcsBackend, Params], JsonObject]

OPERATIONS: dict[str, Handler] = {
    "CreateCluster": create_cluster,
    "DescribeClusters": describe_clusters,
    "ListClusters": list_clusters,
    "DeleteCluster": delete_cluster,
    "RegisterTaskDefinition": register_task_definition,
    "DescribeTaskDefinition": describe_task_definition,
    "ListTaskDefinitions": list_task_definitions,
    "ListTaskDefinitionFamilies": list_task_definition_families,
    "DeregisterTaskDefinition": deregister_task_definition,
    "DeleteTaskDefinitions": delete_task_definitions,
    "RunTask": run_task,
    "DescribeTasks": describe_tasks,
    "ListTasks": list_tasks,
    "StopTask": stop_task,
    "TagResource": tag_resource,
    "UntagResource": untag_resource,
    "ListTagsForResource": list_tags_for_resource,
}


def ecs_service(backend: EcsBackend) -> JsonService:
    """The ECS control plane as a JSON 1.1 service of the local stack's API app."""
    ensure_default_cluster(backend)
    return JsonService(
        name="ecs",
        target_prefix=TARGET_PREFIX,
        operations=frozenset(OPERATIONS),
        serve=lambda op, data: OPERATIONS[op](backend, Params(data)),
    )
