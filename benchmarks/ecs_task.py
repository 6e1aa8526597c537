"""ECS through the operators: ContainerOperator vs the Amazon provider's EcsRunTaskOperator, and
how many task-definition revisions 20 tasks starting together register.

``ecs_task_start_s``: each operator's ``execute`` for a tiny image (``true``), on the local
stack's ECS, on the same task definition (the one ContainerOperator derived and registered in
the untimed warm-up), in alternating order. The stock operator polls with its smallest
``waiter_delay`` (1 s) and log fetch interval (1 s), names the container (else it sleeps 10 s)
and follows the same CloudWatch stream; ContainerOperator polls 0.25 s, growing to 2 s. Target
≤ 1.0×.

``ecs_register_calls_20``: 20 task processes (forked after the imports, as Airflow's supervisor
forks them) run ``ContainerOperator.execute`` for 20 map indexes of one task at the same instant;
the stack counts the RegisterTaskDefinition calls. Baseline: 20 forked
``EcsRegisterTaskDefinitionOperator`` runs of one family (a registration per run). Target 1.
``scale`` scales the number of processes (at least 2); the start samples are the same at every
scale.
"""

from __future__ import annotations

import multiprocessing
import os
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from benchmarks import Figure
from benchmarks._support import (
    airflow_env,
    call_execute,
    docker_client,
    local_stack,
    median,
    owned_images,
    push,
    run_child,
    scratch_dir,
    stub_context,
    verdict,
)

REPOSITORY = "bench/ecs-task"
ROLE = "arn:aws:iam::123456789012:role/ecsTaskExecutionRole"
SUBNET = "subnet-0bench"
PROCESSES = 20
JOIN_TIMEOUT_S = 180.0


def _counters(stack_dir: str) -> dict[str, int]:
    from airdock.local.stack import LocalStack

    counters = LocalStack(Path(stack_dir)).status().counters
    return {k: int(v) for k, v in counters.items()}


