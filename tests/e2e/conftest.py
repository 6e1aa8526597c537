"""E2E fixtures: an Airflow home with a migrated SQLite DB, `airflow dags test` runs, and a deployment.

Two ways to run a DAG through Airflow's real task runner:

- ``run_dag(...)``: ``airflow dags test`` runs every task in its own process (fast; the task may
  still reach the metadata DB, and there are no task log files);
- ``run_dag(..., deployment=deployment)``: ``airflow dags test --use-executor`` against the session's
  ``airflow api-server``: the LocalExecutor runs each task under the task SDK's supervisor as a
  worker would — through the Execution API, with the ORM blocked, writing task log files.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import textwrap
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import httpx
import pytest

from airdock.local import settings as local_settings
from airdock.local.cluster import task_log_text
from tests.conftest import AIRFLOW, StackHandle, free_port, make_env

_STATE = re.compile(r"DagRun Finished: .*state=(\w+)")
_RUN_ID = re.compile(r"DagRun Finished: .*?run_id=([^,\s]+),")
SHUTDOWN_GRACE_S = 60  # a finished run's executor shutdown takes a second or two


@pytest.fixture(scope="session")
def airflow_home(airflow_template: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The Airflow home the session's DAG runs share (a copy of the template)."""
    home = tmp_path_factory.mktemp("airflow-home")
    shutil.copy2(airflow_template / "airflow.db", home / "airflow.db")
    return home


@dataclass
class DagRun:
    state: str | None
    output: str  # what the run printed, then (executor runs) its task log files as text
    returncode: int
    task_log: str = ""  # executor runs: the task log files alone, each record once
    run_id: str | None = None  # executor runs


def aws_connection_env(stack: StackHandle) -> dict[str, str]:
    """Only an Airflow AWS connection: no AWS_* variables, so nothing else can supply credentials."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env["AIRFLOW_CONN_AWS_DEFAULT"] = json.dumps(
        {
            "conn_type": "aws",
            "login": local_settings.LOCAL_ACCESS_KEY_ID,
            "password": local_settings.LOCAL_SECRET_ACCESS_KEY,
            "extra": {"region_name": stack.settings.region, "endpoint_url": stack.settings.api_url},
        }
    )
    env["AWS_SHARED_CREDENTIALS_FILE"] = "/nonexistent"
    env["AWS_CONFIG_FILE"] = "/nonexistent"
    env["AWS_EC2_METADATA_DISABLED"] = "true"
    return env


def dag_env(
    airflow_home: Path, dags: Path, stack: StackHandle, cache_home: Path, **extra_env: str
) -> dict[str, str]:
    """The environment of an `airflow dags test` run against ``stack`` with only an AWS connection."""
    env = aws_connection_env(stack)
    env.update(
        AIRFLOW_HOME=str(airflow_home),
        AIRFLOW__CORE__DAGS_FOLDER=str(dags),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__AIRDOCK__ECR_REGISTRIES=stack.settings.registry_host,
        AIRDOCK_LOCAL_REGISTRY=stack.settings.registry_host,
        XDG_CACHE_HOME=str(cache_home),
    )
    env.update(extra_env)
    return env


@dataclass
class Deployment:
    """An ``airflow api-server`` on 127.0.0.1 over its own Airflow home, for executor-run DAGs."""

    home: Path
    url: str
    env: dict[str, str] = field(default_factory=dict)  # what makes a process part of this deployment
    user: str = "admin"
    password: str = "airdock-e2e-api-password"

    def token(self) -> str:
        """A JWT for the public REST API (simple auth manager)."""
        response = httpx.post(
            f"{self.url}/auth/token", json={"username": self.user, "password": self.password}, timeout=30
        )
        response.raise_for_status()
        return str(response.json()["access_token"])


@pytest.fixture(scope="session")
def deployment(airflow_template: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    """The session's api-server (Execution API + REST API); DAG runs that name it use the LocalExecutor."""
    home = tmp_path_factory.mktemp("deployment")
    shutil.copy2(airflow_template / "airflow.db", home / "airflow.db")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    deployment = Deployment(home=home, url=url)
    (home / "simple_auth_manager_passwords.json.generated").write_text(
        json.dumps({deployment.user: deployment.password})
    )
    deployment.env = {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{url}/execution/",
        "AIRFLOW__API__BASE_URL": url,
        "AIRFLOW__API_AUTH__JWT_SECRET": "airdock-e2e-deployment-jwt-secret",
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
    }
    with running_api_server(home, port, make_env(**deployment.env)):
        yield deployment


