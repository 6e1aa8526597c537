"""Reattach on a real deployment: a try dies mid-run; its retry follows the same container / ECS task
instead of starting a second one. Two ways to die, both targets:

- the whole worker is SIGKILLed while the job runs: on the local cluster (tests/cluster/test_faults.py,
  CeleryExecutor), where the scheduler notices the missing heartbeats and the retry follows the job;
- the task process is SIGKILLed (its supervisor reports it; `dags test --use-executor`) and the
  job finishes before the retry: the retry collects its exit code and its whole log.

Task logs are the supervisor's files, written through the secrets masker."""

from __future__ import annotations

import os
import signal
import threading
import time
import uuid
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
@pytest.mark.parametrize("when", ["finished-meanwhile"])  # still running: tests/cluster/test_faults.py
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
