"""ECS task definitions: register (family + revision), describe, list, deregister, delete.

Checked as ECS checks them when registered, so a task run later never meets a definition that
cannot run: container names unique, an image each, memory for EC2, ``awsvpc`` with task-level cpu
and memory for FARGATE, and an ``executionRoleArn`` for ``awslogs`` on FARGATE (any well-formed
role ARN: the stack is not IAM).
"""

from __future__ import annotations

import re

from airdock.local.api.ecs.backend import EcsBackend, check_name, client_exception, parse_task_definition
from airdock.local.api.ecs.clusters import tags_of
from airdock.local.api.errors import ApiError
from airdock.local.api.pagination import paginate
from airdock.local.api.params import JsonObject, Params
from airdock.local.ecs_store import JsonDoc

NETWORK_MODES = ("bridge", "host", "awsvpc", "none")
COMPATIBILITIES = ("EC2", "FARGATE", "EXTERNAL")
_ROLE_ARN = re.compile(r"arn:aws[a-z-]*:iam::[0-9]{12}:role/[\w+=,.@/-]{1,512}")
_LOG_DRIVERS = (
    "awslogs",
    "json-file",
    "syslog",
    "journald",
    "gelf",
    "fluentd",
    "splunk",
    "awsfirelens",
    "none",
)


def _key_values(params: Params, name: str) -> list[JsonDoc]:
    out = []
    for item in params.structs(name) or []:
        out.append({"name": item.required_string("name", min_len=1), "value": item.string("value") or ""})
    return out


def _container(params: Params, compat: tuple[str, ...], task_memory: str | None) -> JsonDoc:
    name = params.string("name") or ""
    if not name:
        raise client_exception("Container.name should not be null or empty.")
    image = params.string("image") or ""
    if not image:
        raise client_exception("Container.image should not be null or empty.")
    memory = params.integer("memory", low=4, high=10**7)
    reservation = params.integer("memoryReservation", low=4, high=10**7)
    if "EC2" in compat and memory is None and reservation is None and task_memory is None:
        raise client_exception(
            f"Invalid setting for container '{name}'. At least one of 'memory' or 'memoryReservation' "
            "must be specified."
        )
    doc: JsonDoc = {
        "name": name,
        "image": image,
        "cpu": params.integer("cpu", low=0, high=10**6) or 0,
        "essential": params.boolean("essential", default=True),
        "portMappings": [],
        "environment": _key_values(params, "environment"),
        "mountPoints": [],
        "volumesFrom": [],
    }
    for key, amount in (("memory", memory), ("memoryReservation", reservation)):
        if amount is not None:
            doc[key] = amount
    for key in ("entryPoint", "command"):
        values = params.strings(key)
        if values is not None:
            doc[key] = values
    for key in ("workingDirectory", "user"):
        text = params.string(key)
        if text is not None:
            doc[key] = text
    stop_timeout = params.integer("stopTimeout", low=2, high=120)
    if stop_timeout is not None:
        doc["stopTimeout"] = stop_timeout
    secrets = [
        {
            "name": item.required_string("name", min_len=1),
            "valueFrom": item.required_string("valueFrom", min_len=1),
        }
        for item in params.structs("secrets") or []
    ]
    if secrets:
        doc["secrets"] = secrets
    log = params.struct("logConfiguration")
    if log is not None:
        driver = log.required_string("logDriver")
        if driver not in _LOG_DRIVERS:
            raise client_exception(f"Log driver {driver} is not supported.")
        options = log.struct("options")
        option_values = {} if options is None else {k: options.required_string(k) for k in options.keys()}  # noqa: SIM118
        doc["logConfiguration"] = {"logDriver": driver, "options": option_values, "secretOptions": []}
    return doc


def _check_awslogs(container: JsonDoc, compat: tuple[str, ...], execution_role: str | None) -> None:
    log = container.get("logConfiguration") or {}
    if log.get("logDriver") != "awslogs":
        return
    options = log.get("options") or {}
    required = ["awslogs-group", "awslogs-region"]
    if "FARGATE" in compat:
        required.append("awslogs-stream-prefix")
        if execution_role is None:
            raise client_exception(
                "Fargate requires task definition to have execution role ARN to support log driver awslogs."
            )
    for option in required:
        if not options.get(option):
            raise client_exception(f"Log driver awslogs option '{option}' should not be null or empty.")


def _role(params: Params, name: str) -> str | None:
    value = params.string(name)
    if value is not None and not _ROLE_ARN.fullmatch(value):
        raise client_exception(f"Role is not valid: {name} {value!r} is not an IAM role ARN")
    return value


