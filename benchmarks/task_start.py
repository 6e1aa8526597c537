"""Task start: operator execute → container exit, for a tiny image already on the worker.

Three ways to run ``true`` in the same cached image (pushed to a private local stack, listed in
``[airdock] ecr_registries``, present locally), in rounds that rotate their order:

- airdock: ``EcrDockerOperator(pull_policy="if_not_present")`` — lease (and use) in the
  usage record, inspect, run, remove;
- the stock ``DockerOperator`` with ``auto_remove="success"`` (so both clean up), for comparison;
- ``docker run --rm`` through the CLI — the floor and the target's baseline (≤ 1.05×).

Each operator is constructed fresh per sample (as each task run is) and only ``execute`` is timed;
both run in one child process with a throw-away Airflow home and an AWS connection to the stack.
What airdock keeps per host (the usage store, the engine's API version) is on disk and warm after
the untimed first round, as on a worker that has run a task before.
``scale`` does not change the workload (one tiny container per sample).
"""

from __future__ import annotations

import os
import subprocess
import time
from typing import Any

from benchmarks import Figure
from benchmarks._support import (
    airflow_env,
    call_execute,
    docker_client,
    local_stack,
    median,
    ms,
    owned_images,
    push,
    run_child,
    scratch_dir,
    stub_context,
    verdict,
)

TARGET_RATIO = 1.05  # of raw `docker run --rm`
REPOSITORY = "bench/task-start"
WAYS = ("airdock", "stock", "raw")


def measure(payload: dict[str, Any]) -> dict[str, list[float]]:
    """Child side: ``rounds`` timed runs of each way (after ``warmup`` untimed ones), seconds."""
    from airflow.providers.docker.operators.docker import DockerOperator

    from airdock.airflow import EcrDockerOperator

    image = str(payload["image"])
    command = ["true"]

    def airdock(n: int) -> float:
        operator = EcrDockerOperator(
            task_id=f"airdock_{n}", image=image, command=command, pull_policy="if_not_present"
        )
        context = stub_context(task_id=f"airdock_{n}")
        started = time.perf_counter()
        call_execute(operator, context)
        return time.perf_counter() - started

    def stock(n: int) -> float:
        operator = DockerOperator(task_id=f"stock_{n}", image=image, command=command, auto_remove="success")
        context = stub_context(task_id=f"stock_{n}")
        started = time.perf_counter()
        call_execute(operator, context)
        return time.perf_counter() - started

    def raw(n: int) -> float:
        started = time.perf_counter()
        subprocess.run(["docker", "run", "--rm", image, *command], check=True, capture_output=True)
        return time.perf_counter() - started

    ways = {"airdock": airdock, "stock": stock, "raw": raw}
    samples: dict[str, list[float]] = {name: [] for name in WAYS}
    warmup, rounds = int(payload["warmup"]), int(payload["rounds"])
    for n in range(warmup + rounds):
        order = WAYS[n % 3 :] + WAYS[: n % 3]  # rotate: no way always runs first or last
        for name in order:
            seconds = ways[name](n)
            if n >= warmup:
                samples[name].append(seconds)
    return samples


def run(scale: float, repeat: int) -> list[Figure]:
    del scale  # one tiny container per sample at every scale
    client = docker_client()
    with local_stack() as stack, owned_images(client) as mine, scratch_dir("airdock-bench-task-") as home:
        from airdock.local.offline_images import import_image

        stack.ensure_repository(REPOSITORY)
        ref = f"{stack.registry_host}/{REPOSITORY}:v1"
        image = import_image(client, ref, {"etc/airdock-bench": os.urandom(16)})
        mine.add(image.id)
        push(client, ref, stack.auth_config())
        rounds = max(1, repeat) * 8  # fast and noisy (±20 % per sample here): eight rounds per repeat
        samples = run_child(
            "benchmarks.task_start:measure",
            {"image": ref, "rounds": rounds, "warmup": 1},
            airflow_env(stack, home),
        )

    stock = Figure.of(
        "task_start_stock_ms", ms(samples["stock"]), "ms", note="DockerOperator(auto_remove='success')"
    )
    raw = Figure.of(
        "task_start_raw_docker_ms", ms(samples["raw"]), "ms", note="`docker run --rm` via the CLI (the floor)"
    )
    ratio = median(ms(samples["airdock"])) / raw.airdock
    airdock = Figure.of(
        "task_start_ms",
        ms(samples["airdock"]),
        "ms",
        baseline=raw.airdock,
        note=(
            f"EcrDockerOperator vs raw `docker run --rm`, cached tiny image, {rounds} rounds; target ≤ "
            f"{TARGET_RATIO:.2f}× raw ({verdict(ratio <= TARGET_RATIO)}); stock DockerOperator "
            f"{stock.airdock:.0f} ms"
        ),
    )
    return [airdock, stock, raw]
