"""Image GC, applied: remove the plan's images by id, each re-checked just before, nothing else.

Removal is without ``force`` and never prunes: each removal is re-checked under
:meth:`UsageStore.removal_lock` (see :mod:`airdock.hygiene.usage` for the race protocol), and an
engine refusal (409: a container was created from it meanwhile) is a skip, not a failure. Before
anything goes, the usage store must belong to this engine (:func:`check_store`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from airdock import metrics
from airdock.hygiene.gc_plan import plan_gc
from airdock.hygiene.inventory import Inventory, read_inventory
from airdock.hygiene.model import GcPlan, GcPolicy, ImageDecision, ImageInfo
from airdock.hygiene.units import format_bytes
from airdock.hygiene.usage import UsageStore

__all__ = ["SKIP_LEASED", "GcResult", "apply_gc", "check_store", "collect_gc"]

LOG = logging.getLogger("airdock.hygiene")

SKIP_LEASED = "in use: a task started it"


@dataclass
class GcResult:
    """What ``apply_gc`` did: removed decisions, skipped and failed ones with why, bytes freed."""

    removed: list[ImageDecision] = field(default_factory=list)
    failed: list[tuple[ImageDecision, str]] = field(default_factory=list)
    skipped: list[tuple[ImageDecision, str]] = field(default_factory=list)
    freed_bytes: int = 0  # the plan's estimate for the removed images (shared layers once)
    seconds: float = 0.0


def check_store(client: Any, usage_store: UsageStore) -> None:
    """Refuse a usage store marked by another engine; mark a new one with this engine.

    Raises EngineMismatchError (one line naming the store and both engines): a GC must never
    trust a store whose leases are another engine's.
    """
    from airdock.hygiene.state import engine_mark

    usage_store.claim_engine(engine_mark(client.api))


def collect_gc(
    client: Any, usage_store: UsageStore, policy: GcPolicy, now: float, *, inventory: Inventory | None = None
) -> GcPlan:
    """Check the store belongs to this engine (marking a new one), read the inventory (unless given) and
    the usage record, and plan: no effect on the engine, all ``--dry-run`` runs."""
    check_store(client, usage_store)
    if inventory is None:
        inventory = read_inventory(client)
    usage = usage_store.usage_for(inventory.images, now)
    return plan_gc(inventory.images, inventory.containers, usage, policy, now, inventory.disk)


def _image_name(image: ImageInfo) -> str:
    return image.tags[0] if image.tags else image.id[:19]


def _repository(reference: str) -> str:
    if "@" in reference:
        return reference.split("@", 1)[0]
    name, colon, tag = reference.rpartition(":")
    return name if colon and "/" not in tag else reference


def _remove_image(client: Any, image_id: str, tags: Sequence[str], digests: Sequence[str]) -> None:
    """Remove an image by id without force.

    The engine refuses (409) to delete by id an image referenced from more than one repository or
    by several tags unless forced; untagging all but one tag — and the digest references of other
    repositories — first, then deleting by id, removes it the way ``docker rmi`` of each name would.
    """
    keeper = tags[-1] if tags else (digests[0] if digests else None)
    keeper_repo = _repository(keeper) if keeper else None
    extra = [*tags[:-1], *(d for d in digests if _repository(d) != keeper_repo)]
    for reference in extra:
        client.api.remove_image(reference, force=False, noprune=False)
    client.api.remove_image(image_id, force=False, noprune=False)


def apply_gc(
    client: Any, plan: GcPlan, usage_store: UsageStore, log: logging.Logger | None = None
) -> GcResult:
    """Remove the plan's REMOVE images in order, each re-checked under the host-wide removal lock.

    Skipped (not failed): an image a lease now covers, one a container now uses (checked, and
    refused by the engine with 409 if created in between), and one already gone.
    """
    import docker.errors

    logger = log or LOG
    result = GcResult()
    started = time.monotonic()
    removed_ids: list[str] = []
    if plan.removals:
        check_store(client, usage_store)  # before anything goes: the leases must be this engine's
    for decision in plan.removals:
        image = decision.image
        name = _image_name(image)
        with usage_store.removal_lock():
            try:
                details = client.api.inspect_image(image.id)
            except docker.errors.NotFound:
                result.skipped.append((decision, "already gone"))
                continue
            tags = [t for t in (details.get("RepoTags") or []) if t and not t.startswith("<none>")]
            digests = list(details.get("RepoDigests") or [])
            if usage_store.leased_until(image.id, [*tags, *digests], time.time()) is not None:
                result.skipped.append((decision, SKIP_LEASED))
                logger.info("gc: kept image %s: %s", name, SKIP_LEASED)
                continue
            if client.api.containers(all=True, quiet=True, filters={"ancestor": image.id}):
                result.skipped.append((decision, "in use by a container created meanwhile"))
                logger.info("gc: kept image %s: in use by a container created meanwhile", name)
                continue
            try:
                _remove_image(client, image.id, tags, digests)
            except docker.errors.NotFound:
                result.skipped.append((decision, "already gone"))
                continue
            except docker.errors.APIError as exc:
                if exc.status_code == 409:
                    reason = f"engine refused: {exc.explanation or exc}"
                    result.skipped.append((decision, reason))
                    logger.info("gc: kept image %s: %s", name, reason)
                else:
                    reason = str(exc.explanation or exc)
                    result.failed.append((decision, reason))
                    logger.warning("gc: failed to remove image %s: %s", name, reason)
                continue
        removed_ids.append(image.id)
        result.removed.append(decision)
        result.freed_bytes += decision.frees_bytes
        logger.info(
            "gc: removed image %s (%s, %s): %s",
            name,
            image.id[:19],
            format_bytes(decision.frees_bytes or image.size),
            decision.reason,
        )
    if removed_ids:
        usage_store.forget(removed_ids)
    result.seconds = time.monotonic() - started
    metrics.emit(metrics.GC_IMAGES_REMOVED, len(result.removed))
    metrics.emit(metrics.GC_BYTES_RECLAIMED, result.freed_bytes)
    metrics.emit(metrics.GC_DURATION, result.seconds)
    metrics.emit(metrics.IMAGE_STORE_BYTES, max(0, plan.image_bytes - result.freed_bytes))
    return result
