"""Container log streaming: 1,000,000 lines through EcrDockerOperator vs the stock DockerOperator,
and vs the engine's own stream.

Targets: throughput at least 1.5× the stock operator's and 0.8× the engine's own stream rate
(``log_engine_lines_per_s``: docker-py reading the same container's attach stream — the stream
the operators read — with no Airflow, in the same run); peak memory under 200 MB at 1M lines,
flat as the line count grows (the same figures at 100k show it). airdock runs with its default
``[airdock] log_lines_per_record`` (records of the lines that arrived together).

The container (an image imported offline: scratch + static busybox) prints N lines of exactly
64 bytes (``%09d`` counter, a space, 53 letters, newline) with busybox awk. Each measurement runs
in a fresh child process that configures logging as Airflow's task process does (structlog, JSON,
default callsite parameters; written to /dev/null instead of the supervisor socket, for both
operators alike), builds the operator and calls ``operator.execute(context)`` with a stub context.
The child reports the seconds ``execute`` took (create, start, stream every line to the log,
wait, remove) and its peak RSS (``VmHWM``), so the task runner's own overhead is not compared
and peak memory is per run. Stock and airdock alternate which goes first in each repeat.
Repeats are capped at ``MAX_REPEAT`` (a 1M-line run takes about half a minute per operator).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks import Figure

LINES = 1_000_000
SMALL_LINES = 100_000
LINE_BYTES = 64
PAD = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZa"  # 53 letters: 9 + 1 + 53 + "\n" = 64
IMAGE = "airdock/bench/logs:latest"  # imported for the run, removed after it
TARGET_RSS_MB = 200.0
TARGET_VS_STOCK = 1.5
TARGET_VS_ENGINE = 0.8
MAX_REPEAT = 3
_ROOT = Path(__file__).resolve().parent.parent
_STOCK = "stock"
_AIRDOCK = "airdock"


def expected_last_line(n: int) -> str:
    return f"{n:09d} {PAD}"


def command(n: int) -> list[str]:
    program = f'BEGIN {{ for (i = 1; i <= {n}; i++) printf "%09d %s\\n", i, "{PAD}" }}'
    return ["/bin/busybox", "awk", program]


def docker_client() -> Any:
    import docker

    return docker.from_env(timeout=120)


class _StubTaskInstance:
    """What EcrDockerOperator reads from ``context["ti"]`` (labels, the digest XCom)."""

    dag_id = "bench_logs"
    task_id = "print"
    run_id = "bench__1"
    try_number = 1
    map_index = -1

    def __init__(self) -> None:
        self.xcom: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any) -> None:
        self.xcom[key] = value


def _peak_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(which: str, n: int) -> dict[str, float]:
    """One measurement, in this (fresh) process: wall and CPU seconds of ``execute``, peak RSS."""
    from airflow.sdk.log import configure_logging

    sink = open(os.devnull, "wb")  # noqa: SIM115  # lives as long as the process
    configure_logging(json_output=True, output=sink, sending_to_supervisor=True)
    common: dict[str, Any] = dict(
        task_id="print", image=IMAGE, command=command(n), mount_tmp_dir=False, do_xcom_push=True
    )
    operator: Any
    if which == _STOCK:
        from airflow.providers.docker.operators.docker import DockerOperator

        operator = DockerOperator(auto_remove="success", **common)
    else:
        from airdock.airflow.operators import EcrDockerOperator

        operator = EcrDockerOperator(remove="always", pull_policy="never", **common)
    context = {"ti": _StubTaskInstance()}
    started, cpu_started = time.perf_counter(), time.process_time()
    result = operator.execute(context)
    seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu_started
    if result != expected_last_line(n):
        raise RuntimeError(f"logs benchmark ({which}): unexpected XCom value {str(result)[:80]!r}")
    return {"seconds": seconds, "cpu_seconds": cpu_seconds, "peak_rss_mb": _peak_rss_mb()}


def engine_rate(n: int) -> float:
    """Lines/s of docker-py reading a container's attach stream (create, attach, start, read to the
    end), the same container the operators run, counting lines and nothing else."""
    client = docker_client()
    try:
        started = time.perf_counter()
        container = client.api.create_container(IMAGE, command=command(n))
        try:
            stream = client.api.attach(container["Id"], stdout=True, stderr=True, stream=True, logs=True)
            client.api.start(container["Id"])
            lines = sum(chunk.count(b"\n") for chunk in stream)
            seconds = time.perf_counter() - started
        finally:
            client.api.remove_container(container["Id"], force=True)
    finally:
        client.close()
    if lines != n:
        raise RuntimeError(f"logs benchmark (engine): read {lines:,} of {n:,} lines")
    return n / seconds


def measure(which: str, n: int, workdir: Path) -> dict[str, float]:
    """Run ``child`` in a fresh interpreter with its own Airflow home and airdock state."""
    env = dict(os.environ)
    env.update(
        AIRFLOW_HOME=str(workdir / "airflow"),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRDOCK_STATE_DIR=str(workdir / "state"),
        XDG_CACHE_HOME=str(workdir / "cache"),
        PYTHONPATH=os.pathsep.join(filter(None, [str(_ROOT), env.get("PYTHONPATH", "")])),
    )
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.logs", which, str(n)],
        env=env,
        cwd=_ROOT,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"logs benchmark ({which}, {n:,} lines) failed: {done.stderr[-2000:]}")
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def figures_for(n: int, repeat: int, workdir: Path, suffix: str) -> list[Figure]:
    runs: dict[str, list[dict[str, float]]] = {_STOCK: [], _AIRDOCK: []}
    engine: list[float] = []
    for index in range(max(1, min(repeat, MAX_REPEAT))):
        order = (_STOCK, _AIRDOCK) if index % 2 == 0 else (_AIRDOCK, _STOCK)
        for which in order:
            runs[which].append(measure(which, n, workdir))
        engine.append(engine_rate(n))
    rate = {k: tuple(n / r["seconds"] for r in v) for k, v in runs.items()}
    rss = {k: tuple(r["peak_rss_mb"] for r in v) for k, v in runs.items()}
    workload = f"{n:,} lines × {LINE_BYTES} B"
    return [
        Figure.of(
            f"log_lines_per_s{suffix}",
            rate[_AIRDOCK],
            "lines/s",
            baseline=statistics.median(rate[_STOCK]),
            note=f"target ≥ {TARGET_VS_STOCK:g}× stock; baseline: stock DockerOperator; {workload}",
        ),
        Figure.of(
            f"log_lines_per_s_vs_engine{suffix}",
            rate[_AIRDOCK],
            "lines/s",
            baseline=statistics.median(engine),
            note=f"target ≥ {TARGET_VS_ENGINE:g}× the engine's stream (log_engine_lines_per_s{suffix})",
        ),
        Figure.of(
            f"log_engine_lines_per_s{suffix}",
            tuple(engine),
            "lines/s",
            note=f"docker-py reading the container's attach stream, no Airflow; {workload}",
        ),
        Figure.of(
            f"log_peak_rss_mb{suffix}",
            rss[_AIRDOCK],
            "MB",
            baseline=statistics.median(rss[_STOCK]),
            note=f"target < {TARGET_RSS_MB:g} MB at 1M lines, flat; peak RSS of the process; {workload}",
        ),
    ]


def run(scale: float, repeat: int) -> list[Figure]:
    from airdock.local.offline_images import import_image

    large = max(1000, round(LINES * scale))
    small = max(100, round(SMALL_LINES * scale))
    client = docker_client()
    import_image(client, IMAGE)
    try:
        with tempfile.TemporaryDirectory(prefix="airdock-bench-logs-") as tmp:
            workdir = Path(tmp)
            return figures_for(large, repeat, workdir, "") + figures_for(small, repeat, workdir, "_100k")
    finally:
        client.images.remove(IMAGE, force=True)


if __name__ == "__main__":
    print(json.dumps(child(sys.argv[1], int(sys.argv[2]))))
