"""Registered task definitions: reuse the latest revision when it is the same, else register one.

``TaskDefinitions.ensure`` answers with a revision ARN. The fast path is one
DescribeTaskDefinition: the latest ACTIVE revision of the family, reused when it equals the desired
definition after normalisation. Otherwise a host-wide lock per family is taken and the check made
again (another task of this host may have registered it meanwhile), so tasks of one family starting
together register one revision; throttling (``ClientException`` "Too many concurrent attempts",
``ThrottlingException``) is retried with exponential backoff. After a registration the family's
ACTIVE revisions beyond the newest ``keep`` that airdock registered (tagged ``airdock.managed``)
are deregistered; revisions somebody else registered are never touched.
"""

from __future__ import annotations

import hashlib
import logging
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from filelock import FileLock
from filelock import Timeout as LockTimeout

from airdock import metrics
from airdock.errors import AirdockError
from airdock.targets.ecs.task_definition import normalise, registration_tags
from airdock.targets.spec import MANAGED_TAG

__all__ = ["TaskDefinitions"]

LOCK_TIMEOUT_S = 120.0
MAX_ATTEMPTS = 6
_THROTTLED = ("ThrottlingException", "TooManyRequestsException", "RequestLimitExceeded")


class TaskDefinitions:
    """Finds or registers the task definitions of one ECS client; see the module docstring."""

    def __init__(
        self,
        ecs: Any,
        lock_dir: Path,
        *,
        keep: int = 5,
        log: logging.Logger | Any = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.ecs = ecs
        self.lock_dir = lock_dir
        self.keep = keep
        self.log = log or logging.getLogger("airdock.targets.ecs")
        self._sleep = sleep

    def ensure(self, desired: dict[str, Any]) -> str:
        """The ARN of a revision equal to ``desired`` (RegisterTaskDefinition arguments)."""
        family = str(desired["family"])
        found = self._reusable(desired)
        if found is not None:
            return found
        self.lock_dir.mkdir(parents=True, exist_ok=True)
        key = hashlib.sha256(f"{self.ecs.meta.region_name}|{family}".encode()).hexdigest()[:16]
        lock = FileLock(str(self.lock_dir / f"ecs-taskdef-{key}.lock"), timeout=LOCK_TIMEOUT_S)
        try:
            with lock:
                found = self._reusable(desired)  # registered by another task of this host meanwhile?
                if found is not None:
                    return found
                arn = self._register(desired)
        except LockTimeout:
            raise AirdockError(
                f"another task of this host held the task-definition lock of {family} for "
                f"{LOCK_TIMEOUT_S:.0f} s; try again (lock file in {self.lock_dir})"
            ) from None
        self._prune(family)
        return arn

    def _reusable(self, desired: dict[str, Any]) -> str | None:
        from botocore.exceptions import ClientError

        try:
            latest = self._call(self.ecs.describe_task_definition, taskDefinition=desired["family"])
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ClientException":  # no ACTIVE revision of the family
                return None
            raise
        definition = latest["taskDefinition"]
        if definition.get("status") == "ACTIVE" and normalise(definition) == normalise(desired):
            return str(definition["taskDefinitionArn"])
        return None

    def _register(self, desired: dict[str, Any]) -> str:
        response = self._call(self.ecs.register_task_definition, **desired, tags=registration_tags())
        metrics.emit(metrics.ECS_REGISTER_TASK_DEFINITION)
        definition = response["taskDefinition"]
        self.log.info("registered ECS task definition %s:%s", definition["family"], definition["revision"])
        return str(definition["taskDefinitionArn"])

    def _prune(self, family: str) -> None:
        """Deregister the family's airdock revisions older than the newest ``keep``; never raise."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            arns: list[str] = []
            paginator = self.ecs.get_paginator("list_task_definitions")
            for page in paginator.paginate(familyPrefix=family, status="ACTIVE", sort="DESC"):
                arns.extend(
                    a for a in page["taskDefinitionArns"] if a.rsplit("/", 1)[-1].rsplit(":", 1)[0] == family
                )
            for arn in arns[self.keep :]:
                described = self._call(
                    self.ecs.describe_task_definition, taskDefinition=arn, include=["TAGS"]
                )
                if not any(t.get("key") == MANAGED_TAG for t in described.get("tags") or []):
                    continue
                self._call(self.ecs.deregister_task_definition, taskDefinition=arn)
                self.log.info("deregistered old ECS task definition %s", arn.rsplit("/", 1)[-1])
        except (ClientError, BotoCoreError) as exc:
            self.log.warning("could not deregister old revisions of %s: %s", family, exc)

    def _call(self, method: Callable[..., Any], **kwargs: Any) -> Any:
        """``method(**kwargs)``, retried with backoff while ECS throttles."""
        from botocore.exceptions import ClientError

        for attempt in range(1, MAX_ATTEMPTS + 1):
            try:
                return method(**kwargs)
            except ClientError as exc:
                error = exc.response["Error"]
                throttled = error.get("Code") in _THROTTLED or (
                    error.get("Code") == "ClientException"
                    and "Too many concurrent" in str(error.get("Message"))
                )
                if not throttled or attempt == MAX_ATTEMPTS:
                    raise
                delay = min(20.0, 0.5 * 2 ** (attempt - 1)) * (0.5 + random.random() / 2)
                self.log.info("ECS throttled %s; retrying in %.1f s", method.__name__, delay)
                self._sleep(delay)
        raise AssertionError("unreachable")
