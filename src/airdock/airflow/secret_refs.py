"""Where a secret environment value lives — ``var:``, ``conn:`` or a Secrets Manager / SSM ARN — and
reading it. The reference is what travels (task arguments, trigger kwargs); the value is read where
it is needed and masked there."""

from __future__ import annotations

import re
from typing import Any

from airdock.errors import ConfigError

__all__ = ["SECRET_REF", "secret_value"]

SECRET_REF = re.compile(
    r"(var:.+|conn:[^:]+(:(login|password|host|schema|port|extra\..+))?"
    r"|arn:aws[a-z-]*:(secretsmanager|ssm):[a-z0-9-]+:\d{12}:.+)"
)


def secret_value(ref: str, aws_conn_id: str | None) -> str:
    """The value behind ``ref``; a one-line ``ConfigError`` (never holding the value) otherwise."""
    from airflow.sdk import BaseHook, Variable

    if ref.startswith("var:"):
        try:
            return str(Variable.get(ref[4:]))
        except Exception:
            raise ConfigError(f"Airflow variable {ref[4:]!r} does not exist or cannot be read") from None
    if ref.startswith("conn:"):
        _, conn_id, *rest = ref.split(":", 2)
        field_name = rest[0] if rest else "password"
        try:
            conn = BaseHook.get_connection(conn_id)
        except Exception:
            raise ConfigError(f"Airflow connection {conn_id!r} does not exist") from None
        if field_name.startswith("extra."):
            value = conn.extra_dejson.get(field_name[6:])
        else:
            value = getattr(conn, field_name, None)
        if value in (None, ""):
            raise ConfigError(f"Airflow connection {conn_id!r} has no {field_name}")
        return str(value)
    return _aws_secret(ref, aws_conn_id)


def _aws_secret(arn: str, aws_conn_id: str | None) -> str:
    from botocore.exceptions import BotoCoreError, ClientError

    service, region = arn.split(":")[2], arn.split(":")[3]
    client = aws_client("secretsmanager" if service == "secretsmanager" else "ssm", region, aws_conn_id)
    try:
        if service == "secretsmanager":
            return str(client.get_secret_value(SecretId=arn)["SecretString"])
        name = arn.split(":", 5)[5].removeprefix("parameter")
        return str(client.get_parameter(Name=name, WithDecryption=True)["Parameter"]["Value"])
    except (ClientError, BotoCoreError) as exc:
        raise ConfigError(f"could not read {arn}: {exc}") from None


def aws_client(service: str, region: str | None, aws_conn_id: str | None) -> Any:
    """A boto3 client for ``service`` with the credentials of the Airflow AWS connection."""
    from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook

    return AwsBaseHook(aws_conn_id=aws_conn_id, client_type=service, region_name=region).get_conn()
