"""airdock on a distributed Airflow: CeleryExecutor, PostgreSQL, two worker hosts (scripts/cluster.sh).

Each test prints one line: what was done, what happened, what was checked.
"""

from __future__ import annotations

import collections
from typing import Any

import httpx
import pytest

from tests.cluster.conftest import WORKERS, ClusterHandle

pytestmark = pytest.mark.cluster

FANOUT_DAG = """
from datetime import datetime

from airflow.sdk import DAG

from airdock.airflow import ContainerOperator

with DAG("airdock_cluster_fanout", schedule=None, start_date=datetime(2026, 1, 1), catchup=False):
    ContainerOperator.partial(
        task_id="scrape",
        image="{registry}/airdock-demo/scraper:latest",
        pull_policy="always",  # through the registry each time: every run needs the hosts' tokens
        run_on="docker",
        deferrable=False,
    ).expand(environment=[{{"SCRAPER_PAGES": str(n)}} for n in range(1, 21)])
"""


def rehearse(cluster: ClusterHandle, **faults: Any) -> dict[str, Any]:
    """Arm faults on the cluster's ECR (the local stack's rehearsal route)."""
    response = httpx.post(f"{cluster.ecr_api_url}/_airdock/rehearsal", json=faults, timeout=10)
    response.raise_for_status()
    return dict(response.json())


def test_twenty_mapped_tasks_spread_over_both_workers_with_one_token_call_per_host_despite_throttling(
    cluster: ClusterHandle,
) -> None:
    """20 mapped tasks, every host's token cache empty, and ECR answering ThrottlingException to the
    first 5 GetAuthorizationToken calls: the calls back off, no task fails or retries."""
    cluster.write_dag("airdock_cluster_fanout", FANOUT_DAG.format(registry=cluster.registry_host))
    cluster.forget_tokens()
    before, refused = cluster.token_calls(), rehearse(cluster)["throttled_calls"]
    rehearse(cluster, throttle={"ecr:GetAuthorizationToken": 5})
    try:
        run_id = cluster.trigger("airdock_cluster_fanout")
        state = cluster.wait("airdock_cluster_fanout", run_id, timeout=600)
    finally:
        throttled = rehearse(cluster, throttle={"ecr:GetAuthorizationToken": 0})["throttled_calls"] - refused

    tasks = cluster.task_instances("airdock_cluster_fanout", run_id)
    hosts = collections.Counter(task["hostname"] for task in tasks)
    calls = cluster.token_calls() - before
    logs = cluster.task_logs("airdock_cluster_fanout", run_id)
    print(
        f"\nfan-out: 20 mapped ContainerOperator tasks, ECR throttling 5 calls → {state}; "
        f"ran on {dict(hosts)}; "
        f"GetAuthorizationToken calls served {calls} (hosts {len(hosts)}), refused {throttled}; "
        f"preloaded {logs.count('airdock preloaded')}/20"
    )
    assert state == "success", logs[-4000:]
    assert len(tasks) == 20 and all(task["state"] == "success" and task["try_number"] == 1 for task in tasks)
    assert set(hosts) == set(WORKERS), f"the tasks spread over both workers: {dict(hosts)}"
    assert calls == len(hosts), "one GetAuthorizationToken call per worker host that ran tasks"
    assert throttled == 5, "every armed refusal was met (else this proves nothing)"
    # (botocore's 4 attempts per call absorb 5 refusals spread over 2 hosts; airdock's own rounds
    # beyond them, for a host refused more often, are tests/unit/test_ecr_throttling.py's.)
    assert logs.count('"pages": 20') >= 1 and logs.count("scraper: done") == 20
    assert logs.count("airdock preloaded") == 20, "each Celery worker imported airdock before its pool forked"


def test_the_example_dags_run_unchanged(cluster: ClusterHandle) -> None:
    """The scraper (private image, no credential upkeep) across a token's expiry (20-second tokens,
    a 25-second pause), the connection sync (through the api-server's REST API: a worker has no ORM)
    and the hygiene DAG (one task on each worker's queue)."""
    cluster.forget_tokens()
    rehearse(cluster, token_ttl_seconds=20)
    names = ("scraper", "ecr_connection_sync", "docker_hygiene")
    scraper, sync, hygiene = (f"airdock_example_{name}" for name in names)
    runs = {}
    for dag_id in (scraper, sync, hygiene):
        cluster.wait_for_dag(dag_id)
        runs[dag_id] = cluster.trigger(dag_id)
    try:
        states = {dag_id: cluster.wait(dag_id, run_id, timeout=600) for dag_id, run_id in runs.items()}
    finally:
        rehearse(cluster, token_ttl_seconds=None)

    hygiene_tasks = cluster.task_instances(hygiene, runs[hygiene])
    where = {task["task_id"]: (task["queue"], task["hostname"]) for task in hygiene_tasks}
    sync_logs = cluster.task_logs(sync, runs[sync])
    scraper_logs = cluster.task_logs(scraper, runs[scraper])
    print(f"\nexamples: {states}; hygiene ran {where}")
    for dag_id, state in states.items():
        assert state == "success", cluster.task_logs(dag_id, runs[dag_id])[-4000:]
    assert where == {f"docker_hygiene_{worker}": (worker, worker) for worker in WORKERS}
    assert f"written to the Airflow API at {cluster.api_url}" in sync_logs or "still valid until" in sync_logs
    assert scraper_logs.count("scraper: done") == 2
    # Each scrape got its token itself: the second, past the first token's expiry, renewed it (same
    # host) or fetched its own (the other host).
    fetched = scraper_logs.count("fetched an ECR token") + scraper_logs.count("renewed the ECR token for")
    assert fetched == 2, scraper_logs[-3000:]
