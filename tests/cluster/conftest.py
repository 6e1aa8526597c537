"""The local cluster (scripts/cluster.sh), started once per session in a folder of its own.

PostgreSQL, Redis, the CeleryExecutor with two worker "hosts" (each its own dockerd, HOME, token
cache, hostname and queue), api-server, scheduler, dag-processor, triggerer and the local stack —
what `make cluster` starts, here under ``.airdock/test-cluster`` (PostgreSQL runs as its own user,
which cannot enter pytest's private temporary folders). Tests drive it as a user would: DAG files
in its DAGs folder, runs through the REST API, task logs from the shared log folder.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "cluster.sh"
WORKERS = ("worker-1", "worker-2")


@dataclass
class ClusterHandle:
    root: Path
    settings: dict[str, Any]

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.settings['api_port']}"

    @property
    def registry_host(self) -> str:
        return f"127.0.0.1:{self.settings['gateway_port']}"

    @property
    def dags(self) -> Path:
        return self.root / "dags"

    def script(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "AIRDOCK_CLUSTER_DIR": str(self.root)}
        return subprocess.run(
            [str(SCRIPT), *args], env=env, capture_output=True, text=True, check=False, timeout=timeout
        )

    def headers(self) -> dict[str, str]:
        login = {"username": "admin", "password": self.settings["password"]}
        response = httpx.post(f"{self.api_url}/auth/token", json=login, timeout=30)
        response.raise_for_status()
        return {"Authorization": f"Bearer {response.json()['access_token']}"}

    def api(self, method: str, path: str, **kwargs: Any) -> Any:
        url = f"{self.api_url}/api/v2{path}"
        response = httpx.request(method, url, headers=self.headers(), timeout=60, **kwargs)
        assert response.status_code < 300, f"{method} {path}: {response.status_code} {response.text[:500]}"
        return response.json() if response.content else None

    def write_dag(self, dag_id: str, body: str, timeout: float = 120) -> None:
        """A DAG file in the cluster's folder; returns once the dag-processor has parsed it."""
        (self.dags / f"{dag_id}.py").write_text(textwrap.dedent(body))
        self.wait_for_dag(dag_id, timeout)

    def wait_for_dag(self, dag_id: str, timeout: float = 120) -> None:
        headers = self.headers()
        deadline = time.monotonic() + timeout
        url = f"{self.api_url}/api/v2/dags/{dag_id}"
        while httpx.get(url, headers=headers, timeout=30).status_code != 200:
            assert time.monotonic() < deadline, f"the dag-processor did not parse {dag_id} in {timeout:.0f} s"
            time.sleep(1)

    def trigger(self, dag_id: str, conf: dict[str, Any] | None = None) -> str:
        body = {"logical_date": None, "conf": conf or {}}
        return str(self.api("POST", f"/dags/{dag_id}/dagRuns", json=body)["dag_run_id"])

    def wait(self, dag_id: str, run_id: str, timeout: float = 300) -> str:
        deadline = time.monotonic() + timeout
        while True:
            state = str(self.api("GET", f"/dags/{dag_id}/dagRuns/{run_id}")["state"])
            if state in ("success", "failed"):
                return state
            assert time.monotonic() < deadline, f"{dag_id} {run_id} still {state} after {timeout:.0f} s"
            time.sleep(1)

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        found = self.api("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances", params={"limit": 100})
        return list(found["task_instances"])

    def task_logs(self, dag_id: str, run_id: str) -> str:
        """Every task log file of the run (the shared log folder), as text: message and exceptions."""
        folder = self.root / "logs" / "airflow" / f"dag_id={dag_id}" / f"run_id={run_id}"
        lines: list[str] = []
        for path in sorted(folder.rglob("*.log")):
            for raw in path.read_text(errors="replace").splitlines():
                try:
                    record = json.loads(raw)
                except ValueError:
                    lines.append(raw)
                    continue
                lines.append(f"{path.parent.name} {record.get('event')}")
                errors = record.get("error_detail") or []
                lines.extend(f"{error.get('exc_type')}: {error.get('exc_value')}" for error in errors)
        return "\n".join(lines)

    def token_calls(self) -> int:
        status = httpx.get(f"http://127.0.0.1:{self.settings['ecr_api_port']}/_airdock/status", timeout=10)
        return int(status.json()["counters"].get("GetAuthorizationToken", 0))

    def worker(self, name: str) -> Path:
        return self.root / "workers" / name

    def forget_tokens(self) -> None:
        """Empty every worker's host token cache: the next task on each host asks ECR once."""
        for name in WORKERS:
            shutil.rmtree(self.worker(name) / "cache", ignore_errors=True)
            (self.worker(name) / "cache").mkdir()


@pytest.fixture(scope="session")
def cluster() -> Iterator[ClusterHandle]:
    root = ROOT / ".airdock" / "test-cluster"
    handle = ClusterHandle(root, {})
    if root.exists():
        handle.script("down", timeout=300)
        shutil.rmtree(root)
    started = time.monotonic()
    up = handle.script("up", timeout=900)
    try:
        assert up.returncode == 0, (up.stdout + up.stderr)[-4000:]
        handle.settings = json.loads((root / "cluster.json").read_text())
        print(f"\ncluster: up in {time.monotonic() - started:.0f} s")
        yield handle
    finally:
        down = handle.script("down", timeout=300)
        assert down.returncode == 0, (down.stdout + down.stderr)[-3000:]
        shutil.rmtree(root, ignore_errors=True)
