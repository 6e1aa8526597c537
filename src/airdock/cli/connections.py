"""``airdock connections``: keep Airflow's Docker connections logged in to ECR.

Thin: parse, call :func:`airdock.airflow.connection_sync.sync_from_airflow`, print one line.
Airflow is imported only when a command runs, so ``airdock --help`` stays fast.
"""

from __future__ import annotations

from typing import Annotated

import typer

connections_app = typer.Typer(
    help="Airflow connections that hold registry logins.\n\n"
    "Example:  airdock connections sync --registry 123456789012.dkr.ecr.eu-west-1.amazonaws.com",
    no_args_is_help=True,
)

_SYNC_HELP = (
    "Write a fresh ECR token into a Docker connection when the stored one is near expiry.\n\n"
    "For DAGs that keep the stock DockerOperator: the connection gets conn_type docker, the registry as "
    "host and port, login AWS and the token as password, written through Airflow's ORM into the metadata "
    "database of this Airflow installation ($AIRFLOW_HOME). The token's expiry is kept in the connection's "
    "extra, so a run while the stored token still has --min-remaining left writes nothing and calls no "
    "AWS API. The password is never printed.\n\n"
    "Example:  airdock connections sync --registry 123456789012.dkr.ecr.eu-west-1.amazonaws.com "
    "--min-remaining 7h"
)


@connections_app.command("sync", help=_SYNC_HELP)
def connections_sync(
    registry: Annotated[
        str,
        typer.Option(
            "--registry",
            help="ECR registry host (host or host:port), or one listed in \\[airdock] ecr_registries.",
        ),
    ],
    docker_conn_id: Annotated[
        str, typer.Option("--docker-conn-id", help="The Docker connection to write.")
    ] = "docker_default",
    aws_conn_id: Annotated[
        str,
        typer.Option(
            "--aws-conn-id", help="AWS connection for GetAuthorizationToken ('' = boto3's default chain)."
        ),
    ] = "aws_default",
    region: Annotated[
        str | None,
        typer.Option("--region", help="AWS region, when neither the host nor the connection names one."),
    ] = None,
    min_remaining: Annotated[
        str,
        typer.Option(
            "--min-remaining",
            help="Refresh when the stored token has less than this left (s, m, h, d). "
            "7h suits a 6-hourly schedule with ECR's 12 h tokens.",
        ),
    ] = "7h",
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Show Airflow's and botocore's log lines too.")
    ] = False,
) -> None:
    from airdock.durations import parse_duration

    parse_duration(min_remaining)  # a bad flag fails before Airflow loads
    if not verbose:
        _quiet_libraries()
    from airdock.airflow.connection_sync import sync_from_airflow

    result = sync_from_airflow(
        registry=registry,
        docker_conn_id=docker_conn_id,
        aws_conn_id=aws_conn_id or None,
        region_name=region,
        min_remaining=min_remaining,
    )
    print(result.summary())


def _quiet_libraries() -> None:
    """Keep the output to airdock's one line: Airflow and botocore log set-up chatter at INFO/WARNING.

    Airflow configures its (structlog) logging from ``[logging] logging_level`` when first
    imported, so the level is set in this process's environment before that; an explicit
    ``AIRFLOW__LOGGING__LOGGING_LEVEL`` wins.
    """
    import logging
    import os

    os.environ.setdefault("AIRFLOW__LOGGING__LOGGING_LEVEL", "ERROR")
    for name in ("botocore", "boto3", "urllib3"):
        logging.getLogger(name).setLevel(logging.ERROR)
