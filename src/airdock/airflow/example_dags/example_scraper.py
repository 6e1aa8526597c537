"""Example: run the demo "scraper" job image from a private ECR registry, twice, with no credential upkeep.

``EcrDockerOperator`` gets registry tokens at run time from the worker's AWS identity (the
``aws_default`` connection, or the default credential chain when there is none), shares them
through the host-wide token cache, and renews them when they near expiry or the registry refuses
them. ``make demo`` runs this DAG against the local ECR stack with 20 s tokens; the pause between
the two scrapes outlasts a token, so the second task's log shows it renewing the token by itself.

The image is ``$AIRDOCK_LOCAL_REGISTRY/airdock-demo/scraper:latest`` (pushed by ``make demo``);
point ``IMAGE`` at ``<account>.dkr.ecr.<region>.amazonaws.com/<repo>:<tag>`` for real ECR.
"""

from __future__ import annotations

import os
from datetime import datetime

from airflow.providers.standard.operators.bash import BashOperator
from airflow.sdk import DAG

from airdock.airflow import EcrDockerOperator

REGISTRY = os.environ.get("AIRDOCK_LOCAL_REGISTRY", "127.0.0.1:5780")
IMAGE = f"{REGISTRY}/airdock-demo/scraper:latest"
PAUSE_SECONDS = int(os.environ.get("AIRDOCK_EXAMPLE_PAUSE_SECONDS", "25"))

with DAG(
    dag_id="airdock_example_scraper",
    description="Run the demo scraper image from a private registry, twice",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    tags=["airdock", "example"],
):
    scrape = EcrDockerOperator(
        task_id="scrape",
        image=IMAGE,
        pull_policy="always",  # go through the registry each time, so the run exercises the token
        environment={"SCRAPER_PAGES": "3"},
    )
    pause = BashOperator(task_id="pause", bash_command=f"sleep {PAUSE_SECONDS}")
    scrape_again = EcrDockerOperator(
        task_id="scrape_again",
        image=IMAGE,
        pull_policy="always",
        environment={"SCRAPER_PAGES": "5"},
    )
    scrape >> pause >> scrape_again
