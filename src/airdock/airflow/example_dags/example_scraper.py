"""Example: run the demo "scraper" job image from the (local) ECR registry as an Airflow task.

The image lives at ``$AIRDOCK_LOCAL_REGISTRY/airdock-demo/scraper:latest`` (pushed by
``make demo``). The task uses the docker provider's stock ``DockerOperator`` fed with a registry
token through the ``airdock_registry`` Docker connection, which ``make demo`` provides as an
``AIRFLOW_CONN_AIRDOCK_REGISTRY`` environment variable holding a fresh GetAuthorizationToken
password. The job's last output line (its result, as JSON) becomes the task's XCom.
"""

from __future__ import annotations

import os
from datetime import datetime

from airflow.providers.docker.operators.docker import DockerOperator
from airflow.sdk import DAG

REGISTRY = os.environ.get("AIRDOCK_LOCAL_REGISTRY", "127.0.0.1:5780")
IMAGE = f"{REGISTRY}/airdock-demo/scraper:latest"

with DAG(
    dag_id="airdock_example_scraper",
    description="Run the demo scraper image from a private registry",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    tags=["airdock", "example"],
):
    DockerOperator(
        task_id="scrape",
        image=IMAGE,
        docker_conn_id="airdock_registry",
        force_pull=True,  # always go through the registry, so the run proves the credentials work
        mount_tmp_dir=False,
        auto_remove="success",
        environment={"SCRAPER_PAGES": "3"},
    )
