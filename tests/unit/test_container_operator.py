"""``ContainerOperator``'s parse-time checks and its secret lookups (no engine, no stack).

Secrets Manager and SSM are not served by the local stack: moto stands in for them here.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

from airdock.airflow.container import ContainerOperator

IMAGE = "127.0.0.1:5780/team/job:v1"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"run_on": "kubernetes"}, "invalid run_on='kubernetes': use 'docker' or 'ecs'"),
        ({"cpu": 0}, "invalid cpu=0: a positive integer (CPU units)"),
        ({"memory": "1g"}, "invalid memory='1g': a positive integer (MiB)"),
        ({"secret_environment": {"K": "plaintext"}}, "invalid secret_environment['K']: use var:<key>"),
        ({"ecs_overrides": {"clusterr": "x"}}, "unknown ecs_overrides clusterr: use cluster, launch_type"),
    ],
)
def test_bad_arguments_fail_when_the_dag_is_parsed(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        ContainerOperator(task_id="t", image=IMAGE, **kwargs)


def test_portable_resources_become_docker_limits() -> None:
    operator = ContainerOperator(task_id="t", image=IMAGE, cpu=512, memory=256, command="echo hi")
    assert operator.cpus == 0.5 and operator.mem_limit == "256m"
    templated = ContainerOperator(task_id="t2", image=IMAGE, run_on="{{ var.value.where }}")
    assert templated.run_on == "{{ var.value.where }}" and "run_on" in templated.template_fields


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    from moto import mock_aws

    for key in (
        "AWS_ENDPOINT_URL",
        "AWS_ENDPOINT_URL_SECRETS_MANAGER",
        "AWS_ENDPOINT_URL_SSM",
        "AWS_PROFILE",
    ):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with mock_aws():
        yield


def test_secret_arns_are_read_on_the_worker_for_docker(aws: None) -> None:
    import boto3

    secret = boto3.client("secretsmanager").create_secret(Name="report", SecretString="sm-value")["ARN"]
    boto3.client("ssm").put_parameter(Name="/team/key", Value="ssm-value", Type="SecureString")
    parameter = "arn:aws:ssm:us-east-1:123456789012:parameter/team/key"
    operator = ContainerOperator(
        task_id="t", image=IMAGE, aws_conn_id=None, secret_environment={"A": secret, "B": parameter}
    )
    values, arns = operator._resolve_secrets(arns_too=True)
    assert values == {"A": "sm-value", "B": "ssm-value"} and arns == {}
    values, arns = operator._resolve_secrets(arns_too=False)  # ECS resolves ARNs itself
    assert values == {} and arns == {"A": secret, "B": parameter}


def test_a_missing_secret_is_one_line_that_names_it(aws: None) -> None:
    from airflow.sdk.exceptions import AirflowFailException

    arn = "arn:aws:secretsmanager:us-east-1:123456789012:secret:nope"
    operator = ContainerOperator(task_id="t", image=IMAGE, aws_conn_id=None, secret_environment={"A": arn})
    with pytest.raises(AirflowFailException) as caught:
        operator._resolve_secrets(arns_too=True)
    assert str(caught.value).startswith(f"secret_environment['A']: could not read {arn}:")
    assert "\n" not in str(caught.value)
