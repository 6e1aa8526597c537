"""Faults on the local cluster, each with nothing lost: every task succeeds or fails with one line,
no container is left behind after the sweep, no container runs twice, no image a task needs is
removed.

Each test prints one line: what was done, what happened, what was checked.
"""

from __future__ import annotations

import os
import re
import signal
import time
from datetime import datetime
from typing import Any

import docker
import httpx
import pytest

from airdock.local.ecs_runner import LABEL_STACK
from tests.cluster.conftest import WORKERS, ClusterHandle, wait_until

pytestmark = pytest.mark.cluster

LABEL = "airdock.dag_id"
REATTACHED = "still running"  # what a retry logs when it finds the job of an earlier try running

FAULT_DAGS = """
from datetime import datetime, timedelta

from airflow.sdk import DAG

from airdock.airflow import ContainerOperator, DockerHygieneOperator

IMAGE = "{registry}/airdock-demo/scraper:latest"
STORE = "{registry}/airdock-fault/store"

def job(task_id, seconds, run_on="docker", **kwargs):
    return ContainerOperator(
        task_id=task_id,
        image=IMAGE,
        entrypoint=["sh", "-c"],
        command=[f"echo job-started; sleep {{seconds}}; echo job-finished"],
        run_on=run_on,
        deferrable=False,
        **kwargs,
    )

def dag(dag_id):
    return DAG(dag_id, schedule=None, start_date=datetime(2026, 1, 1), catchup=False)

# Runs until the test says so (it creates /tmp/finish in the container), at most 10 minutes: the
# retry must find it running however long the worker took to come back and the scheduler to notice.
UNTIL_TOLD = (
    "echo job-started; n=0; while [ ! -e /tmp/finish ] && [ $n -lt 600 ]; do sleep 1; n=$((n+1)); done; "
    "echo job-finished"
)

for target in ("docker", "ecs"):
    # pinned to one host: a retry after the worker died runs on the same engine, and reattaches
    with dag(f"airdock_fault_worker_dies_{{target}}"):
        ContainerOperator(
            task_id="job", image=IMAGE, entrypoint=["sh", "-c"], command=[UNTIL_TOLD], run_on=target,
            deferrable=False, queue="worker-1", retries=1, retry_delay=timedelta(seconds=1),
        )

for worker in ("worker-1", "worker-2"):
    with dag(f"airdock_fault_engine_restart_{{worker}}"):
        job("job", 60, queue=worker, retries=0)
    with dag(f"airdock_fault_sweep_{{worker}}"):
        DockerHygieneOperator(task_id="sweep", queue=worker, collect_images=False)

with dag("airdock_fault_scheduler_restart"):
    for n in range(4):
        job(f"job_{{n}}", 20)

with dag("airdock_fault_registry_outage"):
    job("job", 1, queue="worker-1", pull_policy="always", retries=1, retry_delay=timedelta(seconds=10))

with dag("airdock_fault_image_store"):
    # Three images, each over half worker-2's image budget; `hold` keeps the first in use while the
    # other two are pulled and run, and every task checks the budget when it ends (auto_gc).
    def store_job(task_id, tag, seconds):
        return ContainerOperator(
            task_id=task_id, image=f"{{STORE}}:{{tag}}",
            command=["sh", "-c", f"echo job-started; sleep {{seconds}}; echo job-finished"],
            queue="worker-2", auto_gc=True, deferrable=False,
        )
    store_job("hold", "a", 25)
    store_job("b", "b", 6) >> store_job("c", "c", 1)
"""
DAG_IDS = [
    "airdock_fault_worker_dies_docker",
    "airdock_fault_worker_dies_ecs",
    *(f"airdock_fault_{kind}_{host}" for kind in ("engine_restart", "sweep") for host in WORKERS),
    "airdock_fault_scheduler_restart",
    "airdock_fault_registry_outage",
    "airdock_fault_image_store",
]


