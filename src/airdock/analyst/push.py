"""Publish an image to Amazon ECR: build it, make sure its repository exists, tag it, push it.

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

import os
import re
import subprocess
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from botocore.exceptions import BotoCoreError, ClientError

from airdock.auth.credentials import RegistryCredentials
from airdock.engine.registry_errors import Refusal, classify, denied_action, first_line
from airdock.errors import AccessDeniedError, AirdockError, ConfigError
from airdock.images import EcrRegistry, parse_image_ref

__all__ = [
    "BuildError",
    "BuildSpec",
    "GitState",
    "PublishError",
    "PublishResult",
    "PushProgress",
    "Reporter",
    "RepositoryOptions",
    "RepositoryState",
    "check_repository_name",
    "check_tag",
    "git_state",
    "parse_build_args",
    "plan_tags",
    "publish",
    "resolve_build",
]

# ECR's repository-name rule as ECR states it in InvalidParameterException (the local stack's
# airdock.local.api.REPOSITORY_NAME_PATTERN holds the same text; product code does not import it).
REPOSITORY_NAME_PATTERN = r"(?:[a-z0-9]+(?:[._-][a-z0-9]+)*/)*[a-z0-9]+(?:[._-][a-z0-9]+)*"
_REPOSITORY_NAME = re.compile(REPOSITORY_NAME_PATTERN)
_REPOSITORY_NAME_RULE = (
    "ECR repository names are 2 to 256 characters: lowercase letters and digits in '/'-separated "
    "parts, joined inside a part by single '.', '_' or '-'"
)
# Docker's tag grammar (distribution/reference), which ECR applies too.
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
_BUILD_ARG_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_STEP = re.compile(r"^Step \d+/\d+ : ")

_NOT_FOUND_CODES = ("RepositoryNotFoundException",)
_DENIED_CODES = ("AccessDeniedException", "AccessDenied", "UnauthorizedOperation")
_GIT_TIMEOUT_S = 20.0


class PublishError(AirdockError):
    """An image could not be built or pushed; the message says why and what to do."""


class BuildError(PublishError):
    """The build failed: bad context, Dockerfile error, a failing step."""


class CredentialProvider(Protocol):
    """Where a push gets its registry login (``airdock.auth.cache.CachedCredentials``)."""

    def get(self) -> RegistryCredentials: ...

    def refresh(self, stale: RegistryCredentials) -> RegistryCredentials: ...


class Reporter(Protocol):
    """What a publish tells while it works; the CLI renders it, tests record it."""

    def note(self, message: str) -> None:
        """One line worth a person's attention: a repository created, a tag skipped."""

    def build_step(self, line: str) -> None:
        """A ``Step N/M : ...`` line of the build."""

    def push_progress(self, tag: str, progress: PushProgress) -> None:
        """The upload of ``tag`` moved on (called for every daemon event; throttle when rendering)."""


class SilentReporter:
    """A ``Reporter`` that keeps the notes (for callers that render nothing)."""

    def __init__(self) -> None:
        self.notes: list[str] = []
        self.steps: list[str] = []

    def note(self, message: str) -> None:
        self.notes.append(message)

    def build_step(self, line: str) -> None:
        self.steps.append(line)

    def push_progress(self, tag: str, progress: PushProgress) -> None:
        return None


# -- inputs (pure) ------------------------------------------------------------------------------
@dataclass(frozen=True)
class BuildSpec:
    """A checked build: an existing context directory and Dockerfile, build args, a platform."""

    context: Path
    dockerfile: Path
    build_args: Mapping[str, str] = field(default_factory=dict)
    platform: str | None = None


@dataclass(frozen=True)
class RepositoryOptions:
    """Settings for a repository ``publish`` creates (an existing one is never changed)."""

    scan_on_push: bool = True
    immutable_tags: bool = True

    @property
    def tag_mutability(self) -> str:
        return "IMMUTABLE" if self.immutable_tags else "MUTABLE"


