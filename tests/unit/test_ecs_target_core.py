"""The ECS target's pure parts (task-definition derivation and comparison, settings, failure lines)
and ``TaskDefinitions`` against the local ECS API served in-process (no containers run)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from airdock.errors import ConfigError
from airdock.local.api.ecs import EcsBackend, ecs_service
from airdock.local.api.protocol import create_api_app
from airdock.local.ecs_store import EcsStore
from airdock.local.settings import StackSettings
from airdock.targets.ecs.reasons import explain_run_task_error, explain_stopped
from airdock.targets.ecs.settings import EcsSettings
from airdock.targets.ecs.task_definition import (
    desired_definition,
    family_for,
    log_stream_for,
    normalise,
    same_definition,
)
from airdock.targets.ecs.task_definitions import TaskDefinitions
from airdock.targets.spec import ContainerSpec, TaskIdentity
from tests.registry_push import free_port
from tests.serving import serving
from tests.unit.test_ecs_api import ACCOUNT, REGION, ROLE, Api, Recorder

pytestmark = pytest.mark.timeout(120)

SETTINGS = EcsSettings(region=REGION, subnets=("subnet-1",), execution_role_arn=ROLE)
IMAGE = "127.0.0.1:5780/team/job@sha256:" + "a" * 64


# -- names and identity --------------------------------------------------------------------------


def test_family_names_follow_ecs_rules() -> None:
    assert family_for("etl", "load") == "airdock-etl-load"
    assert (
        family_for("team.etl", "group.task")
        == "airdock-team-etl-group-task-" + family_for("team.etl", "group.task").rsplit("-", 1)[1]
    )
    long_a, long_b = family_for("d" * 250, "task_a"), family_for("d" * 250, "task_b")
    assert len(long_a) == 255 and len(long_b) == 255 and long_a != long_b
    assert family_for("d" * 250, "task_a") == long_a  # stable
    for name in (long_a, family_for("ü dag", "t/1")):
        assert all(c.isalnum() or c in "-_" for c in name) and name.isascii()


def test_started_by_is_stable_across_tries_and_distinct_per_instance() -> None:
    first = TaskIdentity("d", "t", "run-1", map_index=3, try_number=1)
    retry = TaskIdentity("d", "t", "run-1", map_index=3, try_number=2)
    assert first.started_by() == retry.started_by()
    assert first.client_token() != retry.client_token()
    others = {TaskIdentity("d", "t", "run-1", map_index=i).started_by() for i in range(50)}
    assert len(others) == 50
    assert all(len(s) <= 36 and s.replace("-", "").isalnum() for s in others)
    assert len(first.client_token()) <= 64


# -- settings ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"launch_type": "LAMBDA"}, "invalid ecs_launch_type"),
        ({"execution_role_arn": "ecsTaskExecutionRole"}, "invalid ecs_execution_role_arn"),
        ({"keep_revisions": 0}, "invalid ecs_keep_revisions"),
        ({"capacity_provider_strategy": ("FARGATE:x",)}, "provider[:weight[:base]]"),
        ({"subnets": ()}, "need subnets"),
        ({"execution_role_arn": None}, "task execution role"),
    ],
)
def test_bad_ecs_settings_are_one_line_errors(kwargs: dict[str, Any], message: str) -> None:
    values: dict[str, Any] = {
        "region": REGION,
        "subnets": ("subnet-1",),
        "execution_role_arn": ROLE,
        **kwargs,
    }
    with pytest.raises(ConfigError) as caught:
        EcsSettings(**values)
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_placement_launch_type_or_capacity_providers() -> None:
    assert SETTINGS.run_task_placement() == {
        "launchType": "FARGATE",
        "networkConfiguration": {
            "awsvpcConfiguration": {"subnets": ["subnet-1"], "assignPublicIp": "DISABLED"}
        },
    }
    spot = EcsSettings(
        region=REGION,
        subnets=("s",),
        security_groups=("sg-1",),
        assign_public_ip=True,
        execution_role_arn=ROLE,
        capacity_provider_strategy=("FARGATE_SPOT:3:1", "FARGATE:1"),
    )
    placement = spot.run_task_placement()
    assert "launchType" not in placement
    assert placement["capacityProviderStrategy"] == [
        {"capacityProvider": "FARGATE_SPOT", "weight": 3, "base": 1},
        {"capacityProvider": "FARGATE", "weight": 1},
    ]
    assert placement["networkConfiguration"] == {
        "awsvpcConfiguration": {"subnets": ["s"], "assignPublicIp": "ENABLED", "securityGroups": ["sg-1"]}
    }
    ec2 = EcsSettings(region=REGION, launch_type="EC2")
    assert ec2.run_task_placement() == {"launchType": "EC2"} and not ec2.fargate


# -- the task definition -------------------------------------------------------------------------


def test_desired_definition_holds_what_ecs_must_register_and_not_the_per_run_parts() -> None:
    spec = ContainerSpec(
        image="ignored: the pinned image is passed",
        command=("run", "--date", "2026-01-01"),
        entrypoint=("/bin/job",),
        environment={"MODE": "full"},
        secret_environment={"TOKEN": "s3cret"},
        secret_arns={
            "B_KEY": "arn:aws:secretsmanager:us-east-1:123456789012:secret:b",
            "A_KEY": "arn:aws:ssm:x",
        },
        cpu=512,
        memory=1024,
        working_dir="/work",
        user="1000",
    )
    definition = desired_definition(spec, IMAGE, "airdock-d-t", SETTINGS)
    (container,) = definition["containerDefinitions"]
    assert container["image"] == IMAGE and container["entryPoint"] == ["/bin/job"]
    assert container["workingDirectory"] == "/work" and container["user"] == "1000"
    assert [s["name"] for s in container["secrets"]] == ["A_KEY", "B_KEY"]
    assert "command" not in container and "environment" not in container
    assert "s3cret" not in repr(definition)
    assert container["logConfiguration"]["options"]["awslogs-group"] == "/airdock/tasks"
    assert definition["cpu"] == "512" and definition["memory"] == "1024"
    assert definition["networkMode"] == "awsvpc" and definition["requiresCompatibilities"] == ["FARGATE"]
    assert definition["executionRoleArn"] == ROLE
    # Per-run parts do not change the definition.
    other = desired_definition(
        ContainerSpec(
            image="x",
            command=("other",),
            environment={"MODE": "x"},
            entrypoint=("/bin/job",),
            secret_arns=dict(spec.secret_arns),
            cpu=512,
            memory=1024,
            working_dir="/work",
            user="1000",
        ),
        IMAGE,
        "airdock-d-t",
        SETTINGS,
    )
    assert same_definition(definition, other)
    assert log_stream_for("arn:aws:ecs:r:1:task/default/abc") == "airdock/main/abc"


def test_normalise_ignores_what_ecs_adds_and_orders_that_mean_nothing() -> None:
    desired = desired_definition(
        ContainerSpec(image="x", secret_arns={"B": "arn:b", "A": "arn:a"}), IMAGE, "airdock-d-t", SETTINGS
    )
    described = {
        **desired,
        "taskDefinitionArn": "arn:aws:ecs:us-east-1:1:task-definition/airdock-d-t:7",
        "revision": 7,
        "status": "ACTIVE",
        "registeredAt": 1.0,
        "registeredBy": "arn:aws:iam::1:user/x",
        "requiresAttributes": [{"name": "ecs.capability.execution-role-awslogs"}],
        "compatibilities": ["EC2", "FARGATE"],
        "volumes": [],
        "placementConstraints": [],
        "containerDefinitions": [
            {
                **desired["containerDefinitions"][0],
                "cpu": 0,
                "portMappings": [],
                "environment": [],
                "mountPoints": [],
                "volumesFrom": [],
                "secrets": [{"name": "B", "valueFrom": "arn:b"}, {"name": "A", "valueFrom": "arn:a"}],
            }
        ],
    }
    assert normalise(described) == normalise(desired)
    changed = {**described, "memory": "2048"}
    assert normalise(changed) != normalise(desired)
    new_image = dict(described)
    new_image["containerDefinitions"] = [{**described["containerDefinitions"][0], "image": "other@sha256:b"}]
    assert not same_definition(new_image, desired)


# -- failure lines -------------------------------------------------------------------------------


def _stopped(
    stop_code: str, reason: str, exit_code: int | None = None, container_reason: str = ""
) -> dict[str, Any]:
    container: dict[str, Any] = {"name": "main"}
    if exit_code is not None:
        container["exitCode"] = exit_code
    if container_reason:
        container["reason"] = container_reason
    return {"lastStatus": "STOPPED", "stopCode": stop_code, "stoppedReason": reason, "memory": "512",
            "containers": [container]}  # fmt: skip


@pytest.mark.parametrize(
    ("task", "expected"),
    [
        (_stopped("EssentialContainerExited", "Essential container in task exited", 0), None),
        (_stopped("EssentialContainerExited", "Essential container in task exited", 3), "exited with code 3"),
        (
            _stopped(
                "TaskFailedToStart", "CannotPullContainerError: Error response from daemon: manifest unknown"
            ),
            "it does not exist; push it or fix the reference",
        ),
        (
            _stopped("TaskFailedToStart", "CannotPullContainerError: Error response from daemon: denied"),
            f"task execution role {ROLE} may pull",
        ),
        (
            _stopped(
                "TaskFailedToStart", "ResourceInitializationError: unable to pull secrets or registry auth"
            ),
            "ECS could not prepare the task (secrets, the log group /airdock/tasks",
        ),
        (
            _stopped(
                "EssentialContainerExited",
                "Essential container in task exited",
                137,
                "OutOfMemoryError: Container killed due to memory usage",
            ),
            "ran out of memory (task memory 512 MiB): raise memory",
        ),
        (_stopped("UserInitiated", "stopped by airdock"), "the ECS task was stopped: stopped by airdock"),
        (
            _stopped("SpotInterruption", "Your Spot Task was interrupted."),
            "ended before its container finished",
        ),
    ],
)
def test_stopped_tasks_are_one_actionable_line(task: dict[str, Any], expected: str | None) -> None:
    line = explain_stopped(task, IMAGE, SETTINGS)
    if expected is None:
        assert line is None
    else:
        assert line is not None and expected in line and "\n" not in line


@pytest.mark.parametrize(
    ("code", "message", "expected"),
    [
        (
            "ClusterNotFoundException",
            "Cluster not found.",
            "ECS cluster 'default' does not exist in us-east-1",
        ),
        ("AccessDeniedException", "not authorized to perform: iam:PassRole", "allow iam:PassRole on"),
        ("AccessDeniedException", "not authorized to perform: ecs:RunTask", "airdock iam-policy ecs-runner"),
        ("InvalidParameterException", "Error retrieving subnet information for [subnet-1]", "ecs_subnets"),
        ("InvalidParameterException", "Security group sg-1 does not exist", "ecs_security_groups"),
        ("ClientException", "something else", "ECS refused the task (ClientException): something else"),
    ],
)
def test_refused_run_tasks_are_one_actionable_line(code: str, message: str, expected: str) -> None:
    line = explain_run_task_error(code, message, SETTINGS)
    assert expected in line and "\n" not in line


# -- TaskDefinitions against the local ECS API -----------------------------------------------------


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    data_dir: Path = tmp_path_factory.mktemp("ecs-core")
    settings = StackSettings(data_dir=data_dir, account_id=ACCOUNT, region=REGION)
    store = EcsStore(settings.ecs_store_path)
    backend = EcsBackend(settings=settings, store=store, launcher=Recorder())
    with serving(create_api_app([ecs_service(backend)], lambda: {}), free_port()) as url:
        yield Api(url, store, Recorder())
    store.close()


def _registrations(api: Api, family: str) -> list[str]:
    arns = api.ecs.list_task_definitions(familyPrefix=family, status="ACTIVE")["taskDefinitionArns"]
    return [a for a in arns if a.rsplit("/", 1)[1].rsplit(":", 1)[0] == family]


def test_a_revision_is_reused_until_the_definition_changes(api: Api, tmp_path: Path) -> None:
    registry = TaskDefinitions(api.ecs, tmp_path)
    spec = ContainerSpec(image="x", command=("a",))
    first = registry.ensure(desired_definition(spec, IMAGE, "airdock-reuse", SETTINGS))
    again = registry.ensure(
        desired_definition(ContainerSpec(image="x", command=("b",), environment={"E": "1"}), IMAGE,
                           "airdock-reuse", SETTINGS)
    )  # fmt: skip
    assert again == first and first.endswith("airdock-reuse:1")
    new_image = registry.ensure(desired_definition(spec, IMAGE[:-1] + "b", "airdock-reuse", SETTINGS))
    assert new_image.endswith("airdock-reuse:2")
    secret = registry.ensure(
        desired_definition(ContainerSpec(image="x", secret_arns={"K": "arn:aws:ssm:us-east-1:1:parameter/k"}),
                           IMAGE[:-1] + "b", "airdock-reuse", SETTINGS)
    )  # fmt: skip
    assert secret.endswith("airdock-reuse:3")
    assert len(_registrations(api, "airdock-reuse")) == 3


def test_twenty_tasks_starting_together_register_one_revision(api: Api, tmp_path: Path) -> None:
    desired = desired_definition(ContainerSpec(image="x"), IMAGE, "airdock-fanout", SETTINGS)
    results: list[str] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(20)

    def one() -> None:
        try:
            registry = TaskDefinitions(api.ecs, tmp_path)  # its own lock object: the file lock decides
            barrier.wait()
            results.append(registry.ensure(dict(desired)))
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=one) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    assert len(results) == 20 and len(set(results)) == 1
    assert _registrations(api, "airdock-fanout") == [results[0]]


def test_old_revisions_airdock_registered_are_deregistered_others_kept(api: Api, tmp_path: Path) -> None:
    family = "airdock-prune"
    foreign = api.ecs.register_task_definition(
        family=family, containerDefinitions=[{"name": "main", "image": "x", "memory": 64}]
    )["taskDefinition"]["taskDefinitionArn"]
    api.ecs.register_task_definition(  # a family that shares the prefix is not ours to prune
        family=family + "-other", containerDefinitions=[{"name": "main", "image": "x", "memory": 64}]
    )
    registry = TaskDefinitions(api.ecs, tmp_path, keep=2)
    made = [
        registry.ensure(desired_definition(ContainerSpec(image="x"), f"{IMAGE[:-1]}{n}", family, SETTINGS))
        for n in range(4)
    ]
    active = _registrations(api, family)
    assert sorted(active) == sorted([foreign, *made[-2:]])
    assert len(_registrations(api, family + "-other")) == 1


THROTTLED = "Too many concurrent attempts to create a new revision of the specified family."


def test_throttling_is_retried_with_backoff(tmp_path: Path) -> None:
    from botocore.exceptions import ClientError

    calls: list[str] = []
    sleeps: list[float] = []

    class Throttling:
        class meta:  # mimics boto3's client.meta
            region_name = REGION

        def describe_task_definition(self, **kwargs: Any) -> Any:
            raise ClientError(
                {"Error": {"Code": "ClientException", "Message": "Unable to describe"}}, "Describe"
            )

        def register_task_definition(self, **kwargs: Any) -> Any:
            calls.append("register")
            if len(calls) < 3:
                raise ClientError(
                    {"Error": {"Code": "ClientException", "Message": THROTTLED}},
                    "RegisterTaskDefinition",
                )  # fmt: skip
            return {"taskDefinition": {"family": "f", "revision": 1, "taskDefinitionArn": "arn:f:1"}}

        def get_paginator(self, name: str) -> Any:
            raise ClientError({"Error": {"Code": "ClientException", "Message": "x"}}, "List")

    registry = TaskDefinitions(Throttling(), tmp_path, sleep=sleeps.append)
    assert registry.ensure({"family": "f", "containerDefinitions": []}) == "arn:f:1"
    assert calls == ["register"] * 3 and len(sleeps) == 2 and sleeps[1] > sleeps[0] * 0.9 / 2
