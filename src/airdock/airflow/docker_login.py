"""Keep a Docker connection's ECR login fresh — the decisions and the sync, with no Airflow in them.

For teams that keep the docker provider's ``DockerOperator``: its ``DockerHook`` logs in with the
``login``/``password`` of a Docker connection (``host[:port]`` is the registry). An ECR password
lasts 12 hours, so something has to rewrite that connection before it lapses. :func:`sync_docker_connection`
does, idempotently: the token's expiry is recorded in the connection's extra
(``{"airdock": {"registry": ..., "expires_at": ...}}``, other extra keys such as ``reauth`` and
``email`` kept), and a run whose stored token still has ``min_remaining`` left writes nothing and
makes no AWS call. Where connections are read and written is a :class:`ConnectionStore`
(:mod:`airdock.airflow.connection_stores`); the operator is :mod:`airdock.airflow.connection_sync`.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from airdock.auth.cache import CachedToken
from airdock.auth.credentials import RegistryCredentials
from airdock.durations import parse_duration
from airdock.errors import ConfigError
from airdock.images import EcrRegistry, ecr_registry_at, parse_ecr_host

# A 6-hourly schedule checks a token at most 6 h after the last check; 7 h leaves an hour for a
# late or retried run. ECR tokens last 12 h, so every run on that schedule finds either a token
# with > 7 h left (nothing to do) or one with > 1 h left that it replaces: never a lapsed one.
DEFAULT_MIN_REMAINING = "7h"
DEFAULT_DOCKER_CONN_ID = "docker_default"
DEFAULT_AWS_CONN_ID = "aws_default"
DEFAULT_API_CONN_ID = "airflow_api"  # an HTTP connection to the api-server (see EcrConnectionSyncOperator)
ECR_USERNAME = "AWS"
EXTRA_KEY = "airdock"
_HOST_PORT = re.compile(r"(?P<host>\[[0-9a-fA-F:]+\]|[^:\[\]]+)(?::(?P<port>[0-9]{1,5}))?")


@dataclass(frozen=True)
class StoredConnection:
    """What a store knows about an existing connection (never its password)."""

    conn_type: str | None
    host: str | None
    port: int | None
    login: str | None
    extra: dict[str, Any]
    has_password: bool


@dataclass(frozen=True)
class DockerLogin:
    """The fields written into the Docker connection; ``password`` never shows in ``repr``."""

    host: str
    port: int | None
    login: str
    password: str = field(repr=False)
    extra: dict[str, Any]


class ConnectionStore(Protocol):
    """Where Airflow connections are read and written."""

    @property
    def where(self) -> str:
        """Names the store in messages, e.g. ``the Airflow metadata database``."""
        ...

    def read(self, conn_id: str) -> StoredConnection | None: ...

    def write(self, conn_id: str, value: DockerLogin, *, exists: bool) -> None: ...


@dataclass(frozen=True)
class SyncResult:
    """The outcome of one sync; holds nothing secret, so it is safe to log and return as XCom."""

    docker_conn_id: str
    registry: str
    expires_at: float
    updated: bool
    reason: str

    @property
    def expires_at_iso(self) -> str:
        return _iso(self.expires_at)

    def to_dict(self) -> dict[str, Any]:
        return {
            "docker_conn_id": self.docker_conn_id,
            "registry": self.registry,
            "expires_at": self.expires_at_iso,
            "updated": self.updated,
            "reason": self.reason,
        }

    def summary(self) -> str:
        if self.updated:
            return (
                f"{self.docker_conn_id}: updated for {self.registry}, valid until {self.expires_at_iso} "
                f"({self.reason})"
            )
        return (
            f"{self.docker_conn_id}: still valid until {self.expires_at_iso} for {self.registry} "
            "(nothing written)"
        )


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds")


def _parse_iso(value: Any) -> float | None:
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def split_registry_host(registry: str) -> tuple[str, int | None]:
    """``host[:port]`` → (host, port), the way ``DockerHook`` joins them back (``f"{host}:{port}"``)."""
    match = _HOST_PORT.fullmatch(registry)
    if match is None:
        raise ConfigError(f"registry {registry!r} is not host or host:port")
    port = match["port"]
    return match["host"], int(port) if port else None


def min_remaining_seconds(value: float | str) -> float:
    """A duration such as ``7h`` (or seconds) → seconds; ConfigError when negative or malformed."""
    seconds = parse_duration(value) if isinstance(value, str) else float(value)
    if seconds < 0:
        raise ConfigError(f"min_remaining must not be negative (got {value!r})")
    return seconds


def resolve_registry(registry: str, configured: Sequence[str]) -> EcrRegistry:
    """The ECR registry a host names: a standard ECR host, or one of the ``configured`` hosts.

    ``configured`` is ``[airdock] ecr_registries``. Anything else is refused with a one-line
    ConfigError saying how to fix it.
    """
    host = registry.strip().lower()
    if not host:
        raise ConfigError(
            "no registry given: name an ECR registry host, e.g. 123456789012.dkr.ecr.us-east-1.amazonaws.com"
        )
    if "://" in host or "/" in host:
        raise ConfigError(
            f"registry {registry!r} must be a bare host or host:port (no scheme, no path), "
            "e.g. 123456789012.dkr.ecr.us-east-1.amazonaws.com"
        )
    split_registry_host(host)  # validates the shape
    standard = parse_ecr_host(host)
    if standard is not None:
        return standard
    if host in {entry.lower() for entry in configured}:
        return ecr_registry_at(host)
    raise ConfigError(
        f"registry {host!r} is not an Amazon ECR host (<account>.dkr.ecr.<region>.amazonaws.com); if it is "
        "an ECR endpoint under another name, list it in [airdock] ecr_registries "
        "(AIRFLOW__AIRDOCK__ECR_REGISTRIES)"
    )


def stored_expiry(stored: StoredConnection | None, registry: str) -> float | None:
    """When the token in ``stored`` expires, if it is a login airdock wrote for ``registry``."""
    if stored is None or not stored.has_password:
        return None
    meta = stored.extra.get(EXTRA_KEY)
    if not isinstance(meta, dict) or meta.get("registry") != registry:
        return None
    host, port = split_registry_host(registry)
    if (stored.conn_type or "").lower() != "docker" or stored.login != ECR_USERNAME:
        return None
    if (stored.host or "").lower() != host or stored.port != port:
        return None
    return _parse_iso(meta.get("expires_at"))


def why_update(
    stored: StoredConnection | None, registry: str, now: float, min_remaining: float
) -> str | None:
    """Why the connection must be (re)written, or None when the stored token is fresh enough."""
    if stored is None:
        return "the connection did not exist"
    expires_at = stored_expiry(stored, registry)
    if expires_at is None:
        return "the connection held no ECR login airdock wrote for this registry"
    left = expires_at - now
    if left <= 0:
        return "the stored token had expired"
    if left < min_remaining:
        return f"the stored token had {left / 3600:.1f} h left, less than {min_remaining / 3600:g} h"
    return None


def docker_login(
    credentials: RegistryCredentials, registry: str, stored: StoredConnection | None, now: float
) -> DockerLogin:
    """The connection fields for ``credentials``, keeping every extra key but airdock's own."""
    host, port = split_registry_host(registry)
    extra = dict(stored.extra) if stored is not None else {}
    extra[EXTRA_KEY] = {
        "registry": registry,
        "expires_at": _iso(credentials.expires_at),
        "synced_at": _iso(now),
    }
    return DockerLogin(
        host=host, port=port, login=credentials.username, password=credentials.password, extra=extra
    )


