"""A private Docker engine for tests that stop, restart or break it (the session's engine is shared).

Started like scripts/engine.sh starts its own (no bridge, no iptables, an identity key of its own),
with every path under one directory and a short socket path under /run.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any


class PrivateEngine:
    def __init__(self, root: Path) -> None:
        self.root = root
        short = Path("/run") / f"airdock-t-{hashlib.sha256(str(root).encode()).hexdigest()[:8]}"
        self.short = short
        self.socket = short / "docker.sock"
        self.url = f"unix://{self.socket}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60) -> PrivateEngine:
        (self.root / "data").mkdir(parents=True, exist_ok=True)
        self.short.mkdir(parents=True, exist_ok=True)
        config = self.root / "daemon.json"
        config.write_text(json.dumps({"deprecated-key-path": str(self.root / "key.json")}))
        log = (self.root / "dockerd.log").open("ab")
        self.process = subprocess.Popen(
            [
                "dockerd", "--config-file", str(config),
                "--bridge=none", "--iptables=false", "--ip6tables=false",
                "--data-root", str(self.root / "data"), "--exec-root", str(self.short / "exec"),
                "--pidfile", str(self.short / "dockerd.pid"), "-H", self.url,
            ],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        log.close()
        deadline = time.monotonic() + timeout
        while not self.answers():
            assert self.process.poll() is None, self.log()[-3000:]
            assert time.monotonic() < deadline, f"the private dockerd did not answer in {timeout:.0f} s"
            time.sleep(0.2)
        return self

    def answers(self) -> bool:
        import docker

        try:
            client = docker.DockerClient(base_url=self.url, timeout=5)
            try:
                return bool(client.ping())
            finally:
                client.close()
        except Exception:
            return False

    def stop(self, timeout: float = 60) -> None:
        """SIGTERM, as an init system stops the daemon (it stops its containers first)."""
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def client(self) -> Any:
        import docker

        return docker.DockerClient(base_url=self.url, timeout=120)

    def log(self) -> str:
        path = self.root / "dockerd.log"
        return path.read_text(errors="replace") if path.exists() else ""


@contextlib.contextmanager
def private_engine(root: Path) -> Iterator[PrivateEngine]:
    engine = PrivateEngine(root).start()
    try:
        yield engine
    finally:
        engine.stop()
        shutil.rmtree(engine.short, ignore_errors=True)
