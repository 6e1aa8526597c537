"""`airdock iam-policy`: exactly the actions each role needs, scoped resources, valid documents."""

from __future__ import annotations

import json
import re
from typing import Any

import jsonschema
import pytest

from airdock.analyst.iam_policy import policy_document, render
from airdock.errors import ConfigError
from tests.conftest import airdock

PULL = {
    "ecr:GetAuthorizationToken",
    "ecr:BatchCheckLayerAvailability",
    "ecr:BatchGetImage",
    "ecr:GetDownloadUrlForLayer",
}
UPLOAD = {"ecr:InitiateLayerUpload", "ecr:UploadLayerPart", "ecr:CompleteLayerUpload", "ecr:PutImage"}
MANAGE = {"ecr:CreateRepository", "ecr:DescribeRepositories", "ecr:DescribeImages", "ecr:PutLifecyclePolicy"}

# The IAM policy grammar's structure (Version, a Statement list, Effect/Action/Resource in each).
IAM_POLICY_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["Version", "Statement"],
    "additionalProperties": False,
    "properties": {
        "Version": {"enum": ["2012-10-17"]},
        "Statement": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "required": ["Effect", "Action", "Resource"],
                "additionalProperties": False,
                "properties": {
                    "Sid": {"type": "string", "pattern": "^[A-Za-z0-9]+$"},
                    "Effect": {"enum": ["Allow", "Deny"]},
                    "Action": {
                        "oneOf": [
                            {"type": "string", "pattern": "^ecr:[A-Za-z]+$"},
                            {
                                "type": "array",
                                "minItems": 1,
                                "items": {"type": "string", "pattern": "^ecr:[A-Za-z]+$"},
                            },
                        ]
                    },
                    "Resource": {
                        "oneOf": [
                            {"type": "string"},
                            {
                                "type": "array",
                                "minItems": 1,
                                "items": {"type": "string", "pattern": "^(\\*|arn:)"},
                            },
                        ]
                    },
                },
            },
        },
    },
}


def actions(document: dict[str, Any]) -> set[str]:
    return {action for statement in document["Statement"] for action in statement["Action"]}


def test_puller_has_exactly_the_four_pull_actions() -> None:
    assert actions(policy_document("puller")) == PULL


def test_pusher_adds_exactly_the_four_upload_actions() -> None:
    assert actions(policy_document("pusher")) == PULL | UPLOAD


def test_maintainer_adds_repository_management() -> None:
    assert actions(policy_document("maintainer")) == PULL | UPLOAD | MANAGE


@pytest.mark.parametrize("role", ["puller", "pusher", "maintainer"])
def test_documents_validate_as_iam_policies(role: str) -> None:
    for repos in ((), ("team/app", "team/*")):
        jsonschema.validate(policy_document(role, repos, "123456789012", "eu-west-1"), IAM_POLICY_SCHEMA)


def test_get_authorization_token_is_on_star_and_alone() -> None:
    login = policy_document("puller", ("team/app",), "123456789012", "eu-west-1")["Statement"][0]
    assert login["Action"] == ["ecr:GetAuthorizationToken"]
    assert login["Resource"] == "*", "AWS accepts no narrower resource for GetAuthorizationToken"


def test_resources_are_scoped_to_the_repositories() -> None:
    statement = policy_document("pusher", ("team/app", "ml/*"), "123456789012", "eu-west-1")["Statement"][1]
    assert statement["Resource"] == [
        "arn:aws:ecr:eu-west-1:123456789012:repository/team/app",
        "arn:aws:ecr:eu-west-1:123456789012:repository/ml/*",
    ]
    unscoped = policy_document("pusher")["Statement"][1]
    assert unscoped["Resource"] == ["*"]
    wildcards = policy_document("puller", ("team/app",))["Statement"][1]
    assert wildcards["Resource"] == ["arn:aws:ecr:*:*:repository/team/app"]


