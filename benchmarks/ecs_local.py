"""ECS on the local stack: RunTask → STOPPED for a tiny image, beside ``docker run --rm`` of it.

One tiny image (busybox, ``true``) is pushed to a private local stack and registered as a
FARGATE task definition. Each round, in alternating order:

- ecs_local: ``RunTask`` with boto3, then ``DescribeTasks`` every 50 ms until the task is
  ``STOPPED`` — the stack's runner creates, starts, watches and removes the container on the
  engine (the image is already present after the first, untimed, round);
- raw: ``docker run --rm`` of the same image through the CLI — the floor.

Then one task prints 1,000,000 lines (× ``scale``, at least 10,000) with the ``awslogs`` driver:

- ecs_local_log_lines_per_s: lines / (RunTask → STOPPED, every line in CloudWatch Logs), beside
  ``docker run --rm`` of the same ``seq`` with its output read through the CLI (the engine's floor);
- ecs_local_log_rss_growth_mb: the stack server's peak RSS growth over that run (target < 50 MB).

``scale`` does not change the start samples (one tiny task each).
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

from benchmarks import Figure
from benchmarks._support import (
    BenchmarkError,
    docker_client,
    local_stack,
    median,
    owned_images,
    push,
    verdict,
)

REPOSITORY = "bench/ecs-local"
LINES = 1_000_000
FAMILY = "airdock-bench-ecs"
POLL_S = 0.05
TASK_TIMEOUT_S = 120.0
NETWORK = {"awsvpcConfiguration": {"subnets": ["subnet-0bench"], "assignPublicIp": "DISABLED"}}


def _run_task(ecs: Any, definition: str) -> float:
    """Seconds from RunTask to the task's STOPPED; BenchmarkError unless it exited 0."""
    started = time.perf_counter()
    response = ecs.run_task(
        cluster="default", taskDefinition=definition, launchType="FARGATE", networkConfiguration=NETWORK
    )
    if response.get("failures"):
        raise BenchmarkError(f"RunTask failed: {response['failures']}")
    arn = response["tasks"][0]["taskArn"]
    while True:
        task = ecs.describe_tasks(cluster="default", tasks=[arn])["tasks"][0]
        if task["lastStatus"] == "STOPPED":
            break
        if time.perf_counter() - started > TASK_TIMEOUT_S:
            raise BenchmarkError(f"the task {arn} did not stop within {TASK_TIMEOUT_S:.0f} s")
        time.sleep(POLL_S)
    elapsed = time.perf_counter() - started
    exit_code = task["containers"][0].get("exitCode")
    if exit_code != 0:
        raise BenchmarkError(f"the benchmark task ended {task.get('stoppedReason')!r}, exit {exit_code}")
    return elapsed


def _raw(image: str) -> float:
    started = time.perf_counter()
    subprocess.run(["docker", "run", "--rm", image, "true"], check=True, capture_output=True)
    return time.perf_counter() - started


def _rss_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise BenchmarkError(f"no {field} for pid {pid}")


