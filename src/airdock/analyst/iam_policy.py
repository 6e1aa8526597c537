"""Least-privilege IAM policies for the three ECR roles airdock's users play.

- ``puller`` (Airflow workers): ``ecr:GetAuthorizationToken`` on ``*`` — AWS accepts no narrower
  resource for it — plus the three pull actions on the repositories.
- ``pusher`` (CI, analysts): the puller's actions plus the four layer-upload and put actions.
- ``maintainer`` (``airdock push`` creating repositories): the pusher's plus repository management.
- ``ecs-runner`` (Airflow workers running ``ContainerOperator`` with ``run_on="ecs"``): task
  definitions of the ``airdock-*`` families, RunTask on them in one cluster, DescribeTasks,
  ListTasks, StopTask and TagResource there, ``iam:PassRole`` on the execution and task roles
  (to ECS only), ``logs:GetLogEvents`` on the log group, ``ecr:BatchGetImage`` to pin images to
  their digests. Register/Deregister/Describe/ListTaskDefinitions take no narrower resource than
  ``*`` in IAM.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

from airdock.auth.ecr import GET_TOKEN_ACTION
from airdock.errors import ConfigError

GET_TOKEN = GET_TOKEN_ACTION
PULL_ACTIONS = ("ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer")
PUSH_ACTIONS = ("ecr:InitiateLayerUpload", "ecr:UploadLayerPart", "ecr:CompleteLayerUpload", "ecr:PutImage")
MAINTAIN_ACTIONS = (
    "ecr:CreateRepository",
    "ecr:DescribeRepositories",
    "ecr:DescribeImages",
    "ecr:PutLifecyclePolicy",
)
ROLES: dict[str, tuple[str, ...]] = {
    "puller": PULL_ACTIONS,
    "pusher": PULL_ACTIONS + PUSH_ACTIONS,
    "maintainer": PULL_ACTIONS + PUSH_ACTIONS + MAINTAIN_ACTIONS,
}
ECS_RUNNER = "ecs-runner"
ALL_ROLES = (*ROLES, ECS_RUNNER)
TASK_DEFINITION_ACTIONS = (
    "ecs:RegisterTaskDefinition",
    "ecs:DeregisterTaskDefinition",
    "ecs:DescribeTaskDefinition",
    "ecs:ListTaskDefinitions",
)
TASK_ACTIONS = ("ecs:DescribeTasks", "ecs:StopTask", "ecs:TagResource")
FORMATS = ("json", "terraform")

# ECR's repository-name rule, with "*" allowed as an IAM wildcard (e.g. "team/*").
_REPO = re.compile(r"^(?:[a-z0-9*]+(?:[._-][a-z0-9*]+)*/)*[a-z0-9*]+(?:[._-][a-z0-9*]+)*$")
_ACCOUNT = re.compile(r"^\d{12}$")
_REGION = re.compile(r"^[a-z]{2}(?:-[a-z]+)+-\d$")
_ROLE_ARN = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]{1,512}$")
_CLUSTER = re.compile(r"^[A-Za-z0-9_-]{1,255}$")
_LOG_GROUP = re.compile(r"^[\w#/.-]{1,512}$")


def partition_of(region: str | None) -> str:
    if region and region.startswith("cn-"):
        return "aws-cn"
    if region and region.startswith("us-gov-"):
        return "aws-us-gov"
    return "aws"


def repository_arns(repositories: Sequence[str], account: str | None, region: str | None) -> list[str]:
    """ARNs for the repositories (``*`` for an unknown account or region); ``["*"]`` for none."""
    if not repositories:
        return ["*"]
    return [
        f"arn:{partition_of(region)}:ecr:{region or '*'}:{account or '*'}:repository/{name}"
        for name in repositories
    ]


def policy_document(
    role: str,
    repositories: Sequence[str] = (),
    account: str | None = None,
    region: str | None = None,
    *,
    cluster: str = "default",
    pass_roles: Sequence[str] = (),
    log_group: str = "/airdock/tasks",
) -> dict[str, Any]:
    """The IAM policy document for ``role``; ConfigError (one line) for bad input.

    ``cluster``, ``pass_roles`` (the task execution and task role ARNs) and ``log_group`` apply to
    ``ecs-runner`` only.
    """
    validate(role, repositories, account, region)
    if role == ECS_RUNNER:
        return _ecs_runner(repositories, account, region, cluster, pass_roles, log_group)
    return {
        "Version": "2012-10-17",
        "Statement": [
            {"Sid": "EcrLogin", "Effect": "Allow", "Action": [GET_TOKEN], "Resource": "*"},
            {
                "Sid": f"Ecr{role.capitalize()}",
                "Effect": "Allow",
                "Action": list(ROLES[role]),
                "Resource": repository_arns(repositories, account, region),
            },
        ],
    }


def _ecs_runner(
    repositories: Sequence[str],
    account: str | None,
    region: str | None,
    cluster: str,
    pass_roles: Sequence[str],
    log_group: str,
) -> dict[str, Any]:
    if not _CLUSTER.match(cluster):
        raise ConfigError(f"invalid cluster name {cluster!r}: use letters, digits, '-' and '_' (≤ 255)")
    for arn in pass_roles:
        if not _ROLE_ARN.match(arn):
            raise ConfigError(f"invalid role ARN {arn!r}: expected arn:aws:iam::<account>:role/<name>")
    if not _LOG_GROUP.match(log_group):
        raise ConfigError(f"invalid log group {log_group!r}")
    partition = partition_of(region)
    where = f"{partition}:ecs:{region or '*'}:{account or '*'}"
    cluster_arn = f"arn:{where}:cluster/{cluster}"
    logs = f"arn:{partition}:logs:{region or '*'}:{account or '*'}"
    on_cluster = {"ArnEquals": {"ecs:cluster": cluster_arn}}
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "EcsTaskDefinitions",
                "Effect": "Allow",
                "Action": list(TASK_DEFINITION_ACTIONS),
                "Resource": "*",
            },
            {
                "Sid": "EcsTagRegistrations",
                "Effect": "Allow",
                "Action": ["ecs:TagResource"],
                "Resource": f"arn:{where}:task-definition/airdock-*:*",
                "Condition": {"StringEquals": {"ecs:CreateAction": "RegisterTaskDefinition"}},
            },
            {
                "Sid": "EcsRunTask",
                "Effect": "Allow",
                "Action": ["ecs:RunTask"],
                "Resource": f"arn:{where}:task-definition/airdock-*:*",
                "Condition": on_cluster,
            },
            {
                "Sid": "EcsTasks",
                "Effect": "Allow",
                "Action": list(TASK_ACTIONS),
                "Resource": f"arn:{where}:task/{cluster}/*",
            },
            {
                "Sid": "EcsListTasks",
                "Effect": "Allow",
                "Action": ["ecs:ListTasks"],
                "Resource": "*",
                "Condition": on_cluster,
            },
            {
                "Sid": "PassTaskRoles",
                "Effect": "Allow",
                "Action": ["iam:PassRole"],
                "Resource": list(pass_roles) or [f"arn:{partition}:iam::{account or '*'}:role/*"],
                "Condition": {"StringEquals": {"iam:PassedToService": "ecs-tasks.amazonaws.com"}},
            },
            {
                "Sid": "TaskLogs",
                "Effect": "Allow",
                "Action": ["logs:GetLogEvents"],
                "Resource": f"{logs}:log-group:{log_group}:log-stream:*",
            },
            {
                "Sid": "PinImages",
                "Effect": "Allow",
                "Action": ["ecr:BatchGetImage"],
                "Resource": repository_arns(repositories, account, region),
            },
        ],
    }


def validate(role: str, repositories: Sequence[str], account: str | None, region: str | None) -> None:
    if role not in ALL_ROLES:
        raise ConfigError(f"unknown role {role!r}: use one of {', '.join(ALL_ROLES)}")
    for name in repositories:
        if not (2 <= len(name) <= 256 and _REPO.match(name)):
            raise ConfigError(
                f"invalid repository name {name!r}: use lowercase letters, digits, '.', '_', '-' and '/' "
                "(as ECR requires), '*' as a wildcard"
            )
    if account is not None and not _ACCOUNT.match(account):
        raise ConfigError(f"invalid account id {account!r}: use the 12-digit AWS account number")
    if region is not None and not _REGION.match(region):
        raise ConfigError(f"invalid region {region!r}: use a region name such as eu-west-1")


def render(document: dict[str, Any], fmt: str, name: str) -> str:
    """The document as JSON or as a Terraform ``aws_iam_policy_document`` data source named ``name``."""
    if fmt == "json":
        return json.dumps(document, indent=2)
    if fmt != "terraform":
        raise ConfigError(f"unknown format {fmt!r}: use one of {', '.join(FORMATS)}")
    lines = [f'data "aws_iam_policy_document" "{name}" {{']
    for statement in document["Statement"]:
        resources = (
            statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
        )
        lines += [
            "  statement {",
            f"    sid       = {json.dumps(statement['Sid'])}",
            f"    effect    = {json.dumps(statement['Effect'])}",
            f"    actions   = {_hcl_list(statement['Action'])}",
            f"    resources = {_hcl_list(resources)}",
        ]
        for test, variables in (statement.get("Condition") or {}).items():
            for variable, value in variables.items():
                values = value if isinstance(value, list) else [value]
                lines += [
                    "    condition {",
                    f"      test     = {json.dumps(test)}",
                    f"      variable = {json.dumps(variable)}",
                    f"      values   = {_hcl_list(values)}",
                    "    }",
                ]
        lines.append("  }")
    lines.append("}")
    return "\n".join(lines)


def _hcl_list(items: Sequence[str]) -> str:
    if len(items) <= 1:
        return "[" + ", ".join(json.dumps(item) for item in items) + "]"
    return "[\n" + "".join(f"      {json.dumps(item)},\n" for item in items) + "    ]"
