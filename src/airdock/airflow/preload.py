"""Import, once, what a task running ``ContainerOperator`` needs — in the process that forks tasks.

Every task run is a process forked from a long-lived one (the scheduler's LocalExecutor workers
are forked from the scheduler); what that process imported, each task shares, and anything else
each task imports and parses again: for a ``ContainerOperator`` run the docker provider and the
Docker SDK, the Amazon provider's hooks, boto3 and botocore and botocore's service models — about
half of the CPU of a run here. airdock's Airflow plugin (:mod:`airdock.airflow.plugin`) imports
this module, and the scheduler loads plugins as it starts. Measured with 40 deferred ECS tasks on 4
slots (2 cores): the task processes' CPU went from 96 to 50 CPU-s; the run took 84 s before, 67 s
with the imports alone and 58.5 s with the shared service models too (``make bench``).
Nothing here connects, starts a thread or reads a credential: only imports and parsed model
files, safe to fork after.
"""

from __future__ import annotations

import importlib
import os

__all__ = ["LOADED_BY", "MODULES", "inherited"]

MODULES = (
    # the task SDK's runner and supervisor: what every task process runs, whatever its operator
    "airflow.sdk.execution_time.supervisor",
    "airflow.sdk.execution_time.task_runner",
    # the operator and what its module imports: the docker provider's operator, the Docker SDK
    "airdock.airflow.container",
    # what a run imports on its way (deferring, ECS, credentials, hygiene after the run)
    "airdock.airflow.triggers",
    "airdock.airflow.credentials",
    "airdock.airflow.hygiene",
    "airdock.targets.ecs.target",
    "airdock.targets.ecs.task_definitions",
    "airdock.targets.ecs.image",
    "airdock.hygiene.gc_apply",
    "airdock.hygiene.sweep_apply",
    "airdock.hygiene.inventory",
    "airflow.providers.amazon.aws.hooks.base_aws",
    "airflow.providers.amazon.aws.hooks.ecr",
    "airflow.providers.docker.exceptions",
    "boto3",
    "botocore.session",
    "botocore.exceptions",
)

for _name in MODULES:
    importlib.import_module(_name)

from airdock.airflow.secret_refs import warm  # noqa: E402  (after the imports it needs)

warm()  # botocore's parsed service models, shared by every task forked from here
LOADED_BY = os.getpid()  # the process that imported all this (the scheduler, for one)


def inherited() -> bool:
    """Whether this process got the modules above from the process that forked it."""
    return os.getpid() != LOADED_BY
