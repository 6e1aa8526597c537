"""``airdock push``: build an image, create its ECR repository if needed, push it, print the digest.

Thin: check the flags, build the clients, call :func:`airdock.analyst.push.publish`, render. Progress
goes to stderr; the references to paste into a DAG go to stdout, so scripts can capture them.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TransferSpeedColumn,
)

from airdock.analyst.build import check_tag, parse_build_args, resolve_build
from airdock.analyst.push import PublishResult, PushProgress
from airdock.analyst.repository import RepositoryOptions, check_repository_name
from airdock.engine.client import docker_client
from airdock.errors import ConfigError
from airdock.images import EcrRegistry, ecr_registry_at

err = Console(stderr=True, soft_wrap=True, highlight=False)
_PLAIN_PROGRESS_EVERY_S = 10.0

PUSH_HELP = (
    "Build an image from CONTEXT and push it to Amazon ECR; print the reference to pin in a DAG.\n\n"
    "The image is built with the Docker engine's classic builder. The repository is created when it "
    "does not exist, with scan-on-push and immutable tags unless --no-scan-on-push / --mutable-tags say "
    "otherwise; an existing repository is left as it is. The login is a GetAuthorizationToken token, "
    "handed to the engine with each push and never written to ~/.docker/config.json.\n\n"
    "Tags: every --tag, plus the git commit (12 hex digits) when CONTEXT is a clean git checkout. With "
    "uncommitted changes under CONTEXT the commit tag becomes <commit>-dirty-<image id>. With no --tag "
    "and no commit the tag is build-<image id>, so pushing the same build twice to an immutable "
    "repository is harmless; airdock never tags 'latest' on its own.\n\n"
    "Output (stdout): 'pushed <registry>/<repo>@sha256:…' — the form to pin in a DAG — then one "
    "'tag <registry>/<repo>:<tag>' line per tag; --json prints the same as JSON.\n\n"
    "The registry is the AWS identity's default ECR registry unless --registry names one. AWS "
    "credentials, region and endpoint come from boto3's usual chain (AWS_PROFILE, AWS_ENDPOINT_URL_ECR, "
    '...), so eval "$(airdock local env)" points the command at the local stack.\n\n'
    "Examples:\n\n"
    "  airdock push ./scraper --repo team/scraper --tag v1.4\n\n"
    "  airdock push . --repo team/etl --dockerfile docker/Dockerfile.prod --build-arg PY=3.12 "
    "--platform linux/amd64\n\n"
    "  airdock push ./job --repo team/job --registry 123456789012.dkr.ecr.eu-west-1.amazonaws.com "
    "--profile ci --mutable-tags --tag nightly\n\n"
    '  eval "$(airdock local env)" && airdock push examples/scraper --repo airdock-demo/scraper --tag dev'
)


class _ConsoleReporter:
    """Notes and build steps as lines on stderr; push progress as a bar on a terminal, else every 10 s."""

    def __init__(self, console: Console) -> None:
        self._console = console
        self._interactive = console.is_terminal
        self._progress: Progress | None = None
        self._task: TaskID | None = None
        self._last_line = time.monotonic()

    def note(self, message: str) -> None:
        self._console.print(f"push: {message}", markup=False)

    def build_step(self, line: str) -> None:
        self._console.print(f"build: {line}", markup=False)

    def push_progress(self, tag: str, progress: PushProgress) -> None:
        description = f"pushing :{tag} ({progress.layers_done}/{len(progress.layers)} layers)"
        if not self._interactive:
            if time.monotonic() - self._last_line >= _PLAIN_PROGRESS_EVERY_S:
                self._last_line = time.monotonic()
                done, total = progress.bytes_done / 1e6, progress.bytes_total / 1e6
                self._console.print(f"push: {description}, {done:.1f}/{total:.1f} MB", markup=False)
            return
        if self._progress is None:
            self._progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                DownloadColumn(),
                TransferSpeedColumn(),
                TimeElapsedColumn(),
                console=self._console,
                transient=True,
            )
            self._progress.start()
        if self._task is None:
            self._task = self._progress.add_task(description, total=None)
        if progress.bytes_total:
            self._progress.update(
                self._task, description=description, total=progress.bytes_total, completed=progress.bytes_done
            )
        else:  # a further tag of the same image: only its manifest goes up
            self._progress.update(self._task, description=description)

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None


def _registry(host: str | None) -> EcrRegistry | None:
    if host is None:
        return None
    text = host.strip().lower()
    if "://" in text or "/" in text or not text:
        raise ConfigError(f"invalid --registry {host!r}: write only host or host:port, e.g. 127.0.0.1:5780")
    return ecr_registry_at(text)


def _docker_api() -> Any:
    return docker_client(timeout=1800).api  # long: a build step may print nothing for minutes


def _render(result: PublishResult, as_json: bool) -> None:
    err.print(
        f"push: built {result.image_id.removeprefix('sha256:')[:12]} in {result.build_seconds:.1f} s; "
        f"pushed {len(result.tags)} tag{'s' if len(result.tags) != 1 else ''} in {result.push_seconds:.1f} s "
        f"(uploaded {result.layers_uploaded} of {result.layers} layers, {result.bytes_uploaded / 1e6:.1f} MB"
        f"{'' if result.layers_uploaded == result.layers else '; the registry had the others'})",
        markup=False,
    )
    if as_json:
        print(
            json.dumps(
                {
                    "reference": result.digest_reference,
                    "digest": result.digest,
                    "registry": result.registry,
                    "repository": result.repository.name,
                    "repository_created": result.repository.created,
                    "tags": list(result.tags),
                    "tag_references": list(result.tag_references),
                    "image_id": result.image_id,
                    "build_seconds": round(result.build_seconds, 3),
                    "push_seconds": round(result.push_seconds, 3),
                },
                indent=2,
            )
        )
        return
    err.print(
        f'push: pin it in your DAG: EcrDockerOperator(image="{result.digest_reference}", ...)', markup=False
    )
    print(f"pushed {result.digest_reference}")
    for reference in result.tag_references:
        print(f"tag    {reference}")


def push_command(
    context: Annotated[
        Path, typer.Argument(help="Build context: the directory with the Dockerfile.", show_default=False)
    ],
    repo: Annotated[
        str, typer.Option("--repo", help="ECR repository name, e.g. team/scraper.", metavar="NAME")
    ],
    tag: Annotated[
        list[str] | None,
        typer.Option("--tag", "-t", help="Tag to push; repeatable.", metavar="TAG", show_default=False),
    ] = None,
    dockerfile: Annotated[
        Path | None,
        typer.Option(
            "--dockerfile",
            "-f",
            help="Dockerfile, relative to the current directory (default: CONTEXT/Dockerfile).",
            metavar="PATH",
        ),
    ] = None,
    build_arg: Annotated[
        list[str] | None,
        typer.Option(
            "--build-arg",
            help="Build argument NAME=VALUE (bare NAME: from the environment); repeatable.",
            metavar="K=V",
            show_default=False,
        ),
    ] = None,
    platform: Annotated[
        str | None, typer.Option("--platform", help="Target platform, e.g. linux/amd64.", metavar="P")
    ] = None,
    registry: Annotated[
        str | None,
        typer.Option(
            "--registry",
            help="Registry host[:port] (default: the AWS identity's own ECR registry).",
            metavar="HOST",
        ),
    ] = None,
    region: Annotated[
        str | None,
        typer.Option("--region", help="AWS region (default: the registry host's, else boto3's)."),
    ] = None,
    profile: Annotated[str | None, typer.Option("--profile", help="AWS profile.")] = None,
    scan_on_push: Annotated[
        bool,
        typer.Option(
            "--scan-on-push/--no-scan-on-push", help="Scan on push, for a repository this command creates."
        ),
    ] = True,
    immutable_tags: Annotated[
        bool,
        typer.Option(
            "--immutable-tags/--mutable-tags", help="Tag mutability of a repository this command creates."
        ),
    ] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON (for scripts).")] = False,
) -> None:
    # Everything typed is checked before the engine or AWS is asked anything.
    spec = resolve_build(context, dockerfile, parse_build_args(build_arg or (), os.environ), platform)
    check_repository_name(repo)
    for value in tag or ():
        check_tag(value)
    target = _registry(registry)

    from airdock.analyst.push import publish
    from airdock.auth.session import ecr_client, registry_credentials

    api = _docker_api()
    client = ecr_client((target.region if target else None) or region, profile)
    credentials = registry_credentials(target, region=region, profile=profile, client=client)
    reporter = _ConsoleReporter(err)
    try:
        result = publish(
            api,
            client,
            credentials,
            spec,
            repo,
            tag or (),
            registry=target,
            options=RepositoryOptions(scan_on_push=scan_on_push, immutable_tags=immutable_tags),
            reporter=reporter,
        )
    finally:
        reporter.close()
    _render(result, as_json)
