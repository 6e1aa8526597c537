"""Where Airflow connections are read and written, never through a subprocess with a password in argv.

- :class:`MetadataDbConnectionStore` — Airflow's ORM (``airflow.models.Connection`` in a
  ``create_session()``), what ``airflow connections add`` does. Used by ``airdock connections
  sync`` and by the operator when ``api_conn_id=None`` is chosen. Airflow 3 blocks the ORM in task
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
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

from airdock.airflow.docker_login import DockerLogin, StoredConnection
from airdock.errors import AirdockError, ConfigError

__all__ = ["MetadataDbConnectionStore", "RestApiConnectionStore", "rest_store_from_connection"]


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
