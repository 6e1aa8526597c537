"""Deferrable ``ContainerOperator`` under ``airflow dags test`` (which runs triggers in its own
process): on docker and on ECS the deferred tasks give the same task states, lines, XComs and
failure messages as the tasks that wait on the worker."""

from __future__ import annotations

import json
import re
import shutil
import sqlite3
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import StackHandle
from tests.e2e.conftest import DagRun, run_dag, write_dag
from tests.integration.test_docker_flow import push

pytestmark = pytest.mark.e2e

ROLE = "arn:aws:iam::123456789012:role/ecsTaskExecutionRole"
SECRET = "defer-s3cret-value"
LINES = 300

DEFER_DAG = """
    import os
    from datetime import datetime

    from airflow.sdk import DAG

    from airdock.airflow import ContainerOperator

    IMAGE = os.environ["AIRDOCK_LOCAL_REGISTRY"] + "/e2e/defer:v1"
    DEFER = os.environ["AIRDOCK_E2E_DEFER"] == "1"
    N = os.environ["AIRDOCK_E2E_LINES"]
    COUNT = "i=1; while [ $i -le " + N + " ]; do echo line-$i; i=$((i+1)); done"

    with DAG("airdock_e2e_defer", schedule=None, start_date=datetime(2026, 1, 1), catchup=False):
        ContainerOperator(
            task_id="hello",
            image=IMAGE,
            command=["sh", "-c", 'echo "hello $WHO"; echo "secret=$TOKEN"; sleep 1; echo last-line'],
            environment={"WHO": "world"},
            secret_environment={"TOKEN": "var:e2e_token"},
            deferrable=DEFER,
        )
        ContainerOperator(
            task_id="counted",
            image=IMAGE,
            command=["sh", "-c", COUNT],
            xcom_all=True,
            deferrable=DEFER,
        )
        ContainerOperator(
            task_id="skipped", image=IMAGE, command=["sh", "-c", "echo skip; exit 42"], skip_on_exit_code=42,
            deferrable=DEFER,
        )
        ContainerOperator(
            task_id="failing", image=IMAGE, command=["sh", "-c", "echo about-to-fail; exit 3"], retries=0,
            deferrable=DEFER,
        )
"""


def _results(home: Path) -> tuple[dict[str, str], dict[str, Any]]:
    with sqlite3.connect(home / "airflow.db") as db:
        states = {
            str(task): str(state)
            for task, state in db.execute(
                "SELECT task_id, state FROM task_instance WHERE dag_id = 'airdock_e2e_defer'"
            )
        }
        xcoms = {
            f"{task}.{key}": json.loads(value)
            for task, key, value in db.execute(
                "SELECT task_id, key, value FROM xcom WHERE dag_id = 'airdock_e2e_defer'"
            )
        }
    return states, xcoms


@pytest.fixture(scope="module")
def defer_image(stack: StackHandle, docker_client: Any, base_image: str) -> str:
    stack.ensure_repository("e2e/defer")
    ref = f"{stack.settings.registry_host}/e2e/defer:v1"
    docker_client.images.get(base_image).tag(ref)
    push(docker_client, ref, stack.auth_config())
    return ref