def check_repository_name(name: str) -> str:
    """``name`` if ECR accepts it as a repository name, else a one-line ConfigError."""
    if 2 <= len(name) <= 256 and _REPOSITORY_NAME.fullmatch(name):
        return name
    hint = ""
    lowered = name.lower()
    if lowered != name and 2 <= len(lowered) <= 256 and _REPOSITORY_NAME.fullmatch(lowered):
        hint = f"; did you mean {lowered!r}?"
    raise ConfigError(f"invalid repository name {name!r}: {_REPOSITORY_NAME_RULE}{hint}")


def check_tag(tag: str) -> str:
    """``tag`` if Docker and ECR accept it, else a one-line ConfigError."""
    if _TAG.fullmatch(tag):
        return tag
    raise ConfigError(
        f"invalid tag {tag!r}: up to 128 letters, digits, '_', '.' and '-', not starting with '.' or '-'"
    )


def parse_build_args(values: Iterable[str], environ: Mapping[str, str]) -> dict[str, str]:
    """``--build-arg K=V`` values as a dict; a bare ``K`` takes its value from ``environ``, as docker's."""
    args: dict[str, str] = {}
    for value in values:
        name, equals, text = value.partition("=")
        if not _BUILD_ARG_NAME.fullmatch(name):
            raise ConfigError(
                f"invalid --build-arg {value!r}: write NAME=VALUE, NAME being letters, digits and '_'"
            )
        if not equals:
            if name not in environ:
                raise ConfigError(
                    f"invalid --build-arg {value!r}: it has no '=VALUE' and {name} is not set in the "
                    "environment; write NAME=VALUE"
                )
            text = environ[name]
        args[name] = text
    return args


def resolve_build(
    context: Path,
    dockerfile: Path | None = None,
    build_args: Mapping[str, str] | None = None,
    platform: str | None = None,
) -> BuildSpec:
    """Check the context and the Dockerfile exist before anything else happens.

    ``dockerfile`` is relative to the current directory, as ``docker build -f`` takes it; by
    default ``Dockerfile`` in the context.
    """
    if not context.exists():
        raise BuildError(
            f"build context {str(context)!r} does not exist: give the directory that holds the "
            "Dockerfile and the files it copies"
        )
    if not context.is_dir():
        raise BuildError(
            f"build context {str(context)!r} is not a directory: give the directory that holds the "
            "Dockerfile, not a file"
        )
    context = context.resolve()
    if dockerfile is None:
        path = context / "Dockerfile"
        if not path.is_file():
            raise BuildError(
                f"no Dockerfile in the build context {str(context)!r}: add one, or name it with "
                "--dockerfile PATH"
            )
    else:
        path = dockerfile.resolve()
        if not path.is_file():
            raise BuildError(
                f"Dockerfile {str(dockerfile)!r} not found (looked at {str(path)!r}; --dockerfile is "
                "relative to the current directory)"
            )
    if platform is not None and not platform.strip():
        raise ConfigError("invalid --platform '': give e.g. linux/amd64")
    return BuildSpec(context, path, dict(build_args or {}), platform)


@dataclass(frozen=True)
class GitState:
    """The git commit a build context is checked out at, and whether it has uncommitted changes."""

    commit: str  # full hex
    dirty: bool


def plan_tags(given: Sequence[str], git: GitState | None, image_id: str) -> tuple[str, ...]:
    """The tags to push, in order: the given ones, then the commit's (see the module docstring)."""
    short_id = image_id.removeprefix("sha256:")[:12]
    tags = list(dict.fromkeys(given))
    if git is not None:
        commit = git.commit[:12]
        tags.append(f"{commit}-dirty-{short_id}" if git.dirty else commit)
    if not tags:
        tags.append(f"build-{short_id}")
    return tuple(dict.fromkeys(tags))


