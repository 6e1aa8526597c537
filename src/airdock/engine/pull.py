"""Make sure an image is on the engine, pulling it with registry credentials when the policy says so.

Failures become one-line ``ImagePullError``s a person can act on. A pull the registry refuses as
unauthenticated (expired token, missing credentials) is retried once with fresh credentials; a
registry that cannot be reached is retried a bounded number of times with exponential backoff.
"""

from __future__ import annotations

import contextlib
import enum
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from airdock import metrics
from airdock.auth.credentials import RegistryCredentials
from airdock.engine.registry_errors import Refusal, classify
from airdock.errors import AccessDeniedError, AirdockError, ConfigError, ImagePullError, ImageReferenceError
from airdock.images import ImageRef, parse_image_ref

log = logging.getLogger("airdock.engine")

PROGRESS_EVERY_SECONDS = 10.0  # a long pull's summary line
STALL_SECONDS = 30.0  # no byte or layer progress this long: say so, naming the registry


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
    downloaded_bytes: int = 0  # what the engine fetched (0: it had every layer)


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
    progress_seconds: float = PROGRESS_EVERY_SECONDS,
    stall_seconds: float = STALL_SECONDS,
) -> PulledImage:
    """Apply ``policy`` for ``ref`` on the engine behind ``api`` (a docker ``APIClient``).

    A pull logs a summary every ``progress_seconds`` and, after ``stall_seconds`` without progress,
    a warning naming the registry (then again every ``stall_seconds`` while it stays stalled).
    """
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
    progress = PullProgress()
    while True:
        try:
            _pull(api, ref, creds, logger, progress, progress_seconds, stall_seconds)
            break
        except ImagePullError as exc:
            refusal = classify(str(exc))
            if (
                credentials is not None
                and creds is not None
                and not refreshed
                and refusal.kind is Refusal.AUTH_REFUSED
            ):
                logger.info(
                    "registry %s refused the cached token (%s); fetching a fresh one and retrying once",
                    ref.registry,
                    refusal.line,
                )
                creds = credentials.refresh(creds)
                refreshed = True
                continue
            if refusal.kind is Refusal.UNREACHABLE:
                failures += 1
                if failures >= attempts:
                    metrics.emit(metrics.PULL_FAILURES, registry=ref.registry, reason=refusal.kind.value)
                    raise ImagePullError(
                        f"registry {ref.registry} unreachable after {attempts} attempts: {refusal.line}"
                    ) from None
                delay = backoff_seconds * 2 ** (failures - 1)
                logger.warning(
                    "registry %s unreachable (%s); retrying in %.0f s (attempt %d/%d)",
                    ref.registry,
                    refusal.line,
                    delay,
                    failures + 1,
                    attempts,
                )
                sleep(delay)
                continue
            metrics.emit(metrics.PULL_FAILURES, registry=ref.registry, reason=refusal.kind.value)
            raise _classify(ref, str(exc)) from None
    image = _inspect(api, ref)
    if image is None:
        raise ImagePullError(f"the engine reported {ref} pulled but cannot find it; retry the task")
    pulled = PulledImage(
        str(ref),
        image["Id"],
        _repo_digest(image, ref),
        pulled=True,
        seconds=time.monotonic() - started,
        downloaded_bytes=progress.bytes_done,
    )
    metrics.emit(metrics.PULL_DURATION, pulled.seconds, registry=ref.registry)
    metrics.emit(metrics.PULL_BYTES, pulled.downloaded_bytes, registry=ref.registry)
    logger.info(
        "pulled %s (%s) in %.1f s, %s",
        ref,
        pulled.digest or pulled.image_id,
        pulled.seconds,
        progress.summary(),
    )
    return pulled


_LAYER_DONE = frozenset({"Pull complete", "Already exists"})
_LAYER_DOWNLOADED = frozenset({"Verifying Checksum", "Download complete", "Extracting", "Pull complete"})
_LAYER_STATUSES = frozenset({"Pulling fs layer", "Waiting", "Downloading", *_LAYER_DONE, *_LAYER_DOWNLOADED})


