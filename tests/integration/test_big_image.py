"""A ~200 MB image through the gateway keeps its digest while the gateway's memory stays flat."""

from __future__ import annotations

import threading
import time
from typing import Any

import psutil
import pytest

from airdock.local.offline_images import import_image
from tests.conftest import StackHandle
from tests.integration.test_docker_flow import push, remove_local

pytestmark = pytest.mark.integration

LAYER_BYTES = 200 * 1024 * 1024
RSS_LIMIT_MB = 150


class PeakRss:
    """Samples a process's resident memory in a thread; ``peak_mb`` is the maximum seen."""

    def __init__(self, pid: int) -> None:
        self.process = psutil.Process(pid)
        self.peak_mb = 0.0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak_mb = max(self.peak_mb, self.process.memory_info().rss / 2**20)
            self.samples += 1
            time.sleep(0.05)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


def test_200mb_image_round_trip_keeps_digest_with_flat_gateway_memory(
    stack: StackHandle, docker_client: Any
) -> None:
    stack.ensure_repository("big/blob")
    ref = f"{stack.settings.registry_host}/big/blob:v1"
    import_image(docker_client, ref, {"etc/marker": b"big\n"}, pad_bytes=LAYER_BYTES)
    auth = stack.auth_config()
    gateway_pid = stack.status()["gateway"]["pid"]

    with PeakRss(gateway_pid) as memory:
        started = time.monotonic()
        digest = push(docker_client, ref, auth)
        pushed_s = time.monotonic() - started
        remove_local(docker_client, ref)
        started = time.monotonic()
        pulled = docker_client.images.pull(ref, auth_config=auth)
        pulled_s = time.monotonic() - started

    details = stack.ecr().describe_images(repositoryName="big/blob")["imageDetails"]
    assert details[0]["imageDigest"] == digest
    assert details[0]["imageSizeInBytes"] >= LAYER_BYTES
    assert f"{stack.settings.registry_host}/big/blob@{digest}" in pulled.attrs["RepoDigests"]
    print(
        f"\n200 MB image: push {pushed_s:.1f} s, pull {pulled_s:.1f} s, "
        f"gateway peak RSS {memory.peak_mb:.1f} MB over {memory.samples} samples"
    )
    assert memory.samples > 10
    assert memory.peak_mb < RSS_LIMIT_MB
    remove_local(docker_client, ref)
