"""The local cluster (``scripts/cluster.sh``): CeleryExecutor, PostgreSQL, two worker hosts.

A throw-away cluster runs, per round, 20 mapped tasks of the example job image, each pulling it
through the cluster's ECR (``pull_policy="always"``; ``force_pull=True``), two ways:

- airdock: ``ContainerOperator`` — ECR tokens from GetAuthorizationToken, through each host's
  token cache (emptied before the round, as a new host or an expired token would have it);
- baseline: the stock ``DockerOperator`` with ``docker_default`` holding a fresh registry login —
  what the per-host cron used to keep there (its GetAuthorizationToken calls are not counted).

``cluster_fanout_20_wall_s`` is the run's start to its end as the metadata DB recorded them;
``cluster_token_calls_20`` the GetAuthorizationToken calls the round made: target = the hosts that
ran tasks (2). ``scale`` scales the number of tasks (at least 4); at most 3 rounds.
"""

from __future__ import annotations

import base64
import os
import shutil
import statistics
import subprocess
from datetime import datetime
from pathlib import Path
from typing import Any

import boto3

from airdock.local.cluster import WORKERS, Cluster, ClusterError
from airdock.local.settings import LOCAL_ACCESS_KEY_ID, LOCAL_SECRET_ACCESS_KEY
from benchmarks import Figure
from benchmarks._support import BenchmarkError, verdict

ROOT = Path(__file__).resolve().parents[1]
TASKS = 20

DAGS = """
from datetime import datetime

from airflow.providers.docker.operators.docker import DockerOperator
from airflow.sdk import DAG

from airdock.airflow import ContainerOperator

IMAGE = "{registry}/airdock-demo/scraper:latest"
PAGES = [{{"SCRAPER_PAGES": str(n % 5 + 1)}} for n in range({tasks})]

with DAG("bench_cluster_airdock", schedule=None, start_date=datetime(2026, 1, 1), catchup=False):
    ContainerOperator.partial(
        task_id="scrape", image=IMAGE, pull_policy="always", run_on="docker", deferrable=False
    ).expand(environment=PAGES)

with DAG("bench_cluster_stock", schedule=None, start_date=datetime(2026, 1, 1), catchup=False):
    DockerOperator.partial(
        task_id="scrape", image=IMAGE, docker_conn_id="docker_default", auto_remove="success", force_pull=True
    ).expand(environment=PAGES)
"""


def _seconds(run: dict[str, object]) -> float:
    start = datetime.fromisoformat(str(run["start_date"]).replace("Z", "+00:00"))
    end = datetime.fromisoformat(str(run["end_date"]).replace("Z", "+00:00"))
    return (end - start).total_seconds()


def _round(cluster: Cluster, dag_id: str) -> float:
    """One run of ``dag_id``: its seconds from start to end (the metadata DB's)."""
    run_id = cluster.trigger(dag_id)
    if cluster.wait(dag_id, run_id, timeout=900) != "success":
        raise BenchmarkError(f"{dag_id} {run_id} failed: {cluster.task_logs(dag_id, run_id)[-500:]}")
    return _seconds(cluster.api("GET", f"/dags/{dag_id}/dagRuns/{run_id}"))


def _login_docker_default(cluster: Cluster, ecr: Any) -> None:
    """The cron's part: a fresh registry login in docker_default, through the REST API."""
    token = ecr.get_authorization_token()["authorizationData"][0]["authorizationToken"]
    user, _, password = base64.b64decode(token).decode().partition(":")
    host, port = cluster.registry_host.rsplit(":", 1)
    login = {"connection_id": "docker_default", "conn_type": "docker", "host": host, "port": int(port)}
    login.update(login=user, password=password)
    try:
        cluster.api("PATCH", "/connections/docker_default", json=login)
    except ClusterError:
        cluster.api("POST", "/connections", json=login)


def run(scale: float, repeat: int) -> list[Figure]:

    tasks = max(4, round(TASKS * scale))
    root = ROOT / ".airdock" / "bench-cluster"  # PostgreSQL's user must reach it: not under /tmp/pytest-*
    env = {**os.environ, "AIRDOCK_CLUSTER_DIR": str(root)}
    script = str(ROOT / "scripts" / "cluster.sh")
    if root.exists():
        subprocess.run([script, "down"], env=env, capture_output=True, check=False, cwd=ROOT)
        shutil.rmtree(root)
    up = subprocess.run([script, "up"], env=env, capture_output=True, text=True, check=False, cwd=ROOT)
    try:
        if up.returncode:
            last = (up.stderr or up.stdout).strip().splitlines()[-1:]
            raise BenchmarkError(f"the cluster did not start: {last}")
        cluster = Cluster(root)
        dags = DAGS.format(registry=cluster.registry_host, tasks=tasks)
        (cluster.dags / "bench_cluster.py").write_text(dags)
        for dag_id in ("bench_cluster_airdock", "bench_cluster_stock"):
            cluster.wait_for_dag(dag_id)
        ecr = boto3.client(
            "ecr", endpoint_url=cluster.ecr_api_url, region_name="us-east-1",
            aws_access_key_id=LOCAL_ACCESS_KEY_ID, aws_secret_access_key=LOCAL_SECRET_ACCESS_KEY,
        )  # fmt: skip
        walls: list[float] = []
        stock_walls: list[float] = []
        calls: list[float] = []
        for _ in range(min(repeat, 3)):
            for worker in WORKERS:  # a host with no cached token (new, or its token expired)
                cache = cluster.worker_dir(worker) / "cache"
                shutil.rmtree(cache, ignore_errors=True)
                cache.mkdir()
            before = cluster.token_calls()
            walls.append(_round(cluster, "bench_cluster_airdock"))
            calls.append(cluster.token_calls() - before)
            _login_docker_default(cluster, ecr)  # not counted: the cron's call
            stock_walls.append(_round(cluster, "bench_cluster_stock"))
    finally:
        subprocess.run([script, "down"], env=env, capture_output=True, check=False, cwd=ROOT)
        shutil.rmtree(root, ignore_errors=True)
    hosts = len(WORKERS)
    return [
        Figure.of(
            f"cluster_fanout_{TASKS}_wall_s",
            tuple(walls),
            "s",
            baseline=statistics.median(stock_walls),
            note=f"{tasks} mapped tasks, 2 Celery workers; baseline: stock DockerOperator, a cron's login",
        ),
        Figure.of(
            f"cluster_token_calls_{TASKS}",
            tuple(calls),
            "calls",
            note=f"{verdict(max(calls) <= hosts)}: target ≤ {hosts}, one per worker host",
        ),
    ]
