"""Where a secret environment value lives — ``var:``, ``conn:`` or a Secrets Manager / SSM ARN — and
reading it. The reference is what travels (task arguments, trigger kwargs); the value is read where
it is needed and masked there."""

from __future__ import annotations

import hashlib
import os
import re
import threading
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


_clients_lock = threading.Lock()
_sessions: dict[tuple[str | None, str | None, str], Any] = {}
_clients: dict[tuple[str, str | None, str | None, str], Any] = {}


def _forget_after_fork() -> None:
    """A forked child makes its own clients: sharing the parent's connection pools (the same
    sockets) between two processes mixes up their responses."""
    global _clients_lock
    _clients_lock = threading.Lock()  # another thread may have held it at the fork
    _sessions.clear()
    _clients.clear()


os.register_at_fork(after_in_child=_forget_after_fork)

_loader: Any = None  # botocore's data loader shared by every session of the process (see below)


def _data_loader() -> Any:
    """One botocore data loader for the process: each session would otherwise load and parse the
    service models (JSON) and endpoint rules again. It holds parsed files only — no credentials,
    no connection — so a forked process keeps it: :func:`warm` fills it where tasks are forked."""
    global _loader
    if _loader is None:
        from botocore.loaders import create_loader

        _loader = create_loader(os.environ.get("AWS_DATA_PATH"))
    return _loader


def warm(services: tuple[str, ...] = ("ecs", "ecr", "logs", "sts", "secretsmanager", "ssm")) -> None:
    """Load what making a client of each of ``services`` needs into the shared loader and
    botocore's module caches, by making throw-away clients (no request, no credentials looked up)."""
    import botocore.session

    session = botocore.session.get_session()
    session.register_component("data_loader", _data_loader())
    for service in services:
        session.create_client(  # placeholder keys: a client made with them never sends a request
            service,
            region_name="us-east-1",
            aws_access_key_id="warm",
            aws_secret_access_key="warm",  # noqa: S106
        )


def aws_client(service: str, region: str | None, aws_conn_id: str | None) -> Any:
    """A boto3 client for ``service`` with the credentials of the Airflow AWS connection.

    One boto3 session per (connection as it reads now, region) and one client per service in a
    process: a task that starts an ECS task asks for three clients and pays for one session, a
    triggerer's ECS triggers share theirs (boto3 sessions' clients are thread-safe). A connection
    edited since reads differently, so it gets a new session."""
    from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook

    hook = AwsBaseHook(aws_conn_id=aws_conn_id, client_type=service, region_name=region)
    fingerprint = _fingerprint(hook)
    key = (service, region, aws_conn_id, fingerprint)
    with _clients_lock:
        client = _clients.get(key)
        if client is not None:
            return client
        session = _sessions.get((region, aws_conn_id, fingerprint))
        if session is None:
            session = _sessions[(region, aws_conn_id, fingerprint)] = hook.get_session(region_name=region)
            session._session.register_component("data_loader", _data_loader())  # boto3 wraps botocore
        client = _clients[key] = session.client(
            service_name=service,
            endpoint_url=hook.conn_config.get_service_endpoint_url(service_name=service),
            config=hook.config,
            verify=hook.verify,
        )
        return client


class LazyClient:
    """``aws_client(...)`` made on first use: a deferred ECS start never reads CloudWatch Logs, and
    making a client (its service model parsed) is CPU a busy worker feels."""

    def __init__(self, service: str, region: str | None, aws_conn_id: str | None) -> None:
        self._args = (service, region, aws_conn_id)
        self._client: Any = None

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or "_args" not in self.__dict__:  # copy, pickle: no client for them
            raise AttributeError(name)
        if self._client is None:
            self._client = aws_client(*self._args)
        return getattr(self._client, name)


def _fingerprint(hook: Any) -> str:
    """A digest of what the hook's session is made from (never the secret itself)."""
    if not hook.aws_conn_id:
        return "-"
    try:
        conn = hook.get_connection(hook.aws_conn_id)
    except Exception:  # a missing connection: the hook itself says so when the session is made
        return "?"
    return hashlib.sha256(conn.get_uri().encode()).hexdigest()
