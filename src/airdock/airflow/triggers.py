"""Deferral triggers of ``ContainerOperator``: follow a container (Docker engine) or an ECS task in
the triggerer while the worker slot is free.

Both triggers forward the output to the task's log line by line, in order, and fire one small
event when the container or task has ended (the worker then collects the exit code, the XCom lines
and applies the remove policy in ``execute_complete``). Their kwargs hold references only — ids,
URLs, file paths, connection ids, secret *references* — never a token or a secret value; the
values of ``secret_environment`` are read again in the triggerer, only to mask them there.

The position reached in the output is saved (``LogCheckpoints`` in airdock's state directory, at
most every ``CHECKPOINT_EVERY_S`` and when the trigger is cancelled), so a trigger re-created after
a triggerer restart continues after the last line its predecessor forwarded: nothing lost, nothing
repeated. ``on_kill`` (a user marked the deferred task failed or cleared it) stops the container
(and removes it per ``remove``) or stops the ECS task; ``cleanup`` closes connections only — a
triggerer restart must not touch the running job.

I/O never blocks the triggerer's loop: the Docker engine is spoken to with httpx (async, unix socket
or TCP/TLS); boto3 calls (ECS, CloudWatch Logs), Airflow variable/connection reads and checkpoint
files run in worker threads; a large batch of lines yields to the loop every ``YIELD_EVERY`` lines.
"""

from __future__ import annotations

import asyncio
import functools
import json
import time
import weakref
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from airflow.sdk.log import mask_secret
from airflow.triggers.base import BaseTrigger, TriggerEvent

from airdock.airflow.config import option
from airdock.airflow.secret_refs import aws_client, secret_value
from airdock.engine.logs import KeepPolicy, LogLines
from airdock.hygiene.state import resolve_state_dir
from airdock.targets.checkpoint import LogCheckpoints
from airdock.targets.docker_async import AsyncEngine, EngineUnreachable, LogPosition, Resume, TlsFiles
from airdock.targets.ecs.target import FIRST_POLL_S, EcsHandle, log_page, unknown_task

# Everything above is imported with the module, never on the triggerer's loop.

__all__ = ["DockerContainerTrigger", "EcsTaskTrigger"]

CHECKPOINT_EVERY_S = 2.0  # and on cancellation; a SIGKILLed triggerer repeats at most this much
YIELD_EVERY = 200
NOT_STARTED = ("PROVISIONING", "PENDING")  # ECS task states before its containers run (no log stream)
ENGINE_RETRY_S = 60.0


_pruned: set[str] = set()


def _checkpoint_of(key: str) -> tuple[LogCheckpoints, dict[str, Any] | None]:
    """The checkpoint store (old positions pruned once per process and directory) and ``key``'s."""
    store = LogCheckpoints(resolve_state_dir(option("state_dir")) / "log-positions")
    if str(store.directory) not in _pruned:
        _pruned.add(str(store.directory))
        store.prune()
    return store, store.load(key)


# The blocking calls of every trigger (boto3, checkpoint files, Airflow lookups) share two threads.
# More threads would not be faster — boto3's request and response handling is Python that holds the
# GIL — and each one more would compete with the loop's thread for the GIL: with the default
# executor's six, 50 ECS triggers left the loop waiting hundreds of milliseconds at a time.
_BLOCKING = ThreadPoolExecutor(max_workers=2, thread_name_prefix="airdock-trigger")

_T = TypeVar("_T")


async def _offload(call: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
    """``call(*args, **kwargs)`` in the triggers' threads, awaited from the loop."""
    return await asyncio.get_running_loop().run_in_executor(
        _BLOCKING, functools.partial(call, *args, **kwargs)
    )


_killing: set[asyncio.Task[None]] = set()


async def _unless_cancelled(work: Coroutine[Any, Any, None]) -> None:
    """Run ``work`` to its end even if the caller is cancelled meanwhile: the triggerer cancels a
    trigger's task again while ``on_kill`` runs, and a stop cut short leaves the job running."""
    task = asyncio.ensure_future(work)
    _killing.add(task)
    task.add_done_callback(_killing.discard)
    await asyncio.shield(task)


_engines: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, AsyncEngine]] = (
    weakref.WeakKeyDictionary()
)


