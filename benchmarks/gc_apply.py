"""Applying an image GC: removing 100 real images from the engine, airdock vs one ``docker image rm``.

Each round imports 100 small distinct images of its own (a unique repository), plans a GC whose
budget (0 bytes, no age floor) removes exactly them — every other image on the engine is leased
in the run's private usage record (``AIRDOCK_STATE_DIR``, resolved as every entry point does;
the images are recorded as pulled by airdock, the GC's default scope), and the plan is checked
to hold only this round's images before anything is applied — and times ``apply_gc`` (per
image: the host-wide removal lock, a fresh inspect, the lease re-check, the container check, the
removal). Baseline: the same number of freshly imported images removed by id in one ``docker
image rm`` call. Nothing else on the engine is touched. ``scale`` scales the image count (at
least 2).
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from benchmarks import Figure
from benchmarks._support import (
    BenchmarkError,
    docker_cli,
    docker_client,
    import_tiny_images,
    median,
    owned_images,
    scratch_dir,
    state_dir,
)

IMAGES = 100
MAX_ROUNDS = 5


def _airdock_round(client: Any, store: Any, ids: list[str]) -> tuple[float, float]:
    """Plan and apply the GC of exactly ``ids``; (apply seconds, plan seconds)."""
    from airdock.hygiene.gc_apply import apply_gc, collect_gc
    from airdock.hygiene.model import GcPlan, GcPolicy

    mine = set(ids)
    for image_id in ids:  # as if airdock had pulled them: in the GC's default scope
        store.record_pull(image_id, time.time())
    foreign = [image["Id"] for image in client.api.images() if image["Id"] not in mine]
    policy = GcPolicy(max_image_bytes=0, high_watermark_percent=None, min_age_seconds=0.0)
    with store.lease(foreign, seconds=600):
        started = time.perf_counter()
        plan = collect_gc(client, store, policy, time.time())
        planned = time.perf_counter() - started
        removals = {decision.image.id for decision in plan.removals}
        if not mine <= removals:
            raise BenchmarkError(f"gc_apply: the plan keeps {len(mine - removals)} of the benchmark's images")
        if removals - mine:  # images made by someone else after the lease: never ours to remove
            plan = GcPlan(
                tuple(d for d in plan.decisions if d.image.id in mine or d.verdict.value != "remove"),
                plan.image_bytes,
                plan.target_bytes,
                plan.frees_bytes,
            )
        started = time.perf_counter()
        result = apply_gc(client, plan, store)
        seconds = time.perf_counter() - started
    removed = {decision.image.id for decision in result.removed}
    if removed != mine:
        problems = [reason for _, reason in (*result.failed, *result.skipped)][:3]
        raise BenchmarkError(f"gc_apply: removed {len(removed)} of {len(mine)} images: {problems}")
    return seconds, planned


def run(scale: float, repeat: int) -> list[Figure]:
    from airdock.hygiene.usage import UsageStore

    n = max(2, round(IMAGES * scale))
    rounds = max(1, min(repeat, MAX_ROUNDS))
    client = docker_client()
    prefix = f"airdock-bench-gc-{uuid.uuid4().hex[:8]}"
    airdock: list[float] = []
    plans: list[float] = []
    raw: list[float] = []
    with owned_images(client) as mine, scratch_dir("airdock-bench-gc-") as home, state_dir(home):
        store = UsageStore.for_host()  # the one resolution every entry point uses (AIRDOCK_STATE_DIR)
        for index in range(rounds):
            for way in ("airdock", "raw") if index % 2 == 0 else ("raw", "airdock"):
                ids = import_tiny_images(client, f"{prefix}/{way}-{index}", n, mine)
                if way == "airdock":
                    seconds, planned = _airdock_round(client, store, ids)
                    airdock.append(seconds)
                    plans.append(planned)
                else:
                    started = time.perf_counter()
                    docker_cli("image", "rm", *ids)
                    raw.append(time.perf_counter() - started)
                mine.difference_update(ids)
    return [
        Figure.of(
            "gc_apply_s",
            tuple(airdock),
            "s",
            baseline=median(raw),
            note=(
                f"apply_gc removing {n} images (per-image lock, inspect, lease and container checks), "
                f"{rounds} rounds; baseline: one `docker image rm` of {n} ids "
                f"[{min(raw):.3g}–{max(raw):.3g}] s; planning them took {median(plans):.2f} s "
                "(reads the whole engine)"
            ),
        )
    ]
