"""Celery configuration that preloads airdock in each Celery worker before it forks its pool.

``[celery] celery_config_options = airdock.airflow.celery_config.CELERY_CONFIG`` (the local cluster
sets it): the Celery provider's defaults, unchanged, and — because Airflow imports this module in
the worker's main process when it creates the Celery app, before the pool's processes are forked —
airdock's preload (``airdock.airflow.preload``: the operator, the providers' hooks, boto3 and its
parsed service models), which every pool process and every task process forked from it shares. A
task's first line then says ``(try 1; airdock preloaded)``. The scheduler and LocalExecutor get the
same from airdock's plugin; a Celery worker does not load plugins before it forks.
"""

from __future__ import annotations

from typing import Any

from airflow.providers.celery.executors.default_celery import DEFAULT_CELERY_CONFIG

import airdock.airflow.preload  # noqa: F401  (the point of this module: imported before the fork)

CELERY_CONFIG: dict[str, Any] = dict(DEFAULT_CELERY_CONFIG)
