"""Example maintenance DAG: keep each worker's Docker engine clean, hourly.

Removes containers airdock started whose task is no longer running (never a container without
airdock's label), then garbage-collects images least recently used first until image storage is
under budget. Budgets and protections come from ``[airdock] gc_*`` unless given here.

Every worker host has its own engine and disk, so the task must run on each: give every Celery
worker a queue of its own besides the default one (``airflow celery worker --queues worker-1,default``)
and list them in ``[airdock] worker_queues``; this DAG then has one task per queue. (Or set
``auto_gc=True`` on the ``EcrDockerOperator`` tasks, which runs a cheap budget check after each task
on its own worker.)
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import DAG, conf

from airdock.airflow import DockerHygieneOperator

# One task per worker host's queue, e.g. AIRFLOW__AIRDOCK__WORKER_QUEUES=worker-1,worker-2.
QUEUES = [q.strip() for q in conf.get("airdock", "worker_queues", fallback="").split(",") if q.strip()]

with DAG(
    dag_id="airdock_example_docker_hygiene",
    description="Remove orphaned airdock containers and keep image storage under budget",
    schedule=timedelta(hours=1),
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    tags=["airdock", "example", "maintenance"],
):
    for queue in QUEUES or [None]:
        DockerHygieneOperator(
            task_id=f"docker_hygiene_{queue}" if queue else "docker_hygiene",
            **({"queue": queue} if queue else {}),
            max_image_bytes="20GB",
            min_age="10m",
            max_unused_age="7d",
            keep=["*:stable"],
            max_container_age="24h",
        )
