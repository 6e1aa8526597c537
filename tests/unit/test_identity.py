"""One secret-free identity key, resolved alike by the CLI (boto3's environment) and the operators
(an Airflow AWS connection), so both share the host's cached token."""

from __future__ import annotations

import json

import pytest

from airdock.auth.identity import AwsIdentity

KEY_ID = "AKIAEXAMPLEKEYID0001"
ENDPOINT = "http://127.0.0.1:5781"


def test_the_environment_fills_what_is_not_given() -> None:
    environ = {
        "AWS_ACCESS_KEY_ID": KEY_ID,
        "AWS_SECRET_ACCESS_KEY": "secret",
        "AWS_ENDPOINT_URL_ECR": ENDPOINT,
        "AWS_DEFAULT_REGION": "eu-west-1",
    }
    from_env = AwsIdentity.resolve(environ=environ)
    explicit = AwsIdentity.resolve(
        access_key_id=KEY_ID, endpoint_url=ENDPOINT + "/", region="eu-west-1", environ={}
    )
    assert from_env.key() == explicit.key()
    assert "secret" not in json.dumps(from_env.__dict__)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ({"access_key_id": KEY_ID}, {"access_key_id": "AKIAOTHERKEYID000002"}),
        ({"profile": "team"}, {"profile": "ops"}),
        ({"endpoint_url": ENDPOINT}, {"endpoint_url": "https://vpce.example"}),
        ({"region": "eu-west-1"}, {"region": "us-east-1"}),
        ({"role_arn": "arn:aws:iam::1:role/a"}, {"role_arn": "arn:aws:iam::1:role/b"}),
    ],
)
def test_any_difference_that_changes_the_token_changes_the_key(a: dict[str, str], b: dict[str, str]) -> None:
    assert AwsIdentity.resolve(environ={}, **a).key() != AwsIdentity.resolve(environ={}, **b).key()


def test_an_explicit_profile_ignores_the_environments_keys_as_botocore_does() -> None:
    environ = {"AWS_ACCESS_KEY_ID": KEY_ID, "AWS_PROFILE": "env-profile"}
    identity = AwsIdentity.resolve(profile="team", environ=environ)
    assert identity.access_key_id is None
    assert identity.profile == "team"
    assert AwsIdentity.resolve(environ=environ).access_key_id == KEY_ID, "keys win over a profile"


def test_the_cli_and_an_airflow_connection_with_the_same_credentials_get_the_same_key(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from airflow.providers.amazon.aws.hooks.ecr import EcrHook

    from airdock.airflow.credentials import identity_of
    from airdock.auth.session import registry_credentials
    from airdock.images import ecr_registry_at

    registry = ecr_registry_at("127.0.0.1:5780")
    for name in (
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_PROFILE",
        "AWS_ROLE_ARN",
        "AWS_ENDPOINT_URL",
    ):
        monkeypatch.delenv(name, raising=False)
    connection = {
        "conn_type": "aws",
        "login": KEY_ID,
        "password": "secret",
        "extra": {"region_name": "us-east-1", "endpoint_url": ENDPOINT},
    }
    monkeypatch.setenv("AIRFLOW_CONN_AWS_IDENTITY_TEST", json.dumps(connection))
    task_key = identity_of(EcrHook(aws_conn_id="aws_identity_test", region_name=None)).key()

    # The shell of `eval "$(airdock local env)"`: the same credentials in boto3's variables.
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", KEY_ID)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    monkeypatch.setenv("AWS_ENDPOINT_URL_ECR", ENDPOINT)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    cli = registry_credentials(registry)
    assert cli.key == f"{registry.host}|{task_key}"


@pytest.mark.parametrize(
    ("facts", "said"),
    [
        ({"access_key_id": KEY_ID}, "access key …0001"),
        ({"profile": "team"}, "profile team"),
        ({"role_arn": "arn:aws:iam::1:role/a", "access_key_id": KEY_ID}, "role arn:aws:iam::1:role/a"),
        ({"endpoint_url": ENDPOINT + "/"}, f"default credentials at {ENDPOINT}"),
    ],
)
def test_an_identity_is_described_for_people_without_its_access_key_id(
    facts: dict[str, str], said: str
) -> None:
    described = AwsIdentity.resolve(environ={}, **facts).describe()
    assert described == said
    assert KEY_ID not in described
