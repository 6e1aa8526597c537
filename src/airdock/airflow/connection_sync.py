"""Keep a stock Docker connection's ECR login fresh: ``EcrConnectionSyncOperator`` and its core.

For teams that keep the docker provider's ``DockerOperator``: its ``DockerHook`` logs in with the
``login``/``password`` of a Docker connection (``host[:port]`` is the registry). An ECR password
lasts 12 hours, so something has to rewrite that connection before it lapses. This module does,
idempotently: the token's expiry is recorded in the connection's extra
(``{"airdock": {"registry": ..., "expires_at": ...}}``, other extra keys such as ``reauth`` and
``email`` kept), and a run whose stored token still has ``min_remaining`` left writes nothing and
makes no AWS call.

The connection is written through Airflow's own interfaces, never a subprocess with the password
in argv:

- :class:`MetadataDbConnectionStore` — Airflow's ORM (``airflow.models.Connection`` in a
  ``create_session()``), what ``airflow connections add`` does. Used by ``airdock connections
  sync`` and by the operator when no ``api_conn_id`` is given. Airflow 3 blocks the ORM in task
  processes started by a real worker (``block_orm_access`` in the task SDK's supervisor), but
  not under ``airflow dags test``, which runs tasks in-process.
- :class:`RestApiConnectionStore` — the public REST API of the api-server
  (``GET``/``POST``/``PATCH /api/v2/connections``) with a JWT from ``POST /auth/token``. The task
  SDK's Execution API only *reads* connections, so this is the supported way for a task in a
  real deployment to write one.
"""

from __future__ import annotations

import contextlib
import json
import re
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol
from urllib.parse import quote

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowException, AirflowFailException

from airdock.auth.cache import CachedToken
from airdock.auth.credentials import RegistryCredentials
from airdock.durations import parse_duration
from airdock.errors import AirdockError, ConfigError
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


# -- pure decisions --------------------------------------------------------------------------


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


# -- the sync ---------------------------------------------------------------------------------


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


def _ecr_tokens(
    registry: EcrRegistry, aws_conn_id: str | None, region_name: str | None, log: Any
) -> TokenProvider:
    from airdock.airflow.credentials import AirflowEcrCredentials

    return AirflowEcrCredentials(registry, aws_conn_id=aws_conn_id, region_name=region_name, log=log)


def sync_from_airflow(
    *,
    registry: str,
    docker_conn_id: str = DEFAULT_DOCKER_CONN_ID,
    aws_conn_id: str | None = DEFAULT_AWS_CONN_ID,
    region_name: str | None = None,
    min_remaining: float | str = DEFAULT_MIN_REMAINING,
    store: ConnectionStore | None = None,
    log: Any = None,
) -> SyncResult:
    """The sync with Airflow's config: ``[airdock] ecr_registries``, the AWS connection, the host cache."""
    from airdock.airflow.credentials import configured_ecr_registries

    ecr = resolve_registry(registry, configured_ecr_registries())
    return sync_docker_connection(
        registry=ecr,
        docker_conn_id=docker_conn_id,
        store=store if store is not None else MetadataDbConnectionStore(),
        tokens=lambda: _ecr_tokens(ecr, aws_conn_id, region_name, log),
        min_remaining=min_remaining_seconds(min_remaining),
        log=log,
    )


# -- stores -----------------------------------------------------------------------------------


def _extra_dict(text: str | None) -> dict[str, Any]:
    if not text:
        return {}
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    return dict(value) if isinstance(value, dict) else {}


