"""The local cluster (scripts/cluster.sh), started once per session in a folder of its own.

PostgreSQL, Redis, the CeleryExecutor with two worker "hosts" (each its own dockerd, HOME, token
cache, hostname and queue), api-server, scheduler, dag-processor, triggerer and the local stack —
what `make cluster` starts, here under ``.airdock/test-cluster`` (PostgreSQL runs as its own user,
which cannot enter pytest's private temporary folders). Tests drive it as a user would: DAG files
in its DAGs folder, runs through the REST API (``airdock.local.cluster.Cluster``), task logs from
the shared log folder. Its tests run last (tests/conftest.py), and it stops when the session ends.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from airdock.local.cluster import WORKERS, Cluster

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "cluster.sh"
__all__ = ["WORKERS", "ClusterHandle", "wait_until"]


def wait_until(condition: Callable[[], Any], timeout: float, what: str) -> Any:
    """``condition()``'s first truthy value, polled until ``timeout`` seconds (then an assertion
    naming ``what``)."""
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        assert time.monotonic() < deadline, f"{what}: not within {timeout:.0f} s"
        time.sleep(0.3)
    return value


def cluster_script(root: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "AIRDOCK_CLUSTER_DIR": str(root)}
    return subprocess.run(
        [str(SCRIPT), *args], env=env, capture_output=True, text=True, check=False, timeout=timeout, cwd=ROOT
    )


class ClusterHandle(Cluster):
    """The cluster's client, plus what a fault test does to it."""

    def engine_url(self, worker: str) -> str:
        return f"unix://{self.engine_socket(worker)}"

    def engine(self, worker: str) -> Any:
        import docker

        return docker.DockerClient(base_url=self.engine_url(worker), timeout=60)

    def kill(self, component: str, sig: signal.Signals = signal.SIGKILL, *, tree: bool = True) -> None:
        """Signal the component and (``tree``) every process under it at once (a worker: its pool,
        the task supervisors and the task processes, which have process groups of their own), then
        wait until the component is gone. ``tree=False``: its leader only, as an init system stops a
        daemon that stops its own children."""
        import psutil

        pid = self.pid(component)
        assert pid is not None, f"{component} does not run"
        if not tree:
            os.kill(pid, sig)
        else:
            members = [pid, *(child.pid for child in psutil.Process(pid).children(recursive=True))]
            for member in members:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(member, sig)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, sig)
        deadline = time.monotonic() + 60
        while self.pid(component) == pid:
            assert time.monotonic() < deadline, f"{component} (pid {pid}) did not end"
            time.sleep(0.2)

    def up_again(self) -> str:
        """`scripts/cluster.sh up` again: starts what is not running (after a fault), nothing else."""
        done = cluster_script(self.root, "up")
        assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
        return done.stdout

    def stack_server_pid(self) -> int:
        """The local stack's server process: the registry gateway and the ECR/ECS API."""
        pids = json.loads((self.root / "local" / "pids.json").read_text())
        return int(pids["server"])

    def set_worker_options(self, worker: str, section: str, options: dict[str, str]) -> dict[str, str]:
        """Set ``options`` in the worker host's own airflow.cfg (as on a real host; the worker
        reads them when it starts); the values they had, to set back."""
        cfg = self.worker_dir(worker) / "airflow" / "airflow.cfg"
        lines = cfg.read_text().splitlines(keepends=True)
        before: dict[str, str] = {}
        current = None
        for n, line in enumerate(lines):
            if line.startswith("["):
                current = line.strip()[1:-1]
                continue
            key, sep, value = line.partition("=")
            if current == section and sep and key.strip() in options:
                before[key.strip()] = value.strip()
                lines[n] = f"{key.strip()} = {options[key.strip()]}\n"
        missing = set(options) - set(before)
        assert not missing, f"no {sorted(missing)} in [{section}] of {cfg}"
        cfg.write_text("".join(lines))
        return before

    def restart_worker(self, worker: str) -> None:
        """A warm shutdown of the worker (SIGTERM: it finishes what runs), then `up` starts it again."""
        self.kill(worker, signal.SIGTERM, tree=False)
        self.up_again()

    def forget_tokens(self) -> None:
        """Empty every worker's host token cache: the next task on each host asks ECR once."""
        for name in WORKERS:
            cache = self.worker_dir(name) / "cache"
            shutil.rmtree(cache, ignore_errors=True)
            cache.mkdir()


SAID: list[str] = []  # each test's one line (what it did, what happened, what it checked), in order


@pytest.fixture(autouse=True)
def _keep_what_each_test_says(
    request: pytest.FixtureRequest, capsys: pytest.CaptureFixture[str]
) -> Iterator[None]:
    """What a cluster test prints is shown at the end of the session, passed or not."""
    yield
    SAID.extend(
        f"{request.node.name}: {line}" for line in capsys.readouterr().out.splitlines() if line.strip()
    )


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if SAID:
        terminalreporter.section("the local cluster: what each test did and saw")
        for line in SAID:
            terminalreporter.write_line(line)


@pytest.fixture(scope="session")
def cluster() -> Iterator[ClusterHandle]:
    """A fresh cluster; with AIRDOCK_TEST_CLUSTER_REUSE=1 (while developing tests) the one an earlier
    session left is reused (started if need be) and kept running."""
    root = ROOT / ".airdock" / "test-cluster"
    reuse = os.environ.get("AIRDOCK_TEST_CLUSTER_REUSE") == "1"
    if root.exists() and not reuse:
        cluster_script(root, "down", timeout=300)
        shutil.rmtree(root)
    started = time.monotonic()
    up = cluster_script(root, "up", timeout=900)
    try:
        assert up.returncode == 0, (up.stdout + up.stderr)[-4000:]
        print(f"\ncluster: up in {time.monotonic() - started:.0f} s")
        yield ClusterHandle(root)
    finally:
        if not reuse:
            down = cluster_script(root, "down", timeout=300)
            assert down.returncode == 0, (down.stdout + down.stderr)[-3000:]
            shutil.rmtree(root, ignore_errors=True)
