"""`airdock connections sync` and EcrConnectionSyncOperator against a real Airflow metadata DB.

Each test gets its own Airflow home (a copy of one migrated SQLite database), its own cold
host token cache, and the session's local ECR stack; the stack's GetAuthorizationToken counter
proves when AWS was (not) called. The written password is checked against the stack's gateway.

Time: every Airflow process costs seconds of start-up (an in-process ``airflow dags test`` ~15 s,
most of it building the Execution API app). So each home has one long-lived process that reads
(and, for set-up, adds) connections through Airflow's ORM, started in the background with the
home; a test that needs two runs of its own DAG runs them as two tasks of one ``dags test``; and
the example DAG runs on the session's deployment (executor runs against its api-server).
"""

from __future__ import annotations

import contextlib
import json
import queue
import re
import secrets
import shutil
import subprocess
import sys
import threading
import time
from base64 import urlsafe_b64encode
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

import httpx
import pytest

from airdock.airflow.docker_login import StoredConnection, split_registry_host, why_update
from airdock.local import settings as local_settings
from tests.conftest import AIRDOCK, StackHandle, make_env
from tests.e2e.conftest import Deployment, run_dag

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
AIRFLOW = str(Path(sys.executable).parent / "airflow")
EXAMPLE_DAG = ROOT / "src/airdock/airflow/example_dags/example_ecr_connection_sync.py"
DAG_ID = "airdock_example_ecr_connection_sync"

# A connection as Airflow's ORM gives it (password decrypted); shared by the ORM agent and ORM_DAG.
CONNECTION_FIELDS = """
def connection_fields(conn):
    if conn is None:
        return None
    return {
        "conn_type": conn.conn_type, "host": conn.host, "port": conn.port, "login": conn.login,
        "password": conn.password, "extra": conn.extra_dejson,
    }
"""

# One process per home that answers requests (a JSON line each) through Airflow's ORM: read
# connections (password included) and the XComs, or add a connection (set-up).
AGENT_MARK = "@@airdock-orm-agent@@ "
ORM_AGENT = (
    """
import json, sys
from airflow.models import Connection
from airflow.models.xcom import XComModel
from airflow.utils.session import create_session
"""
    + CONNECTION_FIELDS
    + """

def read(*conn_ids):
    with create_session() as session:
        connections = {
            conn_id: connection_fields(session.query(Connection).filter_by(conn_id=conn_id).one_or_none())
            for conn_id in conn_ids
        }
        xcoms = [{"task_id": row.task_id, "value": str(row.value)} for row in session.query(XComModel).all()]
    return {"connections": connections, "xcoms": xcoms}


def add(fields):
    with create_session() as session:
        session.add(Connection(**fields))
    return {}


def reply(message):
    sys.stdout.write("\\n" + MARK + json.dumps(message) + "\\n")
    sys.stdout.flush()


reply({"ready": True})
for line in sys.stdin:
    request = json.loads(line)
    try:
        reply({"ok": {"read": read, "add": add}[request["op"]](*request["args"])})
    except Exception as exc:
        reply({"error": f"{type(exc).__name__}: {exc}"})
"""
).replace("MARK", repr(AGENT_MARK))


@pytest.fixture(scope="module")
def migrated_home(airflow_template: Path) -> Path:
    """The session's pristine migrated Airflow home; tests copy its database."""
    return airflow_template


