"""ECS tasks: RunTask, DescribeTasks, ListTasks, StopTask.

RunTask validates everything first (cluster, task definition, launch type or capacity providers,
network configuration, overrides, count 1–10), records the tasks, and hands them to the runner,
which moves them through ECS's lifecycle (PROVISIONING → PENDING → RUNNING → DEPROVISIONING →
STOPPED) on the local Docker engine. A ``clientToken`` seen before returns the tasks it started.
"""

from __future__ import annotations

import uuid

from airdock.local.api.ecs.backend import (
    EcsBackend,
    client_exception,
    invalid_parameter,
    task_id_of,
)
from airdock.local.api.ecs.clusters import active_cluster, tags_of
from airdock.local.api.ecs.task_definitions import find_task_definition
from airdock.local.api.pagination import paginate
from airdock.local.api.params import JsonObject, Params
from airdock.local.ecs_store import JsonDoc

LAUNCH_TYPES = ("EC2", "FARGATE", "EXTERNAL")
CAPACITY_PROVIDERS = ("FARGATE", "FARGATE_SPOT")
FARGATE_PLATFORM = "1.4.0"


def _overrides(params: Params, definition: JsonDoc) -> JsonDoc:
    """The request's ``overrides``, checked against the task definition's containers."""
    given = params.struct("overrides")
    names = {c["name"] for c in definition["containerDefinitions"]}
    out: JsonDoc = {"containerOverrides": [], "inferenceAcceleratorOverrides": []}
    if given is None:
        return out
    for item in given.structs("containerOverrides") or []:
        name = item.required_string("name")
        if name not in names:
            raise invalid_parameter(
                f"Override for container named {name} is not a container in the TaskDefinition."
            )
        override: JsonDoc = {"name": name}
        command = item.strings("command")
        if command is not None:
            override["command"] = command
        environment = item.structs("environment")
        if environment is not None:
            override["environment"] = [
                {"name": e.required_string("name", min_len=1), "value": e.string("value") or ""}
                for e in environment
            ]
        for key in ("cpu", "memory", "memoryReservation"):
            amount = item.integer(key, low=0, high=10**7)
            if amount is not None:
                override[key] = amount
        out["containerOverrides"].append(override)
    for key in ("cpu", "memory", "taskRoleArn", "executionRoleArn"):
        text = given.string(key)
        if text is not None:
            out[key] = text
    return out


def _launch(params: Params, definition: JsonDoc) -> tuple[str, list[JsonDoc]]:
    """The launch type (given, or the first capacity provider's) and the capacity provider strategy."""
    launch_type = params.string("launchType")
    strategy = params.structs("capacityProviderStrategy")
    if launch_type is not None and strategy:
        raise invalid_parameter(
            "Specifying both a launch type and capacity provider strategy is not supported. "
            "Remove one and try again."
        )
    providers: list[JsonDoc] = []
    for item in strategy or []:
        provider = item.required_string("capacityProvider")
        if provider not in CAPACITY_PROVIDERS:
            raise invalid_parameter(f"The specified capacity provider {provider} is not in an ACTIVE state.")
        providers.append(
            {
                "capacityProvider": provider,
                "weight": item.integer("weight", low=0, high=1000) or 0,
                "base": item.integer("base", low=0, high=100000) or 0,
            }
        )
    if providers:
        launch_type = "FARGATE"
    launch_type = launch_type or "EC2"
    if launch_type not in LAUNCH_TYPES:
        raise invalid_parameter(f"Invalid launch type {launch_type!r}: use EC2, FARGATE or EXTERNAL")
    if launch_type == "FARGATE" and definition["networkMode"] != "awsvpc":
        raise invalid_parameter("Task definition does not support launch_type FARGATE.")
    network = params.struct("networkConfiguration")
    if definition["networkMode"] == "awsvpc":
        vpc = None if network is None else network.struct("awsvpcConfiguration")
        if vpc is None:
            raise invalid_parameter(
                "Network Configuration must be provided when networkMode 'awsvpc' is specified."
            )
        vpc.strings("subnets", min_len=1, max_len=16)
        vpc.strings("securityGroups", max_len=5)
        vpc.enum("assignPublicIp", ("ENABLED", "DISABLED"), default="DISABLED")
    return launch_type, providers


