"""Example: keep the ``docker_default`` connection logged in to ECR for the stock ``DockerOperator``.

Every 6 hours one task, on one worker, checks the token stored in ``docker_default`` and writes a
fresh one (from GetAuthorizationToken on ``aws_default``) only when less than 7 hours are left,
so the 12-hour ECR token never lapses. This replaces a ``docker login`` cron on every worker host:
DockerOperator tasks anywhere read the connection and log in with it.

The registry comes from ``AIRDOCK_REGISTRY`` (e.g. ``123456789012.dkr.ecr.eu-west-1.amazonaws.com``),
else the local stack's ``AIRDOCK_LOCAL_REGISTRY``. Airflow 3 tasks may not write to the metadata
database, so the connection is written through the api-server's REST API: create the HTTP
connection ``airflow_api`` (host = the api-server's base URL, login/password = a user allowed to
edit connections), e.g. ``AIRFLOW_CONN_AIRFLOW_API='{"conn_type": "http", "host":
"http://airflow-api:8080", "login": "...", "password": "..."}'``.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta

from airflow.sdk import DAG

from airdock.airflow.connection_sync import EcrConnectionSyncOperator

REGISTRY = os.environ.get("AIRDOCK_REGISTRY") or os.environ.get("AIRDOCK_LOCAL_REGISTRY", "127.0.0.1:5780")

with DAG(
    dag_id="airdock_example_ecr_connection_sync",
    description="Refresh the ECR login in the docker_default connection before it expires",
    # One scheduled task instead of a cron on every host: whichever worker picks it up refreshes
    # the connection for all of them.
    schedule=timedelta(hours=6),
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    tags=["airdock", "example"],
):
    EcrConnectionSyncOperator(
        task_id="sync_docker_default",
        registry=REGISTRY,
        docker_conn_id="docker_default",
        aws_conn_id="aws_default",
        min_remaining="7h",  # > the 6 h schedule, with an hour to spare for a late run
        api_conn_id="airflow_api",  # the api-server: tasks may not write to the metadata DB
        retries=2,
        retry_delay=timedelta(minutes=5),
    )
