"""Deferral on a real deployment: 40 tasks, each running a 30-second container, with 4 worker slots.

A throw-away Airflow deployment — api-server, scheduler, DAG processor and triggerer, the
LocalExecutor with ``parallelism=4``, SQLite — runs four DAGs of 40 ``ContainerOperator`` tasks each:
docker and ECS (the local stack's), deferred and blocking. Each run is timed from its first task
queued to its last task done, as the metadata DB recorded them.

- ``deferred_40x30s_wall_s`` (docker) and ``deferred_40x30s_ecs_wall_s`` against the same tasks
  blocking (``blocking_40x30s_wall_s``, ``blocking_40x30s_ecs_wall_s``): target ≤ 60 s deferred;
  blocking cannot take less than 40 × 30 / 4 = 300 s.
- ``deferred_slots_during_wait``: the most worker slots held (task instances running) while every
  task of a deferred run was waiting on its container: target 0.
- ``triggerer_rss_40_deferred_mb``: the triggerer's resident memory (its processes together) at the
  moment the most tasks were deferred, docker and ECS runs: target < 300 MB.

``scale`` scales the number of tasks (at least 4) and the container's seconds (at least 8).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from benchmarks import Figure
from benchmarks._support import (
    BenchmarkError,
    airflow_env,
    docker_client,
    free_ports,
    local_stack,
    owned_images,
    push,
    scratch_dir,
    verdict,
)

REPOSITORY = "bench/deferral"
ROLE = "arn:aws:iam::123456789012:role/ecsTaskExecutionRole"
TASKS = 40
SECONDS = 30
SLOTS = 4
AIRFLOW = str(Path(sys.executable).parent / "airflow")
API_USER = "admin"

DAG = """
import os
from datetime import datetime

from airflow.sdk import DAG

from airdock.airflow import ContainerOperator

IMAGE = os.environ["AIRDOCK_BENCH_IMAGE"]
TASKS = int(os.environ["AIRDOCK_BENCH_TASKS"])
SECONDS = os.environ["AIRDOCK_BENCH_SECONDS"]

with DAG("bench_warmup", schedule=None, start_date=datetime(2026, 1, 1), catchup=False,
         is_paused_upon_creation=False):
    for target in ("docker", "ecs"):  # the first task of each kind pays for imports, tokens, parsing
        for mode in ("deferred", "blocking"):
            ContainerOperator(task_id=f"{target}_{mode}", image=IMAGE, run_on=target,
                              deferrable=mode == "deferred", command=["sh", "-c", "echo warm; sleep 1"])

for target in ("docker", "ecs"):
    for mode in ("deferred", "blocking"):
        with DAG(f"bench_{target}_{mode}", schedule=None, start_date=datetime(2026, 1, 1), catchup=False,
                 is_paused_upon_creation=False, max_active_tasks=1000):
            for n in range(TASKS):
                ContainerOperator(
                    task_id=f"job_{n}", image=IMAGE, run_on=target, deferrable=mode == "deferred",
                    command=["sh", "-c", f"echo start-{n}; sleep {SECONDS}; echo done-{n}"],
                )
