"""Publish an image to Amazon ECR: build it, make sure its repository exists, tag it, push it.

:func:`publish` runs the whole flow; the build is :mod:`airdock.analyst.build`, the repository
:mod:`airdock.analyst.repository`; this module tags and pushes.

The core of ``airdock push``. It takes plain values and clients — a docker ``APIClient``, a boto3
ECR client, a credential provider (the same ``CachedCredentials`` the operator pulls with) — and a
``Reporter`` for progress, so it runs without Airflow and is tested against the real engine and
the local stack.

Choices worth knowing:

- **Tags.** The given tags, plus the context's git commit (12 hex digits) when the context is a
  clean git checkout. A checkout with uncommitted changes in the context (or its Dockerfile) gets
  ``<commit>-dirty-<image id>`` instead: it names the commit the work started from without
  claiming the image *is* that commit, and it is unique per image, so an immutable repository
  never refuses it. With no tag given and no clean commit, the tag is ``build-<image id>`` (12 hex
  digits of the image id): never ``latest``, which an immutable repository accepts only once.
  Pushing the same build again is then a no-op instead of an error.
- **Repository.** Created when missing, with scan-on-push and immutable tags unless told
  otherwise; an existing repository is left exactly as it is. An identity allowed to push but not
  to describe or create repositories (``airdock iam-policy pusher``) still pushes to an existing
  one. A repository this run created is deleted again (best effort) when nothing could be pushed
  to it, so a failed push leaves nothing behind.
- **Credentials.** A token from GetAuthorizationToken goes to the engine inside each push request
  only: nothing is written to ``~/.docker/config.json``. A token the registry refuses is replaced
  once, as on the pull path.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from airdock.analyst.build import BuildSpec, api_error_text, build_image, check_tag, git_state, plan_tags
from airdock.analyst.reporter import Reporter, SilentReporter
from airdock.analyst.repository import (
    RepositoryOptions,
    RepositoryState,
    check_repository_name,
    delete_if_empty,
    ensure_repository,
)
from airdock.auth.credentials import RegistryCredentials
from airdock.engine.registry_errors import Refusal, classify, first_line
from airdock.errors import AccessDeniedError, AirdockError, PublishError
from airdock.images import EcrRegistry, parse_image_ref

__all__ = ["CredentialProvider", "PublishResult", "PushProgress", "publish", "push_failure"]


class CredentialProvider(Protocol):
    """Where a push gets its registry login (``airdock.auth.cache.CachedCredentials``)."""

    def get(self) -> RegistryCredentials: ...

    def refresh(self, stale: RegistryCredentials) -> RegistryCredentials: ...


# -- push -----------------------------------------------------------------------------------------
@dataclass
class PushProgress:
    """Upload progress of one push, summarised over its layers from the daemon's events."""

    layers: dict[str, str] = field(default_factory=dict)  # layer id → last status
    current: dict[str, int] = field(default_factory=dict)
    total: dict[str, int] = field(default_factory=dict)
    digest: str | None = None

    def feed(self, event: Mapping[str, Any]) -> None:
        layer, status = event.get("id"), event.get("status")
        if isinstance(layer, str) and isinstance(status, str):
            self.layers[layer] = status
            detail = event.get("progressDetail") or {}
            if status == "Pushing":
                if isinstance(detail.get("total"), int) and detail["total"] > 0:
                    self.total[layer] = detail["total"]
                if isinstance(detail.get("current"), int):
                    self.current[layer] = detail["current"]
            elif status == "Pushed" and layer in self.total:
                self.current[layer] = self.total[layer]
        aux = event.get("aux")
        if isinstance(aux, dict) and isinstance(aux.get("Digest"), str):
            self.digest = aux["Digest"]

    @property
    def bytes_total(self) -> int:
        return sum(self.total.values())

    @property
    def bytes_done(self) -> int:
        # The daemon counts tar framing too, so "current" can pass "total".
        return sum(min(self.current.get(layer, 0), size) for layer, size in self.total.items())

    @property
    def layers_done(self) -> int:
        return sum(1 for status in self.layers.values() if status in ("Pushed", "Layer already exists"))

    @property
    def layers_uploaded(self) -> int:
        return sum(1 for status in self.layers.values() if status == "Pushed")


def push_failure(
    registry: str, repository: str, tag: str, message: str, pushed: Sequence[str]
) -> AirdockError:
    """The one-line error for a push the daemon or registry refused."""
    ref = f"{registry}/{repository}:{tag}"
    refusal = classify(message)
    line = refusal.line
    already = f" (already pushed: {', '.join(pushed)})" if pushed else ""
    if refusal.kind is Refusal.DENIED_ACTION:
        return AccessDeniedError(
            f"access denied pushing {ref}: your AWS identity lacks {refusal.action} on repository "
            f"'{repository}'; add it to its IAM policy (see `airdock iam-policy pusher`){already}",
            action=refusal.action,
        )
    if refusal.kind is Refusal.TAG_IMMUTABLE:
        return PublishError(
            f"tag '{tag}' already exists in repository '{repository}' for another image and the "
            f"repository's tags are immutable: push under a new --tag, or delete that image first{already}"
        )
    if refusal.kind is Refusal.REPOSITORY_MISSING:
        return PublishError(
            f"repository '{repository}' does not exist in registry {registry}: create it (your AWS identity "
            "needs ecr:CreateRepository for `airdock push` to do it) and push again"
        )
    if refusal.kind is Refusal.AUTH_REFUSED:
        return PublishError(f"registry {registry} refused the credentials for {ref}: {line}")
    if refusal.kind is Refusal.UNREACHABLE:
        return PublishError(f"registry {registry} unreachable while pushing {ref}: {line}{already}")
    if refusal.kind is Refusal.DENIED:
        return AccessDeniedError(f"access denied pushing {ref}: {line}{already}")
    return PublishError(f"push of {ref} failed: {line}{already}")