def _runtime(definition: JsonDoc, overrides: JsonDoc) -> JsonDoc:
    """What the runner needs per container: the definition with the overrides applied."""
    by_name = {o["name"]: o for o in overrides["containerOverrides"]}
    containers = []
    for container in definition["containerDefinitions"]:
        override = by_name.get(container["name"], {})
        environment = {e["name"]: e["value"] for e in container.get("environment", [])}
        environment.update({e["name"]: e["value"] for e in override.get("environment", [])})
        containers.append(
            {
                "name": container["name"],
                "image": container["image"],
                "essential": container.get("essential", True),
                "command": override.get("command", container.get("command")),
                "entryPoint": container.get("entryPoint"),
                "environment": environment,
                "workingDirectory": container.get("workingDirectory"),
                "user": container.get("user"),
                "memory": override.get("memory", container.get("memory")),
                "cpu": override.get("cpu", container.get("cpu", 0)),
                "stopTimeout": container.get("stopTimeout", 30),
                "logConfiguration": container.get("logConfiguration"),
            }
        )
    return {
        "family": definition["family"],
        "containers": containers,
        "taskMemory": overrides.get("memory", definition.get("memory")),
        "logLines": {},
    }


def _new_task(
    backend: EcsBackend,
    cluster: JsonDoc,
    definition: JsonDoc,
    overrides: JsonDoc,
    launch: tuple[str, list[JsonDoc]],
    params: Params,
    tags: list[JsonDoc],
) -> tuple[JsonDoc, JsonDoc]:
    task_id = uuid.uuid4().hex
    arn = backend.task_arn(cluster["clusterName"], task_id)
    container_prefix = f"{backend.prefix}:container/{cluster['clusterName']}/{task_id}"
    launch_type, providers = launch
    doc: JsonDoc = {
        "taskArn": arn,
        "clusterArn": cluster["clusterArn"],
        "taskDefinitionArn": definition["taskDefinitionArn"],
        "overrides": overrides,
        "lastStatus": "PROVISIONING",
        "desiredStatus": "RUNNING",
        "containers": [
            {
                "containerArn": f"{container_prefix}/{uuid.uuid4()}",
                "taskArn": arn,
                "name": c["name"],
                "image": c["image"],
                "lastStatus": "PENDING",
                "networkBindings": [],
                "networkInterfaces": [],
                "healthStatus": "UNKNOWN",
                "cpu": str(c.get("cpu", 0)),
            }
            for c in definition["containerDefinitions"]
        ],
        "version": 1,
        "createdAt": backend.store.clock(),
        "group": params.string("group") or f"family:{definition['family']}",
        "launchType": launch_type,
        "availabilityZone": f"{backend.settings.region}a",
        "attachments": [],
        "tags": tags,
        "enableExecuteCommand": False,
        "connectivity": "CONNECTED",
    }
    if providers:
        doc["capacityProviderName"] = providers[0]["capacityProvider"]
    started_by = params.string("startedBy", max_len=128)
    if started_by is not None:
        doc["startedBy"] = started_by
    for key in ("cpu", "memory"):
        value = overrides.get(key, definition.get(key))
        if value is not None:
            doc[key] = str(value)
    if launch_type == "FARGATE":
        doc.update(
            platformVersion=FARGATE_PLATFORM, platformFamily="Linux", ephemeralStorage={"sizeInGiB": 20}
        )
    return doc, _runtime(definition, overrides)


