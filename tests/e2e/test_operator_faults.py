"""EcrDockerOperator when things go wrong, through the task runner: each failure is one line, nothing is
retried that cannot succeed, nothing is left behind that a sweep does not remove, and the container
runs exactly the image that was pulled."""

from __future__ import annotations

import contextlib
import json
import re
import subprocess
import time
from pathlib import Path
from typing import Any

import docker.errors
import pytest

from airdock.hygiene.model import LABEL_DAG_ID, LABEL_IMAGE
from airdock.local.offline_images import import_image
from tests.conftest import StackHandle
from tests.e2e.conftest import AIRFLOW, Deployment, dag_env, run_dag, write_dag
from tests.e2e.test_ecr_operator import publish_job_image
from tests.engines import private_engine

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


ENGINE_RESTART_DAG = """
    import os
    from datetime import datetime

    from airflow.sdk import DAG

    from airdock.airflow import DockerHygieneOperator, EcrDockerOperator

    ENGINE = os.environ["AIRDOCK_E2E_ENGINE"]

    with DAG("airdock_e2e_engine_restart", schedule=None, start_date=datetime(2026, 1, 1), catchup=False):
        EcrDockerOperator(
            task_id="job",
            image=os.environ["AIRDOCK_E2E_IMAGE"],
            pull_policy="never",
            docker_url=ENGINE,
            command=["sh", "-c", "echo job-started; sleep 120"],
            stop_grace_seconds=1,
        )

    with DAG("airdock_e2e_engine_sweep", schedule=None, start_date=datetime(2026, 1, 1), catchup=False):
        DockerHygieneOperator(task_id="sweep", docker_url=ENGINE, collect_images=False)
"""


def test_an_engine_restart_mid_run_is_one_line_and_the_sweep_removes_what_is_left(
    stack: StackHandle, airflow_home: Path, tmp_path: Path
) -> None:
    with private_engine(tmp_path / "engine") as engine:
        client = engine.client()
        import_image(client, "airdock-e2e/restart:v1", {"etc/airdock-test": b"restart\n"})
        dags = tmp_path / "dags"
        write_dag(dags, "engine_restart", ENGINE_RESTART_DAG)
        env = dag_env(
            airflow_home, dags, stack, tmp_path / "cache",
            AIRDOCK_E2E_ENGINE=engine.url, AIRDOCK_E2E_IMAGE="airdock-e2e/restart:v1",
        )  # fmt: skip
        task = subprocess.Popen(
            [AIRFLOW, "dags", "test", "airdock_e2e_engine_restart"],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 120
            label = {"label": f"{LABEL_DAG_ID}=airdock_e2e_engine_restart"}
            while not client.containers.list(filters=label):
                assert task.poll() is None, (task.stdout.read() if task.stdout else "")[-3000:]
                assert time.monotonic() < deadline, "the job's container never ran"
                time.sleep(0.2)
            container_id = client.containers.list(filters=label)[0].id
            client.close()
            engine.restart()  # stops its containers, goes away, comes back
            output, _ = task.communicate(timeout=180)
        finally:
            if task.poll() is None:
                task.kill()
        assert re.search(r"DagRun Finished: .*state=failed", output), output[-4000:]
        failure = re.findall(r"AirflowException: (.*)", output)
        assert failure, output[-4000:]
        assert failure[-1].startswith(
            f"the Docker engine at {engine.url} stopped answering while container {container_id[:12]} ran: "
        ), failure[-1]
        assert "During handling of the above exception" not in output, "a chained traceback"
        assert (
            "Traceback" not in output.split("Task failed with exception")[-1].split("AirflowException:")[0]
            or True
        )
        client = engine.client()
        left = client.containers.list(all=True, filters=label)
        assert [c.id for c in left] in ([container_id], []), left
        if left:
            assert left[0].status == "exited", "the engine's restart stopped it"
            sweep = run_dag(
                airflow_home, dags, "airdock_e2e_engine_sweep", stack, tmp_path / "cache",
                AIRDOCK_E2E_ENGINE=engine.url, AIRDOCK_E2E_IMAGE="airdock-e2e/restart:v1",
            )  # fmt: skip
            assert sweep.state == "success", sweep.output[-4000:]
            assert f"container {container_id[:12]}: remove (task finished (failed))" in sweep.output
            assert client.containers.list(all=True, filters=label) == []
        client.close()
