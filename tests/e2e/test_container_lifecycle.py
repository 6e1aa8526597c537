"""EcrDockerOperator containers: labels, and the remove policy on every path through the task runner."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from airdock.hygiene.model import (
    LABEL_DAG_ID,
    LABEL_MAP_INDEX,
    LABEL_RUN_ID,
    LABEL_STARTED_AT,
    LABEL_TASK_ID,
    LABEL_TRY_NUMBER,
    MANAGED_LABEL,
)
from tests.conftest import StackHandle
from tests.e2e.conftest import AIRFLOW, Deployment, dag_env, run_dag, write_dag
from tests.e2e.test_ecr_operator import publish_job_image

pytestmark = pytest.mark.e2e

POLICIES_DAG = """
    import os
    import time
    from datetime import datetime, timedelta

    from airflow.sdk import DAG

    from airdock.airflow import EcrDockerOperator

    IMAGE = os.environ["AIRDOCK_LOCAL_REGISTRY"] + "/e2e/job:v1"
    FAIL = ["sh", "-c", "echo failing; exit 3"]

    class SlowCreate(EcrDockerOperator):
        # The engine creates the container but answers late (a loaded host): the execution
        # timeout fires before the task learns the container's id.

        def _run_image_with_mounts(self, target_mounts, add_tmp_variable):
            create = self.cli.create_container

            def create_then_stall(*args, **kwargs):
                created = create(*args, **kwargs)
                print("created, answering late", flush=True)
                time.sleep(300)
                return created

            self.cli.create_container = create_then_stall
            return super()._run_image_with_mounts(target_mounts, add_tmp_variable)

    with DAG("airdock_e2e_policies", schedule=None, start_date=datetime(2026, 1, 1), catchup=False):
        EcrDockerOperator(task_id="ok_always", image=IMAGE, command=["echo", "ok"], auto_gc=True)
        EcrDockerOperator(task_id="ok_never", image=IMAGE, command=["echo", "ok"], remove="never",
                          labels={"team": "data"})
        EcrDockerOperator(task_id="fail_always", image=IMAGE, command=FAIL, remove="always")
        EcrDockerOperator(task_id="fail_on_success", image=IMAGE, command=FAIL, remove="on_success")
        # timeouts long enough for a loaded host to get the container running (or created) first
        EcrDockerOperator(task_id="timeout_always", image=IMAGE, command=["sleep", "300"],
                          execution_timeout=timedelta(seconds=10), stop_grace_seconds=1)
        SlowCreate(task_id="timeout_in_create", image=IMAGE, command=["sleep", "300"],
                   execution_timeout=timedelta(seconds=10))
"""

LONG_DAG = """
    import os
    from datetime import datetime

    from airflow.sdk import DAG

    from airdock.airflow import EcrDockerOperator

    with DAG("airdock_e2e_terminated", schedule=None, start_date=datetime(2026, 1, 1), catchup=False):
        EcrDockerOperator(
            task_id="long",
            image=os.environ["AIRDOCK_LOCAL_REGISTRY"] + "/e2e/job:v1",
            command=["sleep", "300"],
            stop_grace_seconds=1,
        )
