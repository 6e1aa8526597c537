"""``airdock doctor``: check that this machine can pull and run private ECR images.

Thin: parse the flags, build the clients, call :func:`airdock.analyst.doctor.run_doctor`, print its lines.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.text import Text

from airdock.errors import ConfigError

out = Console(soft_wrap=True, highlight=False)  # one check, one line, whatever the width

DOCTOR_HELP = (
    "Check that this machine can pull and run private ECR images; one line per check, with a fix for "
    "every failure. Exit status 0 only when every check passes.\n\n"
    "Checks: the Docker engine answers (and its version); free space under its data root is at least "
    "--min-free; AWS credentials resolve (and whose they are, via STS); ECR GetAuthorizationToken works "
    "for the registry; the registry accepts the token; with --image, the repository exists and the tag "
    "resolves; inside an Airflow installation, the connection --aws-conn-id exists (a missing "
    "connection fails only when --aws-conn-id is given: without it EcrDockerOperator uses the default "
    "credential chain).\n\n"
    "The registry is the image's (an ECR host, or one listed in \\[airdock] ecr_registries / "
    "AIRFLOW__AIRDOCK__ECR_REGISTRIES), else --registry, else the AWS identity's default registry. "
    "AWS credentials come from boto3's chain (environment, profile, instance role), as for every "
    "airdock command. No token is cached or printed.\n\n"
    "Examples:\n\n"
    "  airdock doctor\n\n"
    "  airdock doctor --image 123456789012.dkr.ecr.eu-west-1.amazonaws.com/team/app:1.4\n\n"
    "  airdock doctor --registry 123456789012.dkr.ecr.eu-west-1.amazonaws.com --min-free 10%\n\n"
    '  eval "$(airdock local env)" && airdock doctor --image "$AIRDOCK_LOCAL_REGISTRY/team/app:v1"\n\n'
    "  airdock doctor --aws-conn-id aws_ecr --json"
)


def _docker_client() -> Any:
    import docker

    return docker.from_env(timeout=10)  # the engine check asks its version


def _session(profile: str | None, region: str | None) -> Any:
    import boto3
    from botocore.exceptions import BotoCoreError

    try:
        return boto3.session.Session(profile_name=profile, region_name=region)
    except BotoCoreError as exc:
        raise ConfigError(f"cannot use AWS profile {profile!r}: {exc}") from None


def doctor_command(
    image: Annotated[
        str | None,
        typer.Option("--image", help="Also check that this image's repository and tag exist.", metavar="REF"),
    ] = None,
    registry: Annotated[
        str | None,
        typer.Option(
            "--registry",
            help="ECR registry host to check when no --image is given (default: the caller's registry).",
            metavar="HOST",
        ),
    ] = None,
    region: Annotated[
        str | None,
        typer.Option("--region", help="AWS region, when neither the host nor the environment names one."),
    ] = None,
    profile: Annotated[
        str | None, typer.Option("--profile", help="AWS profile (default: boto3's credential chain).")
    ] = None,
    aws_conn_id: Annotated[
        str | None,
        typer.Option(
            "--aws-conn-id",
            help="Airflow connection the tasks use; must exist when given (default: aws_default, optional).",
        ),
    ] = None,
    min_free: Annotated[
        str,
        typer.Option(
            "--min-free",
            help="Least free space under Docker's data root: a size (2GB, 500MiB) or a percentage (10%).",
            metavar="SIZE|PERCENT",
        ),
    ] = "2GB",
    as_json: Annotated[bool, typer.Option("--json", help="Print the checks as JSON (for scripts).")] = False,
) -> None:
    from airdock.analyst.doctor import DoctorOptions, FreeSpaceThreshold, run_doctor

    options = DoctorOptions(
        image=image,
        registry=registry,
        region=region,
        aws_conn_id=aws_conn_id,
        min_free=FreeSpaceThreshold.parse(min_free),
    )
    # Keep the output to the checks: Airflow (imported for the connection check) and botocore log
    # set-up chatter otherwise. An explicit AIRFLOW__LOGGING__LOGGING_LEVEL wins.
    os.environ.setdefault("AIRFLOW__LOGGING__LOGGING_LEVEL", "ERROR")
    for name in ("botocore", "boto3", "urllib3", "docker"):
        logging.getLogger(name).setLevel(logging.CRITICAL)

    import httpx

    session = _session(profile, region)
    with httpx.Client(timeout=httpx.Timeout(5.0, read=10.0), follow_redirects=True) as http:
        report = run_doctor(
            options,
            docker_factory=_docker_client,
            session=session,
            http=http,
            environ=os.environ,
            clock=time.time,
        )
    if as_json:
        print(report.to_json())
    else:
        for check in report.checks:
            mark = Text("✓", style="green") if check.ok else Text("✗", style="bold red")
            out.print(Text.assemble(mark, f" {check.name}: {check.detail}"))
            if check.fix and not check.ok:
                out.print(Text(f"    fix: {check.fix}"))
        out.print(Text(report.summary(), style="green" if report.ok else "bold red"))
    # sys.exit, not typer.Exit: click returns (rather than raises) an Exit's code when not standalone,
    # and the console entry point runs the app with standalone_mode=False.
    sys.exit(report.exit_code)
