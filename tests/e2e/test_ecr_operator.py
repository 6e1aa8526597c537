"""EcrDockerOperator through Airflow's real task runner (`airflow dags test`) against the local stack."""

from __future__ import annotations

import contextlib
import json
import sqlite3
import subprocess
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from airdock.auth.credentials import RegistryCredentials
from tests.conftest import StackHandle
from tests.e2e.conftest import Deployment, run_dag, write_dag
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


def secret_forms(password: str) -> tuple[str, ...]:
    """The password, ``AWS:<password>``, and its base64 (ECR's ``authorizationToken``)."""
    return RegistryCredentials("r", "AWS", password, 0.0).secret_forms()


class ArgvWatcher:
    """Samples every process's argv on the machine while a run goes on (``ps`` after the fact
    would miss a short-lived child)."""

    def __init__(self) -> None:
        self.seen: set[str] = set()
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> ArgvWatcher:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def _loop(self) -> None:
        while not self._stop.is_set():
            for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
                with contextlib.suppress(OSError):
                    self.seen.add(cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace"))
            self.samples += 1
            self._stop.wait(0.02)


def assert_secret_nowhere(
    forms: Sequence[str],
    output: str,
    airflow_home: Path,
    argv: ArgvWatcher,
    dag_id: str,
    *,
    log_files: bool,
) -> None:
    """No form of the secret in the run's output (the task and supervisor logs of ``dags test``), any
    file of the Airflow home (task log files of an executor run), the metadata DB (XCom, rendered
    fields), any process's argv, or the docker config."""
    files = [path for path in airflow_home.rglob("*") if path.is_file() and path.name != "airflow.db"]
    logs = [path for path in files if "logs" in path.parts and dag_id in str(path)]
    assert output.strip(), "the run printed its log (and it was searched)"
    if log_files:
        assert logs, "the run wrote task log files (and they were searched)"
    assert argv.samples >= 5 and argv.seen, "argv was sampled during the run"
    database = (airflow_home / "airflow.db").read_bytes()
    with sqlite3.connect(airflow_home / "airflow.db") as db:
        xcom = db.execute("SELECT value FROM xcom WHERE dag_id = ?", (dag_id,)).fetchall()
        rendered = db.execute(
            "SELECT rendered_fields FROM rendered_task_instance_fields WHERE dag_id = ?", (dag_id,)
        ).fetchall()
    assert xcom and rendered, "XCom and rendered fields were written (and searched)"
    config = Path.home() / ".docker" / "config.json"
    for form in forms:
        assert form not in output, "a form of the token in the run's output"
        for path in files:
            assert form not in path.read_text(errors="replace"), path
        assert form.encode() not in database, "a form of the token in the metadata DB"
        assert not any(form in args for args in argv.seen), "a form of the token in a process's argv"
        assert not config.exists() or form not in config.read_text()


def test_private_image_runs_with_only_an_aws_connection_and_the_token_leaks_nowhere(
    stack: StackHandle, docker_client: Any, base_image: str, deployment: Deployment, tmp_path: Path
) -> None:
    """Executor-run at DEBUG (task log files, the supervisor's log): botocore logs GetAuthorizationToken's
    response body at DEBUG, and the base64 token in it must show nowhere."""
    digest = publish_job_image(stack, docker_client, base_image)
    dags = tmp_path / "dags"
    write_dag(dags, "pull", PULL_DAG)
    before = token_calls(stack)

    with ArgvWatcher() as argv:
        run = run_dag(
            deployment, dags, "airdock_e2e_pull", stack, tmp_path / "cache",
            AIRFLOW__LOGGING__LOGGING_LEVEL="DEBUG",
        )  # fmt: skip
    assert run.state == "success", run.output[-4000:]
    assert token_calls(stack) == before + 1
    task_logs = [
        path.read_text(errors="replace")
        for path in (deployment.home / "logs" / "dag_id=airdock_e2e_pull").rglob("*.log")
    ]
    assert task_logs, "the executor-run task wrote its log file"
    everything = run.output + "".join(task_logs)
    assert "job-ran-from-private-image" in everything
    assert f"running {stack.settings.registry_host}/e2e/job:v1, digest {digest}" in everything
    assert "fetched an ECR token" in everything
    assert "Response body" in everything, (
        "botocore logged response bodies at DEBUG (else this proves nothing)"
    )
    assert "authorizationToken" in everything

    # The token the task used is the one in the host cache; search everything the run left behind.
    assert_secret_nowhere(
        secret_forms(cached_password(tmp_path / "cache")),
        run.output,
        deployment.home,
        argv,
        "airdock_e2e_pull",
        log_files=True,
    )
    with sqlite3.connect(deployment.home / "airflow.db") as db:
        run_id = db.execute(
            "SELECT run_id FROM dag_run WHERE dag_id = 'airdock_e2e_pull' ORDER BY id DESC LIMIT 1"
        ).fetchone()[0]
        xcom = dict(
            db.execute(
                "SELECT key, value FROM xcom WHERE dag_id = 'airdock_e2e_pull' AND run_id = ?", (run_id,)
            ).fetchall()
        )
        rendered = db.execute(
            "SELECT rendered_fields FROM rendered_task_instance_fields WHERE dag_id = 'airdock_e2e_pull'"
        ).fetchall()
    assert json.loads(xcom["image_digest"]) == digest, "the digest that ran is recorded in XCom"
    assert "airdock_e2e_pull" in rendered[0][0], "rendered fields hold the rendered template"


def test_token_expired_between_cache_check_and_pull_is_renewed_in_the_task(
    stack: StackHandle, docker_client: Any, base_image: str, deployment: Deployment, tmp_path: Path
) -> None:
    publish_job_image(stack, docker_client, base_image)
    dags = tmp_path / "dags"
    write_dag(dags, "pull", PULL_DAG)
    cache = tmp_path / "cache"
    # The host cache gets its entry as ``airdock push`` would fill it (the same credentials as the
    # task's connection, so the same key): cheaper than a first run of the DAG.
    import os
    import sys

    shell = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "XDG_"))}
    shell.update(stack.settings.client_environment(), XDG_CACHE_HOME=str(cache))
    fill = "from airdock.auth.session import registry_credentials; registry_credentials(None).get()"
    subprocess.run([sys.executable, "-c", fill], env=shell, check=True, timeout=120)

    # The cache still believes in its entries; the registry no longer does.
    from airdock.local.store import Store

    expired = Store(stack.settings.store_path).issue_token(0.01).password
    for entry in (cache / "airdock" / "registry-tokens").glob("*.json"):
        data = json.loads(entry.read_text())
        data["credentials"]["password"] = expired
        entry.write_text(json.dumps(data))
    before = token_calls(stack)

    run = run_dag(deployment, dags, "airdock_e2e_pull", stack, cache)
    assert run.state == "success", run.output[-4000:]
    assert "refused the cached token" in run.output
    assert "fetching a fresh one and retrying once" in run.output
    assert token_calls(stack) == before + 1


