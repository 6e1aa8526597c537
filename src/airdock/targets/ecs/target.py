"""Run a container spec as an ECS task: start, find (reattach), follow with its logs, stop.

``EcsTarget`` takes boto3 ECS and CloudWatch Logs clients and an :class:`EcsSettings`. A task is
started with ``startedBy`` = the identity's stable hash, the identity as tags and a client token
per try; its command, environment and worker-resolved secret values travel in the container
overrides. ``follow`` polls DescribeTasks (0.25 s growing to ``poll_seconds``) and forwards each
new CloudWatch Logs event as one line, keeping only what the caller's :class:`KeepPolicy` needs;
once the task is STOPPED it drains the stream and returns an :class:`Outcome`. A task whose result
was taken is tagged ``airdock.collected``, so a later try never collects it twice.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from airdock import metrics
from airdock.engine.logs import DEFAULT_TAIL_LINES, KeepPolicy, LogLines
from airdock.errors import AirdockError
from airdock.targets.ecs.reasons import explain_run_task_error, explain_stopped
from airdock.targets.ecs.settings import EcsSettings
from airdock.targets.ecs.task_definition import CONTAINER_NAME, log_stream_for
from airdock.targets.spec import COLLECTED_TAG, ContainerSpec, Outcome, TaskIdentity

__all__ = ["EcsHandle", "EcsRunError", "EcsTarget", "describe_task", "log_page"]

FIRST_POLL_S = 0.25


class EcsRunError(AirdockError):
    """ECS refused to start the task; the message says what to fix."""


@dataclass(frozen=True)
class EcsHandle:
    """A started (or found) ECS task and where its output goes."""

    task_arn: str
    cluster: str
    log_group: str
    log_stream: str
    image: str

    @property
    def task_id(self) -> str:
        return self.task_arn.rsplit("/", 1)[-1]


def _ignore(line: str) -> None:
    return None


class EcsTarget:
    """See the module docstring."""

    def __init__(
        self,
        ecs: Any,
        logs: Any,
        settings: EcsSettings,
        *,
        poll_seconds: float = 2.0,
        log: logging.Logger | Any = None,
        sleep: Callable[[float], None] = time.sleep,
        lines_per_record: int = 1,
    ) -> None:
        self.ecs = ecs
        self.logs = logs
        self.settings = settings
        self.poll_seconds = poll_seconds
        self.lines_per_record = lines_per_record
        self.log = log or logging.getLogger("airdock.targets.ecs")
        self._sleep = sleep

    # -- start ---------------------------------------------------------------------------------
    def start(
        self,
        spec: ContainerSpec,
        identity: TaskIdentity,
        task_definition: str,
        image: str,
        extra: Mapping[str, Any] | None = None,
    ) -> EcsHandle:
        """RunTask for ``spec`` on ``task_definition`` (whose container runs ``image``); ``extra``
        adds RunTask arguments (``platformVersion``, ``propagateTags``, ...) and may not replace
        the ones airdock sets."""
        from botocore.exceptions import ClientError

        override: dict[str, Any] = {"name": CONTAINER_NAME}
        if spec.command is not None:
            override["command"] = list(spec.command)
        environment = {**spec.environment, **spec.secret_environment}
        if environment:
            override["environment"] = [{"name": k, "value": v} for k, v in sorted(environment.items())]
        arguments: dict[str, Any] = {
            "cluster": self.settings.cluster,
            "taskDefinition": task_definition,
            "count": 1,
            "startedBy": identity.started_by(),
            "clientToken": identity.client_token(),
            "tags": [{"key": k, "value": v} for k, v in identity.tags().items()],
            "overrides": {"containerOverrides": [override]},
            **self.settings.run_task_placement(),
        }
        clash = sorted(set(extra or {}) & set(arguments))
        if clash:
            raise EcsRunError(
                f"ecs_overrides run_task_kwargs may not set {', '.join(clash)}: airdock sets them"
            )
        try:
            response = self.ecs.run_task(**arguments, **(extra or {}))
        except ClientError as exc:
            error = exc.response["Error"]
            raise EcsRunError(
                explain_run_task_error(str(error.get("Code")), str(error.get("Message")), self.settings)
            ) from None
        failures = response.get("failures") or []
        tasks = response.get("tasks") or []
        if failures or not tasks:
            failure = failures[0] if failures else {}
            raise EcsRunError(
                explain_run_task_error(
                    "RunTaskFailure", f"{failure.get('reason')} {failure.get('detail') or ''}", self.settings
                )
            )
        return self._handle(tasks[0]["taskArn"], image)

    def _handle(self, task_arn: str, image: str) -> EcsHandle:
        return EcsHandle(
            task_arn=task_arn,
            cluster=self.settings.cluster,
            log_group=self.settings.log_group,
            log_stream=log_stream_for(task_arn),
            image=image,
        )

    # -- reattach ------------------------------------------------------------------------------
    def find(self, identity: TaskIdentity) -> tuple[EcsHandle, bool] | None:
        """The task an earlier try of ``identity`` started and nobody collected: (handle, running)."""
        started_by = identity.started_by()
        for desired in ("RUNNING", "STOPPED"):
            arns = self.ecs.list_tasks(
                cluster=self.settings.cluster, startedBy=started_by, desiredStatus=desired
            ).get("taskArns", [])
            if not arns:
                continue
            tasks = self.ecs.describe_tasks(cluster=self.settings.cluster, tasks=arns[:100], include=["TAGS"])
            candidates = [
                t
                for t in tasks.get("tasks", [])
                if not any(tag.get("key") == COLLECTED_TAG for tag in t.get("tags") or [])
            ]
            if not candidates:
                continue
            newest = max(candidates, key=lambda t: t.get("createdAt") or 0)
            image = str((newest.get("containers") or [{}])[0].get("image") or "")
            return self._handle(newest["taskArn"], image), desired == "RUNNING"
        return None

    # -- follow --------------------------------------------------------------------------------
    def follow(
        self,
        handle: EcsHandle,
        emit: Callable[[str], Any],
        keep: KeepPolicy = KeepPolicy.LAST,
        tail: int = DEFAULT_TAIL_LINES,
    ) -> Outcome:
        """Forward the task's log lines to ``emit`` until it stops, each page of events in records of
        up to ``lines_per_record`` lines; its outcome (and mark it collected)."""
        lines = LogLines(emit, keep, tail, self.lines_per_record)
        token: str | None = None
        delay = FIRST_POLL_S
        while True:
            task = self.describe(handle)
            stopped = task.get("lastStatus") == "STOPPED"
            token = self._forward(handle, token, lines)
            if stopped:
                token = self._forward(handle, token, lines)  # what arrived while we read the first batch
                break
            self._sleep(delay)
            delay = min(self.poll_seconds, delay * 1.5)
        return self._outcome(handle, task, lines)

    def collect(
        self, handle: EcsHandle, keep: KeepPolicy = KeepPolicy.LAST, tail: int = DEFAULT_TAIL_LINES
    ) -> Outcome:
        """The outcome of a stopped task whose output someone else forwarded (a deferral trigger):
        the lines ``keep`` and ``tail`` need are read back from CloudWatch Logs, nothing is emitted."""
        from botocore.exceptions import ClientError

        task = self.describe(handle)
        lines = LogLines(_ignore, keep, tail)
        if keep is KeepPolicy.ALL:
            self._forward(handle, None, lines)
        else:
            try:
                response = self.logs.get_log_events(
                    logGroupName=handle.log_group,
                    logStreamName=handle.log_stream,
                    startFromHead=False,
                    limit=max(tail, 1),
                )
            except ClientError as exc:
                if exc.response["Error"]["Code"] != "ResourceNotFoundException":
                    raise
                response = {}
            for event in response.get("events") or []:
                lines.feed(str(event.get("message", "")) + "\n")
        return self._outcome(handle, task, lines)

    def _outcome(self, handle: EcsHandle, task: Mapping[str, Any], lines: LogLines) -> Outcome:
        lines.close()
        self._mark_collected(handle)
        created, started = task.get("createdAt"), task.get("startedAt")
        if isinstance(created, datetime) and isinstance(started, datetime):
            seconds = (started - created).total_seconds()
            metrics.emit(metrics.ECS_TASK_START_DURATION, seconds, cluster=self.settings.cluster)
        metrics.emit(metrics.ECS_STOP_REASON, stop_code=str(task.get("stopCode") or "none"))
        container = (task.get("containers") or [{}])[0]
        exit_code = container.get("exitCode")
        return Outcome(
            exit_code=None if exit_code is None else int(exit_code),
            reason=explain_stopped(task, handle.image, self.settings),
            kept=lines.kept,
            tail=lines.tail,
            reference=handle.task_arn,
        )

    def describe(self, handle: EcsHandle) -> dict[str, Any]:
        return describe_task(self.ecs, handle)

    def _forward(self, handle: EcsHandle, token: str | None, lines: LogLines) -> str | None:
        """Emit the stream's events after ``token``; the token to continue from."""
        while True:
            messages, following, more = log_page(self.logs, handle, token)
            if messages:  # a page's events arrived together: one block, few records
                lines.feed("".join(f"{message}\n" for message in messages))
            token = following
            if not more:
                return token

    def _mark_collected(self, handle: EcsHandle) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.ecs.tag_resource(resourceArn=handle.task_arn, tags=[{"key": COLLECTED_TAG, "value": "true"}])
        except (ClientError, BotoCoreError) as exc:  # a later try may then collect it again: say so
            self.log.warning("could not tag ECS task %s as collected: %s", handle.task_id, exc)

    # -- stop ----------------------------------------------------------------------------------
    def stop(self, handle: EcsHandle, reason: str) -> None:
        """StopTask (ECS sends SIGTERM, then SIGKILL after the container's stop timeout)."""
        self.ecs.stop_task(cluster=handle.cluster, task=handle.task_arn, reason=reason[:255])


