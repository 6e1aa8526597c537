"""Build an image from a context with the docker SDK and decide its tags: the first half of a push.

Pure inputs (:class:`BuildSpec`, build args, tags — the given ones plus the context's git commit,
``<commit>-dirty-<image id>`` for uncommitted work, ``build-<image id>`` when there is neither,
never a moving ``latest``) and one effect (:func:`build_image`), whose failures are one line
naming the failing Dockerfile step.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from airdock.analyst.reporter import Reporter
from airdock.engine.registry_errors import first_line
from airdock.errors import BuildError, ConfigError

__all__ = [
    "BuildSpec",
    "GitState",
    "build_failure_message",
    "build_image",
    "check_tag",
    "git_state",
    "parse_build_args",
    "plan_tags",
    "resolve_build",
]

# Docker's tag grammar (distribution/reference), which ECR applies too.
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
_BUILD_ARG_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_STEP = re.compile(r"^Step \d+/\d+ : ")
_GIT_TIMEOUT_S = 20.0


@dataclass(frozen=True)
class BuildSpec:
    """A checked build: an existing context directory and Dockerfile, build args, a platform."""

    context: Path
    dockerfile: Path
    build_args: Mapping[str, str] = field(default_factory=dict)
    platform: str | None = None


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
        raise BuildError(build_failure_message(spec, step, api_error_text(exc))) from None
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


def api_error_text(exc: Any) -> str:
    explanation = getattr(exc, "explanation", None)
    return str(explanation or exc)
