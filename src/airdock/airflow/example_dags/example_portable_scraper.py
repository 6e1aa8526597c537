"""Example: the same scraper task on the worker's Docker engine or on AWS ECS, by configuration.

``ContainerOperator`` takes one portable set of arguments. Where it runs is ``run_on`` on the task
or, as here, ``[airdock] run_on`` (``AIRFLOW__AIRDOCK__RUN_ON=docker|ecs``) for the whole
deployment: the DAG file does not change. On ECS the task definition is derived from the
arguments (image pinned to its digest) and reused while it stays the same; the output is followed
from CloudWatch Logs. ``make demo`` runs this DAG on docker, then on the local stack's ECS.
"""

from __future__ import annotations

import os
from datetime import datetime

from airflow.sdk import DAG

from airdock.airflow import ContainerOperator

REGISTRY = os.environ.get("AIRDOCK_LOCAL_REGISTRY", "127.0.0.1:5780")
IMAGE = f"{REGISTRY}/airdock-demo/scraper:latest"

with DAG(
    dag_id="airdock_example_portable_scraper",
    description="Run the demo scraper on docker or ECS, chosen by [airdock] run_on",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    tags=["airdock", "example"],
):
    ContainerOperator.partial(task_id="scrape", image=IMAGE, memory=256).expand(
        environment=[{"SCRAPER_PAGES": "2"}, {"SCRAPER_PAGES": "3"}]
    )
