"""EcrDockerOperator through Airflow's real task runner (`airflow dags test`) against the local stack."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import StackHandle, airdock, start_stack
from tests.e2e.conftest import run_dag, write_dag
from tests.integration.test_docker_flow import push, remove_local

pytestmark = pytest.mark.e2e

PULL_DAG = """
    import os
    from datetime import datetime

    from airflow.sdk import DAG

    from airdock.airflow import EcrDockerOperator

    REGISTRY = os.environ["AIRDOCK_LOCAL_REGISTRY"]

    with DAG("airdock_e2e_pull", schedule=None, start_date=datetime(2026, 1, 1), catchup=False):
        EcrDockerOperator(
            task_id="run",
            image=f"{REGISTRY}/e2e/job:v1",
            pull_policy="always",
            command=["sh", "-c", "echo job-ran-from-private-image; echo done"],
            environment={"GREETING": "{{ dag.dag_id }}"},
        )
"""

MISSING_DAG = """
    import os
    from datetime import datetime

    from airflow.sdk import DAG

    from airdock.airflow import EcrDockerOperator

    with DAG("airdock_e2e_missing", schedule=None, start_date=datetime(2026, 1, 1), catchup=False):
        EcrDockerOperator(task_id="run", image=os.environ["AIRDOCK_LOCAL_REGISTRY"] + "/e2e/never-created:v1")
"""

TWO_TASKS_DAG = """
    import os
    from datetime import datetime

    from airflow.providers.standard.operators.bash import BashOperator
    from airflow.sdk import DAG

    from airdock.airflow import EcrDockerOperator

    IMAGE = os.environ["AIRDOCK_LOCAL_REGISTRY"] + "/e2e/job:v1"

    with DAG("airdock_e2e_two_tasks", schedule=None, start_date=datetime(2026, 1, 1), catchup=False):
        first = EcrDockerOperator(task_id="first", image=IMAGE, pull_policy="always", command=["echo", "1"])
        wait = BashOperator(task_id="wait", bash_command="sleep 10")
        second = EcrDockerOperator(task_id="second", image=IMAGE, pull_policy="always", command=["echo", "2"])
        first >> wait >> second
"""


def publish_job_image(stack: StackHandle, docker_client: Any, base_image: str) -> str:
    stack.ensure_repository("e2e/job")
    ref = f"{stack.settings.registry_host}/e2e/job:v1"
    docker_client.images.get(base_image).tag(ref)
    digest = push(docker_client, ref, stack.auth_config())
    remove_local(docker_client, ref)
    return digest


def cached_password(cache_home: Path) -> str:
    entries = list((cache_home / "airdock" / "registry-tokens").glob("*.json"))
    assert len(entries) == 1, entries
    return str(json.loads(entries[0].read_text())["credentials"]["password"])


def token_calls(stack: StackHandle) -> int:
    return int(stack.status()["get_authorization_token_calls"])


def test_private_image_runs_with_only_an_aws_connection_and_the_token_leaks_nowhere(
    stack: StackHandle, docker_client: Any, base_image: str, airflow_home: Path, tmp_path: Path
) -> None:
    digest = publish_job_image(stack, docker_client, base_image)
    dags = tmp_path / "dags"
    write_dag(dags, "pull", PULL_DAG)
    before = token_calls(stack)

    run = run_dag(airflow_home, dags, "airdock_e2e_pull", stack, tmp_path / "cache")
    assert run.state == "success", run.output[-4000:]
    assert "job-ran-from-private-image" in run.output
    assert f"running {stack.settings.registry_host}/e2e/job:v1, digest {digest}" in run.output
    assert token_calls(stack) == before + 1

    # The token the task used is the one in the host cache; search everything the run left behind.
    password = cached_password(tmp_path / "cache")
    assert password not in run.output
    for log_file in (airflow_home / "logs").rglob("*"):
        if log_file.is_file():
            assert password not in log_file.read_text(errors="replace"), log_file
    database = airflow_home / "airflow.db"
    assert password.encode() not in database.read_bytes(), (
        "token found in the metadata DB (XCom, rendered fields...)"
    )
    with sqlite3.connect(database) as db:
        xcom = dict(db.execute("SELECT key, value FROM xcom WHERE dag_id = 'airdock_e2e_pull'").fetchall())
        rendered = db.execute(
            "SELECT rendered_fields FROM rendered_task_instance_fields WHERE dag_id = 'airdock_e2e_pull'"
        ).fetchall()
    assert json.loads(xcom["image_digest"]) == digest, "the digest that ran is recorded in XCom"
    assert rendered and "airdock_e2e_pull" in rendered[0][0], "rendered fields were written (and searched)"
    config = Path.home() / ".docker" / "config.json"
    assert not config.exists() or password not in config.read_text()


def test_token_expired_between_cache_check_and_pull_is_renewed_in_the_task(
    stack: StackHandle, docker_client: Any, base_image: str, airflow_home: Path, tmp_path: Path
) -> None:
    publish_job_image(stack, docker_client, base_image)
    dags = tmp_path / "dags"
    write_dag(dags, "pull", PULL_DAG)
    cache = tmp_path / "cache"
    assert run_dag(airflow_home, dags, "airdock_e2e_pull", stack, cache).state == "success"

    # The cache still believes in its entry; the registry no longer does.
    from airdock.local.store import Store

    expired = Store(stack.settings.store_path).issue_token(0.01).password
    entry = next((cache / "airdock" / "registry-tokens").glob("*.json"))
    data = json.loads(entry.read_text())
    data["credentials"]["password"] = expired
    entry.write_text(json.dumps(data))
    before = token_calls(stack)

    run = run_dag(airflow_home, dags, "airdock_e2e_pull", stack, cache)
    assert run.state == "success", run.output[-4000:]
    assert "refused the cached token" in run.output
    assert "fetching a fresh one and retrying once" in run.output
    assert token_calls(stack) == before + 1


def test_missing_repository_fails_the_task_with_one_clear_line(
    stack: StackHandle, airflow_home: Path, tmp_path: Path
) -> None:
    dags = tmp_path / "dags"
    write_dag(dags, "missing", MISSING_DAG)
    run = run_dag(airflow_home, dags, "airdock_e2e_missing", stack, tmp_path / "cache")
    assert run.state == "failed"
    assert (
        f"repository 'e2e/never-created' does not exist in registry {stack.settings.registry_host}: "
        "create it and push the image, or fix the image name"
    ) in run.output


@pytest.fixture(scope="module")
def five_second_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackHandle]:
    handle = start_stack(tmp_path_factory.mktemp("ttl5"), "--token-ttl", "5s")
    yield handle
    airdock("local", "down", "--data-dir", str(handle.data_dir), check=False)


def test_tasks_ten_seconds_apart_with_a_five_second_token_need_no_manual_step(
    five_second_stack: StackHandle, docker_client: Any, base_image: str, airflow_home: Path, tmp_path: Path
) -> None:
    stack = five_second_stack
    publish_job_image(stack, docker_client, base_image)
    dags = tmp_path / "dags"
    write_dag(dags, "two", TWO_TASKS_DAG)
    before = token_calls(stack)
    run = run_dag(airflow_home, dags, "airdock_e2e_two_tasks", stack, tmp_path / "cache")
    assert run.state == "success", run.output[-4000:]
    assert f"fetched an ECR token for {stack.settings.registry_host}" in run.output
    assert f"renewed the ECR token for {stack.settings.registry_host}: the cached one expired" in run.output
    assert token_calls(stack) == before + 2
