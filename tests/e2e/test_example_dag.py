"""The example DAG through Airflow's real task runner (`airflow dags test`) against the local stack."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from airdock.local.images import build_image
from tests.conftest import StackHandle, make_env
from tests.e2e.conftest import AIRFLOW
from tests.integration.test_docker_flow import push, remove_local

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]


def test_example_dag_pulls_and_runs_the_private_image(
    stack: StackHandle, docker_client: Any, airflow_home: Path
) -> None:
    stack.ensure_repository("airdock-demo/scraper")
    ref = f"{stack.settings.registry_host}/airdock-demo/scraper:latest"
    build_image(docker_client, ref, context=ROOT / "examples/scraper")
    password = stack.password()
    push(docker_client, ref, {"username": "AWS", "password": password})
    remove_local(docker_client, ref)

    env = make_env(
        AIRFLOW_HOME=str(airflow_home),
        AIRFLOW__CORE__DAGS_FOLDER=str(ROOT / "src/airdock/airflow/example_dags"),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRDOCK_LOCAL_REGISTRY=stack.settings.registry_host,
        AIRFLOW_CONN_AIRDOCK_REGISTRY=json.dumps(
            {
                "conn_type": "docker",
                "host": stack.settings.registry_host,
                "login": "AWS",
                "password": password,
            }
        ),
    )
    result = subprocess.run(
        [AIRFLOW, "dags", "test", "airdock_example_scraper"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    output = result.stdout + result.stderr
    state = re.search(r"DagRun Finished: .*state=(\w+)", output)
    assert state is not None, output[-3000:]
    assert state.group(1) == "success", output[-3000:]
    assert "scraper: page 3/3: 21 items" in output
    assert "scraper: done" in output
    assert '{"pages": 3, "items": 42}' in output
    assert password not in output, "the registry password leaked into the task output"
    assert docker_client.images.get(ref).attrs["RepoDigests"], "the task pulled the image from the registry"
