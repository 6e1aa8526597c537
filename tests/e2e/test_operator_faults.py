"""EcrDockerOperator when things go wrong, through the task runner: each failure is one line, nothing is
retried that cannot succeed, and the container runs exactly the image that was pulled. (The worker's
engine restarted mid-run, and the sweep after it: tests/cluster/test_faults.py.)"""

from __future__ import annotations

import contextlib
import json
import re
from pathlib import Path
from typing import Any

import docker.errors
import pytest

from airdock.hygiene.model import LABEL_DAG_ID, LABEL_IMAGE
from airdock.local.offline_images import import_image
from tests.conftest import StackHandle
from tests.e2e.conftest import Deployment, run_dag, write_dag
from tests.e2e.test_ecr_operator import publish_job_image

pytestmark = pytest.mark.e2e

MOVED_TAG_DAG = """
    import os
    from datetime import datetime

    import docker
    from airflow.sdk import DAG

    from airdock.airflow import EcrDockerOperator


    class TagMovesAfterThePull(EcrDockerOperator):
        # Another process retags the reference between this task's pull and its container's creation
        # (a concurrent pull of a newer image under the same tag): simulated right after the pull.
        def _ensure_image(self, ref):
            pulled = super()._ensure_image(ref)
            docker.from_env().images.get(os.environ["AIRDOCK_E2E_OTHER_IMAGE"]).tag(str(ref))
            return pulled


    with DAG("airdock_e2e_moved_tag", schedule=None, start_date=datetime(2026, 1, 1), catchup=False):
        TagMovesAfterThePull(
            task_id="run",
            image=os.environ["AIRDOCK_LOCAL_REGISTRY"] + "/e2e/job:v1",
            pull_policy="always",
            command=["cat", "/etc/airdock-test"],
            remove="never",
        )
"""


def test_the_container_runs_the_image_that_was_pulled_even_if_the_tag_moves(
    stack: StackHandle, docker_client: Any, base_image: str, deployment: Deployment, tmp_path: Path
) -> None:
    digest = publish_job_image(stack, docker_client, base_image)
    other = import_image(docker_client, "airdock-e2e/moved:v1", {"etc/airdock-test": b"moved\n"})
    ref = f"{stack.settings.registry_host}/e2e/job:v1"
    dags = tmp_path / "dags"
    write_dag(dags, "moved", MOVED_TAG_DAG)
    try:
        run = run_dag(
            deployment,
            dags,
            "airdock_e2e_moved_tag",
            stack,
            tmp_path / "cache",
            AIRDOCK_E2E_OTHER_IMAGE=other.id,
        )
        assert run.state == "success", run.output[-4000:]
        assert docker_client.images.get(ref).id == other.id, "the tag did move"
        containers = docker_client.containers.list(
            all=True, filters={"label": f"{LABEL_DAG_ID}=airdock_e2e_moved_tag"}
        )
        assert len(containers) == 1
        container = containers[0]
        pulled = docker_client.images.get(f"{stack.settings.registry_host}/e2e/job@{digest}")
        assert container.attrs["Image"] == pulled.id, "created from the image id pulled, not the moved tag"
        assert container.labels[LABEL_IMAGE] == ref
        assert container.logs().decode().strip() == "base", "it ran the pulled image's content"
        assert f"running {ref}, digest {digest}" in run.output
    finally:
        for container in docker_client.containers.list(
            all=True, filters={"label": f"{LABEL_DAG_ID}=airdock_e2e_moved_tag"}
        ):
            container.remove(force=True)
        with contextlib.suppress(docker.errors.APIError):
            docker_client.images.remove(other.id, force=True)


BAD_LITERALS = {
    "upper": 'EcrDockerOperator(task_id="run", image="UPPER/case:tag")',
    "empty": 'EcrDockerOperator(task_id="run", image="")',
}
BAD_LITERAL_DAG = """
    from datetime import datetime

    from airflow.sdk import DAG

    from airdock.airflow import EcrDockerOperator

    with DAG("airdock_e2e_bad_literal_{name}", schedule=None, start_date=datetime(2026, 1, 1), catchup=False):
        {operator}
"""

