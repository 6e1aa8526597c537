"""DockerHygieneOperator in the task runner: orphans found by asking Airflow, others' containers kept."""

from __future__ import annotations

import contextlib
import json
import re
from pathlib import Path
from typing import Any

import docker.errors
import pytest

from airdock.hygiene.model import (
    LABEL_DAG_ID,
    LABEL_RUN_ID,
    LABEL_STARTED_AT,
    LABEL_TASK_ID,
    LABEL_TRY_NUMBER,
    MANAGED_LABEL,
)
from tests.conftest import StackHandle
from tests.e2e.conftest import Deployment, run_dag, write_dag

pytestmark = pytest.mark.e2e

DAG_ID = "airdock_e2e_hygiene"

HYGIENE_DAG = """
    import json
    import os
    from datetime import datetime
    from pathlib import Path

    import docker
    from airflow.providers.standard.operators.python import PythonOperator
    from airflow.sdk import DAG

    from airdock.airflow import DockerHygieneOperator
    from airdock.hygiene.model import (
        LABEL_DAG_ID, LABEL_RUN_ID, LABEL_TASK_ID, LABEL_TRY_NUMBER, MANAGED_LABEL,
    )


    def start_containers(run_id, **_):
        # Containers as EcrDockerOperator tasks of this very run would have left them.
        client = docker.from_env()
        ids = {}
        for task_id, command in (("finished_task", ["sleep", "300"]), ("hygiene", ["true"])):
            labels = {MANAGED_LABEL: "true", LABEL_DAG_ID: "airdock_e2e_hygiene", LABEL_RUN_ID: run_id,
                      LABEL_TASK_ID: task_id, LABEL_TRY_NUMBER: "1"}
            container = client.containers.create(os.environ["AIRDOCK_E2E_IMAGE"], command, labels=labels)
            if task_id == "finished_task":
                container.start()  # still running although its task has finished
            ids[task_id] = container.id
        Path(os.environ["AIRDOCK_E2E_IDS"]).write_text(json.dumps(ids))


    with DAG("airdock_e2e_hygiene", schedule=None, start_date=datetime(2026, 1, 1), catchup=False):
        finished = PythonOperator(task_id="finished_task", python_callable=start_containers)
        hygiene = DockerHygieneOperator(task_id="hygiene", collect_images=False, stop_grace_seconds=1)
        finished >> hygiene
"""


def labelled(task_id: str, run_id: str) -> dict[str, str]:
    return {
        MANAGED_LABEL: "true",
        LABEL_DAG_ID: DAG_ID,
        LABEL_RUN_ID: run_id,
        LABEL_TASK_ID: task_id,
        LABEL_TRY_NUMBER: "1",
    }


def test_orphans_are_found_by_asking_airflow(
    stack: StackHandle, docker_client: Any, base_image: str, deployment: Deployment, tmp_path: Path
) -> None:
    make = docker_client.containers.create
    ghost = make(base_image, ["true"], labels=labelled("finished_task", run_id="manual__no-such-run"))
    foreign = make(base_image, ["true"], labels={LABEL_DAG_ID: DAG_ID})  # no airdock.managed: not ours
    ids_file = tmp_path / "ids.json"
    created = [ghost, foreign]
    try:
        dags = tmp_path / "dags"
        write_dag(dags, "hygiene", HYGIENE_DAG)
        run = run_dag(
            deployment,
            dags,
            DAG_ID,
            stack,
            tmp_path / "cache",
            AIRDOCK_E2E_IMAGE=base_image,
            AIRDOCK_E2E_IDS=str(ids_file),
        )
        assert run.state == "success", run.output[-4000:]
        ids = json.loads(ids_file.read_text())
        finished, running = ids["finished_task"], ids["hygiene"]
        created += [docker_client.containers.get(i) for i in (running,) if _exists(docker_client, i)]
        left = {c.id for c in docker_client.containers.list(all=True)}
        assert finished not in left, run.output[-4000:]
        assert ghost.id not in left
        assert running in left, run.output[-4000:]
        assert foreign.id in left
        assert f"container {finished[:12]}: remove (task finished (success))" in run.output
        assert f"container {ghost.id[:12]}: remove (task instance not found)" in run.output
        assert f"container {running[:12]}: keep (task running)" in run.output
        assert f"container {foreign.id[:12]}: keep (not airdock's)" in run.output
    finally:
        for container in created:
            with contextlib.suppress(docker.errors.NotFound):
                container.remove(force=True)