async def _shared_engine(url: str, tls: dict[str, Any] | None) -> AsyncEngine:
    """One HTTP client per engine (and TLS setting) in a triggerer's loop, shared by its triggers:
    50 followers make one client, not 50 (each costs milliseconds of CPU, TLS contexts more)."""
    loop = asyncio.get_running_loop()
    key = json.dumps([url, tls], sort_keys=True)
    engines = _engines.setdefault(loop, {})
    engine = engines.get(key)
    if engine is None:
        # Made in a thread: a TLS context reads its certificate files.
        made = await _offload(AsyncEngine, url, TlsFiles(**tls) if tls else None)
        engine = engines.setdefault(key, made)
    return engine


DESCRIBE_ROUND_S = 1.0  # the least time between two DescribeTasks calls of one board
DESCRIBE_BATCH = 100  # DescribeTasks takes at most 100 tasks


class _TaskBoard:
    """DescribeTasks for all the ECS triggers of a triggerer's loop that follow tasks of one
    cluster (with one client: region and connection): each trigger asks when it polls, and one
    call answers everyone who asked since the last, at most one call per ``DESCRIBE_ROUND_S``.
    40 triggers polling every 2 s make one call a second instead of 20 — ECS's DescribeTasks rate
    limit is about 20 a second per account, shared with everything else that calls it."""

    def __init__(self, ecs: Any, cluster: str) -> None:
        self._ecs = ecs
        self._cluster = cluster
        self._asking: dict[str, list[asyncio.Future[dict[str, Any] | None]]] = {}
        self._rounds: asyncio.Task[None] | None = None
        self._last = 0.0

    async def describe(self, task_arn: str) -> dict[str, Any] | None:
        """The task as DescribeTasks shows it in the next round; None when ECS does not know it."""
        future: asyncio.Future[dict[str, Any] | None] = asyncio.get_running_loop().create_future()
        self._asking.setdefault(task_arn, []).append(future)
        if self._rounds is None or self._rounds.done():
            self._rounds = asyncio.ensure_future(self._serve())
        return await future

    async def _serve(self) -> None:
        while self._asking:
            await asyncio.sleep(max(0.0, self._last + DESCRIBE_ROUND_S - time.monotonic()))
            self._last = time.monotonic()
            asking, self._asking = self._asking, {}
            arns = list(asking)
            for start in range(0, len(arns), DESCRIBE_BATCH):
                chunk = arns[start : start + DESCRIBE_BATCH]
                try:
                    response = await _offload(self._ecs.describe_tasks, cluster=self._cluster, tasks=chunk)
                except Exception as exc:  # every trigger of the chunk sees the error as its own call would
                    _settle(asking, chunk, {}, exc)
                    continue
                found = {_task_id(t.get("taskArn", "")): dict(t) for t in response.get("tasks") or []}
                _settle(asking, chunk, found, None)


def _settle(
    asking: dict[str, list[asyncio.Future[dict[str, Any] | None]]],
    arns: Sequence[str],
    found: dict[str, dict[str, Any]],
    error: BaseException | None,
) -> None:
    for arn in arns:
        for future in asking[arn]:
            if future.done():  # its trigger was cancelled meanwhile
                continue
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(found.get(_task_id(arn)))


def _task_id(arn: str) -> str:
    return str(arn).rsplit("/", 1)[-1]


_boards: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[tuple[int, str], _TaskBoard]] = (
    weakref.WeakKeyDictionary()
)


def _board(ecs: Any, cluster: str) -> _TaskBoard:
    boards = _boards.setdefault(asyncio.get_running_loop(), {})
    key = (id(ecs), cluster)
    if key not in boards:
        boards[key] = _TaskBoard(ecs, cluster)
    return boards[key]


