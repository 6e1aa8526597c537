"""Every line of a container arrives, once, in order, even when the engine ends a follow early.

Docker 20.10 (this machine's engine) can end a ``logs?follow=1`` stream before the end of the log
when the container exits: a CI run of the local ECS's 200,000-line test got 19,566 of them, and a
reader here that opens the stream as the container starts got ~5,000 of 20,000–200,000 lines in
one run out of four to twelve. That is too rare to provoke on demand, so these tests stand in for
the engine's early end only: the real engine's stream is cut after its first records (the one
thing mocked; everything else — the engine, the containers, the trigger's loop — is real). Without
the resume after an early end, each test loses every line after the cut.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from airdock.engine.follow import follow_output
from airdock.targets import docker_async
from tests.integration.test_triggers import _docker_trigger, _first_event, _recorded
from tests.integration.test_triggers import trigger_env as trigger_env  # the fixture

pytestmark = pytest.mark.integration

LINES = 20_000
CUT_AFTER = 500  # records (or chunks) the first follow stream delivers before the "engine" ends it


def _ran(docker_client: Any, image: str, tty: bool = False) -> Any:
    """A container that printed LINES numbered lines and exited."""
    container = docker_client.containers.run(
        image, ["/bin/busybox", "seq", "1", str(LINES)], detach=True, tty=tty
    )
    container.wait(timeout=60)
    return container


class _EndsFirstFollowEarly:
    """A docker-py APIClient whose first ``logs(follow=True)`` stream ends after CUT_AFTER chunks."""

    def __init__(self, api: Any) -> None:
        self._api = api
        self.follows = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._api, name)

    def logs(self, *args: Any, **kwargs: Any) -> Any:
        stream = self._api.logs(*args, **kwargs)
        if not kwargs.get("follow"):
            return stream
        self.follows += 1
        return self._cut(stream) if self.follows == 1 else stream

    @staticmethod
    def _cut(stream: Any) -> Iterator[bytes]:
        for index, chunk in enumerate(stream):
            if index >= CUT_AFTER:
                stream.close()
                return
            yield chunk


@pytest.mark.parametrize("tty", [False, True], ids=["multiplexed", "tty"])
def test_follow_output_reads_on_after_an_early_end_of_the_engines_stream(
    docker_client: Any, base_image: str, tty: bool
) -> None:
    container = _ran(docker_client, base_image, tty)
    try:
        api = _EndsFirstFollowEarly(docker_client.api)
        text = b"".join(follow_output(api, container.id)).decode().replace("\r", "")
        assert api.follows == 1, "the stream was cut once, the rest read without follow"
        assert [int(n) for n in text.split()] == list(range(1, LINES + 1))
    finally:
        container.remove(force=True)


def test_the_docker_trigger_reads_on_after_an_early_end_of_the_engines_stream(
    docker_client: Any, base_image: str, trigger_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    container = _ran(docker_client, base_image)
    real_logs = docker_async.AsyncEngine.logs
    streams = 0

    async def ends_first_stream_early(self: Any, *args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        nonlocal streams
        streams += 1
        taken = 0
        async for batch in real_logs(self, *args, **kwargs):
            if streams == 1 and taken + len(batch) > CUT_AFTER:
                yield batch[: CUT_AFTER - taken]
                return
            taken += len(batch)
            yield batch

    monkeypatch.setattr(docker_async.AsyncEngine, "logs", ends_first_stream_early)
    try:
        trigger = _docker_trigger(docker_client, container.id)
        seen = _recorded(trigger)
        event = asyncio.run(_first_event(trigger))
        assert event.payload["status"] == "ended" and event.payload["exit_code"] == 0
        assert streams == 2
        assert [int(m) for m in seen.messages if m.isdigit()] == list(range(1, LINES + 1))
    finally:
        container.remove(force=True)