def _exists(client: Any, container_id: str) -> bool:
    try:
        client.containers.get(container_id)
    except docker.errors.NotFound:
        return False
    return True


LOOKUP_DAG = """
    import os
    from datetime import datetime

    from airflow.sdk import DAG
    from airflow.sdk.exceptions import AirflowRuntimeError, ErrorType
    from airflow.sdk.execution_time.comms import ErrorResponse

    from airdock.airflow import DockerHygieneOperator


    # Stand-ins for the Execution API failing, which cannot be provoked for real here: the task
    # instance's public lookup is replaced inside the task process, just before execute.
    def broken_lookup(**_):
        raise TypeError("unexpected keyword 'run_ids'")


    def api_error(**_):
        raise AirflowRuntimeError(ErrorResponse(error=ErrorType.GENERIC_ERROR, detail={"status_code": 503}))


    def patch(lookup):
        def pre_execute(context):
            type(context["ti"]).get_task_states = staticmethod(lookup)
        return pre_execute


    with DAG("airdock_e2e_hygiene_lookup", schedule=None, start_date=datetime(2026, 1, 1), catchup=False):
        unexpected = DockerHygieneOperator(
            task_id="unexpected", collect_images=False, pre_execute=patch(broken_lookup), retries=0
        )
        expected = DockerHygieneOperator(
            task_id="expected", collect_images=False, pre_execute=patch(api_error), trigger_rule="all_done"
        )
        unexpected >> expected
"""


def test_the_task_state_lookup_fails_loudly_unless_the_error_is_expected(
    stack: StackHandle, docker_client: Any, base_image: str, airflow_home: Path, tmp_path: Path
) -> None:
    """An unexpected lookup error fails the task and removes nothing; Airflow's own error falls back to
    the age rule, which never stops a running container and removes only old stopped ones."""
    month_ago = "2026-01-01T00:00:00+00:00"
    job_labels = {**labelled("job", run_id="scheduled__2026-01-01"), LABEL_STARTED_AT: month_ago}
    running = docker_client.containers.create(
        base_image, ["sh", "-c", "trap 'exit 0' TERM; sleep 300 & wait"], labels=job_labels
    )
    running.start()
    exited = docker_client.containers.create(base_image, ["true"], labels=job_labels)
    exited.start()
    exited.wait(timeout=60)
    try:
        dags = tmp_path / "dags"
        write_dag(dags, "lookup", LOOKUP_DAG)
        run = run_dag(airflow_home, dags, "airdock_e2e_hygiene_lookup", stack, tmp_path / "cache")
        assert run.state == "success", run.output[-4000:]  # the leaf, "expected", decides the run's state
        assert re.search(
            r"AirflowException: asking Airflow for the task states of \d+ airdock containers failed "
            r"\(TypeError: unexpected keyword 'run_ids'\); nothing was removed",
            run.output,
        ), run.output[-4000:]
        assert "Airflow did not answer the task-state lookup" in run.output, run.output[-4000:]
        assert f"container {running.id[:12]}: keep (running; Airflow not asked)" in run.output
        assert f"container {exited.id[:12]}: remove (older than 24h (Airflow not asked))" in run.output
        assert _exists(docker_client, running.id)
        assert docker_client.containers.get(running.id).attrs["State"]["Running"]
        assert not _exists(docker_client, exited.id)
    finally:
        for container in (running, exited):
            with contextlib.suppress(docker.errors.NotFound):
                container.remove(force=True)