def measure(payload: dict[str, Any]) -> dict[str, Any]:
    """Child side: start samples of both operators, then the 20-process registration rounds."""
    from airflow.providers.amazon.aws.operators.ecs import (
        EcsRegisterTaskDefinitionOperator,
        EcsRunTaskOperator,
    )

    from airdock.airflow import ContainerOperator

    image, stack_dir = str(payload["image"]), str(payload["stack_dir"])

    def ours(task_id: str, map_index: int = -1) -> Any:
        operator = ContainerOperator(task_id=task_id, image=image, command=["true"], run_on="ecs")
        return call_execute(
            operator, stub_context(task_id=task_id, run_id=f"bench-{time.time_ns()}", map_index=map_index)
        )

    ours("warmup")  # registers the task definition both operators then use
    from airflow.providers.amazon.aws.hooks.ecs import EcsHook

    definition = EcsHook(aws_conn_id="aws_default").conn.describe_task_definition(
        taskDefinition="airdock-airdock_bench-warmup"
    )
    definition_arn = definition["taskDefinition"]["taskDefinitionArn"]

    def stock(n: int) -> float:
        operator = EcsRunTaskOperator(
            task_id=f"stock_{n}",
            cluster="default",
            task_definition=definition_arn,
            launch_type="FARGATE",
            network_configuration={"awsvpcConfiguration": {"subnets": [SUBNET]}},
            overrides={"containerOverrides": [{"name": "main", "command": ["true"]}]},
            awslogs_group="/airdock/tasks",
            awslogs_stream_prefix="airdock/main",
            container_name="main",  # else it sleeps 10 s looking for the container's name
            waiter_delay=1,
            awslogs_fetch_interval=timedelta(seconds=1),
            reattach=False,
        )
        started = time.perf_counter()
        call_execute(operator, stub_context(task_id=f"stock_{n}"))
        return time.perf_counter() - started

    def airdock(n: int) -> float:
        started = time.perf_counter()
        ours("warmup")  # the same task, so the same family and revision
        return time.perf_counter() - started

    samples: dict[str, list[float]] = {"airdock": [], "stock": []}
    for n in range(int(payload["rounds"])):
        first, second = ("airdock", "stock") if n % 2 == 0 else ("stock", "airdock")
        for name in (first, second):
            samples[name].append(airdock(n) if name == "airdock" else stock(n))

    # 20 processes, one task of 20 map indexes, released together.
    context = multiprocessing.get_context("fork")

    def fan_out(fn: Any) -> int:
        before = _counters(stack_dir).get("RegisterTaskDefinition", 0)
        n = int(payload["processes"])
        barrier = context.Barrier(n)
        workers = [context.Process(target=_released, args=(fn, barrier, i)) for i in range(n)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(JOIN_TIMEOUT_S)
        failed = [w.exitcode for w in workers if w.exitcode != 0]
        if failed:
            raise RuntimeError(f"{len(failed)} of {n} workers failed: exit codes {failed}")
        return _counters(stack_dir).get("RegisterTaskDefinition", 0) - before

    family = f"fanout{time.time_ns()}"

    def container(i: int) -> None:
        ours(family, map_index=i)

    def register(i: int) -> None:
        operator = EcsRegisterTaskDefinitionOperator(
            task_id=f"register_{i}",
            family=f"stock-{family}",
            container_definitions=[{"name": "main", "image": image, "essential": True}],
            register_task_kwargs={"cpu": "256", "memory": "512"},
        )
        call_execute(operator, stub_context(task_id=f"register_{i}"))

    return {**samples, "register_airdock": fan_out(container), "register_stock": fan_out(register)}


def _released(fn: Any, barrier: Any, index: int) -> None:
    barrier.wait()
    fn(index)


def run(scale: float, repeat: int) -> list[Figure]:
    processes = max(2, round(PROCESSES * scale))
    client = docker_client()
    with local_stack() as stack, owned_images(client) as mine, scratch_dir("airdock-bench-ecs-") as home:
        from airdock.local.offline_images import import_image

        stack.ensure_repository(REPOSITORY)
        ref = f"{stack.registry_host}/{REPOSITORY}:v1"
        image = import_image(client, ref, {"etc/airdock-bench": os.urandom(16)})
        mine.add(image.id)
        push(client, ref, stack.auth_config())
        rounds = max(1, repeat) * 2
        env = airflow_env(
            stack,
            home,
            AIRFLOW__AIRDOCK__ECS_SUBNETS=SUBNET,
            AIRFLOW__AIRDOCK__ECS_EXECUTION_ROLE_ARN=ROLE,
        )
        result = run_child(
            "benchmarks.ecs_task:measure",
            {
                "image": ref,
                "rounds": rounds,
                "stack_dir": str(stack.settings.data_dir),
                "processes": processes,
            },
            env,
        )
    stock = Figure.of(
        "ecs_task_start_stock_s",
        tuple(result["stock"]),
        "s",
        note="EcsRunTaskOperator(waiter_delay=1, awslogs_fetch_interval=1 s)",
    )
    ratio = median(result["airdock"]) / stock.airdock
    calls = int(result["register_airdock"])
    return [
        Figure.of(
            "ecs_task_start_s",
            tuple(result["airdock"]),
            "s",
            baseline=stock.airdock,
            note=(
                f"ContainerOperator(run_on='ecs') vs EcsRunTaskOperator, same task definition, local ECS, "
                f"{rounds} rounds; target ≤ 1.0× ({verdict(ratio <= 1.0)})"
            ),
        ),
        stock,
        Figure(
            "ecs_register_calls_20",
            float(calls),
            float(result["register_stock"]),
            "calls",
            (float(calls),),
            note=(
                f"RegisterTaskDefinition calls when {processes} mapped tasks start together; baseline: "
                f"{processes} EcsRegisterTaskDefinitionOperator runs; target 1 ({verdict(calls == 1)})"
            ),
        ),
    ]
