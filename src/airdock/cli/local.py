"""``airdock local``: the offline AWS stack — ECR, ECS, CloudWatch Logs (up, down, status, env, base-image).

Thin: parse the flags, call :class:`airdock.local.stack.LocalStack`, print.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from airdock.durations import parse_duration
from airdock.errors import AirdockError
from airdock.local import settings as local_settings
from airdock.local.stack import LocalStack

local_app = typer.Typer(
    help="The offline AWS stack: a real registry behind an ECR-semantics gateway, a subset of the "
    "ECR API, and ECS + CloudWatch Logs running tasks as containers on the local engine, all on "
    "127.0.0.1.\n\n"
    'Example:  airdock local up --token-ttl 20s && eval "$(airdock local env)"',
    no_args_is_help=True,
)

out = Console()
err = Console(stderr=True, soft_wrap=True)  # one-line errors stay one line

DataDir = Annotated[
    Path,
    typer.Option(
        "--data-dir",
        help="Where the stack keeps its state, images and logs.",
        show_default=True,
    ),
]


@local_app.command("up")
def local_up(
    data_dir: DataDir = local_settings.DEFAULT_DATA_DIR,
    gateway_port: Annotated[
        int | None,
        typer.Option(help=f"Gateway (registry) port (default: {local_settings.DEFAULT_GATEWAY_PORT})"),
    ] = None,
    api_port: Annotated[
        int | None, typer.Option(help=f"ECR API port (default: {local_settings.DEFAULT_API_PORT})")
    ] = None,
    registry_port: Annotated[
        int | None,
        typer.Option(help=f"Internal registry port (default: {local_settings.DEFAULT_REGISTRY_PORT})"),
    ] = None,
    token_ttl: Annotated[
        str | None,
        typer.Option(help="Lifetime of issued registry tokens, e.g. 20s, 10m, 12h (default: 12h)"),
    ] = None,
    account_id: Annotated[
        str | None,
        typer.Option(help=f"The registry's account id (default: {local_settings.DEFAULT_ACCOUNT_ID})"),
    ] = None,
    region: Annotated[
        str | None,
        typer.Option(help=f"Region reported by the API (default: {local_settings.DEFAULT_REGION})"),
    ] = None,
    deny_action: Annotated[
        list[str] | None,
        typer.Option(
            help="Refuse this ECR action as IAM would (e.g. ecr:BatchGetImage), to rehearse a worker "
            "policy that lacks it; repeatable."
        ),
    ] = None,
) -> None:
    """Start the stack (idempotent). Settings given here are remembered in the data dir."""
    overrides: dict[str, Any] = {
        key: value
        for key, value in {
            "gateway_port": gateway_port,
            "api_port": api_port,
            "registry_port": registry_port,
            "account_id": account_id,
            "region": region,
        }.items()
        if value is not None
    }
    if token_ttl is not None:
        overrides["token_ttl_seconds"] = parse_duration(token_ttl)
    if deny_action:
        overrides["denied_actions"] = tuple(deny_action)
    LocalStack(data_dir).up(overrides, progress=lambda line: err.print(f"local: {line}"))
    _base_image(required=False)


@local_app.command("base-image")
def local_base_image() -> None:
    """Make the offline base image airdock-local/busybox:latest (scratch + static busybox) on the engine.

    Dockerfiles can start FROM it with no registry at all (examples/scraper does). `airdock local up`
    makes it too when a Docker engine answers.
    """
    _base_image(required=True)


def _base_image(*, required: bool) -> None:
    import docker.errors

    from airdock.engine.client import docker_client
    from airdock.errors import PrerequisiteError
    from airdock.local.offline_images import BASE_IMAGE, ensure_base_image

    try:
        image_id = ensure_base_image(docker_client(timeout=120))
    except (PrerequisiteError, docker.errors.DockerException) as exc:
        if required:
            raise PrerequisiteError(f"could not make the base image {BASE_IMAGE}: {exc}") from None
        err.print(f"local: base image {BASE_IMAGE} not made ({exc}); run `airdock local base-image` later")
        return
    err.print(
        f"local: base image {BASE_IMAGE} ready ({image_id.removeprefix('sha256:')[:12]}): FROM it offline"
    )


@local_app.command("down")
def local_down(data_dir: DataDir = local_settings.DEFAULT_DATA_DIR) -> None:
    """Stop the stack (idempotent). Repositories, images and tokens stay in the data dir."""
    stopped = LocalStack(data_dir).down(progress=lambda line: err.print(f"local: {line}"))
    err.print("local: stopped" if stopped else "local: not running")


@local_app.command("status")
def local_status(
    data_dir: DataDir = local_settings.DEFAULT_DATA_DIR,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON (for scripts and tests).")] = False,
) -> None:
    """Show what runs where, GetAuthorizationToken calls served, ECS tasks by state and API call counts."""
    status = LocalStack(data_dir).status()
    data = status.to_dict()
    if as_json:
        print(json.dumps(data, indent=2))
        return
    if status.settings is None:
        err.print(f"no local stack in {LocalStack(data_dir).data_dir}: run `airdock local up`")
        raise typer.Exit(1)
    table = Table(title=f"local stack ({'running' if status.running else 'stopped'})", show_header=True)
    table.add_column("part")
    table.add_column("address")
    table.add_column("pid")
    table.add_column("state")
    for part in ("gateway", "api", "registry"):
        info = data[part]
        table.add_row(part, str(info["url"]), str(info["pid"] or "-"), "up" if info["alive"] else "down")
    out.print(table)
    out.print(
        f"account {data['account_id']}, region {data['region']}, token TTL {data['token_ttl_seconds']:g} s, "
        f"GetAuthorizationToken calls served: {data['get_authorization_token_calls']}"
    )
    ecs = data["ecs"]
    tasks = ", ".join(f"{count} {state}" for state, count in ecs["tasks"].items()) or "none"
    out.print(
        f"ECS tasks: {tasks}; RunTask calls {ecs['run_task_calls']}, RegisterTaskDefinition calls "
        f"{ecs['register_task_definition_calls']}; CloudWatch log events: {data['logs']['events']}"
    )
    if not status.running:
        raise typer.Exit(1)


@local_app.command("env")
def local_env(data_dir: DataDir = local_settings.DEFAULT_DATA_DIR) -> None:
    """Print POSIX `export` lines that point boto3 (ECR, ECS, Logs), docker and Airflow at the stack.

    Use: eval "$(airdock local env)"
    """
    stack = LocalStack(data_dir)
    settings = stack.saved_settings()
    if settings is None:
        raise AirdockError(f"no local stack in {stack.data_dir}: run `airdock local up` first")
    values = settings.client_environment()
    for name, value in values.items():
        print(f"export {name}={shlex.quote(value)}")
    if not stack.status().running:
        err.print("local: warning: the stack is not running; start it with `airdock local up`")
