"""Registry credentials per task: what a task spends getting an ECR login, warm and cold.

Each sample is what ``EcrDockerOperator`` does for a pull: construct
``AirflowEcrCredentials(registry, aws_conn_id="aws_default", cache=TokenCache(dir))`` (an
``EcrHook`` on an Airflow AWS connection to a private local stack) and call ``get()``:

- ``auth_cached_ms``: the host cache holds a valid token (target < 5 ms);
- ``auth_cold_ms``: a fresh cache directory every sample, so GetAuthorizationToken is called;
  baseline: a bare boto3 call as a cron script makes it (new session, client and
  ``get_authorization_token``).

All in one child process with a throw-away Airflow home; the first call of that process (which
also imports the Amazon provider's hook and loads botocore's models) is reported in the note.
``scale`` does not change the workload.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from benchmarks import Figure
from benchmarks._support import airflow_env, local_stack, median, ms, run_child, scratch_dir, verdict

TARGET_CACHED_MS = 5.0
WAYS = ("cached", "cold", "boto3")


def measure(payload: dict[str, Any]) -> dict[str, Any]:
    """Child side: seconds per sample of each way, and the process's first (cold) call."""
    from airdock.airflow.credentials import AirflowEcrCredentials
    from airdock.auth.cache import TokenCache
    from airdock.images import ecr_registry_for, parse_image_ref

    host = str(payload["registry_host"])
    registry = ecr_registry_for(parse_image_ref(f"{host}/x"), [host])
    assert registry is not None
    root = Path(payload["dir"])
    counter = iter(range(1_000_000))

    def airdock(cache_dir: Path) -> float:
        started = time.perf_counter()
        AirflowEcrCredentials(registry, aws_conn_id="aws_default", cache=TokenCache(cache_dir)).get()
        return time.perf_counter() - started

    def boto3_call() -> float:
        import boto3

        started = time.perf_counter()
        client = boto3.session.Session().client(
            "ecr",
            endpoint_url=payload["endpoint_url"],
            region_name=payload["region"],
            aws_access_key_id=payload["access_key_id"],
            aws_secret_access_key=payload["secret_access_key"],
        )
        client.get_authorization_token()
        return time.perf_counter() - started

    first = airdock(root / "warm")  # fills the warm cache too
    ways = {
        "cached": lambda: airdock(root / "warm"),
        "cold": lambda: airdock(root / f"cold-{next(counter)}"),
        "boto3": boto3_call,
    }
    samples: dict[str, list[float]] = {name: [] for name in WAYS}
    warmup, rounds = int(payload["warmup"]), int(payload["rounds"])
    for n in range(warmup + rounds):
        for name in WAYS[n % 3 :] + WAYS[: n % 3]:
            seconds = ways[name]()
            if n >= warmup:
                samples[name].append(seconds)
    return {"first": first, **samples}


def run(scale: float, repeat: int) -> list[Figure]:
    del scale
    from airdock.local import settings as local_settings

    rounds = max(1, repeat) * 4  # fast and noisy: four samples per repeat
    with local_stack() as stack, scratch_dir("airdock-bench-auth-") as home:
        before = stack.token_calls()
        result = run_child(
            "benchmarks.auth:measure",
            {
                "registry_host": stack.registry_host,
                "dir": str(home / "caches"),
                "endpoint_url": stack.settings.api_url,
                "region": stack.settings.region,
                "access_key_id": local_settings.LOCAL_ACCESS_KEY_ID,
                "secret_access_key": local_settings.LOCAL_SECRET_ACCESS_KEY,
                "rounds": rounds,
                "warmup": 1,
            },
            airflow_env(stack, home),
        )
        calls = stack.token_calls() - before
    expected_calls = 1 + 2 * (rounds + 1)  # first call; cold and boto3 in every round, warm-up included
    if calls != expected_calls:
        raise RuntimeError(f"auth benchmark: {calls} GetAuthorizationToken calls, expected {expected_calls}")

    cached_ms = ms(result["cached"])
    boto3_ms = ms(result["boto3"])
    cached = Figure.of(
        "auth_cached_ms",
        cached_ms,
        "ms",
        note=(
            f"construct + get() with a valid token in the host cache, {rounds} samples; target < "
            f"{TARGET_CACHED_MS:g} ms ({verdict(median(cached_ms) < TARGET_CACHED_MS)})"
        ),
    )
    cold = Figure.of(
        "auth_cold_ms",
        ms(result["cold"]),
        "ms",
        baseline=median(boto3_ms),
        note=(
            f"construct + get() with an empty cache (one GetAuthorizationToken), {rounds} samples; baseline: "
            f"new boto3 session + client + get_authorization_token [{min(boto3_ms):.0f}–{max(boto3_ms):.0f}]"
            f"; a process's first call (imports included): {result['first'] * 1000:.0f} ms"
        ),
    )
    return [cached, cold]
