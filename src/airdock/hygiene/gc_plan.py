"""Image GC, planned: inventory + usage + policy + clock → a plan with a reason for every image.

Nothing here does I/O, talks to the engine or Airflow, or reads the clock (``now`` is an
argument), so ``--dry-run`` runs exactly this and the tests pin every rule.

Image GC (``plan_gc``), in the shape of the kubelet's image GC:

- *Last used* of an image is the usage record's ``last_used`` when known, else the most recent of
  ``last_tagged`` and ``created``. It orders removals (least recently used first) and is what
  ``ImageDecision.last_used`` reports (so it is never None).
- *Age* (for ``min_age``) is ``now − max(last_used record, last_tagged, created)``: an image just
  pulled or just used is young even if it was built long ago.
- Usage records are looked up under the image id and under each of its tags, so a lease taken on a
  ``repo:tag`` reference before the pull (when the id is not known yet) protects the image once it
  carries that tag. Several records for one image merge: the latest ``last_used``, any live lease.
- Scope: with ``GcScope.AIRDOCK`` (the default) only images airdock pulled or started on this
  engine (``ImageUsage.brought``, under the id or a tag) and dangling images may go; any other is
  kept as "not airdock's (...)". ``GcScope.ALL`` considers every image (kubelet-style).
- Protected images are kept, with the first reason that applies, in this precedence: in use by a
  container (any state) → "in use by 2 containers"; a live lease (``leased_until > now``) →
  "in use: a task is starting it"; a ``keep`` pattern (``fnmatch``, case-sensitive, against the
  tags as given) → "keep pattern 'prod/*'"; younger than ``min_age`` → "too young (4m < 10m)".
- Removals, in the order to apply them: every unprotected dangling image ("dangling" — unreachable
  by name, so always removed), oldest first; then images unused for longer than
  ``max_unused_age`` ("unused since 2026-11-01 12:00 (> 7d)", UTC) whatever the budget; then, while
  a budget is exceeded, the least recently used of the rest ("least recently used"). What remains
  is kept "within budget" (or "no budget set" when no budget was configured or measurable).
- Budget: image bytes are the sum of the unique layers of all images (an image without layers is
  one unit of its ``size``). The target is ``max_image_bytes`` when set; with watermarks and a
  ``disk`` given, when the disk is at or above the high watermark, the image bytes minus what
  must go to bring the disk down to the low watermark. When both apply, the smaller wins.
- A removal frees the bytes of the layers no remaining image references once it and the removals
  before it are gone: shared layers count once, freed with the last image holding them. The
  per-decision ``frees_bytes`` add up to ``GcPlan.frees_bytes``.
- Deterministic: the input order does not matter; ties break on image id.
"""

from __future__ import annotations

import fnmatch
import math
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from airdock.hygiene.model import (
    ContainerInfo,
    DiskUsage,
    GcPlan,
    GcPolicy,
    GcScope,
    ImageDecision,
    ImageInfo,
    ImageUsage,
    Verdict,
)
from airdock.hygiene.units import format_age

__all__ = ["OUT_OF_SCOPE", "plan_gc"]

# The reason for an image outside the default scope (gc_scope = airdock).
OUT_OF_SCOPE = "not airdock's (not pulled or started by airdock here; gc_scope=all to include it)"


def _format_time(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, tz=UTC).strftime("%Y-%m-%d %H:%M")


@dataclass(slots=True)
class _Candidate:
    image: ImageInfo
    last_used: float  # the LRU key
    layer_keys: tuple[str, ...]
    protected: str | None  # the reason it is kept, or None when it may go


def _usage_of(
    image: ImageInfo, usage: Mapping[str, ImageUsage], now: float
) -> tuple[float | None, bool, bool]:
    """The latest recorded use, whether a live lease holds the image (by id or any tag), whether airdock
    brought it."""
    last_used: float | None = None
    leased = False
    brought = False
    for key in (image.id, *image.tags):
        record = usage.get(key)
        if record is None:
            continue
        if record.last_used is not None and (last_used is None or record.last_used > last_used):
            last_used = record.last_used
        if record.leased_until is not None and record.leased_until > now:
            leased = True
        brought = brought or record.brought
    return last_used, leased, brought