class _FollowingTrigger(BaseTrigger):  # type: ignore[misc]  # airflow-core is untyped here
    """What both triggers share: masking, the line sink, the saved position."""

    checkpoint_key: str
    secret_refs: Sequence[str]
    aws_conn_id: str | None

    def _start_following(self) -> None:
        from airdock.airflow.config import log_lines_per_record
        from airdock.errors import ConfigError

        log = self.log  # bound once: one lookup per trigger, not per line
        try:
            per_record = log_lines_per_record()  # the triggerer's own [airdock] option
        except ConfigError as exc:
            log.warning("%s; forwarding a record per line", exc)
            per_record = 1
        self._lines = LogLines(log.info, KeepPolicy.NONE, 0, per_record)
        self._store: LogCheckpoints | None = None
        self._saved_at = 0.0
        self._position: dict[str, Any] | None = None

    async def _mask_secrets(self) -> None:
        """Read the ``secret_environment`` values here too: the triggerer's masker must know them."""
        for ref in self.secret_refs:
            try:
                value = await _offload(secret_value, ref, self.aws_conn_id)
            except Exception as exc:  # the worker read it a moment ago; say so, keep following
                self.log.warning("could not read %s to mask it in the triggerer: %s", ref.split(":")[0], exc)
                continue
            mask_secret(value)

    async def _load(self) -> dict[str, Any] | None:
        self._store, saved = await _offload(_checkpoint_of, self.checkpoint_key)
        return saved

    async def _save(self, position: dict[str, Any], *, force: bool = False) -> None:
        self._position = position
        now = time.monotonic()
        if self._store is None or (not force and now - self._saved_at < CHECKPOINT_EVERY_S):
            return
        self._saved_at = now
        await _offload(self._store.save, self.checkpoint_key, position)

    def _save_now(self) -> None:
        """On cancellation (triggerer shutdown, the trigger moving): the last position, synchronously."""
        if self._store is not None and self._position is not None:
            try:
                self._store.save(self.checkpoint_key, self._position)
            except OSError as exc:
                self.log.warning("could not save the log position: %s", exc)


