"""Make sure an image is on the engine, pulling it with registry credentials when the policy says so.

Failures become one-line ``ImagePullError``s a person can act on. A pull the registry refuses as
unauthenticated (expired token, missing credentials) is retried once with fresh credentials; a
registry that cannot be reached is retried a bounded number of times with exponential backoff.
"""

from __future__ import annotations

import contextlib
import enum
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from airdock.auth.credentials import RegistryCredentials
from airdock.auth.ecr import denied_action
from airdock.errors import AccessDeniedError, AirdockError, ConfigError, ImagePullError, ImageReferenceError
from airdock.images import ImageRef, parse_image_ref

log = logging.getLogger("airdock.engine")

_AUTH_REFUSED = re.compile(
    r"no basic auth credentials|authorization token has expired|authorization token is invalid|"
    r"\b401\b|unauthorized|authentication required",
    re.IGNORECASE,
)
_UNREACHABLE = re.compile(
    r"connection refused|no such host|i/o timeout|dial tcp|tls handshake timeout|network is unreachable|"
    r"connection reset|server misbehaving|\bEOF\b|503 Service Unavailable|UNAVAILABLE",
    re.IGNORECASE,
)
_REPO_MISSING = re.compile(
    r"NAME_UNKNOWN|repository with name '[^']*' does not exist|name unknown", re.IGNORECASE
)
_TAG_MISSING = re.compile(
    r"manifest unknown|MANIFEST_UNKNOWN|not found: manifest|manifest for .* not found", re.I
)
_DENIED = re.compile(r"\bdenied\b|403 Forbidden|not authorized to perform", re.IGNORECASE)
_PROGRESS_EVERY_S = 10.0


class PullPolicy(enum.StrEnum):
    IF_NOT_PRESENT = "if_not_present"
    ALWAYS = "always"
    NEVER = "never"

    @classmethod
    def parse(cls, value: str) -> PullPolicy:
        try:
            return cls(value)
        except ValueError:
            choices = ", ".join(p.value for p in cls)
            raise ConfigError(f"invalid pull_policy {value!r}: use one of {choices}") from None


class CredentialProvider(Protocol):
    """Where a pull gets its registry login: ``get`` a (cached) one, ``refresh`` after a refusal."""

    def get(self) -> RegistryCredentials: ...

    def refresh(self, stale: RegistryCredentials) -> RegistryCredentials: ...


@dataclass(frozen=True)
class PulledImage:
    """The image that will run: its id, its registry digest (if it came from a registry), how it got here."""

    reference: str
    image_id: str
    digest: str | None
    pulled: bool
    seconds: float = 0.0


def ensure_image(
    api: Any,
    ref: ImageRef,
    policy: PullPolicy,
    credentials: CredentialProvider | None = None,
    *,
    attempts: int = 3,
    backoff_seconds: float = 1.0,
    sleep: Callable[[float], None] = time.sleep,
    logger: logging.Logger | logging.LoggerAdapter[logging.Logger] = log,
) -> PulledImage:
    """Apply ``policy`` for ``ref`` on the engine behind ``api`` (a docker ``APIClient``)."""
    present = _inspect(api, ref)
    if policy is PullPolicy.NEVER and present is None:
        raise ImagePullError(
            f"image {ref} is not on this worker and pull_policy='never' forbids pulling it: "
            "pull it beforehand or use pull_policy='if_not_present'"
        )
    if present is not None and policy is not PullPolicy.ALWAYS:
        logger.info("image %s is present (pull_policy=%s); not pulling", ref, policy.value)
        return PulledImage(str(ref), present["Id"], _repo_digest(present, ref), pulled=False)

    started = time.monotonic()
    creds = credentials.get() if credentials is not None else None
    refreshed = False
    failures = 0
    while True:
        try:
            _pull(api, ref, creds, logger)
            break
        except ImagePullError as exc:
            message = str(exc)
            if (
                credentials is not None
                and creds is not None
                and not refreshed
                and _AUTH_REFUSED.search(message)
            ):
                logger.info(
                    "registry %s refused the cached token (%s); fetching a fresh one and retrying once",
                    ref.registry,
                    _first_line(message),
                )
                creds = credentials.refresh(creds)
                refreshed = True
                continue
            if _UNREACHABLE.search(message) and not _REPO_MISSING.search(message):
                failures += 1
                if failures >= attempts:
                    detail = _first_line(message)
                    raise ImagePullError(
                        f"registry {ref.registry} unreachable after {attempts} attempts: {detail}"
                    ) from None
                delay = backoff_seconds * 2 ** (failures - 1)
                logger.warning(
                    "registry %s unreachable (%s); retrying in %.0f s (attempt %d/%d)",
                    ref.registry,
                    _first_line(message),
                    delay,
                    failures + 1,
                    attempts,
                )
                sleep(delay)
                continue
            raise _classify(ref, message) from None
    image = _inspect(api, ref)
    if image is None:
        raise ImagePullError(f"the engine reported {ref} pulled but cannot find it; retry the task")
    pulled = PulledImage(
        str(ref), image["Id"], _repo_digest(image, ref), pulled=True, seconds=time.monotonic() - started
    )
    logger.info("pulled %s (%s) in %.1f s", ref, pulled.digest or pulled.image_id, pulled.seconds)
    return pulled