def test_dags_test_runs_deferred_tasks_with_the_results_of_blocking_ones_on_both_targets(
    stack: StackHandle, docker_client: Any, defer_image: str, airflow_template: Path, tmp_path: Path
) -> None:
    dags = tmp_path / "dags"
    write_dag(dags, "defer", DEFER_DAG)

    def run(case: tuple[str, str]) -> Any:
        target, defer = case
        home = tmp_path / f"home-{target}-{defer}"
        home.mkdir()
        shutil.copy2(airflow_template / "airflow.db", home / "airflow.db")
        result = run_dag(
            home, dags, "airdock_e2e_defer", stack, tmp_path / f"cache-{target}-{defer}",
            AIRFLOW__AIRDOCK__RUN_ON=target,
            AIRFLOW__AIRDOCK__ECS_SUBNETS="subnet-0e2e",
            AIRFLOW__AIRDOCK__ECS_EXECUTION_ROLE_ARN=ROLE,
            AIRFLOW_VAR_E2E_TOKEN=SECRET,
            AIRDOCK_E2E_DEFER=defer,
            AIRDOCK_E2E_LINES=str(LINES),
        )  # fmt: skip
        return result, _results(home)

    cases = [("docker", "1"), ("ecs", "1")]
    with ThreadPoolExecutor(2) as pool:  # both targets at once: two `dags test` processes
        runs = dict(zip(cases, pool.map(run, cases), strict=True))
    for (target, _), (result, (states, xcoms)) in runs.items():
        output = result.output
        assert result.state == "failed", output[-4000:]  # `failing` fails on purpose
        expected = {"hello": "success", "counted": "success", "skipped": "skipped", "failing": "failed"}
        assert states == expected, (target, states)
        # What the blocking path gives (tests/e2e/test_container_operator.py), line for line.
        assert "the container exited with code 3; its last 1 line(s):\nabout-to-fail" in output, target
        assert "hello world" in output and "last-line" in output
        assert f"secret={SECRET}" in output or "secret=***" in output  # dags test prints unmasked
        forwarded = [int(n) for n in re.findall(r"\bline-(\d+)\b", output)]
        assert forwarded == list(range(1, LINES + 1)), (
            target,
            forwarded[:5],
            len(forwarded),
        )  # once, in order
        assert output.count("deferring:") == 4, (target, output[-3000:])
        assert output.count("resumed after") == 4, (target, output[-3000:])
        assert xcoms["hello.return_value"] == "last-line"
        assert xcoms["counted.return_value"] == [f"line-{i}" for i in range(1, LINES + 1)]
        assert str(xcoms["hello.image_digest"]).startswith("sha256:")
        assert "failing.return_value" not in xcoms and "skipped.return_value" not in xcoms
    assert runs[("docker", "1")][1][1]["hello.image_digest"] == runs[("ecs", "1")][1][1]["hello.image_digest"]
    leftover = docker_client.containers.list(all=True, filters={"label": "airdock.dag_id=airdock_e2e_defer"})
    assert leftover == [], [c.name for c in leftover]


REATTACH_DAG_ID = "airdock_e2e_defer_reattach"
REATTACH_DAG = """
    import os
    import time
    from datetime import datetime
    from pathlib import Path

    from airflow.sdk import DAG, task

    from airdock.airflow import ContainerOperator

    IMAGE = os.environ["AIRDOCK_LOCAL_REGISTRY"] + "/e2e/defer:v1"
    HANDOFF = Path(os.environ["AIRDOCK_E2E_HANDOFF"])


    @task
    def earlier_try(run_id=None):
        # The test starts the jobs an earlier try of `job` / `job_ecs` would have left running.
        (HANDOFF / "run_id").write_text(run_id)
        while not (HANDOFF / "started").exists():
            time.sleep(0.2)


    with DAG("airdock_e2e_defer_reattach", schedule=None, start_date=datetime(2026, 1, 1), catchup=False):
        ecs = ContainerOperator(task_id="job_ecs", image=IMAGE, run_on="ecs", deferrable=True, command="x")
        docker = ContainerOperator(task_id="job", image=IMAGE, run_on="docker", deferrable=True, command="x")
        # In this order, each job still runs when its task starts (ECS: 15 s, docker: 30 s).
        earlier_try() >> ecs >> docker
"""


@dataclass
class ReattachRun:
    result: DagRun
    container_id: str
    calls_before: int
    started: int