class PullProgress:
    """What the engine has reported of a pull, summed right; safe to read from another thread.

    Only layer events count as layers (the engine's first event, ``Pulling from team/app`` with the
    tag as its ``id``, is not a layer). A layer's bytes are the engine's last ``current`` while it
    downloads and its ``total`` once downloaded; ``Already exists`` layers download nothing.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._status: dict[str, str] = {}
        self._current: dict[str, int] = {}
        self._total: dict[str, int] = {}
        self.changed_at = clock()

    def feed(self, event: Mapping[str, Any]) -> None:
        layer, status = event.get("id"), str(event.get("status") or "")
        if not layer or not (status in _LAYER_STATUSES or status.startswith("Retrying in")):
            return
        detail = event.get("progressDetail") or {}
        with self._lock:
            before = (self._status.get(layer), self._current.get(layer))
            self._status[layer] = status
            if status == "Downloading":
                if isinstance(detail.get("total"), int) and detail["total"] > 0:
                    self._total[layer] = detail["total"]
                if isinstance(detail.get("current"), int):
                    self._current[layer] = detail["current"]
            elif status in _LAYER_DOWNLOADED and layer in self._total:
                self._current[layer] = self._total[layer]
            if (self._status.get(layer), self._current.get(layer)) != before:
                self.changed_at = self._clock()

    @property
    def layers(self) -> int:
        with self._lock:
            return len(self._status)

    @property
    def layers_done(self) -> int:
        with self._lock:
            return sum(1 for status in self._status.values() if status in _LAYER_DONE)

    @property
    def bytes_done(self) -> int:
        with self._lock:
            return sum(self._current.values())

    @property
    def bytes_total(self) -> int:
        """The sizes the engine announced so far (layers not yet started announce none)."""
        with self._lock:
            return sum(self._total.values())

    def summary(self) -> str:
        """``1/3 layers done, 12.5 of 40.2 MB downloaded``; ``nothing to download (...)`` when up to date."""
        if self.layers == 0:
            return "nothing to download (the engine had every layer)"
        done, total = self.bytes_done, self.bytes_total
        size = f"{done / 1e6:.1f} of {total / 1e6:.1f} MB" if total else f"{done / 1e6:.1f} MB"
        return f"{self.layers_done}/{self.layers} layers done, {size} downloaded"


def _watch(
    ref: ImageRef,
    progress: PullProgress,
    logger: Any,
    stop: threading.Event,
    progress_seconds: float,
    stall_seconds: float,
) -> None:
    """A summary every ``progress_seconds``; after ``stall_seconds`` without progress, say so — also
    when the engine sends nothing at all (a dead registry), which a loop over its events cannot."""
    tick = max(0.05, min(1.0, progress_seconds / 4, stall_seconds / 4))
    last_report = time.monotonic()
    last_stall_note = 0.0
    while not stop.wait(tick):
        now = time.monotonic()
        idle = now - progress.changed_at
        if idle >= stall_seconds:
            if idle - last_stall_note >= stall_seconds:
                logger.warning(
                    "pulling %s: no progress for %.0f s from registry %s (%s); still waiting",
                    ref,
                    idle,
                    ref.registry,
                    progress.summary(),
                )
                last_stall_note = idle
            last_report = now
            continue
        last_stall_note = 0.0
        if now - last_report >= progress_seconds:
            logger.info("pulling %s: %s", ref, progress.summary())
            last_report = now


def _pull(
    api: Any,
    ref: ImageRef,
    creds: RegistryCredentials | None,
    logger: Any,
    progress: PullProgress,
    progress_seconds: float = PROGRESS_EVERY_SECONDS,
    stall_seconds: float = STALL_SECONDS,
) -> None:
    """One pull attempt with a summarised progress log; raise ImagePullError with the daemon's message."""
    import docker.errors

    auth = creds.auth_config() if creds is not None else None
    logger.info("pulling %s", ref)
    stop = threading.Event()
    watcher = threading.Thread(
        target=_watch,
        args=(ref, progress, logger, stop, progress_seconds, stall_seconds),
        name="airdock-pull-progress",
        daemon=True,
    )
    watcher.start()
    try:
        stream = api.pull(
            ref.name, tag=ref.digest or ref.tag or "latest", stream=True, decode=True, auth_config=auth
        )
        for event in stream:
            if not isinstance(event, dict):
                continue
            if "error" in event:
                raise ImagePullError(str(event.get("error") or event.get("errorDetail")))
            progress.feed(event)
    except docker.errors.APIError as exc:
        raise ImagePullError(_api_error_text(exc)) from None
    except docker.errors.DockerException as exc:
        raise ImagePullError(f"Docker engine error: {exc}") from None
    finally:
        stop.set()
        watcher.join(5)


def _classify(ref: ImageRef, message: str) -> AirdockError:
    refusal = classify(message)
    line = refusal.line
    if refusal.kind is Refusal.DENIED_ACTION:
        return AccessDeniedError(
            f"access denied pulling {ref}: the worker's AWS identity lacks {refusal.action} on repository "
            f"'{ref.repository}'; add it to its IAM policy (see `airdock iam-policy puller`)",
            action=refusal.action,
        )
    if refusal.kind is Refusal.REPOSITORY_MISSING:
        return ImagePullError(
            f"repository '{ref.repository}' does not exist in registry {ref.registry}: "
            "create it and push the image, or fix the image name"
        )
    if refusal.kind is Refusal.TAG_MISSING:
        what = f"digest {ref.digest}" if ref.digest else f"tag '{ref.tag or 'latest'}'"
        return ImagePullError(
            f"{what} does not exist in repository '{ref.repository}' of registry {ref.registry}: "
            "push it or fix the image reference"
        )
    if refusal.kind is Refusal.AUTH_REFUSED:
        return ImagePullError(f"registry {ref.registry} refused the credentials for {ref}: {line}")
    if refusal.kind is Refusal.DENIED:
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