def _target_bytes(policy: GcPolicy, image_bytes: int, disk: DiskUsage | None) -> tuple[int | None, bool]:
    """The budget to meet (None: none exceeded or set) and whether any budget could be measured."""
    targets: list[int] = []
    measured = False
    if policy.max_image_bytes is not None:
        measured = True
        targets.append(max(0, policy.max_image_bytes))
    if policy.high_watermark_percent is not None and disk is not None and disk.total_bytes > 0:
        measured = True
        if disk.used_bytes * 100 >= policy.high_watermark_percent * disk.total_bytes:
            excess = disk.used_bytes - policy.low_watermark_percent / 100.0 * disk.total_bytes
            targets.append(max(0, math.floor(image_bytes - excess)))
    return (min(targets) if targets else None), measured


def plan_gc(
    images: Sequence[ImageInfo],
    containers: Sequence[ContainerInfo],
    usage: Mapping[str, ImageUsage],
    policy: GcPolicy,
    now: float,
    disk: DiskUsage | None = None,
) -> GcPlan:
    """Decide, for every image, whether it goes and why (see the module docstring for the rules)."""
    unique: dict[str, ImageInfo] = {}
    for image in sorted(images, key=lambda i: i.id):
        unique.setdefault(image.id, image)

    containers_of = Counter(c.image_id for c in containers)
    keep_patterns = [(p, re.compile(fnmatch.translate(p))) for p in policy.keep]

    layer_size: dict[str, int] = {}
    layer_refs: dict[str, int] = {}
    candidates: list[_Candidate] = []
    for image in unique.values():
        if image.layers:
            # A layer listed twice in one image is counted (and uncounted) twice: harmless.
            keys = tuple(layer.id for layer in image.layers)
            for layer in image.layers:
                layer_size.setdefault(layer.id, layer.size)
        else:
            keys = (f"<image>{image.id}",)  # the whole image as one unit
            layer_size.setdefault(keys[0], image.size)
        for key in keys:
            layer_refs[key] = layer_refs.get(key, 0) + 1

        recorded, leased, brought = _usage_of(image, usage, now)
        fallback = image.created if image.last_tagged is None else max(image.created, image.last_tagged)
        last_used = fallback if recorded is None else recorded
        freshest = fallback if recorded is None else max(fallback, recorded)

        protected: str | None = None
        n_containers = containers_of.get(image.id, 0)
        if policy.scope is GcScope.AIRDOCK and not brought and not image.dangling:
            protected = OUT_OF_SCOPE
        elif n_containers:
            protected = f"in use by {n_containers} container{'s' if n_containers != 1 else ''}"
        elif leased:
            protected = "in use: a task is starting it"
        else:
            for pattern, regex in keep_patterns:
                if any(regex.match(tag) for tag in image.tags):
                    protected = f"keep pattern {pattern!r}"
                    break
            else:
                age = now - freshest
                if age < policy.min_age_seconds:
                    protected = f"too young ({format_age(age)} < {format_age(policy.min_age_seconds)})"
        candidates.append(_Candidate(image, last_used, keys, protected))

    candidates.sort(key=lambda c: (c.last_used, c.image.id))
    image_bytes = sum(layer_size.values())
    target, budget_measured = _target_bytes(policy, image_bytes, disk)

    remaining = image_bytes
    removals: list[ImageDecision] = []
    removed: set[str] = set()

    def remove(candidate: _Candidate, reason: str) -> None:
        nonlocal remaining
        freed = 0
        for key in candidate.layer_keys:
            layer_refs[key] -= 1
            if layer_refs[key] == 0:
                freed += layer_size[key]
        remaining -= freed
        removed.add(candidate.image.id)
        removals.append(ImageDecision(candidate.image, Verdict.REMOVE, reason, candidate.last_used, freed))

    unprotected = [c for c in candidates if c.protected is None]
    for candidate in unprotected:
        if candidate.image.dangling:
            remove(candidate, "dangling")
    max_unused = policy.max_unused_age_seconds
    if max_unused is not None:
        stale_reason = f"(> {format_age(max_unused)})"
        for candidate in unprotected:
            if candidate.image.id not in removed and now - candidate.last_used > max_unused:
                remove(candidate, f"unused since {_format_time(candidate.last_used)} {stale_reason}")
    if target is not None:
        for candidate in unprotected:
            if remaining <= target:
                break
            if candidate.image.id not in removed:
                remove(candidate, "least recently used")

    rest_reason = "within budget" if budget_measured else "no budget set"
    kept = [
        ImageDecision(c.image, Verdict.KEEP, c.protected or rest_reason, c.last_used)
        for c in candidates
        if c.image.id not in removed
    ]
    return GcPlan(
        decisions=(*removals, *kept),
        image_bytes=image_bytes,
        target_bytes=target,
        frees_bytes=image_bytes - remaining,
    )
