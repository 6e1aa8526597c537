"""What the local ECS's operations work on, ECS's names for things (ARNs), and its error wording."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from airdock.local.api.errors import ApiError
from airdock.local.ecs_store import EcsStore
from airdock.local.settings import StackSettings

TARGET_PREFIX = "AmazonEC2ContainerServiceV20141113."
DEFAULT_CLUSTER = "default"

_NAME = re.compile(r"[A-Za-z0-9_-]{1,255}")
_TASK_ID = re.compile(r"[0-9a-f]{32}")


class TaskLauncher(Protocol):
    """The runner that turns task records into containers (:mod:`airdock.local.ecs_runner`)."""

    def launch(self, task_arn: str) -> None: ...

    def stop(self, task_arn: str) -> None: ...


@dataclass(frozen=True)
class EcsBackend:
    settings: StackSettings
    store: EcsStore
    launcher: TaskLauncher
    bump: Callable[[str], object] | None = None  # the stack's call counters (Store.bump)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def prefix(self) -> str:
        return f"arn:aws:ecs:{self.settings.region}:{self.settings.account_id}"

    def cluster_arn(self, name: str) -> str:
        return f"{self.prefix}:cluster/{name}"

    def task_definition_arn(self, family: str, revision: int) -> str:
        return f"{self.prefix}:task-definition/{family}:{revision}"

    def task_arn(self, cluster: str, task_id: str) -> str:
        return f"{self.prefix}:task/{cluster}/{task_id}"

    def count(self, name: str) -> None:
        if self.bump is not None:
            self.bump(name)


def client_exception(message: str) -> ApiError:
    return ApiError("ClientException", message)


def invalid_parameter(message: str) -> ApiError:
    """ECS's InvalidParameterException (its messages are prose, unlike ECR's constraint wording)."""
    return ApiError("InvalidParameterException", message)


def cluster_not_found() -> ApiError:
    return ApiError("ClusterNotFoundException", "Cluster not found.")


def check_name(value: str, what: str) -> str:
    """A cluster or family name: up to 255 letters, digits, hyphens and underscores."""
    if not _NAME.fullmatch(value):
        raise invalid_parameter(
            f"{what} can have up to 255 characters. Valid characters are letters (uppercase and "
            "lowercase), numbers, hyphens (-), and underscores (_)."
        )
    return value


def cluster_name(backend: EcsBackend, reference: str | None) -> str:
    """The cluster a request names (a name or an ARN of this account and region), default ``default``."""
    if reference is None or reference == "":
        return DEFAULT_CLUSTER
    if reference.startswith("arn:"):
        prefix = f"{backend.prefix}:cluster/"
        if not reference.startswith(prefix):
            raise invalid_parameter(f"Invalid cluster ARN: {reference}")
        reference = reference.removeprefix(prefix)
    return check_name(reference, "Cluster name")


def task_id_of(backend: EcsBackend, cluster: str, reference: str) -> str | None:
    """The task id a task reference names within ``cluster`` (an id or a task ARN), else None."""
    if reference.startswith("arn:"):
        prefix = f"{backend.prefix}:task/{cluster}/"
        if not reference.startswith(prefix):
            return None
        reference = reference.removeprefix(prefix)
    return reference if _TASK_ID.fullmatch(reference) else None


def parse_task_definition(backend: EcsBackend, reference: str) -> tuple[str, int | None]:
    """``family``, ``family:revision`` or a task definition ARN → (family, revision or None)."""
    text = reference
    if text.startswith("arn:"):
        prefix = f"{backend.prefix}:task-definition/"
        if not text.startswith(prefix):
            raise client_exception(f"Invalid revision number. Number: {text}")
        text = text.removeprefix(prefix)
        if ":" not in text:
            raise client_exception("Invalid revision number. Number: ")
    family, colon, revision = text.partition(":")
    if not _NAME.fullmatch(family):
        raise client_exception("Unable to describe task definition.")
    if not colon:
        return family, None
    if not revision.isdigit() or int(revision) < 1:
        raise client_exception(f"Invalid revision number. Number: {revision}")
    return family, int(revision)