@dataclass
class Started:
    """A command started in the background; its output goes to files (no pipe can fill and stall it)."""

    process: subprocess.Popen[bytes]
    stdout: Path
    stderr: Path
    timeout: float

    def result(self) -> subprocess.CompletedProcess[str]:
        try:
            self.process.wait(timeout=self.timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise
        return subprocess.CompletedProcess(
            self.process.args,
            self.process.returncode,
            self.stdout.read_text(errors="replace"),
            self.stderr.read_text(errors="replace"),
        )


class OrmAgent:
    """The home's ORM_AGENT process; its start-up overlaps the test's first commands."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self._log = log
        with log.open("w") as stderr:
            self.process = subprocess.Popen(
                [sys.executable, "-c", ORM_AGENT],
                env=env,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=stderr,
                text=True,
            )
        self._replies: queue.Queue[dict[str, Any] | None] = queue.Queue()
        assert self.process.stdout is not None
        threading.Thread(target=self._pump, args=(self.process.stdout,), daemon=True).start()
        self._ready = False

    def _pump(self, stdout: TextIO) -> None:
        for line in stdout:
            if line.startswith(AGENT_MARK):
                self._replies.put(json.loads(line[len(AGENT_MARK) :]))
        self._replies.put(None)  # the agent is gone

    def _reply(self) -> dict[str, Any]:
        try:
            message = self._replies.get(timeout=120)
        except queue.Empty:
            message = None
        assert message is not None, "the ORM agent died or hangs: " + self._log.read_text()[-3000:]
        return message

    def call(self, op: str, *args: Any) -> Any:
        if not self._ready:
            assert self._reply() == {"ready": True}
            self._ready = True
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps({"op": op, "args": args}) + "\n")
        self.process.stdin.flush()
        message = self._reply()
        assert "ok" in message, message.get("error")
        return message["ok"]

    def close(self) -> None:
        """Stop it: every call has had its answer (an add is committed before it answers)."""
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        assert self.process.stdin is not None
        with contextlib.suppress(OSError):
            self.process.stdin.close()


class Env:
    """An Airflow home with its own database and token cache, pointed at the local stack."""

    def __init__(self, home: Path, stack: StackHandle) -> None:
        self.home = home
        self.stack = stack
        self.registry = stack.settings.registry_host
        dags = home / "dags"
        dags.mkdir()
        shutil.copy(EXAMPLE_DAG, dags / EXAMPLE_DAG.name)
        # The secrets Airflow would generate into airflow.cfg on its first run in this home, written
        # first: the processes that start together here must not each generate (and write) their own.
        fernet_key = urlsafe_b64encode(secrets.token_bytes(32)).decode()
        (home / "airflow.cfg").write_text(
            f"[core]\nfernet_key = {fernet_key}\n\n[api_auth]\njwt_secret = {secrets.token_urlsafe(16)}\n"
        )
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
        self.agent = OrmAgent(dict(self.vars), home / "orm-agent.log")
        self._started: list[Started] = []

    def new_cache(self) -> None:
        """Start the next commands with a cold host token cache."""
        caches = sorted(self.home.glob("cache-*"))
        path = self.home / f"cache-{len(caches)}"
        path.mkdir()
        self.vars["XDG_CACHE_HOME"] = str(path)

    def start(self, *argv: str, timeout: float = 300, env: dict[str, str] | None = None) -> Started:
        """Start ``argv`` in the background (with ``env``, else the home's variables as they are now)."""
        n = len(self._started)
        out, err = self.home / f"command-{n}.out", self.home / f"command-{n}.err"
        with out.open("wb") as stdout, err.open("wb") as stderr:
            process = subprocess.Popen(
                list(argv), env=dict(env if env is not None else self.vars), stdout=stdout, stderr=stderr
            )
        self._started.append(Started(process, out, err, timeout))
        return self._started[-1]

    def run(self, *argv: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return self.start(*argv, timeout=timeout).result()

    def sync_argv(self, *args: str) -> list[str]:
        return [*AIRDOCK, "connections", "sync", "--registry", self.registry, *args]

    def sync(self, *args: str) -> subprocess.CompletedProcess[str]:
        return self.run(*self.sync_argv(*args), timeout=120)

    def read(self, *conn_ids: str) -> dict[str, Any]:
        """``{"connections": {conn_id: fields or None}, "xcoms": [{"task_id", "value"}]}``, via the ORM."""
        data: dict[str, Any] = self.agent.call("read", *(conn_ids or ("docker_default",)))
        return data

    def connection(self, conn_id: str = "docker_default") -> dict[str, Any]:
        conn = self.read(conn_id)["connections"][conn_id]
        assert conn is not None, f"connection {conn_id} was not written"
        return dict(conn)

    def add_connection(self, **fields: Any) -> None:
        """Set-up: store a connection through the ORM, as ``airflow connections add`` does."""
        self.agent.call("add", fields)

    def dags_test(self, dag_id: str = DAG_ID) -> str:
        return dags_test_output(self.run(AIRFLOW, "dags", "test", dag_id))

    def close(self) -> None:
        for started in self._started:
            if started.process.poll() is None:
                started.process.kill()
                started.process.wait()
        self.agent.close()


def dags_test_output(result: subprocess.CompletedProcess[str], state: str = "success") -> str:
    output = result.stdout + result.stderr
    finished = re.search(r"DagRun Finished: .*state=(\w+)", output)
    assert finished is not None, output[-3000:]
    assert finished.group(1) == state, output[-3000:]
    return output


@pytest.fixture
def env(migrated_home: Path, stack: StackHandle, tmp_path: Path) -> Iterator[Env]:
    home = tmp_path / "airflow"
    home.mkdir()
    shutil.copy(migrated_home / "airflow.db", home / "airflow.db")
    environment = Env(home, stack)
    try:
        yield environment
    finally:
        environment.close()


def token_calls(stack: StackHandle) -> int:
    return int(stack.status()["get_authorization_token_calls"])


def gateway_status(stack: StackHandle, password: str) -> int:
    return httpx.get(f"{stack.settings.gateway_url}/v2/", auth=("AWS", password), timeout=10).status_code


def assert_docker_login(stack: StackHandle, conn: dict[str, Any]) -> None:
    registry = stack.settings.registry_host
    host, port = registry.rsplit(":", 1)
    assert conn["conn_type"] == "docker"
    # DockerHook logs in to f"{host}:{port}": together they must name the registry exactly.
    assert (conn["host"], conn["port"]) == (host, int(port))
    assert conn["login"] == "AWS"
    meta = conn["extra"]["airdock"]
    assert meta["registry"] == registry
    left = datetime.fromisoformat(meta["expires_at"]).timestamp() - time.time()
    assert 11 * 3600 < left <= 12 * 3600 + 60, meta  # the stack's tokens last 12 h
    assert gateway_status(stack, conn["password"]) == 200, "the written password does not log in"


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
    assert_docker_login(env.stack, conn)
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
    assert_docker_login(env.stack, rewritten)
    assert rewritten["password"] not in third.stdout + third.stderr


def test_cli_keeps_other_extra_keys_and_replaces_a_foreign_login(env: Env) -> None:
    env.add_connection(
        conn_id="team_registry", conn_type="docker", host="old.example.org", login="someone",
        password="old-password", extra=json.dumps({"reauth": False, "email": "ops@example.org"}),
    )  # fmt: skip

    result = env.sync("--docker-conn-id", "team_registry")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("team_registry: updated for "), result.stdout
    connections = env.read("team_registry", "docker_default")["connections"]
    conn = connections["team_registry"]
    assert conn is not None, "connection team_registry was not written"
    assert_docker_login(env.stack, conn)
    assert conn["extra"]["reauth"] is False
    assert conn["extra"]["email"] == "ops@example.org"
    assert connections["docker_default"] is None  # only the named connection


def test_cli_failures_are_one_actionable_line(env: Env, tmp_path: Path) -> None:
    credentials = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE")
    no_aws = {name: value for name, value in env.vars.items() if name not in credentials}
    no_aws.update(
        AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "none"),
        AWS_CONFIG_FILE=str(tmp_path / "none"),
        AWS_EC2_METADATA_DISABLED="true",
    )
    # Three independent failures at once: none may write (the read after all of them proves it).
    started_not_ecr = env.start(*AIRDOCK, "connections", "sync", "--registry", "registry.example.org:5000")
    started_no_credentials = env.start(*env.sync_argv(), env=no_aws, timeout=120)
    started_bad_flag = env.start(*env.sync_argv("--min-remaining", "soon"), env=no_aws, timeout=120)

    not_ecr = started_not_ecr.result()
    assert not_ecr.returncode == 1
    assert not_ecr.stdout == ""
    assert len(not_ecr.stderr.strip().splitlines()) == 1, not_ecr.stderr
    assert "not an Amazon ECR host" in not_ecr.stderr and "ecr_registries" in not_ecr.stderr

    no_credentials = started_no_credentials.result()
    assert no_credentials.returncode == 1
    assert len(no_credentials.stderr.strip().splitlines()) == 1, no_credentials.stderr
    assert "no AWS credentials found" in no_credentials.stderr

    bad_flag = started_bad_flag.result()
    assert bad_flag.returncode == 1
    assert "invalid duration 'soon'" in bad_flag.stderr
    assert env.read()["connections"]["docker_default"] is None


# -- the operator, through Airflow's task runner ------------------------------------------------


# Two runs of the sync in one `dags test` (one Airflow start-up): `sync`, then `sync_again`,
# which first notes the connection as `sync` left it and points the process at an empty host
# token cache (tasks run in the `dags test` process, one after the other).
ORM_DAG = (
    """
from datetime import datetime
import json
import os
from pathlib import Path

from airflow.sdk import DAG

from airdock.airflow.connection_sync import EcrConnectionSyncOperator
"""
    + CONNECTION_FIELDS
    + """

def before_sync_again(context):
    from airflow.models import Connection
    from airflow.utils.session import create_session

    with create_session() as session:
        conn = session.query(Connection).filter_by(conn_id="docker_default").one_or_none()
        Path(os.environ["AIRDOCK_E2E_BEFORE_AGAIN"]).write_text(json.dumps(connection_fields(conn)))
    os.environ["XDG_CACHE_HOME"] = os.environ["AIRDOCK_E2E_COLD_CACHE"]


with DAG("airdock_e2e_sync_orm", schedule=None, start_date=datetime(2026, 1, 1), catchup=False):
    registry = os.environ["AIRDOCK_LOCAL_REGISTRY"]
    sync = EcrConnectionSyncOperator(task_id="sync", registry=registry, api_conn_id=None)  # the ORM, chosen
    sync_again = EcrConnectionSyncOperator(
        task_id="sync_again", registry=registry, api_conn_id=None, pre_execute=before_sync_again
    )
    sync >> sync_again
"""
)


def test_the_orm_chosen_explicitly_keeps_docker_default_fresh_under_dags_test(env: Env) -> None:
    """`sync` writes docker_default through the ORM; `sync_again`, with a cold host token cache,
    finds the stored token fresh: it writes nothing and costs no GetAuthorizationToken call."""
    stack = env.stack
    calls = token_calls(stack)
    (env.home / "dags" / "orm.py").write_text(ORM_DAG)
    before_again = env.home / "before-sync-again.json"
    cold_cache = env.home / "cache-cold"
    cold_cache.mkdir()
    env.vars.update(AIRDOCK_E2E_BEFORE_AGAIN=str(before_again), AIRDOCK_E2E_COLD_CACHE=str(cold_cache))

    output = env.dags_test("airdock_e2e_sync_orm")
    # Both tasks started with an empty host cache (airdock keeps no token in memory) and `sync`
    # wrote a token, so `sync` made a call: one in all means exactly one by `sync`, none by `sync_again`.
    assert token_calls(stack) == calls + 1, "a fresh stored token must not cost a GetAuthorizationToken call"
    state = env.read()
    conn = state["connections"]["docker_default"]
    assert conn is not None, "connection docker_default was not written"
    assert_docker_login(env.stack, conn)
    updated = output.find("docker_default: updated for ")
    assert updated >= 0, output[-3000:]
    assert "written to the Airflow metadata database" in output
    assert output.find("docker_default: still valid until ", updated) > updated, output[-3000:]
    assert conn["password"] not in output, "the registry password leaked into the task output"
    xcoms = {xcom["task_id"]: xcom["value"].lower() for xcom in state["xcoms"]}
    assert '"updated": true' in xcoms["sync"] or "'updated': true" in xcoms["sync"], xcoms
    assert '"updated": false' in xcoms["sync_again"] or "'updated': false" in xcoms["sync_again"], xcoms
    assert not any(conn["password"] in value for value in xcoms.values()), "the password went to XCom"
    assert json.loads(before_again.read_text()) == conn, "sync_again changed the connection"


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


def test_the_example_on_a_worker_names_its_missing_api_connection_then_writes_through_the_rest_api(
    stack: StackHandle, deployment: Deployment, tmp_path: Path
) -> None:
    """Executor-run tasks (the task SDK's supervisor, the ORM blocked): the REST path is the only way.

    1. Without the api connection the operator says so and never tries the ORM: the example's run
       fails naming the missing ``airflow_api``, nothing is written, AWS is not called.
    2. With it, the example writes through the REST API: the login lands in docker_default with its
       other extra keys (even the one the API redacts) kept, no secret in the output, a PATCH in the
       api-server's log; a third run finds it fresh and writes nothing.
    """
    dags = tmp_path / "dags"
    dags.mkdir()
    shutil.copy(EXAMPLE_DAG, dags / EXAMPLE_DAG.name)
    headers = {"Authorization": f"Bearer {deployment.token()}"}
    httpx.delete(f"{deployment.url}/api/v2/connections/docker_default", headers=headers, timeout=30)
    agent = OrmAgent(make_env(**deployment.env), tmp_path / "orm-agent.log")  # reads what was stored
    try:
        calls = token_calls(stack)
        run = run_dag(deployment, dags, DAG_ID, stack, tmp_path / "cache")
        assert run.state == "failed", run.output[-4000:]
        assert (
            "AirflowFailException: the Airflow connection 'airflow_api' (api_conn_id) is not defined: create "
            "an HTTP connection to the api-server"
        ) in run.output, run.output[-3000:]
        assert agent.call("read", "docker_default")["connections"]["docker_default"] is None
        assert token_calls(stack) == calls, "AWS was not called"

        agent.call(
            "add",
            {
                "conn_id": "docker_default",
                "conn_type": "docker",
                "extra": json.dumps({"reauth": False, "email": "ops@example.org", "api_password": "kept"}),
            },
        )
        api = {"conn_type": "http", "host": deployment.url}
        api.update(login=deployment.user, password=deployment.password)
        run = run_dag(
            deployment, dags, DAG_ID, stack, tmp_path / "cache", AIRFLOW_CONN_AIRFLOW_API=json.dumps(api)
        )
        assert run.state == "success", run.output[-4000:]
        assert f"written to the Airflow API at {deployment.url}" in run.output, run.output[-3000:]
        assert token_calls(stack) == calls + 1
        conn = agent.call("read", "docker_default")["connections"]["docker_default"]
        assert_docker_login(stack, conn)
        # The API redacts "api_password" on read; the PATCH must not overwrite it with "***".
        assert conn["extra"]["api_password"] == "kept"
        assert conn["extra"]["reauth"] is False
        assert conn["password"] not in run.output
        assert deployment.password not in run.output
        access_log = (deployment.home / "api-server.log").read_text()
        assert "PATCH" in access_log and "/api/v2/connections/docker_default" in access_log

        again = run_dag(
            deployment, dags, DAG_ID, stack, tmp_path / "cache", AIRFLOW_CONN_AIRFLOW_API=json.dumps(api)
        )
        assert again.state == "success", again.output[-4000:]
        assert "docker_default: still valid until " in again.output
        assert token_calls(stack) == calls + 1
    finally:
        agent.close()
        httpx.delete(f"{deployment.url}/api/v2/connections/docker_default", headers=headers, timeout=30)
