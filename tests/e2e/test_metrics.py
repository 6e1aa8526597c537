"""airdock's metrics over Airflow's StatsD support: a DAG run (executor, task SDK) with
``[metrics] statsd_on`` pointed at a real UDP listener on 127.0.0.1. The datagrams name airdock's
metrics with Airflow's prefix and the right StatsD types, carry plausible values and their tags
(InfluxDB-style, ``statsd_influxdb_enabled``), and never a token or a run id."""

from __future__ import annotations

import json
import re
import socket
import threading
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import StackHandle
from tests.e2e.conftest import Deployment, run_dag, write_dag

pytestmark = pytest.mark.e2e

ROLE = "arn:aws:iam::123456789012:role/ecsTaskExecutionRole"

DAG = """
    import os
    from datetime import datetime

    from airflow.sdk import DAG

    from airdock.airflow import ContainerOperator

    IMAGE = os.environ["AIRDOCK_LOCAL_REGISTRY"] + "/e2e/metrics:v1"

    with DAG("airdock_e2e_metrics", schedule=None, start_date=datetime(2026, 1, 1), catchup=False):
        ContainerOperator(task_id="docker", image=IMAGE, pull_policy="always", command=["echo", "d"],
                          auto_gc=True)
        ContainerOperator(task_id="ecs", image=IMAGE, run_on="ecs", command=["echo", "e"])
"""

# name[,tag=value...]:value|type  (statsd_influxdb_enabled puts the tags after the name)
DATAGRAM = re.compile(r"^(?P<name>[\w.]+)(?P<tags>(?:,[\w]+=[^,:]+)*):(?P<value>[-\d.]+)\|(?P<type>c|g|ms)$")


class Listener:
    """A StatsD server's socket: every datagram received, split into lines."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.lines: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                continue
            self.lines.extend(data.decode(errors="replace").splitlines())

    def close(self) -> list[str]:
        self._stop.set()
        self._thread.join(5)
        self.sock.close()
        return self.lines


def test_a_dag_run_sends_airdocks_metrics_to_statsd_without_secrets_or_run_ids(
    stack: StackHandle, docker_client: Any, base_image: str, deployment: Deployment, tmp_path: Path
) -> None:
    stack.publish(docker_client, base_image, "e2e/metrics")
    dags = tmp_path / "dags"
    write_dag(dags, "metrics", DAG)
    listener = Listener()
    try:
        run = run_dag(
            deployment, dags, "airdock_e2e_metrics", stack, tmp_path / "cache",
            AIRFLOW__METRICS__STATSD_ON="True", AIRFLOW__METRICS__STATSD_HOST="127.0.0.1",
            AIRFLOW__METRICS__STATSD_PORT=str(listener.port),
            AIRFLOW__METRICS__STATSD_INFLUXDB_ENABLED="True",
            AIRFLOW__AIRDOCK__ECS_SUBNETS="subnet-0e2e", AIRFLOW__AIRDOCK__ECS_EXECUTION_ROLE_ARN=ROLE,
            # auto_gc: every image is over a 1-byte budget, and kept by the pattern: a GC that removes nothing
            AIRFLOW__AIRDOCK__GC_MAX_IMAGE_BYTES="1", AIRFLOW__AIRDOCK__GC_KEEP="*",
            AIRDOCK_STATE_DIR=str(tmp_path / "state"), XDG_CACHE_HOME=str(tmp_path / "cache"),
        )  # fmt: skip
    finally:
        lines = listener.close()
    assert run.state == "success", run.output[-4000:]

    ours = [match for line in lines if (match := DATAGRAM.match(line)) and ".airdock." in line]
    sent: dict[str, tuple[str, list[float], set[str]]] = {}
    for match in ours:
        kind, values, tags = sent.setdefault(match["name"], (match["type"], [], set()))
        assert match["type"] == kind, (match["name"], match["type"], kind)
        values.append(float(match["value"]))
        tags.update(filter(None, match["tags"].split(",")))
    registry = f"registry={stack.settings.registry_host.replace(':', '_')}"  # no StatsD separator in a tag
    expected = {
        "airflow.airdock.token.fetch": ("c", {registry}),
        "airflow.airdock.token.seconds_left": ("g", {registry}),
        "airflow.airdock.pull.duration": ("ms", {registry}),
        "airflow.airdock.pull.bytes": ("c", {registry}),
        "airflow.airdock.gc.images_removed": ("c", set()),
        "airflow.airdock.gc.bytes_reclaimed": ("c", set()),
        "airflow.airdock.gc.duration": ("ms", set()),
        "airflow.airdock.image_store.bytes": ("g", set()),
        "airflow.airdock.ecs.register_task_definition": ("c", set()),
        "airflow.airdock.ecs.task_start_duration": ("ms", {"cluster=default"}),
        "airflow.airdock.ecs.stop_reason": ("c", {"stop_code=EssentialContainerExited"}),
    }
    got = {name: (kind, tags) for name, (kind, _, tags) in sent.items()}
    assert {name: got.get(name) for name in expected} == expected, sorted(sent)
    values = {name: values for name, (_, values, _) in sent.items()}
    assert values["airflow.airdock.token.fetch"] == [1]  # one GetAuthorizationToken, for the docker task
    assert 11 * 3600 < values["airflow.airdock.token.seconds_left"][0] <= 12 * 3600
    assert 0 < values["airflow.airdock.pull.duration"][0] < 60_000  # milliseconds
    assert values["airflow.airdock.pull.bytes"] == [0]  # its one layer is the base image's: already here
    (removed,) = values["airflow.airdock.gc.images_removed"]  # one GC run (what it may remove varies)
    assert removed >= 0 and values["airflow.airdock.image_store.bytes"][0] > 0
    assert values["airflow.airdock.ecs.register_task_definition"] == [1]
    assert 0 <= values["airflow.airdock.ecs.task_start_duration"][0] < 60_000
    cached = [json.loads(path.read_text()) for path in (tmp_path / "cache").rglob("*.json")]
    tokens = [entry["credentials"]["password"] for entry in cached if "credentials" in entry]
    assert tokens and not any(token in "\n".join(lines) for token in tokens), "no token in any metric"
    run_ids = set(re.findall(r"manual__[\w:.+-]+", run.output))
    assert run_ids and not any(run_id in "\n".join(lines) for run_id in run_ids), "no run id in any metric"