def describe_task(ecs: Any, handle: EcsHandle) -> dict[str, Any]:
    """DescribeTasks for one task; a one-line error when ECS no longer knows it."""
    response = ecs.describe_tasks(cluster=handle.cluster, tasks=[handle.task_arn])
    tasks = response.get("tasks") or []
    if not tasks:
        raise unknown_task(handle)
    return dict(tasks[0])


def unknown_task(handle: EcsHandle) -> AirdockError:
    """The error of a task DescribeTasks no longer knows."""
    return AirdockError(
        f"ECS task {handle.task_id} is no longer known to cluster {handle.cluster} "
        "(ECS forgets stopped tasks after about an hour)"
    )


def log_page(logs: Any, handle: EcsHandle, token: str | None) -> tuple[list[str], str | None, bool]:
    """One GetLogEvents page after ``token``: (messages, the token to continue from, whether more
    may follow right away). A stream that does not exist yet (the task has not started) is empty."""
    from botocore.exceptions import ClientError

    kwargs: dict[str, Any] = {
        "logGroupName": handle.log_group,
        "logStreamName": handle.log_stream,
        "startFromHead": True,
    }
    if token is not None:
        kwargs["nextToken"] = token
    try:
        response = logs.get_log_events(**kwargs)
    except ClientError as exc:
        if exc.response["Error"]["Code"] == "ResourceNotFoundException":
            return [], token, False
        raise
    events = response.get("events") or []
    following = response.get("nextForwardToken")
    more = bool(events) and following is not None and following != token
    messages = [str(event.get("message", "")) for event in events]
    return messages, following if following is not None else token, more
