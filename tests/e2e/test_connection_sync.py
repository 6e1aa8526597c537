"""`airdock connections sync` and EcrConnectionSyncOperator against a real Airflow metadata DB.

Each test gets its own Airflow home (a copy of one migrated SQLite database), its own cold
host token cache, and the session's local ECR stack; the stack's GetAuthorizationToken counter
proves when AWS was (not) called. The written password is checked against the stack's gateway.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from airdock.airflow.docker_login import StoredConnection, split_registry_host, why_update
from airdock.local import settings as local_settings
from tests.conftest import AIRDOCK, StackHandle, free_port, make_env
from tests.e2e.conftest import Deployment, run_dag, running_api_server

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
AIRFLOW = str(Path(sys.executable).parent / "airflow")
EXAMPLE_DAG = ROOT / "src/airdock/airflow/example_dags/example_ecr_connection_sync.py"
DAG_ID = "airdock_example_ecr_connection_sync"
API_USER, API_PASSWORD = "admin", "sync-test-api-password"

# Reads a connection (password included) and the DAG's XComs through Airflow's ORM.
READ_DB = """
import json, sys
from airflow.models import Connection
from airflow.models.xcom import XComModel
from airflow.utils.session import create_session
with create_session() as session:
    conn = session.query(Connection).filter_by(conn_id=sys.argv[1]).one_or_none()
    xcoms = [str(row.value) for row in session.query(XComModel).all()]
    out = None if conn is None else {
        "conn_type": conn.conn_type, "host": conn.host, "port": conn.port, "login": conn.login,
        "password": conn.password, "extra": conn.extra_dejson,
    }
print(json.dumps({"connection": out, "xcoms": xcoms}))
"""


@pytest.fixture(scope="module")
def migrated_home(airflow_template: Path) -> Path:
    """The session's pristine migrated Airflow home; tests copy its database."""
    return airflow_template


class Env:
    """An Airflow home with its own database and token cache, pointed at the local stack."""

    def __init__(self, home: Path, stack: StackHandle) -> None:
        self.home = home
        self.stack = stack
        self.registry = stack.settings.registry_host
        dags = home / "dags"
        dags.mkdir()
        shutil.copy(EXAMPLE_DAG, dags / EXAMPLE_DAG.name)
        self.vars = make_env(
            AIRFLOW_HOME=str(home),
            AIRFLOW__CORE__DAGS_FOLDER=str(dags),
            AIRFLOW__CORE__LOAD_EXAMPLES="False",
            AIRFLOW__AIRDOCK__ECR_REGISTRIES=self.registry,
            AIRDOCK_LOCAL_REGISTRY=self.registry,
            AIRDOCK_REGISTRY="",
            AWS_ENDPOINT_URL_ECR=stack.settings.api_url,
            AWS_ACCESS_KEY_ID=local_settings.LOCAL_ACCESS_KEY_ID,
            AWS_SECRET_ACCESS_KEY=local_settings.LOCAL_SECRET_ACCESS_KEY,
            AWS_DEFAULT_REGION="us-east-1",
        )
        self.new_cache()

    def new_cache(self) -> None:
        """Start the next commands with a cold host token cache."""
        caches = sorted(self.home.glob("cache-*"))
        path = self.home / f"cache-{len(caches)}"
        path.mkdir()
        self.vars["XDG_CACHE_HOME"] = str(path)

    def run(self, *argv: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            list(argv), env=self.vars, capture_output=True, text=True, check=False, timeout=timeout
        )

    def sync(self, *args: str) -> subprocess.CompletedProcess[str]:
        return self.run(*AIRDOCK, "connections", "sync", "--registry", self.registry, *args, timeout=120)

    def read(self, conn_id: str = "docker_default") -> dict[str, Any]:
        result = self.run(sys.executable, "-c", READ_DB, conn_id, timeout=120)
        assert result.returncode == 0, result.stderr[-2000:]
        data: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
        return data

    def connection(self, conn_id: str = "docker_default") -> dict[str, Any]:
        conn = self.read(conn_id)["connection"]
        assert conn is not None, f"connection {conn_id} was not written"
        return dict(conn)

    def dags_test(self, dag_id: str = DAG_ID) -> str:
        result = self.run(AIRFLOW, "dags", "test", dag_id)
        output = result.stdout + result.stderr
        state = re.search(r"DagRun Finished: .*state=(\w+)", output)
        assert state is not None, output[-3000:]
        assert state.group(1) == "success", output[-3000:]
        return output


