"""The deferral triggers outside a triggerer, on one asyncio loop as the triggerer runs them, against
the real engine and the local stack's ECS + CloudWatch Logs:

- 50 Docker triggers and 50 ECS triggers at once: every line of every container forwarded in order,
  and the loop never stalls (a probe sleeping 10 ms at a time measures its lag: < 100 ms);
- a trigger cancelled mid-stream (a triggerer stopping) and re-created from its ``serialize()``
  (the next triggerer) continues after the last line forwarded: nothing lost, nothing repeated —
  with and without a TTY, and on ECS;
- a container removed behind the trigger's back gives a ``gone`` event; an engine that cannot be
  reached an ``unreachable`` one.

The triggers read their AWS connection from ``AIRFLOW_CONN_AWS_DEFAULT`` as a triggerer would."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from airdock.airflow.triggers import DockerContainerTrigger, EcsTaskTrigger
from airdock.local import settings as local_settings
from airdock.targets.spec import ContainerSpec, TaskIdentity
from tests.conftest import StackHandle
from tests.integration.test_ecs_target import Runner
from tests.integration.test_ecs_target import ecs_image as ecs_image  # the fixture
from tests.integration.test_local_ecs import wait_for

pytestmark = pytest.mark.integration

LAG_LIMIT_S = 0.1


class Lines(logging.Handler):
    """Collects what a trigger logs."""

    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())

    def numbered(self, prefix: str) -> list[int]:
        return [
            int(m[len(prefix) :])
            for m in self.messages
            if m.startswith(prefix) and m[len(prefix) :].isdigit()
        ]


def _recorded(trigger: Any) -> Lines:
    handler = Lines()
    logger = logging.getLogger(f"airdock-test-trigger-{uuid.uuid4().hex[:8]}")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    trigger._log = logger
    return handler


@pytest.fixture
def trigger_env(stack: StackHandle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """What a triggerer's environment gives the triggers: a state directory, an AWS connection."""
    monkeypatch.setenv("AIRDOCK_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv(
        "AIRFLOW_CONN_AWS_DEFAULT",
        json.dumps(
            {
                "conn_type": "aws",
                "login": local_settings.LOCAL_ACCESS_KEY_ID,
                "password": local_settings.LOCAL_SECRET_ACCESS_KEY,
                "extra": {"region_name": stack.settings.region, "endpoint_url": stack.settings.api_url},
            }
        ),
    )
    import airdock.airflow.triggers as triggers

    triggers._clients.clear()
    yield tmp_path / "state"
    triggers._clients.clear()


def _engine_url(docker_client: Any) -> str:
    from airdock.engine.client import engine_address

    return engine_address(docker_client.api)


def _docker_trigger(docker_client: Any, container_id: str) -> DockerContainerTrigger:
    return DockerContainerTrigger(
        container_id=container_id,
        docker_url=_engine_url(docker_client),
        checkpoint_key=f"test-{container_id[:12]}",
    )


async def _first_event(trigger: Any) -> Any:
    async for event in trigger.run():
        return event
    return None


async def _with_lag_probe(work: Any) -> tuple[Any, float]:
    """Run ``work`` while a probe measures how late the loop wakes it (the worst lag seen)."""
    worst = 0.0
    done = False

    async def probe() -> None:
        nonlocal worst
        while not done:
            before = time.perf_counter()
            await asyncio.sleep(0.01)
            worst = max(worst, time.perf_counter() - before - 0.01)

    probing = asyncio.ensure_future(probe())
    try:
        result = await work
    finally:
        done = True
        await probing
    return result, worst


def _count_script(lines: int, pause: str) -> str:
    return f"i=1; while [ $i -le {lines} ]; do echo line-$i; i=$((i+1)); sleep {pause}; done"