def _reattach_scenario(
    stack: StackHandle, docker_client: Any, ref: str, airflow_template: Path, root: Path
) -> ReattachRun:
    from airdock.hygiene import model
    from airdock.targets.spec import ContainerSpec, TaskIdentity
    from tests.integration.test_ecs_target import Runner

    script = "i=1; while [ $i -le 20 ]; do echo line-$i; i=$((i+1)); done"
    handoff = root / "handoff"
    handoff.mkdir()
    dags = root / "dags"
    write_dag(dags, "defer_reattach", REATTACH_DAG)
    home = root / "home"
    home.mkdir()
    shutil.copy2(airflow_template / "airflow.db", home / "airflow.db")
    with ThreadPoolExecutor(1) as pool:
        running = pool.submit(
            run_dag, home, dags, REATTACH_DAG_ID, stack, root / "cache",
            AIRFLOW__AIRDOCK__ECS_SUBNETS="subnet-0test",
            AIRFLOW__AIRDOCK__ECS_EXECUTION_ROLE_ARN=ROLE,
            AIRDOCK_E2E_HANDOFF=str(handoff),
        )  # fmt: skip
        deadline = time.monotonic() + 180
        while not (handoff / "run_id").exists():
            assert time.monotonic() < deadline and not running.done(), "the DAG run did not start"
            time.sleep(0.2)
        run_id = (handoff / "run_id").read_text()
        started = int(time.time())
        container = docker_client.containers.run(
            ref,
            ["sh", "-c", "sleep 30; " + script],  # still running when `job` runs, after `job_ecs`
            detach=True,
            labels={
                model.MANAGED_LABEL: "true",
                model.LABEL_DAG_ID: REATTACH_DAG_ID,
                model.LABEL_TASK_ID: "job",
                model.LABEL_RUN_ID: run_id,
                model.LABEL_MAP_INDEX: "-1",
                model.LABEL_TRY_NUMBER: "1",
            },
        )
        runner = Runner(stack, root / "locks")
        spec = ContainerSpec(image=ref, command=("sh", "-c", "sleep 15; " + script))
        runner.start(spec, TaskIdentity(REATTACH_DAG_ID, "job_ecs", run_id))
        before = stack.status()["ecs"]["run_task_calls"]
        (handoff / "started").touch()
        return ReattachRun(running.result(timeout=300), container.id, before, started)


@pytest.fixture(scope="module")
def reattach_run(
    stack: StackHandle,
    docker_client: Any,
    defer_image: str,
    airflow_template: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Future[ReattachRun]]:
    root = tmp_path_factory.mktemp("defer-reattach")
    with ThreadPoolExecutor(1) as pool:
        yield pool.submit(_reattach_scenario, stack, docker_client, defer_image, airflow_template, root)


def test_a_deferrable_task_reattaches_to_the_running_job_of_an_earlier_try_and_defers_to_it(
    stack: StackHandle, docker_client: Any, reattach_run: Future[ReattachRun]
) -> None:
    """The jobs an earlier try left running (started here by the test, with that try's identity:
    labels on docker, ``startedBy`` on ECS) are found, deferred to and followed to their end; no
    second container or ECS task starts (the DAG's own command, ``x``, would not even start)."""
    run = reattach_run.result(timeout=400)
    output = run.result.output
    assert run.result.state == "success", output[-4000:]
    assert f"container {run.container_id[:12]} (reattached to a container an earlier try started)" in output
    ecs_lines = [
        line[:200] for line in output.splitlines() if "ECS task" in line or "task_id=job_ecs" in line
    ]
    assert "reattaching to ECS task" in output and "still running" in output, ecs_lines
    assert output.count("deferring:") == 2 and output.count("resumed after") == 2
    forwarded = [int(n) for n in re.findall(r"\bline-(\d+)\b", output)]
    assert forwarded == list(range(1, 21)) * 2, forwarded
    created = list(
        docker_client.api.events(
            since=run.started, until=int(time.time()) + 1, decode=True,
            filters={"type": "container", "event": "create", "label": f"airdock.dag_id={REATTACH_DAG_ID}"},
        )
    )  # fmt: skip
    assert len(created) == 1, "only the earlier try's container"
    assert stack.status()["ecs"]["run_task_calls"] == run.calls_before, "no second ECS task"
    assert docker_client.containers.list(all=True, filters={"id": run.container_id}) == [], "removed"
