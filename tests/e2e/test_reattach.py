"""Reattach on a real deployment: a try dies mid-run; its retry follows the same container / ECS task
instead of starting a second one. Two ways to die, both targets:

- the whole worker (supervisor and task process) is SIGKILLed while the job runs: a real scheduler
  and DAG processor beside the api-server (LocalExecutor) notice the missing heartbeats (timeout
  lowered to 10 s) and retry; the retry finds the job still running and follows it;
- the task process is SIGKILLed (its supervisor reports it; `dags test --use-executor`) and the
  job finishes before the retry: the retry collects its exit code and its whole log.

Task logs are the supervisor's files, written through the secrets masker."""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import StackHandle
from tests.e2e.conftest import DagRun, Deployment, run_dag, write_dag
from tests.integration.test_docker_flow import push
from tests.integration.test_local_ecs import client

pytestmark = pytest.mark.e2e

ROLE = "arn:aws:iam::123456789012:role/ecsTaskExecutionRole"
SECRET = "reattach-s3cret-value"

REATTACH_DAG = """
    import os
    from datetime import datetime, timedelta
    from pathlib import Path

    from airflow.sdk import DAG

    from airdock.airflow import ContainerOperator

    IMAGE = os.environ["AIRDOCK_LOCAL_REGISTRY"] + "/e2e/reattach:v1"
    STEPS = os.environ["AIRDOCK_E2E_STEPS"]  # one line every 0.5 s, then "job-finished"
    SCRIPT = (
        'echo "token=$TOKEN"; i=1; while [ $i -le ' + STEPS + ' ]; do echo step-$i; i=$((i+1)); sleep 0.5; '
        "done; echo job-finished"
    )


    def remember_pid(context):
        if context["ti"].try_number == 1:  # the test kills this process: the worker "dies"
            Path(os.environ["AIRDOCK_E2E_PIDFILE"]).write_text(str(os.getpid()))


    with DAG(os.environ["AIRDOCK_E2E_DAG_ID"], schedule=None, start_date=datetime(2026, 1, 1), catchup=False):
        ContainerOperator(
            task_id="job",
            image=IMAGE,
            command=["sh", "-c", SCRIPT],
            secret_environment={"TOKEN": "var:reattach_token"},
            retries=1,
            retry_delay=timedelta(seconds=float(os.environ["AIRDOCK_E2E_RETRY_DELAY"])),
            pre_execute=remember_pid,
        )
"""


def _wait(predicate: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)
    return value


def _task_logs(home: Path, dag_id: str) -> dict[int, str]:
    logs = {}
    for path in (home / "logs").glob(f"dag_id={dag_id}/**/task_id=job/attempt=*.log"):
        logs[int(path.stem.split("=")[1])] = path.read_text()
    return logs


@pytest.fixture(scope="module")
def reattach_image(stack: StackHandle, docker_client: Any, base_image: str) -> str:
    stack.ensure_repository("e2e/reattach")
    ref = f"{stack.settings.registry_host}/e2e/reattach:v1"
    docker_client.images.get(base_image).tag(ref)
    push(docker_client, ref, stack.auth_config())
    return ref