class DockerContainerTrigger(_FollowingTrigger):
    """Follow a container on a Docker engine until it ends (see the module docstring).

    :param container_id: the container.
    :param docker_url: the engine (``unix:///path`` or ``tcp://host:port``), as the worker reached it.
    :param tls: docker-py TLS settings (``ca_cert``, ``client_cert``, ``client_key`` paths,
        ``verify``, ``hostname``); the files must exist on the triggerer's host.
    :param checkpoint_key: names the saved position (the try's identity and the container).
    :param secret_refs: ``secret_environment`` references whose values to mask.
    :param remove: the task's remove policy, applied by ``on_kill``.
    :param stop_grace_seconds: SIGTERM → SIGKILL grace when ``on_kill`` stops the container.
    :param deferred_at: when the task deferred (epoch seconds; the worker reports the wait).
    """

    def __init__(
        self,
        *,
        container_id: str,
        docker_url: str,
        checkpoint_key: str,
        tls: dict[str, Any] | None = None,
        secret_refs: Sequence[str] = (),
        aws_conn_id: str | None = None,
        remove: str = "always",
        stop_grace_seconds: int = 10,
        deferred_at: float = 0.0,
    ) -> None:
        super().__init__()
        self.deferred_at = deferred_at
        self.container_id = container_id
        self.docker_url = docker_url
        self.checkpoint_key = checkpoint_key
        self.tls = dict(tls) if tls else None
        self.secret_refs = list(secret_refs)
        self.aws_conn_id = aws_conn_id
        self.remove = remove
        self.stop_grace_seconds = stop_grace_seconds
        self._ended_state: dict[str, Any] | None = None  # State as _follow saw the container end

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "container_id": self.container_id,
                "docker_url": self.docker_url,
                "checkpoint_key": self.checkpoint_key,
                "tls": self.tls,
                "secret_refs": list(self.secret_refs),
                "aws_conn_id": self.aws_conn_id,
                "remove": self.remove,
                "stop_grace_seconds": self.stop_grace_seconds,
                "deferred_at": self.deferred_at,
            },
        )

    async def _engine(self) -> AsyncEngine:
        return await _shared_engine(self.docker_url, self.tls)

    def _event(self, status: str, **more: Any) -> TriggerEvent:
        return TriggerEvent(
            {
                "target": "docker",
                "status": status,
                "container_id": self.container_id,
                "deferred_at": self.deferred_at,
                **more,
            }
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        self._start_following()
        short = self.container_id[:12]
        try:
            engine = await self._engine()
        except (OSError, ValueError, EngineUnreachable) as exc:
            yield self._event("unreachable", reason=f"cannot use the engine at {self.docker_url}: {exc}")
            return
        try:
            await self._mask_secrets()
            saved = await self._load()
            position = LogPosition(**saved) if saved else LogPosition()
            try:
                info = await engine.inspect(self.container_id)
            except EngineUnreachable as exc:
                yield self._event("unreachable", reason=str(exc))
                return
            if info is None:
                yield self._event("gone")
                return
            multiplexed = not bool((info.get("Config") or {}).get("Tty"))
            if saved:
                self.log.info("following container %s again, after the lines already forwarded", short)
            else:
                self.log.info("following container %s on %s", short, self.docker_url)
            reached = await self._follow(engine, multiplexed, position)
            if reached is None:
                yield self._event(
                    "unreachable",
                    reason=f"the Docker engine at {self.docker_url} stopped answering for "
                    f"{ENGINE_RETRY_S:.0f} s while container {short} ran",
                )
                return
            self._lines.close()
            try:
                # the state seen as the container ended serves as its wait (one request fewer each)
                ended = self._ended_state
                status = (
                    {"StatusCode": ended["ExitCode"]}
                    if ended and "ExitCode" in ended
                    else await engine.wait(self.container_id)
                )
            except EngineUnreachable as exc:
                yield self._event("unreachable", reason=str(exc))
                return
            except Exception:  # removed meanwhile (404)
                yield self._event("gone")
                return
            await self._save({"timestamp_ns": reached.timestamp_ns, "count": reached.count}, force=True)
            yield self._event("ended", exit_code=int(status.get("StatusCode", -1)), lines=self._lines.count)
        except asyncio.CancelledError:
            self._save_now()
            raise

    async def _follow(
        self, engine: AsyncEngine, multiplexed: bool, position: LogPosition
    ) -> LogPosition | None:
        """Forward records until the container no longer runs; None when the engine stayed away
        ``ENGINE_RETRY_S``. A log stream that ends while the container still runs (an engine
        restarting with live-restore) is opened again after the position reached, and once more
        after the container stopped (to read what an early-ended stream left)."""
        feed = self._lines.feed
        lost_at: float | None = None
        delay = 0.5
        ended = False
        while True:
            resume = Resume(position)
            try:
                async for batch in engine.logs(self.container_id, position, multiplexed):
                    lost_at, delay = None, 0.5
                    for index, record in enumerate(batch):
                        if not resume.fresh(record):
                            continue
                        feed(record.data)
                        position = position.after(record.timestamp_ns)
                        if index % YIELD_EVERY == YIELD_EVERY - 1:
                            await asyncio.sleep(0)
                    await self._save({"timestamp_ns": position.timestamp_ns, "count": position.count})
                if ended:
                    return position
                info = await engine.inspect(self.container_id)
                if info is None:
                    return position
                # The engine's follow stream can end before the end of the log when the container
                # exits while the reader is behind (Docker 20.10): read once more from the position
                # reached; on a container that no longer runs that stream ends at the log's end.
                ended = not (info.get("State") or {}).get("Running")
                if ended:
                    self._ended_state = info.get("State") or {}
            except EngineUnreachable as exc:
                now = time.monotonic()
                lost_at = lost_at or now
                if now - lost_at > ENGINE_RETRY_S:
                    return None
                self.log.warning("%s; retrying in %.1f s", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def on_kill(self) -> None:
        """The user marked the deferred task failed or cleared it: stop the container, apply ``remove``."""
        await _unless_cancelled(self._kill())

    async def _kill(self) -> None:
        engine = await self._engine()
        self.log.info("stopping container %s (grace %d s)", self.container_id[:12], self.stop_grace_seconds)
        await engine.stop(self.container_id, self.stop_grace_seconds)
        if self.remove == "always":
            await engine.remove(self.container_id)
            self.log.info("removed container %s", self.container_id[:12])


class EcsTaskTrigger(_FollowingTrigger):
    """Follow an ECS task (DescribeTasks) and its CloudWatch Logs stream until it stops.

    :param task_arn: the task.
    :param cluster: its cluster.
    :param log_group: its awslogs group.
    :param log_stream: its awslogs stream.
    :param image: the image it runs (for the worker's messages).
    :param aws_conn_id: the AWS connection (ECS and CloudWatch Logs calls).
    :param region_name: the region.
    :param checkpoint_key: names the saved position (the try's identity and the task).
    :param secret_refs: ``secret_environment`` references whose values to mask.
    :param poll_seconds: the longest pause between two DescribeTasks calls (it starts at 0.25 s).
    :param deferred_at: when the task deferred (epoch seconds; the worker reports the wait).
    """

    def __init__(
        self,
        *,
        task_arn: str,
        cluster: str,
        log_group: str,
        log_stream: str,
        image: str,
        region_name: str,
        checkpoint_key: str,
        aws_conn_id: str | None = "aws_default",
        secret_refs: Sequence[str] = (),
        poll_seconds: float = 2.0,
        deferred_at: float = 0.0,
    ) -> None:
        super().__init__()
        self.deferred_at = deferred_at
        self.task_arn = task_arn
        self.cluster = cluster
        self.log_group = log_group
        self.log_stream = log_stream
        self.image = image
        self.region_name = region_name
        self.checkpoint_key = checkpoint_key
        self.aws_conn_id = aws_conn_id
        self.secret_refs = list(secret_refs)
        self.poll_seconds = poll_seconds

    @classmethod
    def for_handle(
        cls, handle: EcsHandle, region_name: str, checkpoint_key: str, **more: Any
    ) -> EcsTaskTrigger:
        """The trigger following the task ``handle`` names (``more``: the other arguments)."""
        return cls(
            task_arn=handle.task_arn,
            cluster=handle.cluster,
            log_group=handle.log_group,
            log_stream=handle.log_stream,
            image=handle.image,
            region_name=region_name,
            checkpoint_key=checkpoint_key,
            **more,
        )

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "task_arn": self.task_arn,
                "cluster": self.cluster,
                "log_group": self.log_group,
                "log_stream": self.log_stream,
                "image": self.image,
                "region_name": self.region_name,
                "checkpoint_key": self.checkpoint_key,
                "aws_conn_id": self.aws_conn_id,
                "secret_refs": list(self.secret_refs),
                "poll_seconds": self.poll_seconds,
                "deferred_at": self.deferred_at,
            },
        )

    def _handle(self) -> EcsHandle:
        return EcsHandle(self.task_arn, self.cluster, self.log_group, self.log_stream, self.image)

    def _clients(self) -> tuple[Any, Any]:
        return (
            aws_client("ecs", self.region_name, self.aws_conn_id),
            aws_client("logs", self.region_name, self.aws_conn_id),
        )

    def _event(self, status: str, **more: Any) -> TriggerEvent:
        return TriggerEvent(
            {
                "target": "ecs",
                "status": status,
                "task_arn": self.task_arn,
                "cluster": self.cluster,
                "log_group": self.log_group,
                "log_stream": self.log_stream,
                "image": self.image,
                "deferred_at": self.deferred_at,
                **more,
            }
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        self._start_following()
        handle = self._handle()
        try:
            ecs, logs = await _offload(self._clients)
            board = _board(ecs, handle.cluster)
            await self._mask_secrets()
            saved = await self._load()
            token: str | None = (saved or {}).get("token")
            self.log.info(
                "following ECS task %s%s",
                handle.task_id,
                " again, after the lines already forwarded" if saved else "",
            )
            delay = FIRST_POLL_S
            while True:
                task = await board.describe(handle.task_arn)
                if task is None:
                    yield self._event("gone", reason=str(unknown_task(handle)))
                    return
                stopped = task.get("lastStatus") == "STOPPED"
                if stopped or task.get("lastStatus") not in NOT_STARTED:  # no stream before it runs
                    token = await self._forward(logs, handle, token)
                if stopped:
                    token = await self._forward(logs, handle, token)  # what arrived meanwhile
                    self._lines.close()
                    await self._save({"token": token}, force=True)
                    yield self._event("ended", lines=self._lines.count)
                    return
                await asyncio.sleep(delay)
                delay = min(self.poll_seconds, delay * 1.5)
        except asyncio.CancelledError:
            self._save_now()
            raise

    async def _forward(self, logs: Any, handle: EcsHandle, token: str | None) -> str | None:
        feed = self._lines.feed
        while True:
            messages, following, more = await _offload(log_page, logs, handle, token)
            for index, message in enumerate(messages):
                feed(message + "\n")
                if index % YIELD_EVERY == YIELD_EVERY - 1:
                    await asyncio.sleep(0)
            token = following
            await self._save({"token": token})
            if not more:
                return token

    async def on_kill(self) -> None:
        """The user marked the deferred task failed or cleared it: stop the ECS task."""
        await _unless_cancelled(self._kill())

    async def _kill(self) -> None:
        ecs, _ = await _offload(self._clients)
        self.log.info("stopping ECS task %s", self._handle().task_id)
        await _offload(
            ecs.stop_task,
            cluster=self.cluster,
            task=self.task_arn,
            reason="the deferred Airflow task was stopped (airdock on_kill)",
        )