def _pull(api: Any, ref: ImageRef, creds: RegistryCredentials | None, logger: Any) -> None:
    """One pull attempt with a summarised progress log; raise ImagePullError with the daemon's message."""
    import docker.errors

    auth = creds.auth_config() if creds is not None else None
    logger.info("pulling %s", ref)
    layers: dict[str, str] = {}
    downloaded: dict[str, int] = {}
    last_report = time.monotonic()
    try:
        stream = api.pull(
            ref.name, tag=ref.digest or ref.tag or "latest", stream=True, decode=True, auth_config=auth
        )
        for event in stream:
            if not isinstance(event, dict):
                continue
            if "error" in event:
                raise ImagePullError(str(event.get("error") or event.get("errorDetail")))
            layer, status = event.get("id"), str(event.get("status", ""))
            if layer and status:
                layers[layer] = status
                current = (event.get("progressDetail") or {}).get("current")
                if status == "Downloading" and isinstance(current, int):
                    downloaded[layer] = current
            if time.monotonic() - last_report > _PROGRESS_EVERY_S:
                last_report = time.monotonic()
                done = sum(1 for s in layers.values() if s in ("Pull complete", "Already exists"))
                logger.info(
                    "pulling %s: %d/%d layers done, %.1f MB downloaded",
                    ref,
                    done,
                    len(layers),
                    sum(downloaded.values()) / 1e6,
                )
    except docker.errors.APIError as exc:
        raise ImagePullError(_api_error_text(exc)) from None
    except docker.errors.DockerException as exc:
        raise ImagePullError(f"Docker engine error: {exc}") from None


def _classify(ref: ImageRef, message: str) -> AirdockError:
    line = _first_line(message)
    action = denied_action(message)
    if action:
        return AccessDeniedError(
            f"access denied pulling {ref}: the worker's AWS identity lacks {action} on repository "
            f"'{ref.repository}'; add it to its IAM policy (see `airdock iam-policy puller`)",
            action=action,
        )
    if _REPO_MISSING.search(message):
        return ImagePullError(
            f"repository '{ref.repository}' does not exist in registry {ref.registry}: "
            "create it and push the image, or fix the image name"
        )
    if _TAG_MISSING.search(message):
        what = f"digest {ref.digest}" if ref.digest else f"tag '{ref.tag or 'latest'}'"
        return ImagePullError(
            f"{what} does not exist in repository '{ref.repository}' of registry {ref.registry}: "
            "push it or fix the image reference"
        )
    if _AUTH_REFUSED.search(message):
        return ImagePullError(f"registry {ref.registry} refused the credentials for {ref}: {line}")
    if _DENIED.search(message):
        return AccessDeniedError(f"access denied pulling {ref}: {line}")
    return ImagePullError(f"pull of {ref} failed: {line}")


def _inspect(api: Any, ref: ImageRef) -> dict[str, Any] | None:
    import docker.errors

    try:
        return dict(api.inspect_image(ref.pull_reference))
    except docker.errors.ImageNotFound:
        return None
    except docker.errors.APIError as exc:
        if getattr(exc, "status_code", None) == 404:
            return None
        raise ImagePullError(f"Docker engine error inspecting {ref}: {_api_error_text(exc)}") from None


def _repo_digest(image: dict[str, Any], ref: ImageRef) -> str | None:
    """The ``sha256:…`` registry digest of ``image`` in ``ref``'s repository, when the engine knows one."""
    if ref.digest:
        return ref.digest
    for entry in image.get("RepoDigests") or ():
        with contextlib.suppress(ImageReferenceError):
            parsed = parse_image_ref(entry)
            if parsed.name == ref.name and parsed.digest:
                return parsed.digest
    return None


def _api_error_text(exc: Any) -> str:
    explanation = getattr(exc, "explanation", None)
    return str(explanation or exc)


def _first_line(message: str) -> str:
    return message.strip().splitlines()[0] if message.strip() else "no detail"
