"""Pull throughput: a ~200 MB image through a private local stack, airdock vs raw ``docker pull``.

The image is one incompressible layer (``import_image(..., pad_bytes=200 MiB)``), pushed once.
Each round, in alternating order, the image is removed from the engine and pulled:

- airdock: ``ensure_image(api, ref, PullPolicy.ALWAYS, credentials)`` with the CLI's cached
  credentials (``registry_credentials`` over a warm host token cache) — inspect, pull with the
  token in the request, summarised progress, inspect;
- raw: ``docker pull`` after ``docker login --password-stdin`` into a temporary
  ``DOCKER_CONFIG`` (never the user's ``~/.docker``).

MB/s = the image's size (10^6 bytes) / seconds. ``scale`` scales the image (200 MB × scale,
at least 1 MB).
"""

from __future__ import annotations

import contextlib
import os
import time
from typing import Any

from benchmarks import Figure
from benchmarks._support import (
    docker_cli,
    docker_client,
    local_stack,
    median,
    owned_images,
    push,
    scratch_dir,
    verdict,
)

PAD_BYTES = 200 * 1024 * 1024
MIN_PAD_BYTES = 1024 * 1024
TARGET_RATIO = 0.90
MAX_ROUNDS = 3
REPOSITORY = "bench/pull"


def _remove(client: Any, ref: str) -> None:
    import docker.errors

    with contextlib.suppress(docker.errors.ImageNotFound):
        client.api.remove_image(ref, force=False)


def run(scale: float, repeat: int) -> list[Figure]:
    from airdock.auth.cache import TokenCache
    from airdock.auth.session import registry_credentials
    from airdock.engine.pull import PullPolicy, ensure_image
    from airdock.images import parse_image_ref
    from airdock.local.offline_images import import_image

    pad = max(MIN_PAD_BYTES, round(PAD_BYTES * scale))
    rounds = max(1, min(repeat, MAX_ROUNDS))
    client = docker_client()
    with (
        local_stack() as stack,
        owned_images(client) as mine,
        scratch_dir("airdock-bench-pull-") as home,
    ):
        stack.ensure_repository(REPOSITORY)
        ref = f"{stack.registry_host}/{REPOSITORY}:v1"
        image = import_image(client, ref, pad_bytes=pad)
        mine.add(image.id)
        push(client, ref, stack.auth_config())
        size = int(client.api.inspect_image(ref)["Size"])

        credentials = registry_credentials(
            stack.registry, client=stack.ecr(), cache=TokenCache(home / "tokens")
        )
        credentials.get()  # a warm host cache, as on a worker that already ran a task
        parsed = parse_image_ref(ref)
        env = {**os.environ, "DOCKER_CONFIG": str(home / "docker-config")}
        docker_cli(
            "login", "-u", "AWS", "--password-stdin", stack.registry_host, env=env, stdin=stack.password()
        )

        def airdock() -> float:
            started = time.perf_counter()
            pulled = ensure_image(client.api, parsed, PullPolicy.ALWAYS, credentials)
            seconds = time.perf_counter() - started
            mine.add(pulled.image_id)
            return seconds

        def raw() -> float:
            started = time.perf_counter()
            docker_cli("pull", "--quiet", ref, env=env)
            return time.perf_counter() - started

        samples: dict[str, list[float]] = {"airdock": [], "raw": []}
        for index in range(rounds):
            order = (("airdock", airdock), ("raw", raw))
            for name, pull in order if index % 2 == 0 else order[::-1]:
                _remove(client, ref)
                samples[name].append(pull())
        _remove(client, ref)

    mb = size / 1e6
    raw_rates = [mb / s for s in samples["raw"]]
    rates = tuple(mb / s for s in samples["airdock"])
    ratio = median(rates) / median(raw_rates)
    return [
        Figure.of(
            "pull_mb_per_s",
            rates,
            "MB/s",
            baseline=median(raw_rates),
            note=(
                f"{mb:.0f} MB image (one incompressible layer), {rounds} pulls each; target ≥ "
                f"{TARGET_RATIO:.2f}× raw `docker pull` ({verdict(ratio >= TARGET_RATIO)}); raw "
                f"[{min(raw_rates):.0f}–{max(raw_rates):.0f}] MB/s"
            ),
        )
    ]