# -- git ------------------------------------------------------------------------------------------
def git_state(spec: BuildSpec, reporter: Reporter | None = None) -> GitState | None:
    """The context's commit when it lies in a git work tree with a commit; else None.

    "Dirty" means uncommitted changes (untracked files included) under the context directory or
    in the Dockerfile: changes elsewhere in the repository do not reach the image.
    """

    def git(*args: str) -> subprocess.CompletedProcess[str] | None:
        env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "GIT_OPTIONAL_LOCKS": "0", "LC_ALL": "C"}
        try:
            return subprocess.run(
                ["git", "-C", str(spec.context), *args],
                capture_output=True,
                text=True,
                env=env,
                timeout=_GIT_TIMEOUT_S,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired):
            return None

    inside = git("rev-parse", "--is-inside-work-tree", "--show-toplevel")
    if inside is None or inside.returncode != 0 or not inside.stdout.startswith("true"):
        if inside is not None and "dubious ownership" in inside.stderr and reporter is not None:
            reporter.note("git refuses the context's repository (dubious ownership): no commit tag")
        return None
    toplevel = Path(inside.stdout.splitlines()[-1].strip())
    head = git("rev-parse", "--verify", "--quiet", "HEAD")
    if head is None or head.returncode != 0 or not head.stdout.strip():
        if reporter is not None:
            reporter.note("the context's git repository has no commit yet: no commit tag")
        return None
    paths = ["."]
    if spec.dockerfile.is_relative_to(toplevel.resolve()):
        paths.append(str(spec.dockerfile))
    status = git("status", "--porcelain", "--untracked-files=normal", "--", *paths)
    dirty = status is None or status.returncode != 0 or bool(status.stdout.strip())
    return GitState(head.stdout.strip(), dirty)


# -- build ----------------------------------------------------------------------------------------
def build_image(api: Any, spec: BuildSpec, reporter: Reporter) -> str:
    """Build ``spec`` with the classic builder; return the image id (``sha256:…``).

    A failure raises a one-line BuildError naming the failing step and the daemon's message.
    """
    import docker.errors

    step: str | None = None
    image_id: str | None = None
    try:
        stream = api.build(
            path=str(spec.context),
            dockerfile=str(spec.dockerfile),
            buildargs=dict(spec.build_args) or None,
            platform=spec.platform,
            decode=True,
            rm=True,
            forcerm=True,  # no stopped containers left behind by a failing step
        )
        for event in stream:
            if not isinstance(event, dict):
                continue
            if "error" in event or "errorDetail" in event:
                detail = event.get("errorDetail") or {}
                message = str(event.get("error") or detail.get("message") or "unknown error")
                raise BuildError(build_failure_message(spec, step, message))
            text = event.get("stream")
            if isinstance(text, str) and _STEP.match(text):
                step = text.strip()
                reporter.build_step(step)
            aux = event.get("aux")
            if isinstance(aux, dict) and isinstance(aux.get("ID"), str):
                image_id = aux["ID"]
    except docker.errors.APIError as exc:
        raise BuildError(build_failure_message(spec, step, _api_error_text(exc))) from None
    except docker.errors.DockerException as exc:
        raise BuildError(f"Docker engine error while building {spec.context}: {exc}") from None
    if image_id is None:
        raise BuildError(f"the engine built {spec.context} but reported no image id; run the push again")
    return image_id


def build_failure_message(spec: BuildSpec, step: str | None, message: str) -> str:
    """One line: where the build failed (the step) and the daemon's reason."""
    reason = first_line(message)
    where = f"Dockerfile {spec.dockerfile}"
    if step is None:
        if "dockerfile parse error" in reason.lower() or "unknown instruction" in reason.lower():
            return f"{where} is invalid: {reason}"
        return f"build of {spec.context} failed ({where}): {reason}"
    hint = ""
    if "airdock-local/" in step and step.split(" : ", 1)[-1].upper().startswith("FROM "):
        hint = "; that offline base image is made by `airdock local up` or `airdock local base-image`"
    return f"build failed at {step} ({where}): {reason}{hint}"


# -- repository -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class RepositoryState:
    """The repository pushed to: whether this run created it, and its settings when known."""

    name: str
    created: bool
    tag_mutability: str | None = None
    scan_on_push: bool | None = None


