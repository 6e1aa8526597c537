"""The local ECS API with unmodified boto3: clusters, task definitions, tasks — every operation, and the
error cases with one AWS-shaped error each and nothing half-created.

The task runner is replaced here by a recorder of what the API asked of it (launch, stop): these
tests pin the API; tests/integration/test_local_ecs.py runs the real runner on the real engine.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from airdock.local.api.ecs import EcsBackend, ecs_service
from airdock.local.api.protocol import create_api_app
from airdock.local.ecs_store import EcsStore
from airdock.local.settings import StackSettings
from tests.registry_push import free_port
from tests.serving import serving

pytestmark = pytest.mark.timeout(120)

ACCOUNT, REGION = "123456789012", "us-east-1"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/ecsTaskExecutionRole"
PREFIX = f"arn:aws:ecs:{REGION}:{ACCOUNT}"


class Recorder:
    """Stands in for the task runner: remembers what the API asked of it."""

    def __init__(self) -> None:
        self.launched: list[str] = []
        self.stopped: list[str] = []

    def launch(self, task_arn: str) -> None:
        self.launched.append(task_arn)

    def stop(self, task_arn: str) -> None:
        self.stopped.append(task_arn)


class Api:
    def __init__(self, url: str, store: EcsStore, recorder: Recorder) -> None:
        self.url = url
        self.store = store
        self.recorder = recorder
        self.ecs = boto3.client(
            "ecs",
            endpoint_url=url,
            region_name=REGION,
            aws_access_key_id="x",
            aws_secret_access_key="y",
            config=Config(retries={"max_attempts": 1, "mode": "standard"}),
        )


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    data_dir: Path = tmp_path_factory.mktemp("ecs")
    settings = StackSettings(data_dir=data_dir, account_id=ACCOUNT, region=REGION)
    store = EcsStore(settings.ecs_store_path)
    recorder = Recorder()
    backend = EcsBackend(settings=settings, store=store, launcher=recorder)
    port = free_port()
    with serving(create_api_app([ecs_service(backend)], lambda: {}), port) as url:
        yield Api(url, store, recorder)
    store.close()


def error(caught: pytest.ExceptionInfo[ClientError]) -> tuple[str, str]:
    err = caught.value.response["Error"]
    return str(err["Code"]), str(err["Message"])


def container(name: str = "job", **extra: Any) -> dict[str, Any]:
    return {"name": name, "image": "127.0.0.1:5780/team/job:v1", "memory": 64, **extra}


def register(api: Api, family: str, **extra: Any) -> dict[str, Any]:
    extra.setdefault("containerDefinitions", [container()])
    return dict(api.ecs.register_task_definition(family=family, **extra)["taskDefinition"])


FARGATE = {
    "requiresCompatibilities": ["FARGATE"],
    "networkMode": "awsvpc",
    "cpu": "256",
    "memory": "512",
    "executionRoleArn": ROLE,
}
VPC = {"awsvpcConfiguration": {"subnets": ["subnet-123"], "assignPublicIp": "DISABLED"}}


# -- clusters ------------------------------------------------------------------------------------


def test_the_default_cluster_exists(api: Api) -> None:
    clusters = api.ecs.describe_clusters()["clusters"]
    assert [c["clusterName"] for c in clusters] == ["default"]
    assert clusters[0]["clusterArn"] == f"{PREFIX}:cluster/default"
    assert clusters[0]["status"] == "ACTIVE"
    assert f"{PREFIX}:cluster/default" in api.ecs.list_clusters()["clusterArns"]


def test_create_describe_list_delete_cluster(api: Api) -> None:
    created = api.ecs.create_cluster(clusterName="batch", tags=[{"key": "team", "value": "data"}])["cluster"]
    assert created["clusterArn"] == f"{PREFIX}:cluster/batch"
    again = api.ecs.create_cluster(clusterName="batch")["cluster"]
    assert again["clusterArn"] == created["clusterArn"], "creating an existing cluster returns it"
    described = api.ecs.describe_clusters(clusters=["batch", f"{PREFIX}:cluster/nope"], include=["TAGS"])
    assert described["clusters"][0]["tags"] == [{"key": "team", "value": "data"}]
    assert described["failures"] == [{"arn": f"{PREFIX}:cluster/nope", "reason": "MISSING"}]
    assert created["clusterArn"] in api.ecs.list_clusters()["clusterArns"]
    deleted = api.ecs.delete_cluster(cluster="batch")["cluster"]
    assert deleted["status"] == "INACTIVE"
    assert created["clusterArn"] not in api.ecs.list_clusters()["clusterArns"]
    with pytest.raises(api.ecs.exceptions.ClusterNotFoundException):
        api.ecs.delete_cluster(cluster="batch")


@pytest.mark.parametrize("name", ["has space", "x" * 256, "dots.not.allowed"])
def test_bad_cluster_names_are_refused(api: Api, name: str) -> None:
    with pytest.raises(ClientError) as caught:
        api.ecs.create_cluster(clusterName=name)
    assert error(caught)[0] == "InvalidParameterException"
    assert name not in [c["clusterName"] for c in api.store.clusters()]


# -- task definitions ------------------------------------------------------------------------------


def test_register_revisions_and_describe_by_family_revision_and_arn(api: Api) -> None:
    first = register(api, "etl", tags=[{"key": "k", "value": "v"}])
    second = register(api, "etl", containerDefinitions=[container(command=["echo", "2"])])
    assert (first["revision"], second["revision"]) == (1, 2)
    assert second["taskDefinitionArn"] == f"{PREFIX}:task-definition/etl:2"
    assert first["containerDefinitions"][0]["essential"] is True
    latest = api.ecs.describe_task_definition(taskDefinition="etl")["taskDefinition"]
    assert latest["revision"] == 2
    by_rev = api.ecs.describe_task_definition(taskDefinition="etl:1", include=["TAGS"])
    assert by_rev["taskDefinition"]["revision"] == 1 and by_rev["tags"] == [{"key": "k", "value": "v"}]
    by_arn = api.ecs.describe_task_definition(taskDefinition=first["taskDefinitionArn"])
    assert by_arn["taskDefinition"]["revision"] == 1
    assert isinstance(latest["registeredAt"], type(by_arn["taskDefinition"]["registeredAt"]))


def test_list_filter_sort_paginate_deregister_delete(api: Api) -> None:
    for _ in range(3):
        register(api, "listme")
    register(api, "other-family")
    asc = api.ecs.list_task_definitions(familyPrefix="listme")["taskDefinitionArns"]
    assert asc == [f"{PREFIX}:task-definition/listme:{n}" for n in (1, 2, 3)]
    desc = api.ecs.list_task_definitions(familyPrefix="listme", sort="DESC")["taskDefinitionArns"]
    assert desc == list(reversed(asc))
    page = api.ecs.list_task_definitions(familyPrefix="listme", maxResults=2)
    rest = api.ecs.list_task_definitions(familyPrefix="listme", maxResults=2, nextToken=page["nextToken"])
    assert page["taskDefinitionArns"] + rest["taskDefinitionArns"] == asc and "nextToken" not in rest
    assert "listme" in api.ecs.list_task_definition_families(familyPrefix="list")["families"]

    gone = api.ecs.deregister_task_definition(taskDefinition="listme:3")["taskDefinition"]
    assert gone["status"] == "INACTIVE"
    assert api.ecs.describe_task_definition(taskDefinition="listme")["taskDefinition"]["revision"] == 2
    inactive = api.ecs.list_task_definitions(familyPrefix="listme", status="INACTIVE")["taskDefinitionArns"]
    assert inactive == [f"{PREFIX}:task-definition/listme:3"]
    result = api.ecs.delete_task_definitions(taskDefinitions=["listme:3", "listme:2"])
    assert [d["status"] for d in result["taskDefinitions"]] == ["DELETE_IN_PROGRESS"]
    assert result["failures"][0]["arn"] == f"{PREFIX}:task-definition/listme:2"
    assert "ACTIVE" in result["failures"][0]["reason"]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"containerDefinitions": [{"name": "x", "image": ""}]}, "Container.image should not be null"),
        (
            {"containerDefinitions": [{"name": "x", "image": "i"}]},
            "Invalid setting for container 'x'. At least one of 'memory' or 'memoryReservation' must be",
        ),
        ({"containerDefinitions": [container(), container()]}, "Container names must be unique"),
        ({**FARGATE, "cpu": None}, "Fargate requires that 'cpu' be defined at the task level."),
        ({**FARGATE, "networkMode": "bridge"}, "Fargate only supports network mode 'awsvpc'."),
        (
            {
                **{k: v for k, v in FARGATE.items() if k != "executionRoleArn"},
                "containerDefinitions": [
                    container(
                        logConfiguration={
                            "logDriver": "awslogs",
                            "options": {
                                "awslogs-group": "/g",
                                "awslogs-region": REGION,
                                "awslogs-stream-prefix": "p",
                            },
                        }
                    )
                ],
            },
            "Fargate requires task definition to have execution role ARN to support log driver awslogs.",
        ),
        ({"executionRoleArn": "not-a-role"}, "Role is not valid"),
    ],
)  # fmt: skip
def test_bad_task_definitions_are_refused_and_nothing_is_registered(
    api: Api, extra: dict[str, Any], message: str
) -> None:
    extra = {k: v for k, v in extra.items() if v is not None}
    with pytest.raises(ClientError) as caught:
        register(api, "refused", **extra)
    code, text = error(caught)
    assert code == "ClientException"
    assert message in text
    assert api.store.task_definition("refused", None) is None


@pytest.mark.parametrize(
    "reference", ["no-such-family", "etl:99", f"{PREFIX}:task-definition/etl", "bad name"]
)
def test_unknown_or_malformed_task_definitions(api: Api, reference: str) -> None:
    register(api, "etl")
    with pytest.raises(ClientError) as caught:
        api.ecs.describe_task_definition(taskDefinition=reference)
    assert error(caught)[0] == "ClientException"


# -- tasks ---------------------------------------------------------------------------------------------


def test_run_task_records_and_launches_with_overrides_and_started_by(api: Api) -> None:
    definition = register(
        api, "job", containerDefinitions=[container(environment=[{"name": "A", "value": "1"}])]
    )
    reply = api.ecs.run_task(
        taskDefinition="job",
        startedBy="airflow-ti-1",
        overrides={
            "containerOverrides": [
                {"name": "job", "command": ["echo", "hi"], "environment": [{"name": "B", "value": "2"}]}
            ]
        },
        tags=[{"key": "dag", "value": "d"}],
        count=2,
    )
    assert reply["failures"] == []
    tasks = reply["tasks"]
    assert len(tasks) == 2
    task = tasks[0]
    assert task["taskArn"].startswith(f"{PREFIX}:task/default/")
    assert task["lastStatus"] == "PROVISIONING" and task["desiredStatus"] == "RUNNING"
    assert task["taskDefinitionArn"] == definition["taskDefinitionArn"]
    assert task["startedBy"] == "airflow-ti-1"
    assert task["group"] == "family:job"
    assert task["containers"][0]["name"] == "job" and task["containers"][0]["lastStatus"] == "PENDING"
    assert api.recorder.launched[-2:] == [t["taskArn"] for t in tasks]
    runtime = api.store.task(task["taskArn"])
    assert runtime is not None
    assert runtime[1]["containers"][0]["environment"] == {"A": "1", "B": "2"}, "environment merged"
    assert runtime[1]["containers"][0]["command"] == ["echo", "hi"]

    described = api.ecs.describe_tasks(
        tasks=[task["taskArn"], task["taskArn"].rsplit("/", 1)[1], "nope"], include=["TAGS"]
    )
    assert [t["taskArn"] for t in described["tasks"]] == [task["taskArn"]] * 2
    assert described["tasks"][0]["tags"] == [{"key": "dag", "value": "d"}]
    assert described["failures"] == [{"arn": "nope", "reason": "MISSING"}]
    listed = api.ecs.list_tasks(startedBy="airflow-ti-1")["taskArns"]
    assert sorted(listed) == sorted(t["taskArn"] for t in tasks)
    assert api.ecs.list_tasks(family="job", desiredStatus="STOPPED")["taskArns"] == []


def test_client_token_makes_run_task_idempotent(api: Api) -> None:
    register(api, "idem")
    first = api.ecs.run_task(taskDefinition="idem", clientToken="token-1")["tasks"]
    again = api.ecs.run_task(taskDefinition="idem", clientToken="token-1")["tasks"]
    assert [t["taskArn"] for t in again] == [t["taskArn"] for t in first]
    assert api.recorder.launched.count(first[0]["taskArn"]) == 1


def test_stop_task_marks_it_stopping_and_tells_the_runner(api: Api) -> None:
    register(api, "stopme")
    arn = api.ecs.run_task(taskDefinition="stopme")["tasks"][0]["taskArn"]
    task = api.ecs.stop_task(task=arn, reason="no longer needed")["task"]
    assert task["desiredStatus"] == "STOPPED"
    assert task["stopCode"] == "UserInitiated" and task["stoppedReason"] == "no longer needed"
    assert api.recorder.stopped[-1] == arn
    assert arn in api.ecs.list_tasks(desiredStatus="STOPPED")["taskArns"]
    with pytest.raises(ClientError) as caught:
        api.ecs.stop_task(task="0" * 32)
    assert error(caught) == ("InvalidParameterException", "The referenced task was not found.")


def test_fargate_needs_an_awsvpc_network_configuration_which_is_accepted(api: Api) -> None:
    register(api, "fargate", **FARGATE)
    with pytest.raises(ClientError) as caught:
        api.ecs.run_task(taskDefinition="fargate", launchType="FARGATE")
    assert error(caught) == (
        "InvalidParameterException",
        "Network Configuration must be provided when networkMode 'awsvpc' is specified.",
    )
    task = api.ecs.run_task(taskDefinition="fargate", launchType="FARGATE", networkConfiguration=VPC)[
        "tasks"
    ][0]
    assert task["launchType"] == "FARGATE" and task["platformVersion"]
    by_provider = api.ecs.run_task(
        taskDefinition="fargate",
        capacityProviderStrategy=[{"capacityProvider": "FARGATE_SPOT", "weight": 1}],
        networkConfiguration=VPC,
    )["tasks"][0]
    assert by_provider["capacityProviderName"] == "FARGATE_SPOT"


@pytest.mark.parametrize(
    ("kwargs", "code", "message"),
    [
        ({"cluster": "nope"}, "ClusterNotFoundException", "Cluster not found."),
        ({"taskDefinition": "missing-family"}, "ClientException", "Unable to describe task definition."),
        ({"count": 11}, "InvalidParameterException", "Member must have value less than or equal to 10"),
        ({"count": 0}, "InvalidParameterException", "Member must have value greater than or equal to 1"),
        (
            {"overrides": {"containerOverrides": [{"name": "ghost", "command": ["x"]}]}},
            "InvalidParameterException",
            "Override for container named ghost is not a container in the TaskDefinition.",
        ),
        (
            {"launchType": "EC2", "capacityProviderStrategy": [{"capacityProvider": "FARGATE"}]},
            "InvalidParameterException",
            "Specifying both a launch type and capacity provider strategy is not supported.",
        ),
        ({"launchType": "FARGATE"}, "InvalidParameterException", "does not support launch_type FARGATE"),
        ({"taskDefinition": f"{PREFIX}:task-definition/"}, "ClientException", ""),
    ],
)  # fmt: skip
def test_run_task_bad_input_creates_nothing(
    api: Api, kwargs: dict[str, Any], code: str, message: str
) -> None:
    register(api, "guarded")
    before = list(api.recorder.launched)
    arns_before = api.store.task_arns(None)
    kwargs = {"taskDefinition": "guarded", **kwargs}
    with pytest.raises(ClientError) as caught:
        api.ecs.run_task(**kwargs)
    got_code, got_message = error(caught)
    assert got_code == code
    assert message in got_message
    assert api.recorder.launched == before
    assert api.store.task_arns(None) == arns_before, "nothing half-created"


def test_tasks_of_an_unknown_cluster(api: Api) -> None:
    with pytest.raises(api.ecs.exceptions.ClusterNotFoundException):
        api.ecs.describe_tasks(cluster="nope", tasks=["x"])
    with pytest.raises(api.ecs.exceptions.ClusterNotFoundException):
        api.ecs.list_tasks(cluster="nope")


def test_a_cluster_with_active_tasks_cannot_be_deleted(api: Api) -> None:
    api.ecs.create_cluster(clusterName="busy")
    register(api, "busyjob")
    api.ecs.run_task(cluster="busy", taskDefinition="busyjob")
    with pytest.raises(ClientError) as caught:
        api.ecs.delete_cluster(cluster="busy")
    assert error(caught)[0] == "ClusterContainsTasksException"


# -- tags ----------------------------------------------------------------------------------------


def test_tag_untag_and_list_tags_of_tasks_definitions_and_clusters(api: Api) -> None:
    definition = register(api, "tagged", tags=[{"key": "owner", "value": "airdock"}])
    task = api.ecs.run_task(taskDefinition="tagged", tags=[{"key": "dag", "value": "d"}])["tasks"][0]
    cluster = f"{PREFIX}:cluster/default"
    for arn, before in (
        (definition["taskDefinitionArn"], [{"key": "owner", "value": "airdock"}]),
        (task["taskArn"], [{"key": "dag", "value": "d"}]),
        (cluster, []),
    ):
        assert api.ecs.list_tags_for_resource(resourceArn=arn)["tags"] == before
        api.ecs.tag_resource(resourceArn=arn, tags=[{"key": "collected", "value": "yes"}])
        api.ecs.tag_resource(resourceArn=arn, tags=[{"key": "collected", "value": "twice"}])  # replaces
        assert api.ecs.list_tags_for_resource(resourceArn=arn)["tags"] == [
            *before,
            {"key": "collected", "value": "twice"},
        ]
        api.ecs.untag_resource(resourceArn=arn, tagKeys=["collected"])
        assert api.ecs.list_tags_for_resource(resourceArn=arn)["tags"] == before
    described = api.ecs.describe_tasks(tasks=[task["taskArn"]], include=["TAGS"])["tasks"][0]
    assert described["tags"] == [{"key": "dag", "value": "d"}]


@pytest.mark.parametrize(
    ("arn", "code"),
    [
        ("not-an-arn", "InvalidParameterException"),
        (f"{PREFIX}:task/default/{'0' * 32}", "ResourceNotFoundException"),
        (f"{PREFIX}:task-definition/nope:1", "ResourceNotFoundException"),
        (f"{PREFIX}:cluster/nope", "ResourceNotFoundException"),
        ("arn:aws:ecs:eu-west-1:123456789012:cluster/default", "ResourceNotFoundException"),
    ],
)
def test_tagging_unknown_or_malformed_resources_fails_and_changes_nothing(
    api: Api, arn: str, code: str
) -> None:
    for call in (
        lambda: api.ecs.tag_resource(resourceArn=arn, tags=[{"key": "k", "value": "v"}]),
        lambda: api.ecs.list_tags_for_resource(resourceArn=arn),
        lambda: api.ecs.untag_resource(resourceArn=arn, tagKeys=["k"]),
    ):
        with pytest.raises(ClientError) as caught:
            call()
        assert error(caught)[0] == code
    assert api.ecs.list_tags_for_resource(resourceArn=f"{PREFIX}:cluster/default")["tags"] == []


def test_container_secrets_keep_their_arns_and_need_one(api: Api) -> None:
    arn = "arn:aws:secretsmanager:us-east-1:123456789012:secret:db"
    registered = register(
        api, "secretive", containerDefinitions=[container(secrets=[{"name": "DB", "valueFrom": arn}])]
    )
    assert registered["containerDefinitions"][0]["secrets"] == [{"name": "DB", "valueFrom": arn}]
    described = api.ecs.describe_task_definition(taskDefinition="secretive")["taskDefinition"]
    assert described["containerDefinitions"][0]["secrets"] == [{"name": "DB", "valueFrom": arn}]
    with pytest.raises(ClientError):
        register(
            api, "secretive", containerDefinitions=[container(secrets=[{"name": "DB", "valueFrom": ""}])]
        )
    assert api.ecs.describe_task_definition(taskDefinition="secretive")["taskDefinition"]["revision"] == 1
