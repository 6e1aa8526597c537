"""Deferral on a real deployment: the session's api-server, a scheduler, a DAG processor and a
triggerer (LocalExecutor, ``parallelism=4``, SQLite), both targets.

- without a triggerer on the host, a deferrable docker task says why in one line and waits on its
  worker (it succeeds);
- N tasks each running an S-second container: deferred, the worker slots are free while the
  containers run (sampled from the metadata DB: every task deferred, none running) and the run
  takes less than N·S/4, the least the same tasks blocking could take with 4 slots. (Scaled down
  here; ``make bench`` runs 40 × 30 s both ways and measures the blocking run too.)
- the triggerer restarts while the tasks are deferred: every task succeeds, each task log holds
  every output line exactly once, and one container / one ECS task ran per task;
- a deferred task marked failed through the REST API: the trigger's ``on_kill`` stops its
  container (removed, ``remove="always"``) and its ECS task.

Task logs are the files the supervisor and the triggerer write (``attempt=1.log`` and
``attempt=1.log.trigger.<triggerer id>.log``)."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import sqlite3
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import StackHandle
from tests.e2e.conftest import AIRFLOW, Deployment, dag_env, write_dag
from tests.integration.test_docker_flow import push

pytestmark = pytest.mark.e2e

ROLE = "arn:aws:iam::123456789012:role/ecsTaskExecutionRole"
TASKS = 5  # per target and mode
SECONDS = 16  # each container's run: longer than starting all the tasks takes
PARALLELISM = 4
RESTART_LINES = 60  # one every 0.2 s

DAGS = """
    import os
    from datetime import datetime

    from airflow.sdk import DAG

    from airdock.airflow import ContainerOperator

    IMAGE = os.environ["AIRDOCK_LOCAL_REGISTRY"] + "/e2e/deferral:v1"
    TASKS = int(os.environ["AIRDOCK_E2E_TASKS"])
    SECONDS = os.environ["AIRDOCK_E2E_SECONDS"]
    LINES = os.environ["AIRDOCK_E2E_RESTART_LINES"]
    COUNT = "i=1; while [ $i -le " + LINES + " ]; do echo line-$i; i=$((i+1)); sleep 0.2; done"

    for target in ("docker", "ecs"):
        with DAG(f"airdock_e2e_slots_{target}_deferred", schedule=None, start_date=datetime(2026, 1, 1),
                 catchup=False, is_paused_upon_creation=False, max_active_tasks=64):
            for n in range(TASKS):
                ContainerOperator(
                    task_id=f"job_{n}", image=IMAGE, run_on=target, deferrable=True,
                    command=["sh", "-c", f"echo start-{n}; sleep {SECONDS}; echo done-{n}"],
                )
        with DAG(f"airdock_e2e_restart_{target}", schedule=None, start_date=datetime(2026, 1, 1),
                 catchup=False, is_paused_upon_creation=False):
            for n in range(2):
                ContainerOperator(task_id=f"count_{n}", image=IMAGE, run_on=target, deferrable=True,
                                  command=["sh", "-c", COUNT])
        with DAG(f"airdock_e2e_killed_{target}", schedule=None, start_date=datetime(2026, 1, 1),
                 catchup=False, is_paused_upon_creation=False):
            ContainerOperator(task_id="long", image=IMAGE, run_on=target, deferrable=True, retries=0,
                              command=["sh", "-c", "echo long-job; sleep 300"])
    with DAG("airdock_e2e_no_triggerer", schedule=None, start_date=datetime(2026, 1, 1), catchup=False,
             is_paused_upon_creation=False):
        ContainerOperator(task_id="job", image=IMAGE, deferrable=True, command=["echo", "waited-here"])