TEMPLATED_DAG = """
    from datetime import datetime, timedelta

    from airflow.sdk import DAG

    from airdock.airflow import EcrDockerOperator

    with DAG(
        "airdock_e2e_bad_template", schedule=None, start_date=datetime(2026, 1, 1), catchup=False,
        params={"image": "UPPER/case:tag"},
    ):
        EcrDockerOperator(task_id="run", image="{{ params.image }}", retries=3, retry_delay=timedelta(0))
"""


def test_a_literal_bad_reference_fails_when_the_dag_is_parsed(
    stack: StackHandle, deployment: Deployment, tmp_path: Path
) -> None:
    dags = tmp_path / "dags"
    for name, operator in BAD_LITERALS.items():
        write_dag(
            dags, f"bad_{name}", BAD_LITERAL_DAG.replace("{name}", name).replace("{operator}", operator)
        )
    run = run_dag(deployment, dags, "airdock_e2e_bad_literal_upper", stack, tmp_path / "cache")
    assert run.state is None, "the DAG never ran"
    assert "invalid image reference 'UPPER/case:tag': repository names must be lowercase" in run.output
    assert "invalid image reference ''" in run.output, run.output[-3000:]


def test_a_templated_bad_reference_fails_at_run_time_without_retries(
    stack: StackHandle, deployment: Deployment, tmp_path: Path
) -> None:
    dags = tmp_path / "dags"
    write_dag(dags, "bad_template", TEMPLATED_DAG)
    run = run_dag(deployment, dags, "airdock_e2e_bad_template", stack, tmp_path / "cache")
    assert run.state == "failed", run.output[-4000:]
    assert re.search(
        r"AirflowFailException: invalid image reference 'UPPER/case:tag': repository names must be lowercase",
        run.output,
    ), run.output[-4000:]
    assert "up_for_retry" not in run.output.lower(), "a bad reference is never retried"


WRONG_PASSWORD_DAG = """
    import os
    from datetime import datetime, timedelta

    from airflow.sdk import DAG

    from airdock.airflow import EcrDockerOperator

    with DAG("airdock_e2e_wrong_password", schedule=None, start_date=datetime(2026, 1, 1), catchup=False):
        EcrDockerOperator(
            task_id="run",
            image=os.environ["AIRDOCK_LOCAL_REGISTRY"] + "/e2e/job:v1",
            docker_conn_id="team_registry",
            retries=3,
            retry_delay=timedelta(0),
        )
"""


def test_a_wrong_password_for_a_plain_registry_is_one_line_without_retries(
    stack: StackHandle, deployment: Deployment, tmp_path: Path
) -> None:
    """Not an ECR host (nothing in ecr_registries): DockerOperator's docker_conn_id login applies."""
    host, port = stack.settings.registry_host.rsplit(":", 1)
    dags = tmp_path / "dags"
    write_dag(dags, "wrong_password", WRONG_PASSWORD_DAG)
    connection = {"conn_type": "docker", "host": host, "port": int(port), "login": "AWS", "password": "wrong"}
    run = run_dag(
        deployment, dags, "airdock_e2e_wrong_password", stack, tmp_path / "cache",
        AIRFLOW__AIRDOCK__ECR_REGISTRIES="", AIRFLOW_CONN_TEAM_REGISTRY=json.dumps(connection),
    )  # fmt: skip
    assert run.state == "failed", run.output[-4000:]
    expected = (
        f"AirflowFailException: registry {stack.settings.registry_host} refused the login of the Airflow "
        "connection 'team_registry' (400 Bad Request): fix that connection's login and password"
    )
    assert expected in run.output, run.output[-4000:]
    assert "up_for_retry" not in run.output.lower()
    assert "APIError" not in run.output, "the docker SDK's traceback is not the message"