class MetadataDbConnectionStore:
    """Connections in Airflow's metadata database through Airflow's ORM (password encrypted by Fernet)."""

    where = "the Airflow metadata database"

    def read(self, conn_id: str) -> StoredConnection | None:
        from airflow.models import Connection
        from sqlalchemy import select

        with self._session() as session:
            row = session.scalar(select(Connection).where(Connection.conn_id == conn_id))
            if row is None:
                return None
            return StoredConnection(
                conn_type=row.conn_type,
                host=row.host,
                port=row.port,
                login=row.login,
                extra=_extra_dict(row.extra),
                has_password=bool(row.password),
            )

    def write(self, conn_id: str, value: DockerLogin, *, exists: bool) -> None:
        from airflow.models import Connection
        from sqlalchemy import select

        with self._session() as session:
            row = session.scalar(select(Connection).where(Connection.conn_id == conn_id))
            if row is None:
                row = Connection(conn_id=conn_id, conn_type="docker")
                session.add(row)
            row.conn_type = "docker"
            row.host = value.host
            row.port = value.port
            row.login = value.login
            row.password = value.password
            row.extra = json.dumps(value.extra)

    @staticmethod
    @contextlib.contextmanager
    def _session() -> Iterator[Any]:
        from airflow.utils.session import create_session
        from sqlalchemy.exc import SQLAlchemyError

        try:
            with contextlib.ExitStack() as stack:
                try:
                    session = stack.enter_context(create_session())
                except (RuntimeError, AttributeError) as exc:  # what the task SDK's ORM block raises
                    raise _orm_blocked(exc) from None
                yield session  # create_session commits on the way out
        except SQLAlchemyError as exc:
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise AirdockError(
                f"the Airflow metadata database failed ({first}): check [database] sql_alchemy_conn "
                "and run `airflow db migrate`"
            ) from None


def _orm_blocked(exc: BaseException) -> AirdockError:
    return ConfigError(
        "this process may not use Airflow's metadata database "
        f"({str(exc).splitlines()[0] if str(exc) else type(exc).__name__}); Airflow 3 blocks it in tasks: "
        "give EcrConnectionSyncOperator api_conn_id, an HTTP connection to the api-server with a user "
        "allowed to edit connections"
    )


class RestApiConnectionStore:
    """Connections through the api-server's public REST API (``/api/v2/connections``).

    Authenticates with a JWT from ``POST {base_url}/auth/token`` (simple, FAB and Keycloak auth
    managers), or uses ``token`` as the bearer token when given. The user needs permission to
    read and edit connections.
    """

    def __init__(
        self,
        base_url: str,
        *,
        username: str | None = None,
        password: str | None = None,
        token: str | None = None,
        timeout: float = 30.0,
        verify: bool = True,
    ) -> None:
        import httpx

        if not base_url:
            raise ConfigError("no Airflow API base URL: set the api connection's host, or [api] base_url")
        self.base_url = base_url.rstrip("/")
        self._username = username
        self._password = password
        self._token = token
        self._client = httpx.Client(timeout=timeout, verify=verify)

    @property
    def where(self) -> str:
        return f"the Airflow API at {self.base_url}"

    def close(self) -> None:
        self._client.close()

    def read(self, conn_id: str) -> StoredConnection | None:
        response = self._request("GET", f"/api/v2/connections/{quote(conn_id, safe='')}", ok=(200, 404))
        if response.status_code == 404:
            return None
        data = response.json()
        password = data.get("password")
        port = data.get("port")
        return StoredConnection(
            conn_type=data.get("conn_type"),
            host=data.get("host"),
            port=int(port) if port is not None else None,
            login=data.get("login"),
            extra=_extra_dict(data.get("extra")),
            has_password=bool(password),  # redacted to "***" by the API, but present
        )

    def write(self, conn_id: str, value: DockerLogin, *, exists: bool) -> None:
        body = {
            "connection_id": conn_id,
            "conn_type": "docker",
            "host": value.host,
            "port": value.port,
            "login": value.login,
            "password": value.password,
            # Values the API redacted on read come back as "***"; the API merges them with the
            # stored ones on PATCH, so secrets in other extra keys survive.
            "extra": json.dumps(value.extra),
        }
        if exists:
            fields = ["conn_type", "host", "port", "login", "password", "extra"]
            self._request(
                "PATCH",
                f"/api/v2/connections/{quote(conn_id, safe='')}",
                ok=(200,),
                params=[("update_mask", name) for name in fields],
                json=body,
            )
        else:
            self._request("POST", "/api/v2/connections", ok=(201,), json=body)

    # -- internals ------------------------------------------------------------------------
    def _bearer(self) -> str:
        if self._token:
            return self._token
        if not (self._username and self._password):
            raise ConfigError(
                f"no credentials for {self.where}: set login and password on the api connection "
                "(a user allowed to edit connections)"
            )
        response = self._send(
            "POST", "/auth/token", json={"username": self._username, "password": self._password}
        )
        if response.status_code not in (200, 201):
            raise ConfigError(
                f"{self.where} refused the login of user {self._username!r} (HTTP {response.status_code}): "
                "check the api connection's login and password"
            )
        token = response.json().get("access_token")
        if not isinstance(token, str) or not token:
            raise AirdockError(f"{self.where} answered /auth/token without an access_token")
        _mask(token)
        self._token = token
        return token

    def _send(self, method: str, path: str, **kwargs: Any) -> Any:
        import httpx

        try:
            return self._client.request(method, self.base_url + path, **kwargs)
        except httpx.HTTPError as exc:
            raise AirdockError(f"cannot reach {self.where} ({type(exc).__name__}: {exc})") from None

    def _request(self, method: str, path: str, *, ok: tuple[int, ...], **kwargs: Any) -> Any:
        headers = {"Authorization": f"Bearer {self._bearer()}"}
        response = self._send(method, path, headers=headers, **kwargs)
        if response.status_code in ok:
            return response
        if response.status_code in (401, 403):
            raise ConfigError(
                f"{self.where} refused {method} {path} (HTTP {response.status_code}): the api connection's "
                "user needs permission to read and edit connections"
            )
        detail = ""
        try:
            detail = str(response.json().get("detail", ""))[:200]
        except ValueError:
            detail = response.text[:200]
        raise AirdockError(f"{self.where}: {method} {path} failed with HTTP {response.status_code}: {detail}")


