"""The shipped example DAG through Airflow's real task runner (`airflow dags test`) on the local stack."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from airdock.local.offline_images import build_image
from tests.conftest import StackHandle
from tests.e2e.conftest import Deployment, run_dag
from tests.integration.test_docker_flow import push, remove_local

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE_DAGS = ROOT / "src/airdock/airflow/example_dags"


def test_example_dag_pulls_and_runs_the_private_image_twice(
    stack: StackHandle, docker_client: Any, deployment: Deployment, tmp_path: Path
) -> None:
    stack.ensure_repository("airdock-demo/scraper")
    ref = f"{stack.settings.registry_host}/airdock-demo/scraper:latest"
    build_image(docker_client, ref, context=ROOT / "examples/scraper")
    digest = push(docker_client, ref, stack.auth_config())
    remove_local(docker_client, ref)

    run = run_dag(
        deployment,
        EXAMPLE_DAGS,
        "airdock_example_scraper",
        stack,
        tmp_path / "cache",
        AIRDOCK_EXAMPLE_PAUSE_SECONDS="1",
    )
    assert run.state == "success", run.output[-4000:]
    assert "scraper: page 3/3: 21 items" in run.output
    assert "scraper: page 5/5: 35 items" in run.output, "the second task ran too"
    assert '{"pages": 5, "items": 105}' in run.output
    assert f"fetched an ECR token for {stack.settings.registry_host}" in run.output
    assert f"ECR token for {stack.settings.registry_host} from the host cache" in run.output
    assert f"digest {digest}" in run.output
    assert docker_client.images.get(ref).attrs["RepoDigests"], "the task pulled the image from the registry"