def test_fifty_docker_and_fifty_ecs_triggers_share_a_loop_without_stalling_it(
    stack: StackHandle, docker_client: Any, base_image: str, ecs_image: str, trigger_env: Path, tmp_path: Path
) -> None:
    count, lines = 50, 30
    # The output starts after a pause: the triggers are measured once every container and every ECS
    # task runs (starting 100 containers on 2 cores is the engine's load, not the loop's).
    script = "sleep 8; " + _count_script(lines, "0.1")
    with ThreadPoolExecutor(8) as pool:
        containers = list(
            pool.map(
                lambda n: docker_client.containers.run(
                    base_image, ["sh", "-c", script], detach=True, labels={"airdock.test": "triggers"}
                ),
                range(count),
            )
        )
    runner = Runner(stack, tmp_path / "locks")
    spec = ContainerSpec(image=ecs_image, command=("sh", "-c", script))
    run_id = uuid.uuid4().hex[:8]
    with ThreadPoolExecutor(8) as pool:
        handles = list(
            pool.map(lambda n: runner.start(spec, TaskIdentity("lag", f"t{n}", run_id)), range(count))
        )
    try:
        ecs = runner.ecs

        def all_running() -> bool:
            arns = [h.task_arn for h in handles]
            tasks = [
                t for i in range(0, count, 100) for t in ecs.describe_tasks(tasks=arns[i : i + 100])["tasks"]
            ]
            return all(t["lastStatus"] in ("RUNNING", "STOPPED") for t in tasks)

        wait_for(all_running, 120, "every ECS task running")
        docker_triggers = [_docker_trigger(docker_client, c.id) for c in containers]
        ecs_triggers = [
            EcsTaskTrigger(
                task_arn=h.task_arn,
                cluster=h.cluster,
                log_group=h.log_group,
                log_stream=h.log_stream,
                image=h.image,
                region_name=stack.settings.region,
                checkpoint_key=f"lag-{h.task_id}",
            )
            for h in handles
        ]
        recorders = [_recorded(t) for t in (*docker_triggers, *ecs_triggers)]
        # A triggerer process pays once for imports and boto3's service models (parsed while holding
        # the GIL): the first trigger of each kind runs alone, the lag is measured for the other 98.
        warm = [docker_triggers.pop(0), ecs_triggers.pop(0)]

        async def warm_up() -> list[Any]:
            return list(await asyncio.gather(*(_first_event(t) for t in warm)))

        cold_events, cold_lag = asyncio.run(_with_lag_probe(warm_up()))
        assert [e.payload["status"] for e in cold_events] == ["ended", "ended"]

        async def everything() -> list[Any]:
            return list(await asyncio.gather(*(_first_event(t) for t in (*docker_triggers, *ecs_triggers))))

        # The local ECS runs its 50 tasks as containers on these same 2 cores: this process gets a
        # higher CPU priority, so that the probe measures what the triggers do to the loop rather
        # than how long the kernel leaves it waiting behind the emulator.
        priority = os.getpriority(os.PRIO_PROCESS, 0)
        os.setpriority(os.PRIO_PROCESS, 0, -10)
        try:
            events, lag = asyncio.run(_with_lag_probe(everything()))
        finally:
            os.setpriority(os.PRIO_PROCESS, 0, priority)
        print(f"\nfirst 2 triggers (cold process): worst lag {cold_lag * 1000:.1f} ms; "
              f"the next {len(events)}: worst loop lag {lag * 1000:.1f} ms")  # fmt: skip
        assert lag < LAG_LIMIT_S, f"the loop stalled {lag * 1000:.0f} ms"
        assert [e.payload["status"] for e in events] == ["ended"] * (2 * count - 2)
        for recorder in recorders:
            assert recorder.numbered("line-") == list(range(1, lines + 1))
        assert all(e.payload["exit_code"] == 0 for e in events[: count - 1])
    finally:
        for container in containers:
            container.remove(force=True)