@contextlib.contextmanager
def running_api_server(home: Path, port: int, env: dict[str, str]) -> Iterator[str]:
    """``airflow api-server`` on 127.0.0.1:``port`` for ``home`` (log: home/api-server.log), stopped after."""
    url = f"http://127.0.0.1:{port}"
    log = (home / "api-server.log").open("w")
    process = subprocess.Popen(
        [AIRFLOW, "api-server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{url}/api/v2/monitor/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert process.poll() is None, (home / "api-server.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "the api-server did not come up in 120 s"
            time.sleep(0.5)
        yield url
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
        log.close()


def run_dag(
    airflow_home: Path | Deployment,
    dags: Path,
    dag_id: str,
    stack: StackHandle,
    cache_home: Path,
    logical_date: str | None = None,
    *,
    deployment: Deployment | None = None,
    **extra_env: str,
) -> DagRun:
    """``airflow dags test``; given a deployment (as ``airflow_home`` or ``deployment``), its tasks
    run under the LocalExecutor against the deployment's api-server, as a worker runs them.

    Prefer the deployment: it is the real thing (the ORM is blocked in the task) and costs about
    half the time — an in-process ``dags test`` builds the whole Execution API app in its own
    process first (~10 CPU-s on these machines)."""
    if isinstance(airflow_home, Deployment):
        deployment = airflow_home
    home = deployment.home if deployment is not None else airflow_home
    assert isinstance(home, Path)
    env = dag_env(home, dags, stack, cache_home, **extra_env)
    argv = [AIRFLOW, "dags", "test", dag_id, *([logical_date] if logical_date else [])]
    if deployment is not None:
        env.update(deployment.env)
        env.update(extra_env)
        argv.append("--use-executor")
    result = _run_to_the_end(argv, env, timeout=300)
    output = result.stdout + result.stderr
    match = _STATE.search(output)
    logged = ""
    run_id = _RUN_ID.search(output) if deployment is not None else None
    if run_id is not None and deployment is not None:
        logged = task_logs(deployment.home, dag_id, run_id.group(1))
    state = match.group(1) if match else None
    return DagRun(state, output + logged, result.returncode, logged, run_id.group(1) if run_id else None)


def _run_to_the_end(argv: list[str], env: dict[str, str], timeout: float) -> subprocess.CompletedProcess[str]:
    """``airflow dags test …`` in a process group of its own, its output read as it comes.

    Once the DAG run has finished (Airflow printed ``DagRun Finished``), the command only shuts its
    executor down. Airflow's LocalExecutor sometimes never ends there: a worker misses its shutdown
    message and ``end()`` joins it forever (apache/airflow#45329, an upstream race; seen here in CI
    as a 300 s hang after a successful run). So a command still running ``SHUTDOWN_GRACE_S`` after
    the run finished is stopped, with a line saying so appended to its output, and the run's own
    result stands. One that has not finished its run after ``timeout`` is sent SIGABRT with Python's
    faulthandler on, so every process prints where its threads stood, and the test fails with that.
    No process of the command is left behind either way."""
    process = subprocess.Popen(
        argv,
        env={**env, "PYTHONFAULTHANDLER": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    assert process.stdout is not None
    lines: list[str] = []
    run_finished = threading.Event()

    def read(stream: IO[str]) -> None:
        for line in stream:
            lines.append(line)
            if _STATE.search(line):
                run_finished.set()

    reader = threading.Thread(target=read, args=(process.stdout,), daemon=True)
    reader.start()
    deadline = time.monotonic() + timeout
    try:
        while process.poll() is None and not run_finished.is_set() and time.monotonic() < deadline:
            time.sleep(0.2)
        if run_finished.is_set():
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=SHUTDOWN_GRACE_S)
        if process.poll() is None and not run_finished.is_set():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGABRT)
            time.sleep(5)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            reader.join(timeout=60)
            stood = "".join(lines)[-12000:]
            pytest.fail(f"{' '.join(argv[1:])} did not end in {timeout:.0f} s; where it stood:\n{stood}")
        if process.poll() is None:
            grace = SHUTDOWN_GRACE_S
            lines.append(
                f"[test harness] the run finished; its executor did not shut down in {grace} s: stopped\n"
            )
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)  # what is left: the executor's workers
        process.wait(timeout=60)
        reader.join(timeout=60)
    return subprocess.CompletedProcess(argv, process.returncode, "".join(lines), "")


def task_logs(home: Path, dag_id: str, run_id: str) -> str:
    """The run's task log files as text (an executor run prints only part of them)."""
    return "\n" + task_log_text(home / "logs" / f"dag_id={dag_id}" / f"run_id={run_id}") + "\n"


def write_dag(folder: Path, name: str, body: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.py"
    path.write_text(textwrap.dedent(body))
    return path