@pytest.fixture
def env(migrated_home: Path, stack: StackHandle, tmp_path: Path) -> Env:
    home = tmp_path / "airflow"
    home.mkdir()
    shutil.copy(migrated_home / "airflow.db", home / "airflow.db")
    return Env(home, stack)


def token_calls(stack: StackHandle) -> int:
    return int(stack.status()["get_authorization_token_calls"])


def gateway_status(stack: StackHandle, password: str) -> int:
    return httpx.get(f"{stack.settings.gateway_url}/v2/", auth=("AWS", password), timeout=10).status_code


def assert_docker_login(env: Env, conn: dict[str, Any]) -> None:
    host, port = env.registry.rsplit(":", 1)
    assert conn["conn_type"] == "docker"
    # DockerHook logs in to f"{host}:{port}": together they must name the registry exactly.
    assert (conn["host"], conn["port"]) == (host, int(port))
    assert conn["login"] == "AWS"
    meta = conn["extra"]["airdock"]
    assert meta["registry"] == env.registry
    left = datetime.fromisoformat(meta["expires_at"]).timestamp() - time.time()
    assert 11 * 3600 < left <= 12 * 3600 + 60, meta  # the stack's tokens last 12 h
    assert gateway_status(env.stack, conn["password"]) == 200, "the written password does not log in"


# -- the pure decisions, at their boundaries ---------------------------------------------------


def stored(expires_at: str, registry: str = "127.0.0.1:5780", **fields: Any) -> StoredConnection:
    values: dict[str, Any] = {
        "conn_type": "docker",
        "host": "127.0.0.1",
        "port": 5780,
        "login": "AWS",
        "extra": {"airdock": {"registry": registry, "expires_at": expires_at}},
        "has_password": True,
    }
    values.update(fields)
    return StoredConnection(**values)


def test_freshness_decision_boundaries() -> None:
    now = 1_800_000_000.0
    iso = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(now + 8 * 3600))
    assert why_update(stored(iso), "127.0.0.1:5780", now, 7 * 3600) is None
    assert why_update(stored(iso), "127.0.0.1:5780", now, 9 * 3600) is not None  # near expiry
    assert why_update(None, "127.0.0.1:5780", now, 0) is not None
    assert why_update(stored(iso, registry="other:1"), "127.0.0.1:5780", now, 0) is not None
    assert why_update(stored(iso, port=None), "127.0.0.1:5780", now, 0) is not None
    assert why_update(stored(iso, login="someone"), "127.0.0.1:5780", now, 0) is not None
    assert why_update(stored(iso, has_password=False), "127.0.0.1:5780", now, 0) is not None
    past = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(now - 1))
    assert "expired" in (why_update(stored(past), "127.0.0.1:5780", now, 0) or "")
    assert split_registry_host("123456789012.dkr.ecr.eu-west-1.amazonaws.com") == (
        "123456789012.dkr.ecr.eu-west-1.amazonaws.com",
        None,
    )
    assert split_registry_host("[::1]:5000") == ("[::1]", 5000)


# -- the CLI -------------------------------------------------------------------------------------


def test_cli_writes_a_working_login_then_writes_nothing_until_near_expiry(env: Env) -> None:
    stack = env.stack
    calls = token_calls(stack)

    first = env.sync()
    assert first.returncode == 0, first.stderr
    lines = first.stdout.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("docker_default: updated for "), first.stdout
    assert "valid until" in lines[0]
    assert token_calls(stack) == calls + 1
    conn = env.connection()
    assert_docker_login(env, conn)
    assert gateway_status(stack, conn["password"] + "x") == 400  # the check above can fail (ECR: 400)
    password = conn["password"]
    assert password not in first.stdout + first.stderr

    # Idempotent: a fresh stored token means no write and no AWS call, even with a cold cache.
    cache_of_first_run = env.vars["XDG_CACHE_HOME"]
    env.new_cache()
    second = env.sync()
    assert second.returncode == 0, second.stderr
    assert second.stdout.strip().startswith("docker_default: still valid until "), second.stdout
    assert "nothing written" in second.stdout
    assert token_calls(stack) == calls + 1
    assert env.connection() == conn

    # Asking for more than a token's lifetime (12 h) always rewrites; the host cache's token
    # (12 h left) is too short for that, so exactly one new token is fetched.
    env.vars["XDG_CACHE_HOME"] = cache_of_first_run
    third = env.sync("--min-remaining", "13h")
    assert third.returncode == 0, third.stderr
    assert third.stdout.startswith("docker_default: updated for "), third.stdout
    assert "less than 13 h" in third.stdout
    assert token_calls(stack) == calls + 2
    rewritten = env.connection()
    assert rewritten["password"] != password
    assert_docker_login(env, rewritten)
    assert rewritten["password"] not in third.stdout + third.stderr


