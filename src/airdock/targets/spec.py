"""The portable description of a container task and of the Airflow task instance it belongs to."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field

__all__ = ["COLLECTED_TAG", "MANAGED_TAG", "ContainerSpec", "Outcome", "TaskIdentity"]

MANAGED_TAG = "airdock.managed"
COLLECTED_TAG = "airdock.collected"  # set on an ECS task once an attempt has taken its result


@dataclass(frozen=True)
class TaskIdentity:
    """Which Airflow task instance a container belongs to; stable across its tries."""

    dag_id: str
    task_id: str
    run_id: str
    map_index: int = -1
    try_number: int = 1

    def started_by(self) -> str:
        """ECS ``startedBy`` (≤ 36 characters of ``[A-Za-z0-9_-]``): the same for every try, so a
        retry finds the task an earlier try started."""
        key = "\0".join((self.dag_id, self.task_id, self.run_id, str(self.map_index)))
        return "airdock-" + hashlib.sha256(key.encode()).hexdigest()[:28]

    def client_token(self) -> str:
        """RunTask's idempotency token: one task per try, even when the call itself is retried."""
        return f"{self.started_by()}-try-{self.try_number}"

    def tags(self) -> dict[str, str]:
        """The identity as tags/labels (ECS tag values are at most 256 characters)."""
        values = {
            MANAGED_TAG: "true",
            "airdock.dag_id": self.dag_id,
            "airdock.task_id": self.task_id,
            "airdock.run_id": self.run_id,
            "airdock.map_index": str(self.map_index),
            "airdock.try_number": str(self.try_number),
        }
        return {key: value[:256] for key, value in values.items()}


@dataclass(frozen=True)
class ContainerSpec:
    """What to run, in the terms both targets share.

    ``cpu`` is in CPU units (1024 = one vCPU) and ``memory`` in MiB, as ECS counts them; the docker
    target converts. ``secret_environment`` holds values resolved on the worker (masked in logs);
    ``secret_arns`` names Secrets Manager or SSM parameters that ECS resolves itself.
    """

    image: str
    command: tuple[str, ...] | None = None
    entrypoint: tuple[str, ...] | None = None
    environment: Mapping[str, str] = field(default_factory=dict)
    secret_environment: Mapping[str, str] = field(default_factory=dict, repr=False)
    secret_arns: Mapping[str, str] = field(default_factory=dict)
    cpu: int | None = None
    memory: int | None = None
    working_dir: str | None = None
    user: str | None = None


@dataclass(frozen=True)
class Outcome:
    """How a container ended: its exit code (None when it never ran) and, unless it succeeded, why
    in one line a person can act on. ``kept`` holds the lines the XCom needs, ``tail`` the last ones."""

    exit_code: int | None
    reason: str | None
    kept: list[str]
    tail: list[str]
    reference: str  # the task ARN or container id

    @property
    def succeeded(self) -> bool:
        return self.exit_code == 0 and self.reason is None