def _mask(secret: str) -> None:
    from airflow.sdk.log import mask_secret

    mask_secret(secret)


def rest_store_from_connection(api_conn_id: str) -> RestApiConnectionStore:
    """A REST store from an Airflow HTTP connection: host = api-server base URL, login/password = a user.

    The host may be a full URL (``http://airflow-api:8080``) or a bare host with ``schema``
    (http/https) and ``port``; an empty host falls back to ``[api] base_url``. A password with no
    login is used as a ready bearer token. ``{"verify": false}`` in extra skips TLS verification.
    """
    from airflow.sdk import BaseHook

    try:
        conn = BaseHook.get_connection(api_conn_id)
    except Exception as exc:
        if "isn't defined" not in str(exc) and type(exc).__name__ != "AirflowNotFoundException":
            raise
        raise ConfigError(
            f"the Airflow connection '{api_conn_id}' (api_conn_id) is not defined: create an HTTP connection "
            "to the api-server (host = its base URL, login/password of a user allowed to edit connections), "
            "or pass api_conn_id=None where Airflow lets tasks use its metadata database (airflow dags test)"
        ) from None
    host = (conn.host or "").strip()
    if not host:
        from airflow.configuration import conf

        base_url = str(conf.get("api", "base_url", fallback="") or "")
    elif "://" in host:
        base_url = (
            host if conn.port is None or re.search(r"://[^/]*:\d+", host) else _with_port(host, conn.port)
        )
    else:
        scheme = conn.schema if conn.schema in ("http", "https") else "http"
        base_url = f"{scheme}://{host}" + (f":{conn.port}" if conn.port else "")
    if conn.password:
        _mask(conn.password)
    extra = conn.extra_dejson if isinstance(conn.extra_dejson, dict) else {}
    verify = extra.get("verify", True) not in (False, "false", "False", "0", 0)
    if conn.login:
        return RestApiConnectionStore(base_url, username=conn.login, password=conn.password, verify=verify)
    return RestApiConnectionStore(base_url, token=conn.password or None, verify=verify)