@pytest.mark.parametrize(("region", "partition"), [("cn-north-1", "aws-cn"), ("us-gov-west-1", "aws-us-gov")])
def test_partitions(region: str, partition: str) -> None:
    resource = policy_document("puller", ("a/b",), "123456789012", region)["Statement"][1]["Resource"][0]
    assert resource.startswith(f"arn:{partition}:ecr:{region}:")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("admin",), "unknown role 'admin'"),
        (("puller", ("Team/App",)), "invalid repository name 'Team/App'"),
        (("puller", ("x",)), "invalid repository name 'x'"),
        (("puller", (), "1234"), "invalid account id '1234'"),
        (("puller", (), None, "Europe"), "invalid region 'Europe'"),
    ],
)
def test_bad_input(args: tuple[Any, ...], message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        policy_document(*args)


def test_terraform_rendering_carries_the_same_statements() -> None:
    document = policy_document("pusher", ("team/app",), "123456789012", "eu-west-1")
    hcl = render(document, "terraform", "airdock_pusher")
    assert hcl.startswith('data "aws_iam_policy_document" "airdock_pusher" {')
    assert hcl.count("statement {") == 2
    quoted = set(re.findall(r'"(ecr:[A-Za-z]+)"', hcl))
    assert quoted == PULL | UPLOAD
    assert '"arn:aws:ecr:eu-west-1:123456789012:repository/team/app"' in hcl
    assert hcl.count("{") == hcl.count("}")


def test_cli_prints_only_the_policy_on_stdout() -> None:
    result = airdock(
        "iam-policy", "puller", "--repo", "team/app", "--account", "123456789012", "--region", "eu-west-1"
    )
    document = json.loads(result.stdout)
    jsonschema.validate(document, IAM_POLICY_SCHEMA)
    assert actions(document) == PULL
    terraform = airdock("iam-policy", "maintainer", "--format", "terraform").stdout
    assert "ecr:CreateRepository" in terraform


def test_cli_bad_input_is_one_line() -> None:
    result = airdock("iam-policy", "puller", "--format", "yaml", check=False)
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.strip() == "airdock: error: unknown format 'yaml': use one of json, terraform"


# -- ecs-runner ------------------------------------------------------------------------------------

ECS_ROLE = "arn:aws:iam::123456789012:role/ecsTaskExecutionRole"
TASK_ROLE = "arn:aws:iam::123456789012:role/jobRole"


def _ecs_schema() -> dict[str, Any]:
    """The IAM grammar again, for any service's actions and with Condition blocks."""
    schema = json.loads(json.dumps(IAM_POLICY_SCHEMA))
    statement = schema["properties"]["Statement"]["items"]
    statement["properties"]["Condition"] = {
        "type": "object",
        "additionalProperties": {"type": "object", "additionalProperties": {"type": ["string", "array"]}},
    }
    action = {"type": "string", "pattern": "^(ecs|ecr|iam|logs):[A-Za-z]+$"}
    statement["properties"]["Action"] = {"oneOf": [action, {"type": "array", "minItems": 1, "items": action}]}
    return schema


def test_ecs_runner_has_exactly_what_container_operator_calls_scoped() -> None:
    document = policy_document(
        "ecs-runner", ("team/*",), "123456789012", "eu-west-1",
        cluster="jobs", pass_roles=(ECS_ROLE, TASK_ROLE), log_group="/airdock/tasks",
    )  # fmt: skip
    jsonschema.validate(document, _ecs_schema())
    assert actions(document) == {
        "ecs:RegisterTaskDefinition", "ecs:DeregisterTaskDefinition", "ecs:DescribeTaskDefinition",
        "ecs:ListTaskDefinitions", "ecs:RunTask", "ecs:DescribeTasks", "ecs:ListTasks", "ecs:StopTask",
        "ecs:TagResource", "iam:PassRole", "logs:GetLogEvents", "ecr:BatchGetImage",
    }  # fmt: skip
    by_sid = {s["Sid"]: s for s in document["Statement"]}
    # "*" only where IAM offers nothing narrower.
    assert [s["Sid"] for s in document["Statement"] if s["Resource"] == "*"] == [
        "EcsTaskDefinitions",
        "EcsListTasks",
    ]
    cluster = {"ArnEquals": {"ecs:cluster": "arn:aws:ecs:eu-west-1:123456789012:cluster/jobs"}}
    assert by_sid["EcsListTasks"]["Condition"] == cluster
    assert (
        by_sid["EcsRunTask"]["Resource"] == "arn:aws:ecs:eu-west-1:123456789012:task-definition/airdock-*:*"
    )
    assert by_sid["EcsRunTask"]["Condition"] == cluster
    assert by_sid["EcsTasks"]["Resource"] == "arn:aws:ecs:eu-west-1:123456789012:task/jobs/*"
    assert by_sid["PassTaskRoles"]["Resource"] == [ECS_ROLE, TASK_ROLE]
    assert by_sid["PassTaskRoles"]["Condition"] == {
        "StringEquals": {"iam:PassedToService": "ecs-tasks.amazonaws.com"}
    }
    assert by_sid["TaskLogs"]["Resource"] == (
        "arn:aws:logs:eu-west-1:123456789012:log-group:/airdock/tasks:log-stream:*"
    )
    assert by_sid["PinImages"]["Resource"] == ["arn:aws:ecr:eu-west-1:123456789012:repository/team/*"]
    hcl = render(document, "terraform", "airdock_ecs_runner")
    assert hcl.count("condition {") == 4 and '"ecs-tasks.amazonaws.com"' in hcl
    assert hcl.count("{") == hcl.count("}")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"cluster": "no spaces"}, "invalid cluster name 'no spaces'"),
        ({"pass_roles": ("ecsTaskExecutionRole",)}, "invalid role ARN 'ecsTaskExecutionRole'"),
        ({"log_group": "bad group!"}, "invalid log group 'bad group!'"),
    ],
)
def test_ecs_runner_bad_input(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        policy_document("ecs-runner", **kwargs)


def test_cli_prints_the_ecs_runner_policy() -> None:
    result = airdock(
        "iam-policy", "ecs-runner", "--account", "123456789012", "--region", "eu-west-1",
        "--cluster", "jobs", "--pass-role", ECS_ROLE,
    )  # fmt: skip
    document = json.loads(result.stdout)
    jsonschema.validate(document, _ecs_schema())
    assert {s["Sid"]: s for s in document["Statement"]}["PassTaskRoles"]["Resource"] == [ECS_ROLE]