"""


class Deployment:
    """The four Airflow processes over one home; every server listens on 127.0.0.1."""

    def __init__(self, home: Path, env: dict[str, str]) -> None:
        self.home = home
        self.env = env
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.url = ""
        self.token = ""
        self.password = secrets.token_hex(16)

    def start(self) -> None:
        import httpx

        migrate = subprocess.run(
            [AIRFLOW, "db", "migrate"], env=self.env, capture_output=True, text=True, timeout=300, check=False
        )
        if migrate.returncode != 0:
            raise BenchmarkError(f"airflow db migrate failed: {migrate.stderr[-1500:]}")
        (port,) = free_ports(1)
        self.url = f"http://127.0.0.1:{port}"
        self.env.update(
            AIRFLOW__CORE__EXECUTION_API_SERVER_URL=f"{self.url}/execution/", AIRFLOW__API__BASE_URL=self.url
        )
        (self.home / "simple_auth_manager_passwords.json.generated").write_text(
            json.dumps({API_USER: self.password})
        )
        commands = {
            "api-server": ["api-server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
            "dag-processor": ["dag-processor"],
            "scheduler": ["scheduler", "--skip-serve-logs"],  # a log server would listen everywhere
            "triggerer": ["triggerer", "--skip-serve-logs"],
        }
        for name, argv in commands.items():
            log = (self.home / f"{name}.log").open("w")
            self.processes[name] = subprocess.Popen(
                [AIRFLOW, *argv], env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        deadline = time.monotonic() + 180
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/api/v2/monitor/health", timeout=2).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise BenchmarkError("the api-server did not come up in 180 s")
            time.sleep(0.5)
        response = httpx.post(
            f"{self.url}/auth/token", json={"username": API_USER, "password": self.password}, timeout=30
        )
        response.raise_for_status()
        self.token = str(response.json()["access_token"])

    def stop(self) -> None:
        for process in self.processes.values():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.processes.values():
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)

    def db(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        with contextlib.closing(sqlite3.connect(self.home / "airflow.db", timeout=30)) as db:
            return list(db.execute(sql, args).fetchall())

    def trigger(self, dag_id: str) -> None:
        import httpx

        deadline = time.monotonic() + 180
        while not self.db("SELECT 1 FROM dag WHERE dag_id = ?", dag_id):
            if time.monotonic() > deadline:
                raise BenchmarkError(f"{dag_id} was not parsed in 180 s")
            time.sleep(0.5)
        response = httpx.post(
            f"{self.url}/api/v2/dags/{dag_id}/dagRuns",
            json={"logical_date": None},
            headers={"Authorization": f"Bearer {self.token}"},
            timeout=30,
        )
        if response.status_code != 200:
            raise BenchmarkError(f"triggering {dag_id}: {response.status_code} {response.text[:300]}")

    def triggerer_rss_mb(self) -> float:
        """The triggerer's processes' proportional set size (RSS counting each shared page once)."""
        import psutil

        root = psutil.Process(self.processes["triggerer"].pid)
        processes = [root, *root.children(recursive=True)]
        total = 0
        for process in processes:
            with contextlib.suppress(psutil.Error):
                total += process.memory_full_info().pss
        return total / 2**20

    def timed_run(self, dag_id: str, tasks: int, timeout_s: float) -> tuple[float, int, float]:
        """(wall seconds, most slots held while all tasks were deferred (-1: never all), most
        triggerer RSS in MB) of one run of ``dag_id``."""
        self.trigger(dag_id)
        deadline = time.monotonic() + timeout_s
        slots_while_waiting, rss = -1, 0.0
        while True:
            rows = dict(
                self.db("SELECT state, count(*) FROM task_instance WHERE dag_id = ? GROUP BY state", dag_id)
            )
            if rows.get("deferred", 0) >= tasks:
                slots_while_waiting = max(slots_while_waiting, int(rows.get("running", 0)))
            if rows.get("deferred", 0):
                rss = max(rss, self.triggerer_rss_mb())
            state = self.db("SELECT state FROM dag_run WHERE dag_id = ?", dag_id)
            if state and state[0][0] in ("success", "failed"):
                break
            if time.monotonic() > deadline:
                raise BenchmarkError(f"{dag_id} did not finish in {timeout_s:.0f} s")
            time.sleep(0.5)
        if state[0][0] != "success":
            raise BenchmarkError(f"{dag_id} failed; task logs under {self.home / 'logs'}")
        if dag_id.endswith("_deferred"):
            logs = [p.read_text() for p in self.home.glob(f"logs/dag_id={dag_id}/**/attempt=1.log")]
            deferred = sum("deferring:" in log for log in logs)
            if deferred != tasks:
                reasons = {line for log in logs for line in log.splitlines() if "not deferring" in line}
                raise BenchmarkError(f"{dag_id}: {deferred} of {tasks} tasks deferred: {sorted(reasons)[:1]}")
        (first, last) = self.db(
            "SELECT min(julianday(queued_at)), max(julianday(end_date)) FROM dag_run WHERE dag_id = ?", dag_id
        )[0]
        return (last - first) * 86400, slots_while_waiting, rss


@contextlib.contextmanager
def deployment(env: dict[str, str], home: Path) -> Iterator[Deployment]:
    running = Deployment(home, env)
    try:
        running.start()
        yield running
    finally:
        running.stop()


def run(scale: float, repeat: int) -> list[Figure]:
    tasks = max(4, round(TASKS * scale))
    seconds = max(8, round(SECONDS * scale))
    floor = tasks * seconds / SLOTS
    client = docker_client()
    with local_stack() as stack, owned_images(client) as mine, scratch_dir("airdock-bench-defer-") as home:
        from airdock.local.offline_images import import_image

        stack.ensure_repository(REPOSITORY)
        ref = f"{stack.registry_host}/{REPOSITORY}:v1"
        image = import_image(client, ref, {"etc/airdock-bench": os.urandom(16)})
        mine.add(image.id)
        push(client, ref, stack.auth_config())
        dags = home / "dags"
        dags.mkdir()
        (dags / "bench_deferral.py").write_text(DAG)
        airflow_home = home / "airflow"
        airflow_home.mkdir()
        env = airflow_env(
            stack,
            home,
            AIRFLOW__CORE__DAGS_FOLDER=str(dags),
            AIRFLOW__CORE__EXECUTOR="LocalExecutor",
            AIRFLOW__CORE__PARALLELISM=str(SLOTS),
            AIRFLOW__API_AUTH__JWT_SECRET=secrets.token_hex(16),
            AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC="1",
            AIRFLOW__AIRDOCK__ECS_SUBNETS="subnet-0bench",
            AIRFLOW__AIRDOCK__ECS_EXECUTION_ROLE_ARN=ROLE,
            AIRDOCK_BENCH_IMAGE=ref,
            AIRDOCK_BENCH_TASKS=str(tasks),
            AIRDOCK_BENCH_SECONDS=str(seconds),
        )
        measured: dict[str, tuple[float, int, float]] = {}
        with deployment(env, airflow_home) as airflow:
            time.sleep(10)  # the triggerer settles (its runner process started, nothing deferred yet)
            idle_rss = airflow.triggerer_rss_mb()
            airflow.timed_run("bench_warmup", 4, timeout_s=300)  # not measured
            for target in ("docker", "ecs"):
                for mode in ("deferred", "blocking"):
                    measured[f"{target}_{mode}"] = airflow.timed_run(
                        f"bench_{target}_{mode}", tasks, timeout_s=floor * 3 + 300
                    )
        shutil.rmtree(airflow_home / "logs", ignore_errors=True)
    label = f"{tasks}x{seconds}s"
    figures: list[Figure] = []
    for target, suffix in (("docker", ""), ("ecs", "_ecs")):
        deferred, _, _ = measured[f"{target}_deferred"]
        blocking, _, _ = measured[f"{target}_blocking"]
        figures.append(
            Figure.of(
                f"deferred_40x30s{suffix}_wall_s",
                (deferred,),
                "s",
                baseline=blocking,
                note=(
                    f"{label} on {target}, parallelism {SLOTS}, deferrable=True vs the same tasks blocking; "
                    f"target ≤ {seconds * 2:.0f} s ({verdict(deferred <= seconds * 2)})"
                ),
            )
        )
        figures.append(
            Figure.of(
                f"blocking_40x30s{suffix}_wall_s",
                (blocking,),
                "s",
                note=f"{label} on {target}, deferrable=False; at least {floor:.0f} s ({SLOTS} slots)",
            )
        )
    slots = max(measured["docker_deferred"][1], measured["ecs_deferred"][1])
    rss = max(measured["docker_deferred"][2], measured["ecs_deferred"][2])
    figures.append(
        Figure(
            "deferred_slots_during_wait",
            float(slots),
            None,
            "slots",
            (float(slots),),
            note=f"task instances running while all {tasks} were deferred (-1: never all at once); "
            f"target 0 ({verdict(slots == 0)})",
        )
    )
    figures.append(
        Figure.of(
            "triggerer_rss_40_deferred_mb",
            (rss,),
            "MB",
            baseline=idle_rss,
            note=f"the triggerer's processes (PSS) with up to {tasks} deferred tasks, baseline: idle; "
            f"target < 300 MB ({verdict(rss < 300)})",
        )
    )
    return figures
