"""EcrDockerOperator's container output through Airflow's task runner: every line logged, in records
of the lines that arrived together (``[airdock] log_lines_per_record``), the XCom kept."""

from __future__ import annotations

import json
import re
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import StackHandle
from tests.e2e.conftest import Deployment, run_dag, write_dag
from tests.e2e.test_ecr_operator import publish_job_image

pytestmark = pytest.mark.e2e

LOGS_DAG = """
    import os
    from datetime import datetime

    from airflow.sdk import DAG

    from airdock.airflow import EcrDockerOperator

    IMAGE = os.environ["AIRDOCK_LOCAL_REGISTRY"] + "/e2e/job:v1"


    def lines(prefix, n):
        program = 'BEGIN { for (i = 1; i <= %d; i++) printf "%s-%%05d ünïcödé\\\\n", i }' % (n, prefix)
        return ["/bin/busybox", "awk", program]


    with DAG("airdock_e2e_logs", schedule=None, start_date=datetime(2026, 1, 1), catchup=False):
        EcrDockerOperator(task_id="last_line", image=IMAGE, command=lines("many", 5000))
        EcrDockerOperator(task_id="all_lines", image=IMAGE, command=lines("every", 300), xcom_all=True)
        EcrDockerOperator(task_id="no_xcom", image=IMAGE, command=lines("none", 10), do_xcom_push=False)
"""


def return_values(database: Path, dag_id: str) -> dict[str, Any]:
    with sqlite3.connect(database) as db:
        rows = db.execute(
            "SELECT task_id, value FROM xcom WHERE dag_id = ? AND key = 'return_value'", (dag_id,)
        ).fetchall()
    return {task_id: json.loads(value) for task_id, value in rows}


def test_every_line_is_logged_and_the_xcom_holds_what_was_asked(
    stack: StackHandle, docker_client: Any, base_image: str, deployment: Deployment, tmp_path: Path
) -> None:
    publish_job_image(stack, docker_client, base_image)
    dags = tmp_path / "dags"
    write_dag(dags, "logs", LOGS_DAG)

    run = run_dag(deployment, dags, "airdock_e2e_logs", stack, tmp_path / "cache")

    assert run.state == "success", run.output[-4000:]
    # The task's log file (what the UI shows), each record once.
    logged = [int(n) for n in re.findall(r"many-(\d{5}) ünïcödé", run.task_log)]
    assert sorted(set(logged)) == list(range(1, 5001)), "every one of the 5,000 lines is in the task log"
    assert len(logged) == 5000, "and each once"
    files = (deployment.home / "logs" / "dag_id=airdock_e2e_logs").rglob("task_id=last_line/*.log")
    events = [json.loads(line).get("event", "") for path in files for line in path.read_text().splitlines()]
    records = [event for event in events if "many-" in event]
    assert "\n".join(records).split("\n") == [f"many-{i:05d} ünïcödé" for i in range(1, 5001)]
    assert len(records) <= 5000 / 20, f"lines that arrived together share a record ({len(records)} records)"
    assert len(re.findall(r"every-\d{5} ünïcödé", run.task_log)) == 300
    assert len(re.findall(r"none-\d{5} ünïcödé", run.task_log)) == 10

    xcom = return_values(deployment.home / "airflow.db", "airdock_e2e_logs")
    assert xcom["last_line"] == "many-05000 ünïcödé", "the last line is the return value"
    assert xcom["all_lines"] == [f"every-{i:05d} ünïcödé" for i in range(1, 301)], "xcom_all: every line"
    assert "no_xcom" not in xcom
