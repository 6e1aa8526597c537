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