@pytest.mark.parametrize("tty", [False, True], ids=["multiplexed", "tty"])
def test_a_docker_trigger_re_created_mid_stream_continues_after_the_last_line(
    docker_client: Any, base_image: str, trigger_env: Path, tty: bool
) -> None:
    lines = 150
    container = docker_client.containers.run(
        base_image, ["sh", "-c", _count_script(lines, "0.02")], detach=True, tty=tty
    )
    try:
        first = _docker_trigger(docker_client, container.id)
        seen_first = _recorded(first)

        async def cut_short() -> None:
            task = asyncio.ensure_future(_first_event(first))
            while len(seen_first.numbered("line-")) < 40:
                await asyncio.sleep(0.01)
            task.cancel()  # the triggerer stops: the trigger's task is cancelled
            with pytest.raises(asyncio.CancelledError):
                await task

        asyncio.run(cut_short())
        classpath, kwargs = first.serialize()
        assert classpath == "airdock.airflow.triggers.DockerContainerTrigger"
        second = DockerContainerTrigger(**json.loads(json.dumps(kwargs)))  # as stored in the DB
        seen_second = _recorded(second)
        event = asyncio.run(_first_event(second))
        assert event.payload["status"] == "ended" and event.payload["exit_code"] == 0
        combined = seen_first.numbered("line-") + seen_second.numbered("line-")
        assert combined == list(range(1, lines + 1)), (len(seen_first.numbered("line-")), combined[:50])
        assert seen_second.numbered("line-"), "the second trigger forwarded the rest"
    finally:
        container.remove(force=True)


def test_an_ecs_trigger_re_created_mid_stream_continues_after_the_last_line(
    stack: StackHandle, ecs_image: str, trigger_env: Path, tmp_path: Path
) -> None:
    lines = 80
    runner = Runner(stack, tmp_path / "locks")
    handle = runner.start(
        ContainerSpec(image=ecs_image, command=("sh", "-c", _count_script(lines, "0.05"))),
        TaskIdentity("restart", "t", uuid.uuid4().hex[:8]),
    )

    def make() -> EcsTaskTrigger:
        return EcsTaskTrigger(
            task_arn=handle.task_arn,
            cluster=handle.cluster,
            log_group=handle.log_group,
            log_stream=handle.log_stream,
            image=handle.image,
            region_name=stack.settings.region,
            checkpoint_key=f"restart-{handle.task_id}",
            poll_seconds=0.5,
        )

    first = make()
    seen_first = _recorded(first)

    async def cut_short() -> None:
        task = asyncio.ensure_future(_first_event(first))
        while len(seen_first.numbered("line-")) < 20:
            await asyncio.sleep(0.02)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(cut_short())
    second = EcsTaskTrigger(**json.loads(json.dumps(first.serialize()[1])))
    seen_second = _recorded(second)
    event = asyncio.run(_first_event(second))
    assert event.payload["status"] == "ended"
    combined = seen_first.numbered("line-") + seen_second.numbered("line-")
    assert combined == list(range(1, lines + 1)), combined
    assert seen_second.numbered("line-")


def test_a_removed_container_is_gone_and_an_unreachable_engine_says_so(
    docker_client: Any, base_image: str, trigger_env: Path
) -> None:
    container = docker_client.containers.create(base_image, ["true"])
    container.remove()
    event = asyncio.run(_first_event(_docker_trigger(docker_client, container.id)))
    assert event.payload["status"] == "gone"
    nowhere = DockerContainerTrigger(
        container_id="0" * 64, docker_url="unix:///nonexistent/docker.sock", checkpoint_key="nowhere"
    )
    event = asyncio.run(_first_event(nowhere))
    assert event.payload["status"] == "unreachable"
    assert "unix:///nonexistent/docker.sock" in event.payload["reason"]


def test_the_checkpoint_file_is_private(docker_client: Any, base_image: str, trigger_env: Path) -> None:
    container = docker_client.containers.run(base_image, ["sh", "-c", "echo one; echo two"], detach=True)
    try:
        wait_for(lambda: docker_client.api.inspect_container(container.id)["State"]["Status"] == "exited", 30)
        trigger = _docker_trigger(docker_client, container.id)
        _recorded(trigger)
        asyncio.run(_first_event(trigger))
        files = list((trigger_env / "log-positions").glob("*.json"))
        assert len(files) == 1 and files[0].stat().st_mode & 0o777 == 0o600
        assert set(json.loads(files[0].read_text())) == {"timestamp_ns", "count"}
    finally:
        container.remove(force=True)