def _push_once(api: Any, name: str, tag: str, creds: RegistryCredentials, reporter: Reporter) -> PushProgress:
    """One push of ``name:tag``; raise _PushRefused with the daemon's message."""
    import docker.errors

    progress = PushProgress()
    try:
        stream: Iterator[Any] = api.push(
            name, tag=tag, auth_config=creds.auth_config(), stream=True, decode=True
        )
        for event in stream:
            if not isinstance(event, dict):
                continue
            if "error" in event or "errorDetail" in event:
                detail = event.get("errorDetail") or {}
                raise _PushRefused(str(event.get("error") or detail.get("message") or "unknown error"))
            progress.feed(event)
            reporter.push_progress(tag, progress)
    except docker.errors.APIError as exc:
        raise _PushRefused(api_error_text(exc)) from None
    except docker.errors.DockerException as exc:
        raise _PushRefused(f"Docker engine error: {exc}") from None
    if progress.digest is None:
        raise _PushRefused("the engine finished the push without reporting the image digest")
    return progress


class _PushRefused(Exception):
    """A push attempt failed; the message is the daemon's (never holds the token)."""


# -- the whole flow -------------------------------------------------------------------------------
@dataclass(frozen=True)
class PublishResult:
    """What was pushed where: paste ``digest_reference`` into a DAG."""

    registry: str
    repository: RepositoryState
    image_id: str
    digest: str
    tags: tuple[str, ...]
    build_seconds: float
    push_seconds: float
    bytes_uploaded: int
    layers: int
    layers_uploaded: int

    @property
    def name(self) -> str:
        return f"{self.registry}/{self.repository.name}"

    @property
    def digest_reference(self) -> str:
        return f"{self.name}@{self.digest}"

    @property
    def tag_references(self) -> tuple[str, ...]:
        return tuple(f"{self.name}:{tag}" for tag in self.tags)


def publish(
    api: Any,
    ecr: Any,
    credentials: CredentialProvider,
    spec: BuildSpec,
    repository: str,
    tags: Sequence[str] = (),
    *,
    registry: EcrRegistry | None = None,
    options: RepositoryOptions | None = None,
    use_git: bool = True,
    reporter: Reporter | None = None,
) -> PublishResult:
    """Build ``spec``, ensure ``repository`` exists, tag the image and push every tag.

    ``registry`` None means the caller's default registry, as ``credentials`` name it. ``tags``
    and ``repository`` are checked before anything happens; so is the context (``resolve_build``).
    """
    reporter = reporter if reporter is not None else SilentReporter()
    options = options if options is not None else RepositoryOptions()
    check_repository_name(repository)
    for tag in tags:
        check_tag(tag)

    # Credentials first: no AWS identity means no point in a long build.
    creds = credentials.get()
    host = registry.host if registry is not None else creds.registry
    if not host:
        raise PublishError("GetAuthorizationToken named no registry endpoint: give --registry HOST")
    name = parse_image_ref(f"{host}/{repository}").name  # the engine's rules too (e.g. 255 characters)

    started = time.monotonic()
    image_id = build_image(api, spec, reporter)
    build_seconds = time.monotonic() - started
    git = git_state(spec, reporter) if use_git else None
    if git is not None and git.dirty:
        reporter.note(
            f"the context has uncommitted changes: tagging {git.commit[:12]}-dirty-… instead of the commit"
        )
    planned = plan_tags(tags, git, image_id)

    registry_id = registry.account_id if registry is not None else None
    state = ensure_repository(ecr, repository, options, registry_id, reporter)
    try:
        for tag in planned:
            api.tag(image_id, name, tag)
    except Exception as exc:
        if state.created:
            delete_if_empty(ecr, repository, registry_id, reporter)
        raise PublishError(f"could not tag the image as {name}: {first_line(str(exc))}") from None

    started = time.monotonic()
    pushed: list[str] = []
    digest: str | None = None
    first: PushProgress | None = None
    refreshed = False
    index = 0
    while index < len(planned):
        tag = planned[index]
        try:
            progress = _push_once(api, name, tag, creds, reporter)
        except _PushRefused as exc:
            message = str(exc)
            if not refreshed and classify(message).kind is Refusal.AUTH_REFUSED:
                reporter.note(f"registry {host} refused the cached token; fetching a fresh one and retrying")
                creds = credentials.refresh(creds)
                refreshed = True
                continue
            if state.created and not pushed:
                delete_if_empty(ecr, repository, registry_id, reporter)
            raise push_failure(host, repository, tag, message, pushed) from None
        if digest is not None and progress.digest != digest:
            reporter.note(f"tag {tag} got digest {progress.digest}, not {digest}: the image changed mid-push")
        digest = digest or progress.digest
        first = first or progress
        pushed.append(tag)
        index += 1
    assert digest is not None and first is not None  # planned is never empty
    return PublishResult(
        registry=host,
        repository=state,
        image_id=image_id,
        digest=digest,
        tags=planned,
        build_seconds=build_seconds,
        push_seconds=time.monotonic() - started,
        bytes_uploaded=first.bytes_total,
        layers=len(first.layers),
        layers_uploaded=first.layers_uploaded,
    )
