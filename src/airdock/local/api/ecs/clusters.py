"""ECS clusters: CreateCluster, DescribeClusters, ListClusters, DeleteCluster (``default`` always exists)."""

from __future__ import annotations

from airdock.local.api.ecs.backend import (
    DEFAULT_CLUSTER,
    EcsBackend,
    check_name,
    cluster_name,
    cluster_not_found,
    invalid_parameter,
)
from airdock.local.api.errors import ApiError
from airdock.local.api.pagination import paginate
from airdock.local.api.params import JsonObject, Params
from airdock.local.ecs_store import JsonDoc

_ACTIVE_TASK_STATES = ("PROVISIONING", "PENDING", "ACTIVATING", "RUNNING", "DEACTIVATING", "STOPPING")


def tags_of(params: Params, name: str = "tags") -> list[JsonDoc]:
    """ECS's ``[{"key": ..., "value": ...}]`` tags, checked (at most 50; keys 1–128, values ≤ 256)."""
    tags = params.structs(name, max_len=50) or []
    out = []
    for tag in tags:
        key = tag.required_string("key", min_len=1, max_len=128)
        value = tag.string("value", max_len=256) or ""
        out.append({"key": key, "value": value})
    return out


def new_cluster(backend: EcsBackend, name: str, tags: list[JsonDoc] | None = None) -> JsonDoc:
    return {
        "clusterArn": backend.cluster_arn(name),
        "clusterName": name,
        "status": "ACTIVE",
        "registeredContainerInstancesCount": 0,
        "runningTasksCount": 0,
        "pendingTasksCount": 0,
        "activeServicesCount": 0,
        "statistics": [],
        "tags": tags or [],
        "settings": [{"name": "containerInsights", "value": "disabled"}],
        "capacityProviders": ["FARGATE", "FARGATE_SPOT"],
        "defaultCapacityProviderStrategy": [],
    }


def ensure_default_cluster(backend: EcsBackend) -> None:
    """ECS accounts have a ``default`` cluster to run tasks in without creating one."""
    current = backend.store.cluster(DEFAULT_CLUSTER)
    if current is None or current["status"] != "ACTIVE":
        backend.store.put_cluster(DEFAULT_CLUSTER, new_cluster(backend, DEFAULT_CLUSTER))


def active_cluster(backend: EcsBackend, reference: str | None) -> JsonDoc:
    """The ACTIVE cluster a request names; ClusterNotFoundException otherwise."""
    name = cluster_name(backend, reference)
    doc = backend.store.cluster(name)
    if doc is None or doc["status"] != "ACTIVE":
        raise cluster_not_found()
    return doc


def with_counts(backend: EcsBackend, doc: JsonDoc) -> JsonDoc:
    arn = doc["clusterArn"]
    doc = dict(doc)
    doc["runningTasksCount"] = backend.store.count_tasks(arn, ("RUNNING",))
    doc["pendingTasksCount"] = backend.store.count_tasks(arn, ("PROVISIONING", "PENDING", "ACTIVATING"))
    return doc


def create_cluster(backend: EcsBackend, params: Params) -> JsonObject:
    name = check_name(params.string("clusterName") or DEFAULT_CLUSTER, "Cluster name")
    tags = tags_of(params)
    current = backend.store.cluster(name)
    if current is not None and current["status"] == "ACTIVE":
        return {"cluster": with_counts(backend, current)}  # as ECS: creating an existing cluster returns it
    doc = new_cluster(backend, name, tags)
    backend.store.put_cluster(name, doc)
    return {"cluster": doc}


def describe_clusters(backend: EcsBackend, params: Params) -> JsonObject:
    references = params.strings("clusters", max_len=100) or [DEFAULT_CLUSTER]
    include = set(params.strings("include") or [])
    clusters, failures = [], []
    for reference in references:
        try:
            name = cluster_name(backend, reference)
        except ApiError:
            failures.append({"arn": reference, "reason": "MISSING"})
            continue
        doc = backend.store.cluster(name)
        if doc is None:
            failures.append({"arn": backend.cluster_arn(name), "reason": "MISSING"})
            continue
        doc = with_counts(backend, doc)
        if "TAGS" not in include:
            doc.pop("tags", None)
        clusters.append(doc)
    return {"clusters": clusters, "failures": failures}


def list_clusters(backend: EcsBackend, params: Params) -> JsonObject:
    items = [{"arn": doc["clusterArn"]} for doc in backend.store.clusters() if doc["status"] == "ACTIVE"]
    page, token = paginate(items, lambda item: [item["arn"]], params)
    body: JsonObject = {"clusterArns": [item["arn"] for item in page]}
    if token is not None:
        body["nextToken"] = token
    return body


def delete_cluster(backend: EcsBackend, params: Params) -> JsonObject:
    doc = active_cluster(backend, params.required_string("cluster"))
    if backend.store.count_tasks(doc["clusterArn"], _ACTIVE_TASK_STATES):
        raise ApiError(
            "ClusterContainsTasksException",
            "The Cluster cannot be deleted while Tasks are active.",
        )
    doc = dict(doc, status="INACTIVE")
    backend.store.put_cluster(doc["clusterName"], doc)
    return {"cluster": doc}


__all__ = [
    "active_cluster",
    "create_cluster",
    "delete_cluster",
    "describe_clusters",
    "ensure_default_cluster",
    "invalid_parameter",
    "list_clusters",
    "tags_of",
]