def ensure_repository(
    ecr: Any, name: str, options: RepositoryOptions, registry_id: str | None, reporter: Reporter
) -> RepositoryState:
    """Create ``name`` when it does not exist; leave an existing repository as it is."""
    ids: dict[str, str] = {"registryId": registry_id} if registry_id else {}
    try:
        reply = ecr.describe_repositories(repositoryNames=[name], **ids)
        repo = reply["repositories"][0]
        state = RepositoryState(
            name,
            created=False,
            tag_mutability=repo.get("imageTagMutability"),
            scan_on_push=(repo.get("imageScanningConfiguration") or {}).get("scanOnPush"),
        )
        reporter.note(
            f"repository {name} exists (tags {state.tag_mutability or 'MUTABLE'}, scan on push "
            f"{'on' if state.scan_on_push else 'off'}); its settings are left as they are"
        )
        return state
    except ClientError as exc:
        code = _client_error_code(exc)
        if code in _DENIED_CODES:
            describe_denied = True
        elif code in _NOT_FOUND_CODES:
            describe_denied = False
        else:
            raise _repository_error(name, "DescribeRepositories", exc) from None
    except BotoCoreError as exc:
        raise PublishError(f"DescribeRepositories failed for {name}: {exc}") from None

    try:
        ecr.create_repository(
            repositoryName=name,
            imageTagMutability=options.tag_mutability,
            imageScanningConfiguration={"scanOnPush": options.scan_on_push},
            **ids,
        )
    except ClientError as exc:
        code = _client_error_code(exc)
        if code == "RepositoryAlreadyExistsException":
            reporter.note(f"repository {name} exists; its settings are left as they are")
            return RepositoryState(name, created=False)
        if code in _DENIED_CODES and describe_denied:
            # A pusher's policy: no DescribeRepositories, no CreateRepository. Push to what is there.
            reporter.note(
                f"may not describe or create repositories (no ecr:DescribeRepositories, "
                f"ecr:CreateRepository): pushing to {name} assuming it exists"
            )
            return RepositoryState(name, created=False)
        if code == "InvalidParameterException":
            raise ConfigError(
                f"invalid repository name {name!r}: ECR refused it ({first_line(_client_error_message(exc))})"
            ) from None
        raise _repository_error(name, "CreateRepository", exc) from None
    except BotoCoreError as exc:
        raise PublishError(f"CreateRepository failed for {name}: {exc}") from None
    reporter.note(
        f"created repository {name} (tags {options.tag_mutability}, scan on push "
        f"{'on' if options.scan_on_push else 'off'})"
    )
    return RepositoryState(name, True, options.tag_mutability, options.scan_on_push)


def _repository_error(name: str, operation: str, exc: ClientError) -> AirdockError:
    code, message = _client_error_code(exc), _client_error_message(exc)
    if code in _DENIED_CODES:
        action = denied_action(message) or f"ecr:{operation}"
        return AccessDeniedError(
            f"access denied: your AWS identity lacks {action} on repository '{name}'; add it to its IAM "
            "policy (see `airdock iam-policy maintainer`), or create the repository beforehand",
            action=action,
        )
    return PublishError(f"{operation} failed for repository '{name}': {code}: {first_line(message)}")


def _delete_if_empty(ecr: Any, name: str, registry_id: str | None, reporter: Reporter) -> None:
    ids: dict[str, str] = {"registryId": registry_id} if registry_id else {}
    try:
        ecr.delete_repository(repositoryName=name, force=False, **ids)
    except (ClientError, BotoCoreError) as exc:
        reporter.note(f"could not delete repository {name}, created by this push: {first_line(str(exc))}")
        return
    reporter.note(f"deleted repository {name} again: this push created it and could push nothing to it")


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
        raise _PushRefused(_api_error_text(exc)) from None
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
            _delete_if_empty(ecr, repository, registry_id, reporter)
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
                _delete_if_empty(ecr, repository, registry_id, reporter)
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


# -- helpers --------------------------------------------------------------------------------------
def _client_error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _client_error_message(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Message", ""))


def _api_error_text(exc: Any) -> str:
    explanation = getattr(exc, "explanation", None)
    return str(explanation or exc)