def register_task_definition(backend: EcsBackend, params: Params) -> JsonObject:
    family = check_name(params.required_string("family"), "Family")
    compat = tuple(params.strings("requiresCompatibilities") or [])
    for value in compat:
        if value not in COMPATIBILITIES:
            raise client_exception(f"Invalid compatibility {value!r}: use EC2, FARGATE or EXTERNAL")
    network = params.string("networkMode") or ("awsvpc" if "FARGATE" in compat else "bridge")
    if network not in NETWORK_MODES:
        raise client_exception(f"Invalid network mode {network!r}: use bridge, host, awsvpc or none")
    cpu, memory = params.string("cpu"), params.string("memory")
    if "FARGATE" in compat:
        if network != "awsvpc":
            raise client_exception("Fargate only supports network mode 'awsvpc'.")
        if cpu is None:
            raise client_exception("Fargate requires that 'cpu' be defined at the task level.")
        if memory is None:
            raise client_exception("Fargate requires that 'memory' be defined at the task level.")
    task_role, execution_role = _role(params, "taskRoleArn"), _role(params, "executionRoleArn")
    containers = [
        _container(c, compat or ("EC2",), memory)
        for c in params.structs("containerDefinitions", required=True, min_len=1) or []
    ]
    names = [c["name"] for c in containers]
    if len(set(names)) != len(names):
        raise client_exception("Container names must be unique within a task definition.")
    if not any(c["essential"] for c in containers):
        raise client_exception("A task definition must have at least one essential container.")
    for container in containers:
        _check_awslogs(container, compat, execution_role)
    tags = tags_of(params)
    with backend.lock, backend.store.transaction() as db:
        revision = backend.store.next_revision(db, family)
        doc: JsonDoc = {
            "taskDefinitionArn": backend.task_definition_arn(family, revision),
            "containerDefinitions": containers,
            "family": family,
            "networkMode": network,
            "revision": revision,
            "volumes": [],
            "status": "ACTIVE",
            "requiresAttributes": [],
            "placementConstraints": [],
            "compatibilities": ["EC2", "FARGATE"] if network == "awsvpc" else ["EC2"],
            "requiresCompatibilities": list(compat),
            "registeredAt": backend.store.clock(),
            "registeredBy": f"arn:aws:iam::{backend.settings.account_id}:root",
        }
        for key, setting in (
            ("taskRoleArn", task_role),
            ("executionRoleArn", execution_role),
            ("cpu", cpu),
            ("memory", memory),
        ):
            if setting is not None:
                doc[key] = setting
        backend.store.add_task_definition(db, doc, tags)
    backend.count("RegisterTaskDefinition")
    return {"taskDefinition": doc, "tags": tags}


def find_task_definition(backend: EcsBackend, reference: str) -> tuple[JsonDoc, list[JsonDoc]]:
    family, revision = parse_task_definition(backend, reference)
    found = backend.store.task_definition(family, revision)
    if found is None:
        raise client_exception("Unable to describe task definition.")
    return found


def describe_task_definition(backend: EcsBackend, params: Params) -> JsonObject:
    doc, tags = find_task_definition(backend, params.required_string("taskDefinition"))
    body: JsonObject = {"taskDefinition": doc}
    if "TAGS" in (params.strings("include") or []):
        body["tags"] = tags
    return body


def list_task_definitions(backend: EcsBackend, params: Params) -> JsonObject:
    status = params.enum("status", ("ACTIVE", "INACTIVE", "DELETE_IN_PROGRESS"), default="ACTIVE")
    sort = params.enum("sort", ("ASC", "DESC"), default="ASC")
    rows = backend.store.task_definition_arns(params.string("familyPrefix"), status)
    items = [{"family": f, "revision": r, "arn": a} for f, r, a in rows]
    width = 10  # revisions sort numerically inside the token key
    if sort == "ASC":
        key = lambda item: [item["family"], str(item["revision"]).zfill(width)]  # noqa: E731
    else:  # descending: invert the order through the key
        key = lambda item: [_invert(item["family"]), str(10**width - item["revision"]).zfill(width)]  # noqa: E731
    page, token = paginate(items, key, params)
    body: JsonObject = {"taskDefinitionArns": [item["arn"] for item in page]}
    if token is not None:
        body["nextToken"] = token
    return body


def _invert(text: str) -> str:
    return "".join(chr(0x10FFFF - ord(c)) for c in text) + "\U0010ffff"


def list_task_definition_families(backend: EcsBackend, params: Params) -> JsonObject:
    status = params.enum("status", ("ACTIVE", "INACTIVE", "ALL"), default="ACTIVE")
    families = backend.store.families(params.string("familyPrefix"), None if status == "ALL" else status)
    page, token = paginate([{"family": f} for f in families], lambda item: [item["family"]], params)
    body: JsonObject = {"families": [item["family"] for item in page]}
    if token is not None:
        body["nextToken"] = token
    return body


def deregister_task_definition(backend: EcsBackend, params: Params) -> JsonObject:
    reference = params.required_string("taskDefinition")
    family, revision = parse_task_definition(backend, reference)
    if revision is None:
        raise client_exception("Invalid revision number. Number: ")
    doc, _ = find_task_definition(backend, f"{family}:{revision}")
    if doc["status"] == "ACTIVE":
        doc = dict(doc, status="INACTIVE", deregisteredAt=backend.store.clock())
        with backend.store.transaction() as db:
            backend.store.set_task_definition_status(db, doc)
    return {"taskDefinition": doc}


def delete_task_definitions(backend: EcsBackend, params: Params) -> JsonObject:
    references = params.strings("taskDefinitions", min_len=1, max_len=10) or []
    if not references:
        raise ApiError("InvalidParameterException", "taskDefinitions can not be empty.")
    deleted, failures = [], []
    for reference in references:
        try:
            family, revision = parse_task_definition(backend, reference)
            if revision is None:
                raise client_exception("Invalid revision number. Number: ")
            doc, _ = find_task_definition(backend, f"{family}:{revision}")
        except ApiError as exc:
            failures.append({"arn": reference, "reason": exc.message})
            continue
        if doc["status"] == "ACTIVE":
            failures.append(
                {
                    "arn": doc["taskDefinitionArn"],
                    "reason": "The specified task definition is still in ACTIVE status. Please deregister "
                    "the target and try again.",
                }
            )
            continue
        doc = dict(doc, status="DELETE_IN_PROGRESS", deleteRequestedAt=backend.store.clock())
        with backend.store.transaction() as db:
            backend.store.set_task_definition_status(db, doc)
        deleted.append(doc)
    return {"taskDefinitions": deleted, "failures": failures}