@pytest.fixture(scope="module")
def fault_dags(cluster: ClusterHandle) -> ClusterHandle:
    (cluster.dags / "airdock_faults.py").write_text(FAULT_DAGS.format(registry=cluster.registry_host))
    for dag_id in DAG_IDS:
        cluster.wait_for_dag(dag_id)
    return cluster


def containers(cluster: ClusterHandle, worker: str, dag_id: str, *, running: bool = False) -> list[Any]:
    client = cluster.engine(worker)
    try:
        return list(client.containers.list(all=not running, filters={"label": f"{LABEL}={dag_id}"}))
    finally:
        client.close()


def created(cluster: ClusterHandle, worker: str, dag_id: str, since: int) -> int:
    """Containers of ``dag_id`` the worker's engine created since ``since`` (its event log)."""
    client = cluster.engine(worker)
    try:
        events = client.api.events(
            since=since, until=int(time.time()) + 1, decode=True,
            filters={"type": "container", "event": "create", "label": f"{LABEL}={dag_id}"},
        )  # fmt: skip
        return len(list(events))
    finally:
        client.close()


def tries(cluster: ClusterHandle, dag_id: str, run_id: str) -> dict[str, int]:
    return {task["task_id"]: task["try_number"] for task in cluster.task_instances(dag_id, run_id)}


def ecs_counts(cluster: ClusterHandle) -> tuple[int, int]:
    """(ECS tasks running, RunTask calls served) on the cluster's local ECS."""
    body = httpx.get(f"{cluster.ecr_api_url}/_airdock/status", timeout=10).json()
    return int(body["ecs_tasks"].get("RUNNING", 0)), int(body["counters"].get("RunTask", 0))


def finish(client: Any, filters: dict[str, str]) -> None:
    """Tell the job waiting to be told (``UNTIL_TOLD``) in the one running container matching
    ``filters`` to end."""
    try:
        running = client.containers.list(filters=filters)
        waiting = [c for c in running if "/tmp/finish" in str(c.attrs["Args"])]
        assert len(waiting) == 1, [c.attrs["Args"] for c in waiting]
        (container,) = waiting
        exit_code, output = container.exec_run(["touch", "/tmp/finish"])
        assert exit_code == 0, output
    finally:
        client.close()


def test_a_worker_killed_while_its_jobs_run_is_retried_by_reattaching_on_the_same_host(
    fault_dags: ClusterHandle,
) -> None:
    """A container on the worker's engine and an ECS task, both started from worker-1, when the
    whole worker (Celery, its pool, the task supervisors and processes) is SIGKILLed."""
    cluster, worker = fault_dags, "worker-1"
    docker_dag, ecs_dag = "airdock_fault_worker_dies_docker", "airdock_fault_worker_dies_ecs"
    since, (_, run_tasks) = int(time.time()), ecs_counts(cluster)
    runs = {dag_id: cluster.trigger(dag_id) for dag_id in (docker_dag, ecs_dag)}
    wait_until(lambda: containers(cluster, worker, docker_dag, running=True), 180, "the job's container runs")
    wait_until(lambda: ecs_counts(cluster)[0] >= 1, 180, "the job's ECS task runs")
    time.sleep(2)

    cluster.kill(worker)  # nobody is left to report the tasks
    cluster.up_again()  # the host comes back (a new worker process on the same engine)
    for dag_id, run_id in runs.items():  # the retries found both jobs running: now let them end
        wait_until(lambda d=dag_id, r=run_id: REATTACHED in cluster.task_logs(d, r), 300, f"{dag_id}'s retry")
    finish(cluster.engine(worker), {"label": f"{LABEL}={docker_dag}"})
    finish(docker.from_env(timeout=60), {"label": LABEL_STACK})  # the engine the local ECS runs tasks on
    states = {dag_id: cluster.wait(dag_id, run_id, timeout=300) for dag_id, run_id in runs.items()}

    logs = {dag_id: cluster.task_logs(dag_id, run_id) for dag_id, run_id in runs.items()}
    attempts = {dag_id: tries(cluster, dag_id, run_id) for dag_id, run_id in runs.items()}
    made = created(cluster, worker, docker_dag, since)
    started = ecs_counts(cluster)[1] - run_tasks
    left = containers(cluster, worker, docker_dag)
    print(
        f"\nworker SIGKILLed with a container and an ECS task running: runs {states}, tries {attempts}, "
        f"containers created {made} (left {len(left)}), ECS tasks started {started}; "
        "checked: the retries reattached, one job each"
    )
    for dag_id in runs:
        assert states[dag_id] == "success", logs[dag_id][-4000:]
        assert attempts[dag_id] == {"job": 2}, "the retry ran"
        assert REATTACHED in logs[dag_id], logs[dag_id][-4000:]
        assert "job-finished" in logs[dag_id]
    assert made == 1, "exactly one container ran"
    assert started == 1, "exactly one ECS task ran"
    assert left == [], "the retry removed the container when it ended"