def _with_port(url: str, port: int) -> str:
    scheme, _, rest = url.partition("://")
    netloc, slash, path = rest.partition("/")
    return f"{scheme}://{netloc}:{port}{slash}{path}"


# -- the operator -----------------------------------------------------------------------------


class EcrConnectionSyncOperator(BaseOperator):  # type: ignore[misc]  # Airflow is untyped here
    """Write a fresh ECR login into a Docker connection when the stored one is near expiry.

    For DAGs that keep the stock ``DockerOperator``: schedule this every few hours on one worker
    (see ``example_ecr_connection_sync``) instead of a ``docker login`` cron on every host. The
    connection gets ``conn_type=docker``, ``host``/``port`` = the registry, ``login=AWS`` and the
    token as password; the token's expiry goes to ``extra["airdock"]``, other extra keys
    (``reauth``, ``email``) are kept. A run whose stored token has at least ``min_remaining`` left
    writes nothing and calls no AWS API. Returns (as XCom) ``{"docker_conn_id", "registry",
    "expires_at", "updated", "reason"}`` — never the password.

    :param registry: ECR registry host, e.g. ``123456789012.dkr.ecr.eu-west-1.amazonaws.com``, or a
        host listed in ``[airdock] ecr_registries`` (VPC endpoint, local stack).
    :param docker_conn_id: the Docker connection to keep fresh.
    :param aws_conn_id: the AWS connection for GetAuthorizationToken (None: boto3's default chain).
    :param region_name: region when neither the host nor the AWS connection names one.
    :param min_remaining: refresh when less than this is left (``"7h"`` or seconds). The default
        suits a 6-hourly schedule with 12 h ECR tokens: an hour of slack for a late run.
    :param api_conn_id: an HTTP connection to the api-server (host = base URL, login/password of a
        user allowed to edit connections), default ``airflow_api``. The write goes through the
        public REST API ``/api/v2/connections``: on a real Airflow 3 deployment task processes may
        not use the metadata database (the task SDK blocks the ORM and its Execution API only reads
        connections). ``None`` chooses Airflow's ORM instead, explicitly — for ``airflow dags test``
        and ``dag.test()`` only, where Airflow still allows it; it is never tried first.
    """

    template_fields: Sequence[str] = (
        "registry",
        "docker_conn_id",
        "aws_conn_id",
        "region_name",
        "min_remaining",
    )
    ui_color = "#f0e4ff"

    def __init__(
        self,
        *,
        registry: str,
        docker_conn_id: str = DEFAULT_DOCKER_CONN_ID,
        aws_conn_id: str | None = DEFAULT_AWS_CONN_ID,
        region_name: str | None = None,
        min_remaining: str | float = DEFAULT_MIN_REMAINING,
        api_conn_id: str | None = DEFAULT_API_CONN_ID,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.registry = registry
        self.docker_conn_id = docker_conn_id
        self.aws_conn_id = aws_conn_id
        self.region_name = region_name
        self.min_remaining = min_remaining
        self.api_conn_id = api_conn_id

    def execute(self, context: Any) -> dict[str, Any]:
        rest: RestApiConnectionStore | None = None
        try:
            store: ConnectionStore
            if self.api_conn_id:
                rest = rest_store_from_connection(self.api_conn_id)
                store = rest
            else:
                store = MetadataDbConnectionStore()
            result = sync_from_airflow(
                registry=self.registry,
                docker_conn_id=self.docker_conn_id,
                aws_conn_id=self.aws_conn_id,
                region_name=self.region_name,
                min_remaining=self.min_remaining,
                store=store,
                log=self.log,
            )
        except ConfigError as exc:
            raise AirflowFailException(str(exc)) from None  # retrying cannot fix configuration
        except AirdockError as exc:
            raise AirflowException(str(exc)) from None
        finally:
            if rest is not None:
                rest.close()
        return result.to_dict()