@pytest.mark.parametrize("target", ["docker", "ecs"])
@pytest.mark.parametrize("when", ["finished-meanwhile"])  # still running: the dead-worker test below
def test_a_killed_task_process_is_retried_by_reattaching(
    target: str,
    when: str,
    stack: StackHandle,
    deployment: Deployment,
    docker_client: Any,
    reattach_image: str,
    tmp_path: Path,
) -> None:
    dag_id = f"airdock_e2e_reattach_{target}_{when.replace('-', '_')}_{uuid.uuid4().hex[:6]}"
    dags = tmp_path / "dags"
    write_dag(dags, "reattach", REATTACH_DAG)
    pidfile = tmp_path / "task.pid"
    before = stack.status()["ecs"]["run_task_calls"]
    started = int(time.time())
    box: dict[str, DagRun] = {}
    runner = threading.Thread(
        target=lambda: box.update(
            run=run_dag(
                deployment.home, dags, dag_id, stack, tmp_path / "cache", deployment=deployment,
                AIRFLOW__CORE__DAGS_FOLDER=str(dags),
                AIRFLOW__AIRDOCK__RUN_ON=target,
                AIRFLOW__AIRDOCK__ECS_SUBNETS="subnet-0e2e",
                AIRFLOW__AIRDOCK__ECS_EXECUTION_ROLE_ARN=ROLE,
                AIRFLOW_VAR_REATTACH_TOKEN=SECRET,
                AIRDOCK_E2E_DAG_ID=dag_id,
                AIRDOCK_E2E_PIDFILE=str(pidfile),
                # Still running: a job long enough to outlast the retry's start on a busy machine.
                # Finished meanwhile: a retry delay longer than what is left of the job.
                AIRDOCK_E2E_STEPS="30" if when == "still-running" else "4",
                AIRDOCK_E2E_RETRY_DELAY="0" if when == "still-running" else "6",
            )
        )
    )  # fmt: skip
    runner.start()
    try:
        pid = int(_wait(lambda: pidfile.exists() and pidfile.read_text(), 120, "the task process"))
        if target == "docker":
            labels = {"label": f"airdock.dag_id={dag_id}"}
            _wait(lambda: docker_client.containers.list(filters=labels), 60, "the job's container")
        else:
            ecs = client(stack, "ecs")
            _wait(
                lambda: any(
                    t["lastStatus"] == "RUNNING"
                    for arns in [ecs.list_tasks(desiredStatus="RUNNING")["taskArns"]]
                    if arns
                    for t in ecs.describe_tasks(tasks=arns, include=["TAGS"])["tasks"]
                    if {"key": "airdock.dag_id", "value": dag_id} in (t.get("tags") or [])
                ),
                60,
                "the job's ECS task",
            )
        time.sleep(1.5)  # a few lines in
        os.kill(pid, signal.SIGKILL)  # the worker dies mid-job; its container / ECS task does not
    finally:
        runner.join(300)
    run = box["run"]
    assert run.state == "success", run.output[-5000:]
    logs = _task_logs(deployment.home, dag_id)
    assert sorted(logs) == [1, 2], (sorted(logs), run.output[-3000:])
    retry = logs[2]
    if when == "still-running":
        assert "still running" in retry, retry[-3000:]
    else:
        assert "finished while no worker watched" in retry, retry[-3000:]
    assert "job-finished" in retry and "step-1" in retry, (
        "the retry's log holds the whole job, to its last line"
    )
    assert SECRET not in retry and SECRET not in logs[1], "the secret is masked in the task logs"
    if target == "docker":
        created = list(
            docker_client.api.events(
                since=started, until=int(time.time()) + 1, decode=True,
                filters={"type": "container", "event": "create", "label": f"airdock.dag_id={dag_id}"},
            )
        )  # fmt: skip
        assert len(created) == 1, "exactly one container ran"
        assert docker_client.containers.list(all=True, filters={"label": f"airdock.dag_id={dag_id}"}) == []
    else:
        assert stack.status()["ecs"]["run_task_calls"] - before == 1, "exactly one ECS task ran"


# -- a worker dies: its supervisor and task process are SIGKILLed; the scheduler notices -----------

SCHEDULED_DAG = """
    import os
    from datetime import datetime, timedelta
    from pathlib import Path

    from airflow.sdk import DAG

    from airdock.airflow import ContainerOperator

    IMAGE = os.environ["AIRDOCK_LOCAL_REGISTRY"] + "/e2e/reattach:v1"
    SCRIPT = 'i=1; while [ $i -le 50 ]; do echo step-$i; i=$((i+1)); sleep 0.5; done; echo job-finished'


    def remember_pid(context):
        if context["ti"].try_number == 1:
            Path(os.environ["AIRDOCK_E2E_PIDDIR"], context["ti"].dag_id).write_text(str(os.getpid()))


    for target in ("docker", "ecs"):
        with DAG(f"airdock_e2e_worker_dies_{target}", schedule=None, start_date=datetime(2026, 1, 1),
                 catchup=False, is_paused_upon_creation=False):
            ContainerOperator(
                task_id="job",
                image=IMAGE,
                command=["sh", "-c", SCRIPT],
                run_on=target,
                retries=1,
                retry_delay=timedelta(seconds=0),
                pre_execute=remember_pid,
            )
"""


@dataclass
class Scheduled:
    env: dict[str, str]
    piddir: Path


