"""``ContainerOperator``: one DAG file, run under ``airflow dags test`` on docker and then on ECS
(by configuration alone, ``AIRFLOW__AIRDOCK__RUN_ON``): same task states, output lines and XComs."""

from __future__ import annotations

import json
import shutil
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import StackHandle
from tests.e2e.conftest import run_dag, write_dag
from tests.integration.test_docker_flow import push, remove_local
from tests.integration.test_local_ecs import client as boto3_client

pytestmark = pytest.mark.e2e

ROLE = "arn:aws:iam::123456789012:role/ecsTaskExecutionRole"
SECRET = "e2e-s3cret-value"

PORTABLE_DAG = """
    import os
    from datetime import datetime

    from airflow.sdk import DAG

    from airdock.airflow import ContainerOperator

    IMAGE = os.environ["AIRDOCK_LOCAL_REGISTRY"] + "/e2e/portable:v1"

    with DAG("airdock_e2e_portable", schedule=None, start_date=datetime(2026, 1, 1), catchup=False):
        ContainerOperator(
            task_id="hello",
            image=IMAGE,
            command=["sh", "-c", 'echo "hello $WHO"; echo "secret=$TOKEN"; echo last-line'],
            environment={"WHO": "world"},
            secret_environment={"TOKEN": "var:e2e_token"},
            memory=128,
        )
        ContainerOperator(task_id="every", image=IMAGE, command="sh -c 'echo a; echo b'", xcom_all=True)
        ContainerOperator.partial(task_id="mapped", image=IMAGE).expand(
            command=[["echo", "m0"], ["echo", "m1"], ["echo", "m2"]]
        )
        ContainerOperator(
            task_id="skipped", image=IMAGE, command=["sh", "-c", "echo skip; exit 42"], skip_on_exit_code=42
        )
        ContainerOperator(
            task_id="failing", image=IMAGE, command=["sh", "-c", "echo about-to-fail; exit 3"], retries=0
        )
"""


def _results(home: Path) -> tuple[dict[str, str], dict[str, Any]]:
    with sqlite3.connect(home / "airflow.db") as db:
        states = {
            f"{task}[{index}]": str(state)
            for task, index, state in db.execute(
                "SELECT task_id, map_index, state FROM task_instance WHERE dag_id = 'airdock_e2e_portable'"
            )
        }
        xcoms = {
            f"{task}[{index}].{key}": json.loads(value)
            for task, index, key, value in db.execute(
                "SELECT task_id, map_index, key, value FROM xcom WHERE dag_id = 'airdock_e2e_portable'"
            )
        }
    return states, xcoms


def test_one_dag_file_gives_the_same_results_on_docker_and_on_ecs(
    stack: StackHandle, docker_client: Any, base_image: str, airflow_template: Path, tmp_path: Path
) -> None:
    stack.ensure_repository("e2e/portable")
    ref = f"{stack.settings.registry_host}/e2e/portable:v1"
    docker_client.images.get(base_image).tag(ref)
    push(docker_client, ref, stack.auth_config())
    dags = tmp_path / "dags"
    write_dag(dags, "portable", PORTABLE_DAG)
    remove_local(docker_client, ref)  # the docker run pulls it; the ECS runs pull it through the stack

    def run_on(target: str) -> Any:
        home = tmp_path / f"home-{target}"
        home.mkdir()
        shutil.copy2(airflow_template / "airflow.db", home / "airflow.db")
        run = run_dag(
            home, dags, "airdock_e2e_portable", stack, tmp_path / f"cache-{target}",
            AIRFLOW__AIRDOCK__RUN_ON=target,
            AIRFLOW__AIRDOCK__ECS_SUBNETS="subnet-0e2e",
            AIRFLOW__AIRDOCK__ECS_EXECUTION_ROLE_ARN=ROLE,
            AIRFLOW_VAR_E2E_TOKEN=SECRET,
        )  # fmt: skip
        return run, _results(home)

    before = stack.status()["ecs"]
    with ThreadPoolExecutor(2) as pool:  # both targets at once: two `dags test` processes
        runs = dict(zip(("docker", "ecs"), pool.map(run_on, ("docker", "ecs")), strict=True))
    after = stack.status()["ecs"]
    outcomes = {}
    for target, (run, results) in runs.items():
        output = run.output
        assert run.state == "failed", output[-4000:]  # `failing` fails on purpose
        # The secret reached the container. (`dags test` prints task logs unmasked; masking is
        # checked on a real deployment, whose task log files go through the secrets masker.)
        assert f"secret={SECRET}" in output or "secret=***" in output
        for line in ("hello world", "last-line", "m0", "m1", "m2", "about-to-fail"):
            assert line in output, (target, line)
        assert "the container exited with code 3; its last 1 line(s):\nabout-to-fail" in output
        assert f"running {ref} on {target}" in output
        assert f"on {'ecs' if target == 'docker' else 'docker'} (try" not in output
        outcomes[target] = results
    calls = (
        after["run_task_calls"] - before["run_task_calls"],
        after["register_task_definition_calls"] - before["register_task_definition_calls"],
    )
    # The ECS run: one task per task instance; one revision per family, the 3 mapped ones sharing one.
    assert calls == (7, 5), calls

    states, xcoms = outcomes["docker"]
    assert states == {
        "hello[-1]": "success",
        "every[-1]": "success",
        "mapped[0]": "success",
        "mapped[1]": "success",
        "mapped[2]": "success",
        "skipped[-1]": "skipped",
        "failing[-1]": "failed",
    }
    assert xcoms["hello[-1].return_value"] == "last-line"
    assert xcoms["every[-1].return_value"] == ["a", "b"]
    assert [xcoms[f"mapped[{i}].return_value"] for i in range(3)] == ["m0", "m1", "m2"]
    assert xcoms["hello[-1].image_digest"].startswith("sha256:")
    assert outcomes["ecs"] == outcomes["docker"], "same states and XComs on both targets"


