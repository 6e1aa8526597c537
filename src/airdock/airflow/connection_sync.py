"""``EcrConnectionSyncOperator``: keep a stock Docker connection's ECR login fresh from Airflow.

The decisions and the sync are :mod:`airdock.airflow.docker_login`; the stores (REST API, ORM)
:mod:`airdock.airflow.connection_stores`. This module binds them to Airflow: the AWS connection,
``[airdock]``'s configured registries, the host token cache, and the operator.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowException, AirflowFailException

from airdock.airflow.connection_stores import (
    MetadataDbConnectionStore,
    RestApiConnectionStore,
    rest_store_from_connection,
)
from airdock.airflow.docker_login import (
    DEFAULT_API_CONN_ID,
    DEFAULT_AWS_CONN_ID,
    DEFAULT_DOCKER_CONN_ID,
    DEFAULT_MIN_REMAINING,
    ConnectionStore,
    SyncResult,
    TokenProvider,
    min_remaining_seconds,
    resolve_registry,
    sync_docker_connection,
)
from airdock.errors import AirdockError, ConfigError
from airdock.images import EcrRegistry

__all__ = ["EcrConnectionSyncOperator", "sync_from_airflow"]


def _ecr_tokens(
    registry: EcrRegistry, aws_conn_id: str | None, region_name: str | None, log: Any
) -> TokenProvider:
    from airdock.airflow.credentials import AirflowEcrCredentials

    return AirflowEcrCredentials(registry, aws_conn_id=aws_conn_id, region_name=region_name, log=log)


def sync_from_airflow(
    *,
    registry: str,
    docker_conn_id: str = DEFAULT_DOCKER_CONN_ID,
    aws_conn_id: str | None = DEFAULT_AWS_CONN_ID,
    region_name: str | None = None,
    min_remaining: float | str = DEFAULT_MIN_REMAINING,
    store: ConnectionStore | None = None,
    log: Any = None,
) -> SyncResult:
    """The sync with Airflow's config: ``[airdock] ecr_registries``, the AWS connection, the host cache."""
    from airdock.airflow.credentials import configured_ecr_registries

    ecr = resolve_registry(registry, configured_ecr_registries())
    return sync_docker_connection(
        registry=ecr,
        docker_conn_id=docker_conn_id,
        store=store if store is not None else MetadataDbConnectionStore(),
        tokens=lambda: _ecr_tokens(ecr, aws_conn_id, region_name, log),
        min_remaining=min_remaining_seconds(min_remaining),
        log=log,
    )


class EcrConnectionSyncOperator(BaseOperator):  # type: ignore[misc]  # Airflow is untyped here
    """Write a fresh ECR login into a Docker connection when the stored one is near expiry.

    For DAGs that keep the stock ``DockerOperator``: schedule this every few hours on one worker
    (see ``example_ecr_connection_sync``) instead of a ``docker login`` cron on every host. The
    connection gets ``conn_type=docker``, ``host``/``port`` = the registry, ``login=AWS`` and the
    token as password; the token's expiry goes to ``extra["airdock"]``, other extra keys
    (``reauth``, ``email``) are kept. A run whose stored token has at least ``min_remaining`` left
    writes nothing and calls no AWS API. Returns (as XCom) ``{"docker_conn_id", "registry",
    "expires_at", "updated", "reason"}`` — never the password.

    :param registry: ECR registry host, e.g. ``123456789012.dkr.ecr.eu-west-1.amazonaws.com``, or a
        host listed in ``[airdock] ecr_registries`` (VPC endpoint, local stack).
    :param docker_conn_id: the Docker connection to keep fresh.
    :param aws_conn_id: the AWS connection for GetAuthorizationToken (None: boto3's default chain).
    :param region_name: region when neither the host nor the AWS connection names one.
    :param min_remaining: refresh when less than this is left (``"7h"`` or seconds). The default
        suits a 6-hourly schedule with 12 h ECR tokens: an hour of slack for a late run.
    :param api_conn_id: an HTTP connection to the api-server (host = base URL, login/password of a
        user allowed to edit connections), default ``airflow_api``. The write goes through the
        public REST API ``/api/v2/connections``: on a real Airflow 3 deployment task processes may
        not use the metadata database (the task SDK blocks the ORM and its Execution API only reads
        connections). ``None`` chooses Airflow's ORM instead, explicitly — for ``airflow dags test``
        and ``dag.test()`` only, where Airflow still allows it; it is never tried first.
    """

    template_fields: Sequence[str] = (
        "registry",
        "docker_conn_id",
        "aws_conn_id",
        "region_name",
        "min_remaining",
    )
    ui_color = "#f0e4ff"

    def __init__(
        self,
        *,
        registry: str,
        docker_conn_id: str = DEFAULT_DOCKER_CONN_ID,
        aws_conn_id: str | None = DEFAULT_AWS_CONN_ID,
        region_name: str | None = None,
        min_remaining: str | float = DEFAULT_MIN_REMAINING,
        api_conn_id: str | None = DEFAULT_API_CONN_ID,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.registry = registry
        self.docker_conn_id = docker_conn_id
        self.aws_conn_id = aws_conn_id
        self.region_name = region_name
        self.min_remaining = min_remaining
        self.api_conn_id = api_conn_id

    def execute(self, context: Any) -> dict[str, Any]:
        rest: RestApiConnectionStore | None = None
        try:
            store: ConnectionStore
            if self.api_conn_id:
                rest = rest_store_from_connection(self.api_conn_id)
                store = rest
            else:
                store = MetadataDbConnectionStore()
            result = sync_from_airflow(
                registry=self.registry,
                docker_conn_id=self.docker_conn_id,
                aws_conn_id=self.aws_conn_id,
                region_name=self.region_name,
                min_remaining=self.min_remaining,
                store=store,
                log=self.log,
            )
        except ConfigError as exc:
            raise AirflowFailException(str(exc)) from None  # retrying cannot fix configuration
        except AirdockError as exc:
            raise AirflowException(str(exc)) from None
        finally:
            if rest is not None:
                rest.close()
        return result.to_dict()
