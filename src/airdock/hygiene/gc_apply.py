"""Hygiene's effects: read the engine's inventory, apply a GC or sweep plan. Nothing else acts.

Reading the inventory (:func:`read_inventory`) costs one image list, one inspect per image and one
container list, plus one ``history`` call per image that shares a layer with another:

- ``inspect`` is needed for every image anyway (``Metadata.LastTagTime``, ``RootFS.Layers``,
  ``RepoDigests``, the exact ``Size``). From the diff ids in ``RootFS.Layers`` the chain ids are
  computed here (``sha256(parent chain id + " " + diff id)``, as the engine's layer store names
  layers), so sharing between images is found with no further call.
- Only images that share a layer need per-layer sizes, which only ``history`` gives (one entry
  per config history item; the non-empty ones carry their layer's size, oldest last). An image
  that shares nothing is one unit of its ``Size`` — exact, and one call cheaper.
- ``system df`` would give ``SharedSize`` in one call, but not *which* layers are shared, and the
  engine computes every container's and volume's size to answer it: slow on a busy worker.

Applying a plan removes images by id without ``force`` and never prunes: each removal is re-checked
under :meth:`UsageStore.removal_lock` (see :mod:`airdock.hygiene.usage` for the race protocol),
and an engine refusal (409: a container was created from it meanwhile) is a skip, not a failure.
Containers are touched only when they carry ``airdock.managed=true``, checked again right before.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from airdock.hygiene.gc_plan import format_bytes, plan_gc, plan_sweep
from airdock.hygiene.model import (
    MANAGED_LABEL,
    ContainerDecision,
    ContainerInfo,
    DiskUsage,
    GcPlan,
    GcPolicy,
    ImageDecision,
    ImageInfo,
    Layer,
    SweepPlan,
    SweepPolicy,
    TaskKey,
    TaskStatus,
)
from airdock.hygiene.usage import UsageStore

__all__ = [
    "GcResult",
    "Inventory",
    "apply_gc",
    "apply_sweep",
    "check_store",
    "collect_gc",
    "collect_sweep",
    "over_budget",
    "read_inventory",
]

LOG = logging.getLogger("airdock.hygiene")

SKIP_LEASED = "in use: a task started it"


@dataclass(frozen=True)
class Inventory:
    """What the engine holds now."""

    images: list[ImageInfo]
    containers: list[ContainerInfo]
    disk: DiskUsage | None


@dataclass
class GcResult:
    """What ``apply_gc`` did: removed decisions, skipped and failed ones with why, bytes freed."""

    removed: list[ImageDecision] = field(default_factory=list)
    failed: list[tuple[ImageDecision, str]] = field(default_factory=list)
    skipped: list[tuple[ImageDecision, str]] = field(default_factory=list)
    freed_bytes: int = 0  # the plan's estimate for the removed images (shared layers once)
    seconds: float = 0.0


# ---------------------------------------------------------------------------------------------
# Inventory


_FRACTION = re.compile(r"(\.\d{1,6})\d*")


def _parse_time(text: str | None) -> float | None:
    """RFC 3339 with up to nanoseconds (as the engine writes it) → epoch seconds; zero time → None."""
    if not text or text.startswith("0001-01-01"):
        return None
    try:
        return datetime.fromisoformat(_FRACTION.sub(r"\1", text, count=1).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _chain_ids(diff_ids: Sequence[str]) -> list[str]:
    chain: list[str] = []
    for diff_id in diff_ids:
        if not chain:
            chain.append(diff_id)
        else:
            chain.append("sha256:" + hashlib.sha256(f"{chain[-1]} {diff_id}".encode()).hexdigest())
    return chain


def _layer_sizes(client: Any, image_id: str, n_layers: int) -> list[int] | None:
    """Per-layer sizes (base first) from ``history``; None when they cannot be matched to layers."""
    entries = list(reversed(client.api.history(image_id)))  # the engine lists newest first
    sizes = [int(entry.get("Size") or 0) for entry in entries]
    if len(sizes) == n_layers:
        return sizes  # no empty-layer entries: one entry per layer
    nonzero = [size for size in sizes if size > 0]
    if len(nonzero) == n_layers:
        return nonzero  # the zero entries are the empty layers (ENV, CMD, LABEL...)
    return None  # zero-sized real layers among empty ones: ambiguous


def _read_images(client: Any) -> list[ImageInfo]:
    import docker.errors

    raw: list[tuple[dict[str, Any], dict[str, Any]]] = []
    for summary in client.api.images():
        try:
            details = client.api.inspect_image(summary["Id"])
        except docker.errors.NotFound:
            continue  # removed since the listing
        raw.append((summary, details))

    chains = {
        details["Id"]: _chain_ids((details.get("RootFS") or {}).get("Layers") or []) for _, details in raw
    }
    holders = Counter(chain_id for ids in chains.values() for chain_id in set(ids))
    images: list[ImageInfo] = []
    for summary, details in raw:
        image_id = details["Id"]
        tags = tuple(t for t in (details.get("RepoTags") or []) if t and not t.startswith("<none>"))
        size = int(details.get("Size") or 0)
        layers: tuple[Layer, ...] = ()
        chain = chains[image_id]
        if any(holders[chain_id] > 1 for chain_id in chain):
            try:
                sizes = _layer_sizes(client, image_id, len(chain))
            except docker.errors.NotFound:
                continue
            if sizes is not None:
                layers = tuple(
                    Layer(chain_id, layer_size) for chain_id, layer_size in zip(chain, sizes, strict=True)
                )
                size = sum(sizes)
        created = _parse_time(details.get("Created")) or float(summary.get("Created") or 0)
        images.append(
            ImageInfo(
                id=image_id,
                tags=tags,
                size=size,
                created=created,
                layers=layers,
                last_tagged=_parse_time((details.get("Metadata") or {}).get("LastTagTime")),
                repo_digests=tuple(details.get("RepoDigests") or ()),
            )
        )
    return images


def _read_containers(client: Any) -> list[ContainerInfo]:
    return [
        ContainerInfo(
            id=item["Id"],
            image_id=item.get("ImageID") or "",
            state=item.get("State") or "",
            created=float(item.get("Created") or 0),
            labels=dict(item.get("Labels") or {}),
        )
        for item in client.api.containers(all=True)
    ]


def read_disk(client: Any) -> DiskUsage | None:
    """The filesystem under the engine's data root, when that path is on this machine; else None."""
    root = (client.info() or {}).get("DockerRootDir")
    if not root or not os.path.isdir(root):
        return None  # a remote engine, or one in another mount namespace
    stats = os.statvfs(root)
    total = stats.f_blocks * stats.f_frsize
    return DiskUsage(total_bytes=total, used_bytes=total - stats.f_bfree * stats.f_frsize)