def test_the_workers_engine_restarted_mid_run_fails_the_task_in_one_line_and_the_sweep_removes_the_rest(
    fault_dags: ClusterHandle,
) -> None:
    cluster, worker = fault_dags, "worker-2"
    dag_id = f"airdock_fault_engine_restart_{worker}"
    run_id = cluster.trigger(dag_id)
    running = wait_until(lambda: containers(cluster, worker, dag_id, running=True), 180, "the container runs")
    container_id = running[0].id

    cluster.kill(f"dockerd-{worker}", signal.SIGTERM, tree=False)  # it stops its containers, then itself
    cluster.up_again()  # and it comes back (its event log starts again: count from here)
    since = int(time.time())
    state = cluster.wait(dag_id, run_id, timeout=300)
    logs = cluster.task_logs(dag_id, run_id)
    errors = re.findall(r"^(\w+(?:Exception|Error)): (.*)$", logs, re.MULTILINE)

    sweep_id = cluster.trigger(f"airdock_fault_sweep_{worker}")
    sweep = cluster.wait(f"airdock_fault_sweep_{worker}", sweep_id, timeout=300)
    sweep_logs = cluster.task_logs(f"airdock_fault_sweep_{worker}", sweep_id)
    left = containers(cluster, worker, dag_id)
    made = created(cluster, worker, dag_id, since)
    print(
        f"\n{worker}'s dockerd restarted mid-run: run {state} ({errors[-1][1][:80] if errors else '-'}...); "
        f"sweep {sweep}, containers created after the restart {made}, left {len(left)}; "
        "checked: one line, nothing left"
    )
    assert state == "failed", logs[-4000:]
    assert errors and errors[-1][1].startswith(
        f"the Docker engine at {cluster.engine_url(worker)} stopped answering "
        f"while container {container_id[:12]} ran: "
    ), logs[-4000:]
    assert len(running) == 1 and made == 0, "no second container"
    assert sweep == "success", sweep_logs[-4000:]
    assert left == [], "the sweep removed the container the failed task left"


def test_the_scheduler_restarted_while_tasks_run_loses_and_repeats_nothing(fault_dags: ClusterHandle) -> None:
    cluster = fault_dags
    dag_id = "airdock_fault_scheduler_restart"
    since = int(time.time())
    run_id = cluster.trigger(dag_id)

    def running() -> int:
        return sum(len(containers(cluster, worker, dag_id, running=True)) for worker in WORKERS)

    wait_until(lambda: running() >= 2, 180, "the jobs' containers run")
    cluster.kill("scheduler")
    time.sleep(3)
    cluster.up_again()  # a new scheduler adopts the running tasks
    state = cluster.wait(dag_id, run_id, timeout=300)

    made = sum(created(cluster, worker, dag_id, since) for worker in WORKERS)
    attempts = tries(cluster, dag_id, run_id)
    print(
        f"\nscheduler SIGKILLed with {dag_id}'s tasks running: run {state}, tries {attempts}, "
        f"containers created {made}; checked: all succeed once, none twice"
    )
    assert state == "success", cluster.task_logs(dag_id, run_id)[-4000:]
    assert attempts == {f"job_{n}": 1 for n in range(4)}, "no task ran twice"
    assert made == 4, "one container per task"


