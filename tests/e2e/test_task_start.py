"""What a task's start skips, through Airflow's task runner: the engine's API version is remembered
per host (no ``GET /version`` per task), a version the engine refuses is forgotten and asked
again, and the attach knows the container's TTY without inspecting it."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from airdock.engine.api_version import CACHE_FILE
from tests.conftest import StackHandle
from tests.e2e.conftest import Deployment, run_dag, write_dag
from tests.e2e.test_ecr_operator import publish_job_image

pytestmark = pytest.mark.e2e

START_DAG = """
    import os
    from datetime import datetime

    from airflow.sdk import DAG

    from airdock.airflow import EcrDockerOperator

    IMAGE = os.environ["AIRDOCK_LOCAL_REGISTRY"] + "/e2e/job:v1"

    with DAG("airdock_e2e_start", schedule=None, start_date=datetime(2026, 1, 1), catchup=False):
        plain = EcrDockerOperator(task_id="plain", image=IMAGE, command=["echo", "plain-out"])
        tty = EcrDockerOperator(
            task_id="tty", image=IMAGE, command=["sh", "-c", "echo tty-1; echo tty-2"], tty=True
        )
        plain >> tty
"""


def xcoms(database: Path) -> dict[str, Any]:
    with sqlite3.connect(database) as db:
        rows = db.execute(
            "SELECT task_id, value FROM xcom WHERE dag_id = 'airdock_e2e_start' AND key = 'return_value'"
        ).fetchall()
    return {task_id: json.loads(value) for task_id, value in rows}


def test_the_engine_api_version_is_remembered_and_a_refused_one_asked_again(
    stack: StackHandle, docker_client: Any, base_image: str, deployment: Deployment, tmp_path: Path
) -> None:
    publish_job_image(stack, docker_client, base_image)
    dags = tmp_path / "dags"
    write_dag(dags, "start", START_DAG)
    state = tmp_path / "state"
    engine_version = docker_client.version()["ApiVersion"]
    cache = state / CACHE_FILE

    def run() -> str:
        result = run_dag(
            deployment, dags, "airdock_e2e_start", stack, tmp_path / "cache", AIRDOCK_STATE_DIR=str(state)
        )
        assert result.state == "success", result.output[-4000:]
        return result.task_log

    # A new host asks the engine (auto) once and remembers its version, privately.
    log = run()
    entries = json.loads(cache.read_text())
    assert [entry["version"] for entry in entries.values()] == [engine_version]
    assert cache.stat().st_mode & 0o077 == 0
    assert "plain-out" in log and "tty-1" in log and "tty-2" in log
    values = xcoms(deployment.home / "airflow.db")
    assert values["plain"] == "plain-out"
    assert str(values["tty"]).strip() == "tty-2", "a TTY container's output read without inspecting it"

    # The next tasks use the remembered version: nobody asked the engine again (the entry's time stays).
    run()
    assert json.loads(cache.read_text()) == entries

    # An engine that no longer speaks the remembered version (downgraded): the task still runs, says
    # so in one line, and the host remembers what the engine speaks now.
    (address,) = entries
    cache.write_text(json.dumps({address: {"version": "1.99", "at": entries[address]["at"]}}))
    log = run()
    assert "refused API version" in log and "client version 1.99 is too new" in log
    assert json.loads(cache.read_text())[address]["version"] == engine_version
