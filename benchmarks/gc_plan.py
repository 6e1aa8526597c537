"""Planning image GC over a large host: 10,000 images, 2,000 containers (target: under 1 s).

The inventory is synthetic but shaped like a busy Airflow worker: a few base images shared by
many, per-repository dependency layers, ECR-style tags (some with ``:latest``), dangling images,
usage records for most tagged images, a few live leases, containers (running and exited) mostly
on recent images, a byte budget well below what is stored, and a disk above its high watermark.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from airdock.hygiene.gc_plan import plan_gc
from airdock.hygiene.model import (
    MANAGED_LABEL,
    ContainerInfo,
    DiskUsage,
    GcPlan,
    GcPolicy,
    GcScope,
    ImageInfo,
    ImageUsage,
    Layer,
)
from benchmarks import Figure, time_calls

IMAGES = 10_000
CONTAINERS = 2_000
TARGET_S = 1.0
NOW = 1_800_000_000.0
DAY = 86400.0
MB = 1_000_000
REGISTRY = "123456789012.dkr.ecr.eu-west-1.amazonaws.com"


@dataclass(frozen=True)
class Inventory:
    images: list[ImageInfo]
    containers: list[ContainerInfo]
    usage: dict[str, ImageUsage]
    policy: GcPolicy
    disk: DiskUsage
    now: float = NOW

    def plan(self) -> GcPlan:
        return plan_gc(self.images, self.containers, self.usage, self.policy, self.now, self.disk)


def synthetic_inventory(n_images: int, n_containers: int, seed: int = 20261127) -> Inventory:
    """A seeded, realistic inventory (see the module docstring)."""
    rng = random.Random(seed)
    bases = [
        tuple(Layer(f"sha256:base{b}-{k}", rng.randint(5, 250) * MB) for k in range(rng.randint(1, 2)))
        for b in range(max(3, n_images // 500))
    ]
    base_weights = [1.0 / (rank + 1) for rank in range(len(bases))]  # a few bases carry most images
    n_repos = max(2, n_images // 25)
    repos = [f"{REGISTRY}/{rng.choice(['prod', 'dev', 'team-a', 'team-b'])}/svc{r}" for r in range(n_repos)]
    repo_base = [rng.choices(range(len(bases)), base_weights)[0] for _ in repos]
    repo_deps = [Layer(f"sha256:deps{r}", rng.randint(10, 400) * MB) for r in range(n_repos)]

    images: list[ImageInfo] = []
    unique: dict[str, int] = {}
    for i in range(n_images):
        r = rng.randrange(n_repos)
        own = tuple(
            Layer(f"sha256:own{i}-{k}", rng.randint(1, 80_000) * 1000) for k in range(rng.randint(1, 5))
        )
        deps = (repo_deps[r],) if rng.random() < 0.8 else ()
        layers = bases[repo_base[r]] + deps + own
        created = NOW - rng.uniform(0, 365 * DAY)
        tags: tuple[str, ...] = ()
        if rng.random() >= 0.08:  # 8% dangling
            tags = (f"{repos[r]}:v{i}",)
            if rng.random() < 0.1:
                tags += (f"{repos[r]}:latest" if rng.random() < 0.7 else f"{repos[r]}:stable",)
        last_tagged = created + rng.uniform(0, NOW - created) if rng.random() < 0.5 else None
        images.append(
            ImageInfo(f"sha256:{i:064x}", tags, sum(x.size for x in layers), created, layers, last_tagged)
        )
        for layer in layers:
            unique[layer.id] = layer.size

    usage: dict[str, ImageUsage] = {}
    for image in images:
        if image.tags and rng.random() < 0.6:
            usage[image.id] = ImageUsage(image.id, last_used=NOW - rng.expovariate(1 / (20 * DAY)))
        if image.tags and rng.random() < 0.01:  # a task starting it: lease taken on the tag
            ref = image.tags[0]
            usage[ref] = ImageUsage(ref, leased_until=NOW + rng.choice([-60.0, 300.0]))

    recent = sorted(images, key=lambda im: -max(im.created, im.last_tagged or 0.0))[: max(1, n_images // 5)]
    containers = []
    for c in range(n_containers):
        image = rng.choice(recent) if rng.random() < 0.8 else rng.choice(images)
        labels = {MANAGED_LABEL: "true", "airdock.dag_id": f"dag{c % 50}"} if rng.random() < 0.7 else {}
        state = "running" if rng.random() < 0.3 else "exited"
        containers.append(ContainerInfo(f"c{c:012x}", image.id, state, NOW - rng.uniform(0, 7 * DAY), labels))

    image_bytes = sum(unique.values())
    policy = GcPolicy(  # scope "all": every image is a candidate, the most work a plan can do
        scope=GcScope.ALL,
        max_image_bytes=int(image_bytes * 0.4),
        max_unused_age_seconds=90 * DAY,
        keep=("*/prod/*:stable", "*:stable"),
    )
    disk_total = int(image_bytes * 1.5)
    return Inventory(images, containers, usage, policy, DiskUsage(disk_total, int(disk_total * 0.9)))


def run(scale: float, repeat: int) -> list[Figure]:
    n_images = max(10, round(IMAGES * scale))
    n_containers = max(2, round(CONTAINERS * scale))
    inventory = synthetic_inventory(n_images, n_containers)
    plan = inventory.plan()
    if not plan.removals or len(plan.decisions) != n_images:
        raise RuntimeError("gc_plan benchmark: the synthetic inventory no longer exercises the planner")
    samples = time_calls(inventory.plan, repeat)
    workload = f"{n_images:,} images, {n_containers:,} containers, {len(plan.removals):,} removals"
    seconds = Figure.of("gc_plan_10k_s", samples, "s", note=f"target < {TARGET_S:g} s; {workload}")
    if scale == 1.0:
        verdict = "met" if seconds.airdock < TARGET_S else "MISSED"
        seconds = Figure.of(
            "gc_plan_10k_s", samples, "s", note=f"target < {TARGET_S:g} s ({verdict}); {workload}"
        )
    rate = Figure.of("gc_plan_10k_images_per_s", tuple(n_images / s for s in samples), "images/s")
    return [seconds, rate]