def read_inventory(client: Any) -> Inventory:
    """Images (with layers where shared), every container with its labels, and the data-root disk."""
    return Inventory(images=_read_images(client), containers=_read_containers(client), disk=read_disk(client))


def over_budget(client: Any, policy: GcPolicy) -> bool:
    """A cheap test whether a GC run could have work to do against the budgets (no layer reads first).

    The image list's sizes count shared layers once per image, so they overestimate; only when
    that estimate is over ``max_image_bytes`` is the exact inventory read.
    """
    if policy.high_watermark_percent is not None:
        disk = read_disk(client)
        if disk is not None and disk.used_bytes * 100 >= policy.high_watermark_percent * disk.total_bytes > 0:
            return True
    if policy.max_image_bytes is None:
        return False
    estimate = sum(int(item.get("Size") or 0) for item in client.api.images())
    if estimate <= policy.max_image_bytes:
        return False
    unique: dict[str, int] = {}
    for image in _read_images(client):
        for layer in image.layers or (Layer(image.id, image.size),):
            unique[layer.id] = layer.size
    return sum(unique.values()) > policy.max_image_bytes


# ---------------------------------------------------------------------------------------------
# Image GC


def check_store(client: Any, usage_store: UsageStore) -> None:
    """Refuse a usage store marked by another engine; mark a new one with this engine.

    Raises EngineMismatchError (one line naming the store and both engines): a GC must never
    trust a store whose leases are another engine's.
    """
    from airdock.engine.client import engine_mark

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
    return result


# ---------------------------------------------------------------------------------------------
# Orphaned containers


def collect_sweep(
    client: Any, statuses: Mapping[TaskKey, TaskStatus] | None, policy: SweepPolicy, now: float
) -> SweepPlan:
    """Plan which labelled containers are orphans (``statuses`` None: Airflow was not asked)."""
    return plan_sweep(_read_containers(client), statuses, policy, now)


def apply_sweep(
    client: Any, plan: SweepPlan, grace_seconds: int = 10, log: logging.Logger | None = None
) -> list[ContainerDecision]:
    """Stop (``grace_seconds`` before SIGKILL) and remove the plan's REMOVE containers; returns those removed.

    The label is checked again on the engine's current view before anything is touched; a
    container planned as stopped that runs now is kept (only Airflow's word stops a running one);
    a container already gone is skipped, a refusal is logged as a warning and skipped.
    """
    import docker.errors

    logger = log or LOG
    removed: list[ContainerDecision] = []
    for decision in plan.removals:
        container_id = decision.container.id
        try:
            details = client.api.inspect_container(container_id)
            labels = (details.get("Config") or {}).get("Labels") or {}
            if labels.get(MANAGED_LABEL) != "true":
                logger.warning("sweep: container %s is not airdock's: left alone", container_id[:12])
                continue
            running = bool((details.get("State") or {}).get("Running"))
            if running and decision.container.stopped:
                # Planned as a stopped container (the age rule), started since: not what was decided on.
                logger.info("sweep: kept container %s: started since the plan was made", container_id[:12])
                continue
            if running:
                client.api.stop(container_id, timeout=grace_seconds)
            client.api.remove_container(container_id, v=True, force=False)
        except docker.errors.NotFound:
            continue  # gone already (its task's own cleanup, or another sweep)
        except docker.errors.APIError as exc:
            logger.warning(
                "sweep: failed to remove container %s: %s", container_id[:12], exc.explanation or exc
            )
            continue
        removed.append(decision)
        logger.info(
            "sweep: removed container %s (image %s): %s",
            container_id[:12],
            decision.container.image_id[:19],
            decision.reason,
        )
    return removed
