"""Example maintenance DAG: keep each worker's Docker engine clean, hourly.

Removes containers airdock started whose task is no longer running (never a container without
airdock's label), then garbage-collects images least recently used first until image storage is
under budget. Budgets and protections come from ``[airdock] gc_*`` unless given here. With
several workers, route this task to each (a queue per worker) or set ``auto_gc=True`` on the
``EcrDockerOperator`` tasks, which runs a cheap budget check after each task on its own worker.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import DAG

from airdock.airflow import DockerHygieneOperator

with DAG(
    dag_id="airdock_example_docker_hygiene",
    description="Remove orphaned airdock containers and keep image storage under budget",
    schedule=timedelta(hours=1),
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    tags=["airdock", "example", "maintenance"],
):
    DockerHygieneOperator(
        task_id="docker_hygiene",
        max_image_bytes="20GB",
        min_age="10m",
        max_unused_age="7d",
        keep=["*:stable"],
        max_container_age="24h",
    )