ON_KILL_SCRIPT = """
import sys, threading, time
from dataclasses import dataclass, field

from airflow.sdk.bases.operator import ExecutorSafeguard

from airdock.airflow import ContainerOperator


@dataclass
class TI:
    dag_id: str = "airdock_e2e_on_kill"
    task_id: str = "job"
    run_id: str = sys.argv[2]
    try_number: int = 1
    map_index: int = -1
    xcoms: dict = field(default_factory=dict)

    def xcom_push(self, key, value):
        self.xcoms[key] = value


operator = ContainerOperator(
    task_id="job", image=sys.argv[1], run_on="ecs",
    command=["sh", "-c", "trap 'exit 143' TERM; echo up; sleep 120 & wait"],
)
outcome = {}


def run():
    try:
        operator.execute({"ti": TI()}, **{"ContainerOperator__sentinel": ExecutorSafeguard.sentinel_value})
    except Exception as exc:
        outcome["error"] = str(exc)


thread = threading.Thread(target=run)
thread.start()
deadline = time.monotonic() + 90
while operator._ecs_running is None:
    assert time.monotonic() < deadline and thread.is_alive(), outcome
    time.sleep(0.2)
time.sleep(2)
operator.on_kill()  # what the task runner calls when the task is killed
thread.join(60)
print("ERROR:", outcome.get("error", ""))
"""


def test_on_kill_stops_the_ecs_task(
    stack: StackHandle, docker_client: Any, base_image: str, airflow_home: Path, tmp_path: Path
) -> None:
    import subprocess
    import uuid

    from tests.e2e.conftest import AIRFLOW, dag_env

    stack.ensure_repository("e2e/portable")
    ref = f"{stack.settings.registry_host}/e2e/portable:v1"
    docker_client.images.get(base_image).tag(ref)
    push(docker_client, ref, stack.auth_config())
    run_id = f"on-kill-{uuid.uuid4().hex[:8]}"
    env = dag_env(
        airflow_home, tmp_path, stack, tmp_path / "cache",
        AIRFLOW__AIRDOCK__ECS_SUBNETS="subnet-0e2e", AIRFLOW__AIRDOCK__ECS_EXECUTION_ROLE_ARN=ROLE,
    )  # fmt: skip
    python = str(Path(AIRFLOW).with_name("python"))
    result = subprocess.run(
        [python, "-c", ON_KILL_SCRIPT, ref, run_id], env=env, capture_output=True, text=True, timeout=240
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "ERROR: the ECS task was stopped: the Airflow task was stopped (airdock on_kill)" in result.stdout
    ecs = boto3_client(stack, "ecs")
    arns = ecs.list_tasks(desiredStatus="STOPPED")["taskArns"]
    tasks = ecs.describe_tasks(tasks=arns, include=["TAGS"])["tasks"]
    mine = [t for t in tasks if {"key": "airdock.run_id", "value": run_id} in t["tags"]]
    assert len(mine) == 1 and mine[0]["stopCode"] == "UserInitiated"