class TokenProvider(Protocol):
    """What the sync needs from ``AirflowEcrCredentials`` (a ``CachedCredentials``)."""

    def lookup(self) -> CachedToken: ...

    def refresh(self, stale: RegistryCredentials) -> RegistryCredentials: ...


def sync_docker_connection(
    *,
    registry: EcrRegistry,
    docker_conn_id: str,
    store: ConnectionStore,
    tokens: Callable[[], TokenProvider],
    min_remaining: float,
    clock: Callable[[], float] = time.time,
    log: Any = None,
) -> SyncResult:
    """Write a fresh ECR login for ``registry`` into ``docker_conn_id`` unless the stored one is fresh.

    ``tokens`` is called only when a write is due, so a fresh connection costs no AWS call. A
    token from the host cache with less than ``min_remaining`` left is replaced by a new one, so
    what is written lasts as long as ECR allows.
    """
    stored = store.read(docker_conn_id)
    now = clock()
    reason = why_update(stored, registry.host, now, min_remaining)
    if reason is None:
        expires_at = stored_expiry(stored, registry.host)
        assert expires_at is not None
        result = SyncResult(docker_conn_id, registry.host, expires_at, updated=False, reason="still valid")
        if log is not None:
            log.info("%s", result.summary())
        return result

    provider = tokens()
    found = provider.lookup()
    credentials = found.credentials
    if not found.fetched and credentials.seconds_left(now) < min_remaining:
        credentials = provider.refresh(credentials)  # a cached token too close to expiry to store
    store.write(
        docker_conn_id, docker_login(credentials, registry.host, stored, now), exists=stored is not None
    )
    result = SyncResult(docker_conn_id, registry.host, credentials.expires_at, updated=True, reason=reason)
    if log is not None:
        log.info("%s (written to %s)", result.summary(), store.where)
    return result
