"""airdock's Airflow glue: provider info, operators and example DAGs.

The only package of airdock that imports Airflow. Operators are imported lazily so that
provider discovery (``airdock.airflow.provider``) stays cheap.
"""

from __future__ import annotations

from typing import Any

from airdock.airflow import metrics as _metrics

_metrics.install()  # airdock's metrics go where Airflow's go (no Airflow import until one is sent)

__all__ = ["ContainerOperator", "DockerHygieneOperator", "EcrConnectionSyncOperator", "EcrDockerOperator"]


def __getattr__(name: str) -> Any:
    if name == "ContainerOperator":
        from airdock.airflow.container import ContainerOperator

        return ContainerOperator
    if name == "EcrDockerOperator":
        from airdock.airflow.operators import EcrDockerOperator

        return EcrDockerOperator
    if name == "EcrConnectionSyncOperator":
        from airdock.airflow.connection_sync import EcrConnectionSyncOperator

        return EcrConnectionSyncOperator
    if name == "DockerHygieneOperator":
        from airdock.airflow.hygiene import DockerHygieneOperator

        return DockerHygieneOperator
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