def test_the_registry_gateway_stopped_during_a_pull_fails_the_try_in_one_line_and_the_retry_pulls(
    fault_dags: ClusterHandle,
) -> None:
    """The stack's server (registry gateway and ECR API) is SIGKILLed while worker-1's engine pulls
    through it (a rehearsed 8-s hold on blob downloads makes sure it is mid-pull), and stays down:
    the pull retries, then the try fails naming the registry in one line; the gateway comes back and
    the task's retry pulls and runs."""
    cluster, worker = fault_dags, "worker-1"
    dag_id = "airdock_fault_registry_outage"
    engine = cluster.engine(worker)
    try:  # the image must be fetched, blobs and all
        for image in engine.images.list(f"{cluster.registry_host}/airdock-demo/scraper"):
            engine.images.remove(image.id, force=True)
    finally:
        engine.close()
    held = rehearse_gateway(cluster, blob_delay_seconds=8)["delayed_blobs"]
    since = int(time.time())
    run_id = cluster.trigger(dag_id)
    wait_until(lambda: rehearse_gateway(cluster)["delayed_blobs"] > held, 180, "a blob download in flight")
    os.kill(cluster.stack_server_pid(), signal.SIGKILL)
    down_at = time.monotonic()

    def try_one_ended() -> bool:
        (task,) = cluster.task_instances(dag_id, run_id)
        return task["state"] in ("up_for_retry", "failed", "success") or task["try_number"] > 1

    wait_until(try_one_ended, 240, "the first try to end")
    cluster.start_stack()  # the gateway comes back (the registry behind it never stopped)
    down_s = time.monotonic() - down_at
    state = cluster.wait(dag_id, run_id, timeout=300)

    logs = cluster.task_logs(dag_id, run_id)
    errors = re.findall(r"^(\w+(?:Exception|Error)): (.*)$", logs, re.MULTILINE)
    retried = re.findall(r"registry \S+ unreachable \(.*\); retrying in \d+ s \(attempt (\d)/3\)", logs)
    made = created(cluster, worker, dag_id, since)
    left = containers(cluster, worker, dag_id)
    print(
        f"\nregistry gateway SIGKILLed mid-pull, down {down_s:.0f} s: try 1 retried the pull "
        f"{len(retried)}x then failed ({errors[0][1][:90] if errors else '-'}...); run {state}, tries "
        f"{tries(cluster, dag_id, run_id)}, containers {made} (left {len(left)}); "
        "checked: one line naming the registry, the retry ran the job once"
    )
    assert len(errors) == 1, logs[-4000:]
    assert errors[0][1].startswith(f"registry {cluster.registry_host} unreachable after 3 attempts: "), errors
    assert retried == ["2", "3"], logs[-4000:]
    assert state == "success" and tries(cluster, dag_id, run_id) == {"job": 2}, logs[-4000:]
    assert logs.count("job-finished") == 1
    assert made == 1 and left == [], "one container, from the retry, removed when it ended"


def rehearse_gateway(cluster: ClusterHandle, **faults: Any) -> dict[str, Any]:
    """Arm ``faults`` on the stack (none: read what is armed); the rehearsal's state."""
    if faults:
        response = httpx.post(f"{cluster.ecr_api_url}/_airdock/rehearsal", json=faults, timeout=10)
        response.raise_for_status()
        return dict(response.json())
    return dict(httpx.get(f"{cluster.ecr_api_url}/_airdock/status", timeout=10).json()["rehearsal"])