@pytest.fixture(scope="module")
def scheduled(
    stack: StackHandle, deployment: Deployment, reattach_image: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Scheduled]:
    """A scheduler and a DAG processor beside the session's api-server (LocalExecutor, SQLite): what
    runs DAGs on a real deployment, with the heartbeat timeout lowered to 10 s."""
    from tests.e2e.conftest import AIRFLOW, dag_env

    root = tmp_path_factory.mktemp("scheduled")
    dags, piddir = root / "dags", root / "pids"
    piddir.mkdir()
    write_dag(dags, "worker_dies", SCHEDULED_DAG)
    env = dag_env(deployment.home, dags, stack, root / "cache")
    env.update(deployment.env)
    env.update(
        AIRFLOW__CORE__DAGS_FOLDER=str(dags),
        AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT="10",
        AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL="2",
        AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC="1",
        AIRFLOW__CORE__PARALLELISM="4",
        AIRFLOW__AIRDOCK__ECS_SUBNETS="subnet-0e2e",
        AIRFLOW__AIRDOCK__ECS_EXECUTION_ROLE_ARN=ROLE,
        AIRDOCK_E2E_PIDDIR=str(piddir),
    )
    processes = []
    for command in ("dag-processor", "scheduler"):
        log = (root / f"{command}.log").open("w")
        processes.append(
            subprocess.Popen(
                # No log server (it would listen on every interface): the test reads the log files.
                [AIRFLOW, command, *(["--skip-serve-logs"] if command == "scheduler" else [])],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        )
    try:
        yield Scheduled(env, piddir)
    finally:
        for process in processes:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
        for process in processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)


def _db(home: Path, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    with contextlib.closing(sqlite3.connect(home / "airflow.db", timeout=30)) as db:
        return list(db.execute(sql, args).fetchall())


def test_dead_workers_are_noticed_by_the_scheduler_and_the_retries_reattach(
    stack: StackHandle,
    deployment: Deployment,
    scheduled: Scheduled,
    docker_client: Any,
) -> None:
    """Both targets at once (one worker each), as a deployment runs them."""
    from tests.e2e.conftest import AIRFLOW

    dag_ids = {target: f"airdock_e2e_worker_dies_{target}" for target in ("docker", "ecs")}
    for dag_id in dag_ids.values():
        _wait(
            lambda d=dag_id: _db(deployment.home, "SELECT dag_id FROM dag WHERE dag_id = ?", d), 120, dag_id
        )
    before = stack.status()["ecs"]["run_task_calls"]
    started = int(time.time())
    for dag_id in dag_ids.values():
        trigger = subprocess.run(
            [AIRFLOW, "dags", "trigger", dag_id],
            env=scheduled.env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert trigger.returncode == 0, trigger.stderr[-2000:]
    pids = {}
    for dag_id in dag_ids.values():
        pidfile = scheduled.piddir / dag_id
        pids[dag_id] = int(
            _wait(lambda f=pidfile: f.exists() and f.read_text(), 120, f"{dag_id}'s task process")
        )
    time.sleep(3)  # a few lines in
    for pid in pids.values():
        supervisor = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        for victim in (supervisor, pid):  # the whole worker dies at once: nobody reports the task
            os.kill(victim, signal.SIGKILL)

    def finished(dag_id: str) -> str | None:
        rows = _db(deployment.home, "SELECT state FROM dag_run WHERE dag_id = ?", dag_id)
        return rows[0][0] if rows and rows[0][0] in ("success", "failed") else None

    for dag_id in dag_ids.values():
        assert _wait(lambda d=dag_id: finished(d), 240, f"{dag_id} to finish") == "success"
        logs = _task_logs(deployment.home, dag_id)
        assert sorted(logs) == [1, 2], (dag_id, sorted(logs))
        assert "still running" in logs[2], logs[2][-3000:]
        assert "job-finished" in logs[2]
    created = list(
        docker_client.api.events(
            since=started, until=int(time.time()) + 1, decode=True,
            filters={"type": "container", "event": "create", "label": f"airdock.dag_id={dag_ids['docker']}"},
        )
    )  # fmt: skip
    assert len(created) == 1, "exactly one container ran"
    assert stack.status()["ecs"]["run_task_calls"] - before == 1, "exactly one ECS task ran"
