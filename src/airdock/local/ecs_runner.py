"""The local ECS's task runner: each task runs as containers on the local Docker engine.

A thread per task moves it through ECS's lifecycle — PROVISIONING → PENDING (the images are
pulled, from the local ECR through the gateway with a fresh token, as an execution role would) →
RUNNING → DEPROVISIONING → STOPPED — and writes every step to the ECS store, in the shapes
DescribeTasks answers. Containers carry labels tying them to this stack and task
(``airdock.local.stack``, ``airdock.local.ecs.task``), never ``airdock.managed``: airdock's own
hygiene leaves them alone.

Output of a container whose definition uses the ``awslogs`` driver is copied into the CloudWatch
Logs store while it runs: one event per line with the engine's timestamp, in batches at most
``FLUSH_SECONDS`` apart. A line count per container is kept with the task, so a runner that
restarts (the stack's process was killed) skips what it already copied: logs stay complete, never
doubled. On restart every unfinished task is taken up again; a task whose containers still run
keeps running. A graceful shutdown (``airdock local down``) stops the tasks it runs.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from airdock.local.ecs_store import EcsStore, JsonDoc
from airdock.local.logstore import LogGroupMissing, LogStore
from airdock.local.settings import StackSettings
from airdock.local.store import Store

__all__ = ["LABEL_CONTAINER", "LABEL_STACK", "LABEL_TASK", "EcsRunner"]

log = logging.getLogger("airdock.local.ecs")

LABEL_STACK = "airdock.local.stack"
LABEL_TASK = "airdock.local.ecs.task"
LABEL_CONTAINER = "airdock.local.ecs.container"
FLUSH_SECONDS = 0.2
FLUSH_LINES = 500
QUEUE_BLOCKS = 256  # blocks of lines (one per read from the engine) waiting to be copied
POLL_SECONDS = 0.25
SHUTDOWN_GRACE_SECONDS = 2
DRAIN_STALL_SECONDS = 30
_FRACTION = re.compile(r"(\.\d{1,6})\d*")
_STACK_STOPPED = "The local stack was stopped (airdock local down)"
_MISSING_GROUP = (
    "ResourceInitializationError: failed to validate logger args: create stream has been retried 1 times: "
    "failed to create Cloudwatch log stream: ResourceNotFoundException: The specified log group does not "
    "exist. : exit status 1"
)


def _millis(stamp: bytes) -> int:
    """RFC 3339 with nanoseconds (as the engine writes it) → epoch milliseconds."""
    text = _FRACTION.sub(r"\1", stamp.decode(), count=1).replace("Z", "+00:00")
    return int(datetime.fromisoformat(text).timestamp() * 1000)


class _StampClock:
    """``_millis`` for a stream of engine timestamps, computing the date part once per second."""

    def __init__(self) -> None:
        self._second = b""
        self._base = 0

    def millis(self, stamp: bytes) -> int:
        # The engine writes UTC with nanoseconds: 2026-12-01T12:05:27.033049622Z
        if len(stamp) >= 24 and stamp[19:20] == b"." and stamp[-1:] == b"Z" and stamp[20:23].isdigit():
            second = stamp[:19]
            if second != self._second:
                self._base = _millis(second + b"Z")
                self._second = second
            return self._base + int(stamp[20:23])
        return _millis(stamp)


def _line_blocks(chunks: Iterable[bytes]) -> Iterator[list[bytes]]:
    """The whole lines of each piece of a byte stream cut anywhere, a block per piece (a last line
    without newline included)."""
    pending = b""
    for chunk in chunks:
        pending += chunk
        *complete, pending = pending.split(b"\n")
        if complete:
            yield complete
    if pending:
        yield [pending]


class _Stop(Exception):
    """The task ends before its containers run (failed to start, or stopped while starting)."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