"""


def containers_of(docker_client: Any, dag_id: str) -> dict[str, Any]:
    found = docker_client.containers.list(all=True, filters={"label": f"{LABEL_DAG_ID}={dag_id}"})
    return {c.labels[LABEL_TASK_ID]: c for c in found}


def test_labels_and_remove_policy_on_success_failure_and_timeout(
    stack: StackHandle, docker_client: Any, base_image: str, deployment: Deployment, tmp_path: Path
) -> None:
    publish_job_image(stack, docker_client, base_image)
    dags = tmp_path / "dags"
    write_dag(dags, "policies", POLICIES_DAG)
    run = run_dag(
        deployment, dags, "airdock_e2e_policies", stack, tmp_path / "cache",
        AIRFLOW__AIRDOCK__GC_MAX_IMAGE_BYTES="1TB", AIRFLOW__AIRDOCK__GC_HIGH_WATERMARK_PERCENT="100",
    )  # fmt: skip
    assert run.state == "failed", run.output[-3000:]  # two tasks fail on purpose
    left = containers_of(docker_client, "airdock_e2e_policies")
    try:
        assert sorted(left) == ["fail_on_success", "ok_never"], run.output[-3000:]
        labels = left["ok_never"].labels
        assert labels[MANAGED_LABEL] == "true"
        assert labels["team"] == "data", "the user's own labels are kept"
        assert labels[LABEL_RUN_ID].startswith("manual__")
        assert labels[LABEL_TRY_NUMBER] == "1"
        assert labels[LABEL_MAP_INDEX] == "-1"
        assert labels[LABEL_STARTED_AT].endswith("+00:00")
        assert left["fail_on_success"].attrs["State"]["ExitCode"] == 3
        assert "stopping container" in run.output, "the timed-out container was stopped"
        assert "created, answering late" in run.output, run.output[-3000:]
        found = re.search(r"container (\w{12}) was created as the task stopped", run.output)
        assert found, "the container whose id the task never learnt was found by its labels"
        assert f"removed container {found[1]}" in run.output, "and removed"
        assert "auto_gc: image storage within budget" in run.output
    finally:
        for container in left.values():
            container.remove(force=True)


def test_a_terminated_task_leaves_no_container(
    stack: StackHandle, docker_client: Any, base_image: str, airflow_home: Path, tmp_path: Path
) -> None:
    publish_job_image(stack, docker_client, base_image)
    dags = tmp_path / "dags"
    write_dag(dags, "long", LONG_DAG)
    proc = subprocess.Popen(
        [AIRFLOW, "dags", "test", "airdock_e2e_terminated"],
        env=dag_env(airflow_home, dags, stack, tmp_path / "cache"),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while not containers_of(docker_client, "airdock_e2e_terminated"):
            assert proc.poll() is None, "the DAG run ended before its container started"
            assert time.monotonic() < deadline, "the container never started"
            time.sleep(0.2)
        container = containers_of(docker_client, "airdock_e2e_terminated")["long"]
        deadline = time.monotonic() + 30
        while container.status != "running" and time.monotonic() < deadline:
            time.sleep(0.2)
            container.reload()
        os.kill(proc.pid, signal.SIGTERM)  # what the supervisor does to a task it kills
        output, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert "stopping container" in output, output[-3000:]
    assert containers_of(docker_client, "airdock_e2e_terminated") == {}, output[-3000:]


AUTO_GC_DAG = """
    import os
    from datetime import datetime

    from airflow.sdk import DAG

    from airdock.airflow import EcrDockerOperator

    with DAG("airdock_e2e_auto_gc", schedule=None, start_date=datetime(2026, 1, 1), catchup=False):
        EcrDockerOperator(
            task_id="job",
            image=os.environ["AIRDOCK_LOCAL_REGISTRY"] + "/e2e/job:v1",
            command=["echo", "ok"],
            auto_gc=True,
        )
"""


def test_auto_gc_removes_unprotected_images_when_over_budget(
    stack: StackHandle, docker_client: Any, base_image: str, deployment: Deployment, tmp_path: Path
) -> None:
    from airdock.hygiene.usage import UsageStore
    from airdock.local.offline_images import import_image

    publish_job_image(stack, docker_client, base_image)
    victim = import_image(docker_client, "airdock-autogc/victim:v1", {"etc/victim": os.urandom(32)})
    # Another tenant's image on the same engine: airdock neither pulled nor started it.
    foreign = import_image(docker_client, "airdock-autogc/foreign:v1", {"etc/foreign": os.urandom(32)})
    state = tmp_path / "state"
    UsageStore(state / "usage.sqlite").record_pull(victim.id, time.time() - 3600)  # airdock brought it
    dags = tmp_path / "dags"
    write_dag(dags, "auto_gc", AUTO_GC_DAG)
    # Every image but the victim and the foreign one is protected: this engine is shared with the others.
    repositories = {tag.rsplit(":", 1)[0] for image in docker_client.images.list() for tag in image.tags}
    ours = {"airdock-autogc/victim", "airdock-autogc/foreign"}
    protected = ",".join([*sorted(f"{repo}:*" for repo in repositories - ours), "127.0.0.1*"])
    try:
        run = run_dag(
            deployment, dags, "airdock_e2e_auto_gc", stack, tmp_path / "cache",
            AIRFLOW__AIRDOCK__GC_MAX_IMAGE_BYTES="1", AIRFLOW__AIRDOCK__GC_MIN_AGE="0s",
            AIRFLOW__AIRDOCK__GC_KEEP=protected, AIRDOCK_STATE_DIR=str(state),
        )  # fmt: skip
        assert run.state == "success", run.output[-4000:]
        assert "auto_gc: removed" in run.output, run.output[-4000:]
        left = {image.id for image in docker_client.images.list(all=True)}
        assert victim.id not in left
        assert foreign.id in left, "an image airdock did not bring is out of the default GC scope"
        assert docker_client.images.get(base_image), "protected images survive"
        mark = UsageStore(state / "usage.sqlite").engine_mark()
        assert mark is not None and mark.engine_id == docker_client.info()["ID"]
    finally:
        docker_client.images.remove(foreign.id, force=True)