def test_the_image_store_filling_up_is_made_room_in_without_touching_an_image_in_use(
    fault_dags: ClusterHandle,
) -> None:
    """worker-2's own airflow.cfg gets an image budget smaller than two of the DAG's three images
    (``[airdock] gc_max_image_bytes``, no minimum age); one task holds the first image in use while
    the others pull theirs: each task's auto_gc makes room, none removes the image in use."""

    from airdock.local.offline_images import import_image

    cluster, worker = fault_dags, "worker-2"
    dag_id = "airdock_fault_image_store"
    builder = docker.from_env(timeout=120)  # the test's engine: images are built there and pushed
    ids, sizes = {}, {}
    try:
        for tag in ("a", "b", "c"):
            image = import_image(
                builder, f"airdock-fault/store:{tag}", {"etc/id": os.urandom(16)}, pad_bytes=3 << 20
            )
            ids[tag], sizes[tag] = image.id, int(image.attrs["Size"])
            cluster.push_image(builder, image, "airdock-fault/store", tag)
            builder.images.remove(image.id, force=True)
    finally:
        builder.close()
    budget = int(1.5 * max(sizes.values()))  # less than two of them
    before = cluster.set_worker_options(
        worker, "airdock", {"gc_max_image_bytes": str(budget), "gc_min_age": "0s"}
    )
    try:
        cluster.restart_worker(worker)  # a host reads its options when its worker starts
        since = int(time.time())
        run_id = cluster.trigger(dag_id)
        state = cluster.wait(dag_id, run_id, timeout=300)
        ended = int(time.time()) + 1
    finally:
        cluster.set_worker_options(worker, "airdock", before)
        # The last of the cluster's tests: the session's cluster stops next. One kept for the next
        # session (AIRDOCK_TEST_CLUSTER_REUSE=1) gets its worker back as it was.
        if os.environ.get("AIRDOCK_TEST_CLUSTER_REUSE") == "1":
            cluster.restart_worker(worker)

    tasks = {task["task_id"]: task for task in cluster.task_instances(dag_id, run_id)}
    logs = cluster.task_logs(dag_id, run_id)
    engine = cluster.engine(worker)
    try:
        removals = [
            event for event in engine.api.events(
                since=since, until=ended, decode=True, filters={"type": "image", "event": "delete"}
            )
        ]  # fmt: skip
        left = {image.id for image in engine.images.list()}
    finally:
        engine.close()
    removed = {event["id"] for event in removals}
    hold_end = datetime.fromisoformat(tasks["hold"]["end_date"]).timestamp()
    a_removed_at = [event["time"] for event in removals if event["id"] == ids["a"]]
    rooms = re.findall(r"auto_gc: removed (\d+) images, reclaimed (\d+) bytes", logs)
    gone = sorted(tag for tag, image_id in ids.items() if image_id in removed)
    print(
        f"\n{worker}'s image budget {budget / 1e6:.1f} MB for three {max(sizes.values()) / 1e6:.1f}-MB "
        f"images, one held in use: run {state}; auto_gc made room {len(rooms)}x "
        f"({sum(int(b) for _, b in rooms) / 1e6:.1f} MB), removed {gone}; "
        "checked: every task ran, the image in use stayed until its task ended"
    )
    assert state == "success", logs[-4000:]
    assert all(task["state"] == "success" and task["try_number"] == 1 for task in tasks.values()), tasks
    assert logs.count("job-finished") == 3
    assert rooms and sum(int(n) for n, _ in rooms) >= 2, logs[-4000:]
    assert {ids["b"], ids["c"]} <= removed, "room was made by removing the images no task used"
    assert all(at >= hold_end - 1 for at in a_removed_at), "the image in use was removed while its task ran"
    assert f"{cluster.registry_host}/airdock-fault/store:a (in use by 1 container)" in logs, logs[-4000:]
    assert sum(size for tag, size in sizes.items() if ids[tag] in left) <= budget