def _many_lines(stack: Any, ecs: Any, image: str, lines: int) -> list[Figure]:
    """One task printing ``lines`` lines: throughput into CloudWatch Logs, the server's RSS growth."""
    pid = int(json.loads((stack.settings.data_dir / "pids.json").read_text())["server"])
    Path(f"/proc/{pid}/clear_refs").write_text("5")  # resets the peak (VmHWM) to the current RSS
    before = _rss_kb(pid, "VmRSS")
    definition = ecs.register_task_definition(
        family=f"{FAMILY}-lines",
        requiresCompatibilities=["FARGATE"],
        networkMode="awsvpc",
        cpu="256",
        memory="512",
        executionRoleArn="arn:aws:iam::123456789012:role/ecsTaskExecutionRole",
        containerDefinitions=[
            {
                "name": "main",
                "image": image,
                "command": ["/bin/busybox", "seq", "1", str(lines)],
                "logConfiguration": {
                    "logDriver": "awslogs",
                    "options": {
                        "awslogs-group": "/bench/ecs-local",
                        "awslogs-region": stack.settings.region,
                        "awslogs-stream-prefix": "bench",
                        "awslogs-create-group": "true",
                    },
                },
            }
        ],
    )["taskDefinition"]["taskDefinitionArn"]
    events_before = _events(stack)
    seconds = _run_task(ecs, definition)
    peak = _rss_kb(pid, "VmHWM")
    if _events(stack) - events_before != lines:
        raise BenchmarkError(f"{_events(stack) - events_before} of {lines} lines reached CloudWatch Logs")
    started = time.perf_counter()
    raw = subprocess.run(
        ["docker", "run", "--rm", image, "/bin/busybox", "seq", "1", str(lines)],
        check=True,
        capture_output=True,
    )
    raw_seconds = time.perf_counter() - started
    if raw.stdout.count(b"\n") != lines:
        raise BenchmarkError("`docker run` did not print every line")
    growth = (peak - before) / 1024
    return [
        Figure.of(
            "ecs_local_log_lines_per_s",
            (lines / seconds,),
            "lines/s",
            baseline=lines / raw_seconds,
            note=f"{lines:,} lines, RunTask → STOPPED, all in CloudWatch Logs; vs `docker run --rm`",
        ),
        Figure.of(
            "ecs_local_log_rss_growth_mb",
            (growth,),
            "MB",
            note=f"stack server's peak RSS growth, {lines:,} lines; target < 50 MB ({verdict(growth < 50)})",
        ),
    ]


def _events(stack: Any) -> int:
    return int(stack.local.status().to_dict()["logs"]["events"])


def run(scale: float, repeat: int) -> list[Figure]:
    client = docker_client()
    with local_stack() as stack, owned_images(client) as mine:
        from airdock.local.offline_images import import_image

        stack.ensure_repository(REPOSITORY)
        ref = f"{stack.registry_host}/{REPOSITORY}:v1"
        image = import_image(client, ref, {"etc/airdock-bench": os.urandom(16)})
        mine.add(image.id)
        push(client, ref, stack.auth_config())
        ecs = stack.client("ecs")
        definition = ecs.register_task_definition(
            family=FAMILY,
            requiresCompatibilities=["FARGATE"],
            networkMode="awsvpc",
            cpu="256",
            memory="512",
            containerDefinitions=[{"name": "main", "image": ref, "command": ["true"], "essential": True}],
        )["taskDefinition"]["taskDefinitionArn"]
        _run_task(ecs, definition)  # warm-up: the first task pulls the image through the gateway
        _raw(ref)
        rounds = max(1, repeat) * 4
        ecs_samples: list[float] = []
        raw_samples: list[float] = []
        for n in range(rounds):
            if n % 2:
                raw_samples.append(_raw(ref))
                ecs_samples.append(_run_task(ecs, definition))
            else:
                ecs_samples.append(_run_task(ecs, definition))
                raw_samples.append(_raw(ref))
        run_calls = int(stack.local.status().counters.get("RunTask", 0))
        if run_calls != rounds + 1:
            raise BenchmarkError(f"the stack counted {run_calls} RunTask calls, {rounds + 1} were made")
        lines = max(10_000, round(LINES * scale))
        log_figures = _many_lines(stack, ecs, ref, lines)

    raw = Figure.of(
        "ecs_local_raw_docker_s",
        tuple(raw_samples),
        "s",
        note="`docker run --rm` of the same image via the CLI (the floor)",
    )
    return [
        *log_figures,
        Figure.of(
            "ecs_local_run_s",
            tuple(ecs_samples),
            "s",
            baseline=median(raw_samples),
            note=(
                f"RunTask → STOPPED on the local stack (FARGATE, tiny image, DescribeTasks every "
                f"{POLL_S * 1000:.0f} ms), {rounds} rounds, vs `docker run --rm` {raw.airdock:.2f} s"
            ),
        ),
        raw,
    ]
