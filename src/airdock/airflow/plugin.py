"""airdock's Airflow plugin: loading it preloads what a ``ContainerOperator`` run imports.

Airflow forks every task process from a long-lived one (the scheduler's LocalExecutor workers,
forked from the scheduler). Modules that process imported are shared by every task it forks;
anything else each task imports again — for a ``ContainerOperator`` run, the docker provider and
the Docker SDK, the Amazon provider's hooks, boto3 and botocore: about half of its CPU here. Airflow
loads plugins when the scheduler's job starts (for their listeners), before its executor forks any
worker, so this plugin imports :mod:`airdock.airflow.preload` there.
"""

from __future__ import annotations

from typing import Any, ClassVar

from airflow.plugins_manager import AirflowPlugin

import airdock.airflow.preload  # noqa: F401  (the point of this module)
from airdock.airflow.hosts_page import app as hosts_app

__all__ = ["AirdockPlugin"]


class AirdockPlugin(AirflowPlugin):  # type: ignore[misc]  # Airflow is untyped here
    """The "Container hosts" page (``airdock.airflow.hosts_page``, under ``/airdock`` of the
    api-server, in the UI's navigation); its import preloads airdock in the processes that fork tasks."""

    name = "airdock"
    fastapi_apps: ClassVar[list[dict[str, Any]]] = [
        {"app": hosts_app, "url_prefix": "/airdock", "name": "airdock: container hosts"}
    ]
    external_views: ClassVar[list[dict[str, Any]]] = [
        {
            "name": "Container hosts",
            "href": "/airdock/hosts",
            "destination": "nav",
            "url_route": "container-hosts",
        }
    ]