def test_cli_keeps_other_extra_keys_and_replaces_a_foreign_login(env: Env) -> None:
    added = env.run(
        AIRFLOW, "connections", "add", "team_registry", "--conn-type", "docker",
        "--conn-host", "old.example.org", "--conn-login", "someone", "--conn-password", "old-password",
        "--conn-extra", json.dumps({"reauth": False, "email": "ops@example.org"}),
    )  # fmt: skip
    assert added.returncode == 0, added.stderr[-2000:]

    result = env.sync("--docker-conn-id", "team_registry")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("team_registry: updated for "), result.stdout
    conn = env.connection("team_registry")
    assert_docker_login(env, conn)
    assert conn["extra"]["reauth"] is False
    assert conn["extra"]["email"] == "ops@example.org"
    assert env.read("docker_default")["connection"] is None  # only the named connection


def test_cli_failures_are_one_actionable_line(env: Env, tmp_path: Path) -> None:
    not_ecr = env.run(*AIRDOCK, "connections", "sync", "--registry", "registry.example.org:5000")
    assert not_ecr.returncode == 1
    assert not_ecr.stdout == ""
    assert len(not_ecr.stderr.strip().splitlines()) == 1, not_ecr.stderr
    assert "not an Amazon ECR host" in not_ecr.stderr and "ecr_registries" in not_ecr.stderr

    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        env.vars.pop(name, None)
    env.vars.update(
        AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "none"),
        AWS_CONFIG_FILE=str(tmp_path / "none"),
        AWS_EC2_METADATA_DISABLED="true",
    )
    no_credentials = env.sync()
    assert no_credentials.returncode == 1
    assert len(no_credentials.stderr.strip().splitlines()) == 1, no_credentials.stderr
    assert "no AWS credentials found" in no_credentials.stderr
    assert env.read()["connection"] is None

    bad_flag = env.sync("--min-remaining", "soon")
    assert bad_flag.returncode == 1
    assert "invalid duration 'soon'" in bad_flag.stderr


# -- the operator, through Airflow's task runner ------------------------------------------------


ORM_DAG = """
from datetime import datetime
import os

from airflow.sdk import DAG

from airdock.airflow.connection_sync import EcrConnectionSyncOperator

with DAG("airdock_e2e_sync_orm", schedule=None, start_date=datetime(2026, 1, 1), catchup=False):
    EcrConnectionSyncOperator(
        task_id="sync", registry=os.environ["AIRDOCK_LOCAL_REGISTRY"], api_conn_id=None,  # the ORM, chosen
    )
"""


def test_the_orm_chosen_explicitly_keeps_docker_default_fresh_under_dags_test(env: Env) -> None:
    stack = env.stack
    calls = token_calls(stack)
    (env.home / "dags" / "orm.py").write_text(ORM_DAG)

    output = env.dags_test("airdock_e2e_sync_orm")
    assert token_calls(stack) == calls + 1
    conn = env.connection()
    assert_docker_login(env, conn)
    assert "docker_default: updated for " in output
    assert "written to the Airflow metadata database" in output
    assert conn["password"] not in output, "the registry password leaked into the task output"
    xcoms = env.read()["xcoms"]
    assert any('"updated": true' in value.lower() or "'updated': true" in value.lower() for value in xcoms), (
        xcoms
    )
    assert not any(conn["password"] in value for value in xcoms), "the password went to XCom"

    env.new_cache()
    again = env.dags_test("airdock_e2e_sync_orm")
    assert "docker_default: still valid until " in again
    assert token_calls(stack) == calls + 1, "a fresh stored token must not cost a GetAuthorizationToken call"
    assert env.connection() == conn


