"""What the engine holds now: images (with their layers where shared), containers, the data-root disk.

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
"""

from __future__ import annotations

import hashlib
import os
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from airdock.hygiene.model import ContainerInfo, DiskUsage, GcPolicy, ImageInfo, Layer

__all__ = ["Inventory", "over_budget", "read_containers", "read_disk", "read_images", "read_inventory"]


@dataclass(frozen=True)
class Inventory:
    """What the engine holds now."""

    images: list[ImageInfo]
    containers: list[ContainerInfo]
    disk: DiskUsage | None


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


def read_images(client: Any) -> list[ImageInfo]:
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


def read_containers(client: Any) -> list[ContainerInfo]:
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
    return Inventory(images=read_images(client), containers=read_containers(client), disk=read_disk(client))


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
    for image in read_images(client):
        for layer in image.layers or (Layer(image.id, image.size),):
            unique[layer.id] = layer.size
    return sum(unique.values()) > policy.max_image_bytes
