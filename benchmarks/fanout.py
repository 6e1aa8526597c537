"""Fan-out: 20 task processes on one host want ECR credentials at the same instant, cache cold.

One child process (a throw-away Airflow home, an AWS connection to a private local stack)
imports what a task process has imported by then and, each round, forks 20 workers — as Airflow
3's supervisor forks its task processes on Linux. The workers meet at a barrier and, released
together, each gets credentials the airdock way —
``AirflowEcrCredentials(registry, aws_conn_id="aws_default", cache=TokenCache(dir)).get()`` —
against a cache directory no one has used yet. The stack counts the GetAuthorizationToken calls
it serves (its ``_airdock/status`` counters, before and after the round).

Baseline: 20 forked processes each calling GetAuthorizationToken directly with boto3 (new
session, client, call), as 20 cron-style scripts or tasks that log in each for themselves would.
The wall time is from the release to the last worker holding credentials. ``scale`` scales the
number of processes (at least 2).
"""

from __future__ import annotations

import multiprocessing
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from benchmarks import Figure
from benchmarks._support import airflow_env, local_stack, median, run_child, scratch_dir, verdict

PROCESSES = 20
JOIN_TIMEOUT_S = 120.0


def _worker(fetch: Callable[[str], None], cache_dir: str, barrier: Any, ends: Any) -> None:
    barrier.wait()
    fetch(cache_dir)
    ends.put(time.time())


def measure(payload: dict[str, Any]) -> dict[str, list[float]]:
    """Child side: per round of each mode, the GetAuthorizationToken calls and the wall seconds."""
    import boto3

    # What a task process has imported by the time its operator asks for credentials.
    from airflow.providers.amazon.aws.hooks.ecr import EcrHook  # noqa: F401

    from airdock.airflow.credentials import AirflowEcrCredentials
    from airdock.auth.cache import TokenCache
    from airdock.images import ecr_registry_for, parse_image_ref
    from airdock.local.stack import LocalStack

    host = str(payload["registry_host"])
    registry = ecr_registry_for(parse_image_ref(f"{host}/x"), [host])
    assert registry is not None
    stack = LocalStack(Path(payload["stack_dir"]))
    n = int(payload["processes"])

    def airdock(cache_dir: str) -> None:
        AirflowEcrCredentials(registry, aws_conn_id="aws_default", cache=TokenCache(Path(cache_dir))).get()

    def direct(cache_dir: str) -> None:
        del cache_dir
        boto3.session.Session().client(
            "ecr",
            endpoint_url=payload["endpoint_url"],
            region_name=payload["region"],
            aws_access_key_id=payload["access_key_id"],
            aws_secret_access_key=payload["secret_access_key"],
        ).get_authorization_token()

    def token_calls() -> int:
        return int(stack.status().counters.get("GetAuthorizationToken", 0))

    ctx = multiprocessing.get_context("fork")
    out: dict[str, list[float]] = {"calls": [], "wall": [], "base_calls": [], "base_wall": []}
    for index in range(int(payload["rounds"])):
        for mode, fetch, calls_key, wall_key in (
            ("airdock", airdock, "calls", "wall"),
            ("boto3", direct, "base_calls", "base_wall"),
        ):
            cache_dir = os.path.join(payload["cache_root"], f"{mode}-{index}")
            barrier = ctx.Barrier(n + 1)
            ends = ctx.Queue()
            before = token_calls()
            procs = [ctx.Process(target=_worker, args=(fetch, cache_dir, barrier, ends)) for _ in range(n)]
            try:
                for proc in procs:
                    proc.start()
                barrier.wait(timeout=JOIN_TIMEOUT_S)
                released = time.time()
                finished = [float(ends.get(timeout=JOIN_TIMEOUT_S)) for _ in procs]
                for proc in procs:
                    proc.join(JOIN_TIMEOUT_S)
                    if proc.exitcode != 0:
                        raise RuntimeError(f"a {mode} worker failed (exit code {proc.exitcode})")
            finally:
                for proc in procs:
                    if proc.is_alive():
                        proc.kill()
                        proc.join()
            out[wall_key].append(max(finished) - released)
            out[calls_key].append(float(token_calls() - before))
    return out


def _spread(values: Sequence[float]) -> str:
    return f"{min(values):.3g}–{max(values):.3g}"


def run(scale: float, repeat: int) -> list[Figure]:
    from airdock.local import settings as local_settings

    n = max(2, round(PROCESSES * scale))
    rounds = max(1, repeat)
    with local_stack() as stack, scratch_dir("airdock-bench-fanout-") as home:
        result = run_child(
            "benchmarks.fanout:measure",
            {
                "processes": n,
                "rounds": rounds,
                "registry_host": stack.registry_host,
                "stack_dir": str(stack.local.data_dir),
                "cache_root": str(home / "caches"),
                "endpoint_url": stack.settings.api_url,
                "region": stack.settings.region,
                "access_key_id": local_settings.LOCAL_ACCESS_KEY_ID,
                "secret_access_key": local_settings.LOCAL_SECRET_ACCESS_KEY,
            },
            airflow_env(stack, home),
        )
    calls = tuple(result["calls"])
    base_calls = tuple(result["base_calls"])
    base_walls = tuple(result["base_wall"])
    return [
        Figure.of(
            "fanout_20_token_calls",
            calls,
            "calls",
            baseline=median(base_calls),
            note=(
                f"{n} forked task processes released together on a cold host cache, {rounds} rounds; "
                f"target 1 call ({verdict(max(calls) == 1)}); baseline: each calls GetAuthorizationToken"
            ),
        ),
        Figure.of(
            "fanout_20_wall_s",
            tuple(result["wall"]),
            "s",
            baseline=median(base_walls),
            note=f"release → last process has credentials; baseline [{_spread(base_walls)}] s",
        ),
    ]