def test_without_the_api_connection_the_operator_says_so_and_never_tries_the_orm(env: Env) -> None:
    calls = token_calls(env.stack)
    result = env.run(AIRFLOW, "dags", "test", DAG_ID)
    output = result.stdout + result.stderr
    assert re.search(r"DagRun Finished: .*state=failed", output), output[-3000:]
    assert (
        "AirflowFailException: the Airflow connection 'airflow_api' (api_conn_id) is not defined: create an "
        "HTTP connection to the api-server"
    ) in output, output[-3000:]
    assert env.read()["connection"] is None, "nothing was written through the ORM"
    assert token_calls(env.stack) == calls


@pytest.fixture
def api_server(env: Env) -> Iterator[str]:
    """The api-server of the test's Airflow home (simple auth manager, one known user)."""
    (env.home / "simple_auth_manager_passwords.json.generated").write_text(
        json.dumps({API_USER: API_PASSWORD})
    )
    env.vars["AIRFLOW__API_AUTH__JWT_SECRET"] = "airdock-connection-sync-test-secret"
    with running_api_server(env.home, free_port(), env.vars) as url:
        yield url


def test_the_example_writes_through_the_rest_api_of_its_api_connection(env: Env, api_server: str) -> None:
    added = env.run(
        AIRFLOW, "connections", "add", "docker_default", "--conn-type", "docker",
        "--conn-extra", json.dumps({"reauth": False, "email": "ops@example.org", "api_password": "kept"}),
    )  # fmt: skip
    assert added.returncode == 0, added.stderr[-2000:]
    env.vars["AIRFLOW_CONN_AIRFLOW_API"] = json.dumps(
        {"conn_type": "http", "host": api_server, "login": API_USER, "password": API_PASSWORD}
    )

    output = env.dags_test()
    assert f"written to the Airflow API at {api_server}" in output
    conn = env.connection()
    assert_docker_login(env, conn)
    # The API redacts "api_password" on read; the PATCH must not overwrite it with "***".
    assert conn["extra"]["api_password"] == "kept"
    assert conn["extra"]["reauth"] is False
    assert conn["password"] not in output
    assert API_PASSWORD not in output
    access_log = (env.home / "api-server.log").read_text()
    assert "PATCH" in access_log and "/api/v2/connections/docker_default" in access_log

    calls = token_calls(env.stack)
    again = env.dags_test()
    assert "docker_default: still valid until " in again
    assert token_calls(env.stack) == calls


def test_orm_blocked_in_a_worker_task_names_the_fix(env: Env) -> None:
    """In a real worker the task SDK blocks the ORM; the operator's fallback must say what to do."""
    script = """
from airflow.sdk.execution_time.supervisor import block_orm_access
from airdock.airflow.connection_stores import MetadataDbConnectionStore
from airdock.errors import ConfigError
block_orm_access()
try:
    MetadataDbConnectionStore().read("docker_default")
except ConfigError as exc:
    print("ConfigError:", exc)
"""
    result = env.run(sys.executable, "-c", script, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "ConfigError:" in result.stdout, result.stdout + result.stderr[-2000:]
    assert "api_conn_id" in result.stdout


def test_the_example_dag_runs_unchanged_on_a_worker_where_the_orm_is_blocked(
    stack: StackHandle, deployment: Deployment, tmp_path: Path
) -> None:
    """An executor-run task (the task SDK's supervisor, the ORM blocked): the REST path is the only way."""
    dags = tmp_path / "dags"
    dags.mkdir()
    shutil.copy(EXAMPLE_DAG, dags / EXAMPLE_DAG.name)
    connection = {"conn_type": "http", "host": deployment.url}
    connection.update(login=deployment.user, password=deployment.password)
    calls = token_calls(stack)
    run = run_dag(
        deployment.home, dags, DAG_ID, stack, tmp_path / "cache", deployment=deployment,
        AIRFLOW_CONN_AIRFLOW_API=json.dumps(connection),
    )  # fmt: skip
    assert run.state == "success", run.output[-4000:]
    logs = "".join(
        path.read_text(errors="replace")
        for path in (deployment.home / "logs" / f"dag_id={DAG_ID}").rglob("*.log")
    )
    assert f"written to the Airflow API at {deployment.url}" in logs, logs[-3000:]
    assert token_calls(stack) == calls + 1
    response = httpx.get(
        f"{deployment.url}/api/v2/connections/docker_default",
        headers={"Authorization": f"Bearer {deployment.token()}"},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    assert response.json()["login"] == "AWS"
    assert json.loads(response.json()["extra"])["airdock"]["registry"] == stack.settings.registry_host