def run_task(backend: EcsBackend, params: Params) -> JsonObject:
    cluster = active_cluster(backend, params.string("cluster"))
    definition, _ = find_task_definition(backend, params.required_string("taskDefinition"))
    if definition["status"] != "ACTIVE":
        raise client_exception("TaskDefinition is inactive")
    count = params.integer("count", low=1, high=10) or 1
    launch = _launch(params, definition)
    overrides = _overrides(params, definition)
    tags = tags_of(params)
    token = params.string("clientToken", max_len=64)
    with backend.lock, backend.store.transaction() as db:
        if token is not None:
            seen = backend.store.client_token(db, token)
            if seen is not None:
                existing = [t for t in (backend.store.task(arn) for arn in seen) if t is not None]
                return {"tasks": [doc for doc, _ in existing], "failures": []}
        tasks = [
            _new_task(backend, cluster, definition, overrides, launch, params, tags) for _ in range(count)
        ]
        for doc, runtime in tasks:
            backend.store.add_task(db, doc, runtime)
        if token is not None:
            backend.store.remember_client_token(db, token, [doc["taskArn"] for doc, _ in tasks])
    backend.count("RunTask")
    for doc, _ in tasks:
        backend.launcher.launch(doc["taskArn"])
    return {"tasks": [doc for doc, _ in tasks], "failures": []}


def describe_tasks(backend: EcsBackend, params: Params) -> JsonObject:
    cluster = active_cluster(backend, params.string("cluster"))
    backend.count("DescribeTasks")
    references = params.strings("tasks", min_len=1, max_len=100)
    if not references:
        raise invalid_parameter("Tasks cannot be empty.")
    include_tags = "TAGS" in (params.strings("include") or [])
    tasks, failures = [], []
    for reference in references:
        task_id = task_id_of(backend, cluster["clusterName"], reference)
        found = (
            None if task_id is None else backend.store.task(backend.task_arn(cluster["clusterName"], task_id))
        )
        if found is None:
            failures.append({"arn": reference, "reason": "MISSING"})
            continue
        doc = found[0]
        if not include_tags:
            doc.pop("tags", None)
        tasks.append(doc)
    return {"tasks": tasks, "failures": failures}


def list_tasks(backend: EcsBackend, params: Params) -> JsonObject:
    cluster = active_cluster(backend, params.string("cluster"))
    desired = params.enum("desiredStatus", ("RUNNING", "PENDING", "STOPPED"), default="RUNNING")
    launch_type = params.string("launchType")
    if params.string("serviceName") is not None:
        arns: list[str] = []  # the local ECS runs no services
    else:
        arns = backend.store.task_arns(
            cluster["clusterArn"],
            family=params.string("family"),
            started_by=params.string("startedBy"),
            desired_status=desired,
        )
    if launch_type is not None:
        arns = [a for a in arns if (backend.store.task(a) or ({}, {}))[0].get("launchType") == launch_type]
    page, token = paginate([{"arn": a} for a in arns], lambda item: [item["arn"]], params)
    body: JsonObject = {"taskArns": [item["arn"] for item in page]}
    if token is not None:
        body["nextToken"] = token
    return body


def stop_task(backend: EcsBackend, params: Params) -> JsonObject:
    cluster = active_cluster(backend, params.string("cluster"))
    reference = params.required_string("task")
    reason = params.string("reason", max_len=255) or "Task stopped by user"
    task_id = task_id_of(backend, cluster["clusterName"], reference)
    arn = None if task_id is None else backend.task_arn(cluster["clusterName"], task_id)
    if arn is None or backend.store.task(arn) is None:
        raise invalid_parameter("The referenced task was not found.")

    def stopping(doc: JsonDoc, runtime: JsonDoc) -> None:
        if doc["desiredStatus"] == "STOPPED":
            return
        doc["desiredStatus"] = "STOPPED"
        doc["stopCode"] = "UserInitiated"
        doc["stoppedReason"] = reason
        doc["stoppingAt"] = backend.store.clock()

    doc = backend.store.update_task(arn, stopping)
    backend.launcher.stop(arn)
    return {"task": doc}