"""


def _db(home: Path, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    with contextlib.closing(sqlite3.connect(home / "airflow.db", timeout=30)) as db:
        return list(db.execute(sql, args).fetchall())


def _wait(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)
    return value


def _stop(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


@dataclass
class Cluster:
    """The deployment's processes; the triggerer starts and stops on demand."""

    deployment: Deployment
    env: dict[str, str]
    root: Path
    triggerer: subprocess.Popen[bytes] | None = None
    triggerer_starts: int = 0
    api_token: str = ""
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def home(self) -> Path:
        return self.deployment.home

    def spawn(self, command: str) -> subprocess.Popen[bytes]:
        log = (self.root / f"{command}-{len(self.processes)}.log").open("w")
        process = subprocess.Popen(
            # No log server (it would listen on every interface): task logs are read from the files.
            [AIRFLOW, command, *(["--skip-serve-logs"] if command in ("scheduler", "triggerer") else [])],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.processes.append(process)
        return process

    def start_triggerer(self) -> None:
        if self.triggerer is None or self.triggerer.poll() is not None:
            self.triggerer = self.spawn("triggerer")
            self.triggerer_starts += 1

    def stop_triggerer(self) -> None:
        if self.triggerer is not None:
            _stop(self.triggerer)
            self.triggerer = None

    def trigger(self, dag_id: str) -> str:
        """Start a run through the REST API (a CLI call would add seconds to every timing); its id."""
        _wait(lambda: _db(self.home, "SELECT 1 FROM dag WHERE dag_id = ?", dag_id), 120, f"{dag_id} parsed")
        self.api_token = self.api_token or self.deployment.token()
        response = httpx.post(
            f"{self.deployment.url}/api/v2/dags/{dag_id}/dagRuns",
            json={"logical_date": None},
            headers={"Authorization": f"Bearer {self.api_token}"},
            timeout=30,
        )
        assert response.status_code == 200, response.text
        return str(response.json()["dag_run_id"])

    def wall_seconds(self, dag_ids: list[str]) -> float:
        """From the first run queued to the last one ended, as the metadata DB recorded them."""
        marks = ",".join("?" * len(dag_ids))
        rows = _db(
            self.home,
            f"SELECT min(julianday(queued_at)), max(julianday(end_date)) FROM dag_run WHERE dag_id IN ({marks})",  # noqa: S608,E501
            *dag_ids,
        )
        return float((rows[0][1] - rows[0][0]) * 86400)

    def run_state(self, dag_id: str) -> str | None:
        rows = _db(self.home, "SELECT state FROM dag_run WHERE dag_id = ?", dag_id)
        return rows[0][0] if rows and rows[0][0] in ("success", "failed") else None

    def states(self, dag_ids: list[str]) -> dict[str, int]:
        marks = ",".join("?" * len(dag_ids))
        rows = _db(
            self.home,
            f"SELECT state, count(*) FROM task_instance WHERE dag_id IN ({marks}) GROUP BY state",  # noqa: S608
            *dag_ids,
        )
        return {str(state): int(count) for state, count in rows}

    def task_log(self, dag_id: str, task_id: str) -> str:
        parts = sorted(self.home.glob(f"logs/dag_id={dag_id}/**/task_id={task_id}/attempt=1.log*"))
        return "\n".join(path.read_text() for path in parts)


@pytest.fixture(scope="module")
def cluster(
    stack: StackHandle,
    deployment: Deployment,
    docker_client: Any,
    base_image: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Cluster]:
    stack.ensure_repository("e2e/deferral")
    ref = f"{stack.settings.registry_host}/e2e/deferral:v1"
    docker_client.images.get(base_image).tag(ref)
    push(docker_client, ref, stack.auth_config())
    root = tmp_path_factory.mktemp("deferral")
    dags = root / "dags"
    write_dag(dags, "deferral", DAGS)
    env = dag_env(deployment.home, dags, stack, root / "cache")
    env.update(deployment.env)
    env.update(
        AIRFLOW__CORE__DAGS_FOLDER=str(dags),
        AIRFLOW__CORE__PARALLELISM=str(PARALLELISM),
        AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC="1",
        AIRFLOW__AIRDOCK__ECS_SUBNETS="subnet-0e2e",
        AIRFLOW__AIRDOCK__ECS_EXECUTION_ROLE_ARN=ROLE,
        AIRDOCK_E2E_TASKS=str(TASKS),
        AIRDOCK_E2E_SECONDS=str(SECONDS),
        AIRDOCK_E2E_RESTART_LINES=str(RESTART_LINES),
    )
    cluster = Cluster(deployment, env, root)
    cluster.spawn("dag-processor")
    cluster.spawn("scheduler")
    try:
        yield cluster
    finally:
        cluster.stop_triggerer()
        for process in cluster.processes:
            if process.poll() is None:
                _stop(process)


def test_without_a_triggerer_on_the_host_a_docker_task_says_why_and_waits_on_its_worker(
    cluster: Cluster,
) -> None:
    cluster.stop_triggerer()
    cluster.trigger("airdock_e2e_no_triggerer")
    state = _wait(lambda: cluster.run_state("airdock_e2e_no_triggerer"), 180, "the run")
    log = cluster.task_log("airdock_e2e_no_triggerer", "job")
    assert state == "success", log[-3000:]
    assert "not deferring: no Airflow triggerer runs on this host" in log, log[-3000:]
    assert "waited-here" in log and "deferring:" not in log.replace("not deferring:", "")


def _timed_run(cluster: Cluster, mode: str) -> tuple[float, list[dict[str, int]]]:
    """Both targets' DAGs of ``mode`` at once: (seconds from queued to both finished, state samples)."""
    dag_ids = [f"airdock_e2e_slots_{target}_{mode}" for target in ("docker", "ecs")]
    for dag_id in dag_ids:
        cluster.trigger(dag_id)
    samples = []
    deadline = time.monotonic() + 600
    while not all(cluster.run_state(dag_id) for dag_id in dag_ids):
        assert time.monotonic() < deadline, f"{mode} runs did not finish in 600 s"
        samples.append(cluster.states(dag_ids))
        time.sleep(0.25)
    elapsed = cluster.wall_seconds(dag_ids)
    for dag_id in dag_ids:
        assert cluster.run_state(dag_id) == "success", cluster.task_log(dag_id, "job_0")[-3000:]
    return elapsed, samples


def test_deferred_tasks_free_the_worker_slots_while_their_containers_run(
    cluster: Cluster, stack: StackHandle
) -> None:
    cluster.start_triggerer()
    for dag_id in ("airdock_e2e_slots_docker_deferred", "airdock_e2e_slots_ecs_deferred"):
        _wait(lambda d=dag_id: _db(cluster.home, "SELECT 1 FROM dag WHERE dag_id = ?", d), 120, dag_id)
    deferred_s, samples = _timed_run(cluster, "deferred")
    total = 2 * TASKS
    floor = total * SECONDS / PARALLELISM  # blocking: every container would hold a slot for SECONDS
    print(f"\n{total} tasks x {SECONDS} s, parallelism {PARALLELISM}: deferred {deferred_s:.1f} s, "
          f"blocking could take no less than {floor:.0f} s")  # fmt: skip
    # While the containers ran, every task was deferred: more tasks waiting at once than there are
    # slots, and no slot held by any of them.
    all_waiting = [s for s in samples if s.get("deferred", 0) == total]
    assert all_waiting, f"never all {total} deferred at once: {samples[::8]}"
    assert all(s.get("running", 0) == 0 for s in all_waiting)  # 0 slots occupied during the wait
    assert max(s.get("running", 0) for s in samples) <= PARALLELISM
    assert deferred_s < floor, (deferred_s, floor)  # faster than blocking could ever be
    log = cluster.task_log("airdock_e2e_slots_ecs_deferred", "job_3")
    assert "start-3" in log and "done-3" in log and "resumed after" in log, log[-3000:]
    log = cluster.task_log("airdock_e2e_slots_docker_deferred", "job_3")
    assert "start-3" in log and "done-3" in log and "resumed after" in log, log[-3000:]
    assert "; airdock preloaded)" in log, log[:3000]  # the task inherited the scheduler's imports


def test_a_triggerer_restart_loses_and_repeats_no_line(
    cluster: Cluster, stack: StackHandle, docker_client: Any
) -> None:
    cluster.start_triggerer()
    dag_ids = [f"airdock_e2e_restart_{target}" for target in ("docker", "ecs")]
    before = stack.status()["ecs"]["run_task_calls"]
    started = int(time.time())
    for dag_id in dag_ids:
        cluster.trigger(dag_id)
    tasks = [(dag_id, f"count_{n}") for dag_id in dag_ids for n in range(2)]
    _wait(
        lambda: all("line-5" in cluster.task_log(*task) for task in tasks),
        120,
        "every trigger forwarding lines",
    )
    starts = cluster.triggerer_starts
    cluster.stop_triggerer()
    time.sleep(2)  # lines keep coming while no triggerer follows them
    cluster.start_triggerer()
    assert cluster.triggerer_starts == starts + 1
    for dag_id in dag_ids:
        assert _wait(lambda d=dag_id: cluster.run_state(d), 240, dag_id) == "success"
        for n in range(2):
            log = cluster.task_log(dag_id, f"count_{n}")
            numbers = [int(found) for found in re.findall(r"\bline-(\d+)\b", log)]
            assert numbers == list(range(1, RESTART_LINES + 1)), (dag_id, n, numbers)
            assert log.count("following") >= 2, "a second trigger took over"
    created = list(
        docker_client.api.events(
            since=started, until=int(time.time()) + 1, decode=True,
            filters={"type": "container", "event": "create", "label": f"airdock.dag_id={dag_ids[0]}"},
        )
    )  # fmt: skip
    assert len(created) == 2, "one container per task"
    assert stack.status()["ecs"]["run_task_calls"] - before == 2, "one ECS task per task"


def test_marking_a_deferred_task_failed_stops_its_container_and_its_ecs_task(
    cluster: Cluster, stack: StackHandle, docker_client: Any
) -> None:
    from tests.integration.test_local_ecs import client

    cluster.start_triggerer()
    runs = {target: cluster.trigger(f"airdock_e2e_killed_{target}") for target in ("docker", "ecs")}
    dag_ids = [f"airdock_e2e_killed_{target}" for target in runs]
    _wait(lambda: cluster.states(dag_ids).get("deferred", 0) == 2, 120, "both tasks deferred")
    # on_kill runs in the triggerer that runs the trigger: wait until one does.
    _wait(lambda: all("long-job" in cluster.task_log(d, "long") for d in dag_ids), 120, "both followed")
    labels = ["airdock.dag_id=airdock_e2e_killed_docker", f"airdock.run_id={runs['docker']}"]
    assert docker_client.containers.list(filters={"label": labels}), "the container runs"
    token = cluster.deployment.token()
    for target, run_id in runs.items():
        response = httpx.patch(
            f"{cluster.deployment.url}/api/v2/dags/airdock_e2e_killed_{target}/dagRuns/{run_id}/taskInstances/long",
            json={"new_state": "failed"},
            headers={"Authorization": f"Bearer {token}"},
            timeout=30,
        )
        assert response.status_code == 200, response.text
    _wait(
        lambda: not docker_client.containers.list(all=True, filters={"label": labels}),
        60,
        "the container stopped and removed",
    )
    ecs = client(stack, "ecs")

    started_by = _started_by(cluster, "airdock_e2e_killed_ecs")

    def ecs_stopped() -> bool:
        running = ecs.list_tasks(cluster="default", startedBy=started_by)["taskArns"]
        stopped = ecs.list_tasks(cluster="default", startedBy=started_by, desiredStatus="STOPPED")["taskArns"]
        return not running and len(stopped) == 1

    _wait(ecs_stopped, 60, "the ECS task stopped")


def _started_by(cluster: Cluster, dag_id: str) -> str:
    from airdock.targets.spec import TaskIdentity

    run_id = _db(cluster.home, "SELECT run_id FROM dag_run WHERE dag_id = ?", dag_id)[0][0]
    return TaskIdentity(dag_id, "long", str(run_id)).started_by()