class EcsRunner:
    """Starts, follows and stops the local ECS's tasks; see the module docstring."""

    def __init__(
        self,
        settings: StackSettings,
        store: EcsStore,
        tokens: Store,
        logs: LogStore,
        docker_factory: Callable[[], Any] | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.tokens = tokens
        self.logs = logs
        self._docker_factory = docker_factory
        self._client: Any = None
        self._lock = threading.Lock()
        self._threads: dict[str, threading.Thread] = {}
        self._stops: dict[str, threading.Event] = {}
        self._closing = threading.Event()
        self.stack_id = str(Path(settings.data_dir).resolve())

    # -- the launcher interface the API calls ---------------------------------------------
    def launch(self, task_arn: str) -> None:
        with self._lock:
            if self._closing.is_set():
                return
            thread = self._threads.get(task_arn)
            if thread is not None and thread.is_alive():
                return
            self._stops.setdefault(task_arn, threading.Event())
            thread = threading.Thread(
                target=self._run, args=(task_arn,), name=f"ecs-{task_arn[-8:]}", daemon=True
            )
            self._threads[task_arn] = thread
        thread.start()

    def stop(self, task_arn: str) -> None:
        with self._lock:
            event = self._stops.setdefault(task_arn, threading.Event())
        event.set()
        self.launch(task_arn)  # a task with no thread (stopped before it ran) still needs finishing

    def resume(self) -> None:
        """Take up every task not yet STOPPED (after a restart of the stack's process)."""
        for arn in self.store.unfinished_tasks():
            self.launch(arn)

    def shutdown(self, timeout: float = 8.0) -> None:
        """Stop every running task (``airdock local down``), then wait for their threads."""
        with self._lock:
            self._closing.set()
            arns = list(self._threads)
        for arn in arns:
            self.store.update_task(
                arn, _stopping("TerminationNotice", "The local stack was stopped (airdock local down)")
            )
            self._stops.setdefault(arn, threading.Event()).set()
        deadline = time.monotonic() + timeout
        for arn in arns:
            self._threads[arn].join(max(0.0, deadline - time.monotonic()))

    # -- one task -------------------------------------------------------------------------
    def _docker(self) -> Any:
        if self._client is None:
            import docker

            self._client = self._docker_factory() if self._docker_factory else docker.from_env(timeout=300)
        return self._client

    def _run(self, arn: str) -> None:
        stop = self._stops[arn]
        try:
            found = self.store.task(arn)
            if found is None or found[0]["lastStatus"] == "STOPPED":
                return
            runtime = found[1]
            if not runtime.get("containerIds"):
                if stop.is_set():
                    raise _Stop(found[0].get("stopCode", "UserInitiated"), found[0].get("stoppedReason", ""))
                self._start(arn, found[0], runtime)
            self._follow_and_wait(arn, stop)
        except _Stop as ended:
            self._finish(arn, ended.code, ended.reason, {})
        except Exception as exc:  # the engine went away, a bug: the task ends, said why
            log.exception("ecs task %s failed in the runner", arn)
            self._finish(arn, "TaskFailedToStart", f"CannotStartContainerError: {exc}", {})

    def _set(self, arn: str, change: Callable[[JsonDoc, JsonDoc], None]) -> JsonDoc | None:
        return self.store.update_task(arn, change)

    def _start(self, arn: str, doc: JsonDoc, runtime: JsonDoc) -> None:
        now = self.store.clock

        def pending(d: JsonDoc, r: JsonDoc) -> None:
            d["lastStatus"] = "PENDING"
            d["pullStartedAt"] = now()

        self._set(arn, pending)
        try:
            client = self._docker()
            client.ping()
        except Exception as exc:
            raise _Stop(
                "TaskFailedToStart", f"CannotStartContainerError: no Docker engine answers: {exc}"
            ) from None
        for container in runtime["containers"]:
            self._pull(client, container["image"])
        self._set(arn, lambda d, r: d.update(pullStoppedAt=now()))
        task_id = arn.rsplit("/", 1)[-1]
        streams: dict[str, tuple[str, str]] = {}
        for container in runtime["containers"]:
            target = self._log_target(container, task_id)
            if target is not None:
                streams[container["name"]] = target
        ids: dict[str, str] = {}
        try:
            for container in runtime["containers"]:
                ids[container["name"]] = self._create(client, arn, task_id, container, runtime)
        except Exception:
            for made in ids.values():
                with contextlib.suppress(Exception):
                    client.api.remove_container(made, force=True)
            raise

        def recorded(d: JsonDoc, r: JsonDoc) -> None:
            r["containerIds"] = ids
            r["logStreams"] = {name: list(target) for name, target in streams.items()}

        self._set(arn, recorded)
        for container_id in ids.values():
            client.api.start(container_id)

        def running(d: JsonDoc, r: JsonDoc) -> None:
            d["lastStatus"] = "RUNNING"
            d["startedAt"] = now()
            d["connectivityAt"] = d["startedAt"]
            for c in d["containers"]:
                c["lastStatus"] = "RUNNING"
                c["runtimeId"] = ids[c["name"]]

        self._set(arn, running)

    def _pull(self, client: Any, image: str) -> None:
        import docker.errors

        repository, tag = _split(image)
        auth = None
        if repository.startswith(f"{self.settings.registry_host}/"):
            token = self.tokens.issue_token(3600.0)  # as ECS pulls with the task execution role
            auth = {"username": "AWS", "password": token.password}
        try:
            client.api.pull(repository, tag=tag, auth_config=auth)
        except docker.errors.APIError as exc:
            explanation = str(exc.explanation or exc)
            local_only = auth is None
            if local_only and _present(client, image):
                return  # not from the local ECR: a cached image is used, as ECS on EC2 does
            raise _Stop(
                "TaskFailedToStart", f"CannotPullContainerError: Error response from daemon: {explanation}"
            ) from None

    def _log_target(self, container: JsonDoc, task_id: str) -> tuple[str, str] | None:
        config = container.get("logConfiguration") or {}
        if config.get("logDriver") != "awslogs":
            return None
        options = config.get("options") or {}
        group = str(options.get("awslogs-group"))
        prefix = options.get("awslogs-stream-prefix")
        stream = f"{prefix}/{container['name']}/{task_id}" if prefix else task_id
        if str(options.get("awslogs-create-group", "")).lower() == "true":
            self.logs.ensure_group(group)
        try:
            self.logs.ensure_stream(group, stream)
        except LogGroupMissing:
            raise _Stop("TaskFailedToStart", _MISSING_GROUP) from None
        return group, stream

    def _create(self, client: Any, arn: str, task_id: str, container: JsonDoc, runtime: JsonDoc) -> str:
        memory = container.get("memory") or runtime.get("taskMemory")
        kwargs: dict[str, Any] = {}
        if memory:
            kwargs["mem_limit"] = f"{int(memory)}m"
        if container.get("cpu"):
            kwargs["cpu_shares"] = max(2, int(container["cpu"]))
        host_config = client.api.create_host_config(**kwargs)
        name = re.sub(r"[^A-Za-z0-9_.-]", "-", f"ecs-{runtime['family']}-{container['name']}-{task_id[:12]}")
        created = client.api.create_container(
            container["image"],
            command=container.get("command"),
            entrypoint=container.get("entryPoint"),
            environment=container.get("environment") or None,
            working_dir=container.get("workingDirectory"),
            user=container.get("user") or None,
            name=name,
            labels={LABEL_STACK: self.stack_id, LABEL_TASK: arn, LABEL_CONTAINER: container["name"]},
            host_config=host_config,
        )
        return str(created["Id"])

    # -- while it runs ----------------------------------------------------------------------
    def _follow_and_wait(self, arn: str, stop: threading.Event) -> None:
        found = self.store.task(arn)
        assert found is not None
        runtime = found[1]
        client = self._docker()
        ids: dict[str, str] = runtime["containerIds"]
        followers = [
            threading.Thread(
                target=self._copy_logs,
                args=(arn, name, ids[name], tuple(target)),
                name=f"ecs-logs-{name}",
                daemon=True,
            )
            for name, target in (runtime.get("logStreams") or {}).items()
        ]
        for follower in followers:
            follower.start()
        essential = {c["name"] for c in runtime["containers"] if c.get("essential", True)}
        timeouts = {c["name"]: int(c.get("stopTimeout") or 30) for c in runtime["containers"]}
        exits: dict[str, JsonDoc] = {}
        user_stop = False
        while True:
            states = {name: _state(client, cid) for name, cid in ids.items()}
            if all(state is None for state in states.values()):
                break  # every container is gone (removed behind the stack's back)
            if any(
                name in essential and state is not None and not state.get("Running")
                for name, state in states.items()
            ):
                break
            if stop.wait(POLL_SECONDS):
                user_stop = True
                break
        grace = SHUTDOWN_GRACE_SECONDS if self._closing.is_set() else None
        for name, cid in ids.items():
            with contextlib.suppress(Exception):
                client.api.stop(cid, timeout=grace if grace is not None else timeouts[name])
        self._set(arn, lambda d, r: d.update(lastStatus="DEPROVISIONING"))
        self._drain(arn, followers)
        for name, cid in ids.items():
            state = _state(client, cid)
            if state is None:
                exits[name] = {"reason": "The container could not be found: it was removed outside the stack"}
                continue
            exit_info: JsonDoc = {"exitCode": int(state.get("ExitCode", 0))}
            if state.get("OOMKilled"):
                exit_info["reason"] = "OutOfMemoryError: Container killed due to memory usage"
            exits[name] = exit_info
        latest = self.store.task(arn)
        assert latest is not None
        if user_stop or latest[0]["desiredStatus"] == "STOPPED":
            code = latest[0].get("stopCode", "UserInitiated")
            reason = latest[0].get("stoppedReason", "Task stopped by user")
        else:
            code, reason = "EssentialContainerExited", "Essential container in task exited"
        self._finish(arn, code, reason, exits)
        for cid in ids.values():
            with contextlib.suppress(Exception):
                client.api.remove_container(cid, v=True, force=True)

    def _drain(self, arn: str, followers: list[threading.Thread]) -> None:
        """Wait until the log copies are complete, as ECS flushes awslogs before a task is STOPPED.

        A copy that still makes progress is waited for however long it takes; one that copied
        nothing for ``DRAIN_STALL_SECONDS`` (a wedged engine stream) is given up on, and a
        shutdown waits ``SHUTDOWN_GRACE_SECONDS`` at most.
        """
        deadline = time.monotonic() + SHUTDOWN_GRACE_SECONDS if self._closing.is_set() else None
        last, last_change = self._copied(arn), time.monotonic()
        while any(f.is_alive() for f in followers):
            for follower in followers:
                follower.join(0.5)
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                break
            copied = self._copied(arn)
            if copied != last:
                last, last_change = copied, now
            elif now - last_change >= DRAIN_STALL_SECONDS:
                log.warning(
                    "ecs task %s: the log copy made no progress for %ss; stopping it",
                    arn,
                    DRAIN_STALL_SECONDS,
                )
                break

    def _copied(self, arn: str) -> int:
        found = self.store.task(arn)
        return sum(int(v) for v in ((found[1] if found else {}).get("logLines") or {}).values())

    def _copy_logs(self, arn: str, name: str, container_id: str, target: tuple[str, str]) -> None:
        """Copy a container's output into its log stream while it runs, skipping lines copied before."""
        group, stream = target
        found = self.store.task(arn)
        copied = int(((found[1] if found else {}).get("logLines") or {}).get(name, 0))
        client = self._docker()
        batch: list[tuple[int, str]] = []
        last_flush = time.monotonic()
        seen = 0

        def flush() -> None:
            nonlocal batch, last_flush, copied
            if batch:
                self.logs.append(group, stream, batch)
                copied += len(batch)
                total = copied
                self._set(arn, lambda d, r: r.setdefault("logLines", {}).__setitem__(name, total))
                batch = []
            last_flush = time.monotonic()

        # A reader thread feeds a bounded queue of line blocks (back-pressure: memory stays flat
        # however fast the container prints); this loop flushes a batch when it is full or
        # FLUSH_SECONDS old, and also when the container goes quiet, so a line is in the stream
        # within FLUSH_SECONDS.
        blocks: queue.Queue[list[bytes] | None] = queue.Queue(maxsize=QUEUE_BLOCKS)
        clock = _StampClock()

        def read() -> None:
            # Docker 20.10 can end a follow stream before the end of the log when the container
            # exits while the reader is behind: once it has exited, read the rest without
            # following, from the latest whole second delivered (``since`` is inclusive), skipping
            # the lines of that second delivered already.
            second, at_second, follow, since = b"", 0, True, None
            try:
                while True:
                    skip = at_second if since else 0
                    chunks = client.api.logs(
                        container_id, stream=True, follow=follow, timestamps=True, since=since
                    )
                    for block in _line_blocks(chunks):
                        if skip:
                            block, skip = block[skip:], max(0, skip - len(block))
                        for line in block:
                            if line[:19] == second:
                                at_second += 1
                            elif line[:19] > second:
                                second, at_second = line[:19], 1
                        if block:
                            blocks.put(block)
                    state = _state(client, container_id) if follow else None
                    if state is None:
                        break
                    follow = bool(state.get("Running"))
                    since = int(_millis(second + b"Z") // 1000) if second else None
                    if follow:
                        time.sleep(POLL_SECONDS)  # the stream broke while it runs: follow again
            except Exception:
                log.exception("ecs task %s: reading the output of %s stopped", arn, name)
            finally:
                blocks.put(None)

        threading.Thread(target=read, name=f"ecs-read-{name}", daemon=True).start()
        try:
            while True:
                try:
                    block = blocks.get(timeout=FLUSH_SECONDS)
                except queue.Empty:
                    flush()
                    continue
                if block is None:
                    break
                if seen + len(block) <= copied:  # copied before a restart of the stack's process
                    seen += len(block)
                    continue
                for line in block:
                    seen += 1
                    if seen <= copied:
                        continue
                    stamp, _, message = line.partition(b" ")
                    try:
                        millis = clock.millis(stamp)
                    except ValueError:
                        millis, message = int(time.time() * 1000), line
                    batch.append((millis, message.decode("utf-8", errors="replace")))
                    if len(batch) >= FLUSH_LINES:
                        flush()
                if time.monotonic() - last_flush >= FLUSH_SECONDS:
                    flush()
        except Exception:
            log.exception("ecs task %s: copying the logs of %s stopped", arn, name)
        finally:
            flush()

    def _finish(self, arn: str, code: str, reason: str, exits: dict[str, JsonDoc]) -> None:
        now = self.store.clock()

        def stopped(d: JsonDoc, r: JsonDoc) -> None:
            d["lastStatus"] = "STOPPED"
            d["desiredStatus"] = "STOPPED"
            d["stopCode"] = code
            d["stoppedReason"] = reason
            d.setdefault("stoppingAt", now)
            d["stoppedAt"] = now
            d["executionStoppedAt"] = now
            for c in d["containers"]:
                c["lastStatus"] = "STOPPED"
                c.update(exits.get(c["name"], {}))

        self._set(arn, stopped)
        log.info("ecs task %s stopped: %s (%s)", arn, code, reason)


def _stopping(code: str, reason: str) -> Callable[[JsonDoc, JsonDoc], None]:
    def change(doc: JsonDoc, runtime: JsonDoc) -> None:
        if doc["lastStatus"] != "STOPPED" and doc["desiredStatus"] != "STOPPED":
            doc.update(desiredStatus="STOPPED", stopCode=code, stoppedReason=reason)

    return change


def _split(image: str) -> tuple[str, str]:
    """``repo[:tag]`` / ``repo@digest`` → (repository, tag or digest) for the engine's pull."""
    if "@" in image:
        repository, _, digest = image.partition("@")
        return repository, digest
    name, colon, tag = image.rpartition(":")
    if colon and "/" not in tag:
        return name, tag
    return image, "latest"


def _present(client: Any, image: str) -> bool:
    try:
        client.api.inspect_image(image)
    except Exception:
        return False
    return True


def _state(client: Any, container_id: str) -> JsonDoc | None:
    import docker.errors

    try:
        return dict(client.api.inspect_container(container_id)["State"])
    except docker.errors.NotFound:
        return None