def test_missing_repository_fails_the_task_with_one_clear_line(
    stack: StackHandle, deployment: Deployment, tmp_path: Path
) -> None:
    dags = tmp_path / "dags"
    write_dag(dags, "missing", MISSING_DAG)
    run = run_dag(deployment, dags, "airdock_e2e_missing", stack, tmp_path / "cache")
    assert run.state == "failed"
    assert (
        f"repository 'e2e/never-created' does not exist in registry {stack.settings.registry_host}: "
        "create it and push the image, or fix the image name"
    ) in run.output


def test_an_unwritable_token_cache_never_fails_the_task(
    stack: StackHandle, docker_client: Any, base_image: str, deployment: Deployment, tmp_path: Path
) -> None:
    """A read-only or immutable cache directory: the pull goes on with the token it fetched, one warning."""
    publish_job_image(stack, docker_client, base_image)
    dags = tmp_path / "dags"
    write_dag(dags, "pull", PULL_DAG)
    frozen = tmp_path / "frozen-cache"
    frozen.mkdir(mode=0o700)
    done = subprocess.run(["chattr", "+i", str(frozen)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, f"chattr +i failed ({done.stderr.strip()}): this test needs it"
    try:
        run = run_dag(
            deployment, dags, "airdock_e2e_pull", stack, tmp_path / "cache",
            AIRFLOW__AIRDOCK__TOKEN_CACHE_DIR=str(frozen),
        )  # fmt: skip
    finally:
        subprocess.run(["chattr", "-i", str(frozen)], check=False)
    assert run.state == "success", run.output[-4000:]
    assert "job-ran-from-private-image" in run.output
    warnings = [line for line in run.task_log.splitlines() if "cannot be written" in line]
    assert len(warnings) == 1, warnings  # the task's log file: each record once
    assert f"the token cache directory {frozen} cannot be written" in warnings[0]
    assert "[airdock] token_cache_dir" in warnings[0]
    assert list(frozen.iterdir()) == []


SHARED_DAG = """
    import os
    from datetime import datetime

    from airflow.sdk import DAG

    from airdock.airflow import EcrDockerOperator

    with DAG("airdock_e2e_shared_token", schedule=None, start_date=datetime(2026, 1, 1), catchup=False):
        EcrDockerOperator(task_id="run", image=os.environ["AIRDOCK_E2E_IMAGE"], pull_policy="always",
                          command=["cat", "/hello.txt"])
"""


def test_airdock_push_and_the_tasks_of_a_host_share_one_cached_token(
    stack: StackHandle, deployment: Deployment, tmp_path: Path
) -> None:
    """The analyst pushes with the shell's credentials, a task pulls with an Airflow connection holding
    the same ones: one GetAuthorizationToken call for both (one identity key, one host cache)."""
    import os

    from tests.conftest import AIRDOCK

    cache = tmp_path / "cache"
    context = tmp_path / "job"
    context.mkdir()
    (context / "Dockerfile").write_text("FROM airdock-local/busybox:latest\nCOPY hello.txt /hello.txt\n")
    (context / "hello.txt").write_text("shared-token-job\n")
    shell = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "XDG_"))}
    shell.update(stack.settings.client_environment(), XDG_CACHE_HOME=str(cache))
    before = token_calls(stack)
    pushed = subprocess.run(
        [*AIRDOCK, "push", str(context), "--repo", "e2e/shared", "--tag", "v1"],
        capture_output=True, text=True, env=shell, check=False, timeout=300,
    )  # fmt: skip
    assert pushed.returncode == 0, pushed.stderr
    assert token_calls(stack) == before + 1

    dags = tmp_path / "dags"
    write_dag(dags, "shared", SHARED_DAG)
    image = f"{stack.settings.registry_host}/e2e/shared:v1"
    run = run_dag(deployment, dags, "airdock_e2e_shared_token", stack, cache, AIRDOCK_E2E_IMAGE=image)
    assert run.state == "success", run.output[-4000:]
    assert "shared-token-job" in run.output
    assert f"ECR token for {stack.settings.registry_host} from the host cache" in run.output
    assert token_calls(stack) == before + 1, "the task used the token the push had cached"
