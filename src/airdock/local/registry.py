"""Read-only views and deletions on the Distribution registry's filesystem storage.

The registry (CNCF Distribution v2.8, ``storage: filesystem``) keeps, under its root::

    docker/registry/v2/repositories/<name>/_manifests/revisions/sha256/<hex>/link   one per manifest
    docker/registry/v2/repositories/<name>/_manifests/tags/<tag>/current/link       digest of the tag
    docker/registry/v2/repositories/<name>/_manifests/tags/<tag>/index/sha256/<hex>/link
    docker/registry/v2/repositories/<name>/_layers/sha256/<hex>/link
    docker/registry/v2/blobs/sha256/<hex[:2]>/<hex>/data                             content

A name may contain slashes, so repository ``a/b`` lives inside ``a``'s directory, beside its
``_manifests``. Reading these files (instead of the HTTP API) gives what the registry API does
not: every revision, tagged or not, with its push time. Deletions remove links only; blobs stay
for the registry's garbage collector, which is out of scope.
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SCHEMA2_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
SCHEMA1_SIGNED_MANIFEST = "application/vnd.docker.distribution.manifest.v1+prettyjws"
MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
_OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
_INDEX_TYPES = frozenset({MANIFEST_LIST, OCI_INDEX})

# Distribution's own grammar for a path component and a tag: neither admits "..", "/" in a
# tag, or a leading "_" (which would collide with "_manifests" and friends).
_COMPONENT = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*")
_TAG = re.compile(r"[\w][\w.-]{0,127}")
_SHA256_DIGEST = re.compile(r"sha256:([a-f0-9]{64})")
_REPO_DIRS = ("_manifests", "_layers", "_uploads")


@dataclass(frozen=True)
class ImageRecord:
    """One manifest revision of a repository, as ECR describes an image."""

    digest: str
    tags: tuple[str, ...]
    pushed_at: float
    size_bytes: int
    media_type: str
    manifest: bytes = field(repr=False)


def validate_repository_name(name: str) -> None:
    """Raise ValueError unless ``name`` is a registry repository name (no traversal possible)."""
    if not name or len(name) > 256 or not all(_COMPONENT.fullmatch(part) for part in name.split("/")):
        raise ValueError(f"invalid repository name {name!r}")


def digest_hex(digest: str) -> str | None:
    """The hex part of a ``sha256:<64 hex>`` digest, or None for anything else."""
    match = _SHA256_DIGEST.fullmatch(digest)
    return match.group(1) if match else None


def manifest_media_type(doc: dict[str, Any]) -> str:
    """The manifest's media type: its ``mediaType`` field, else inferred, else Docker schema2."""
    declared = doc.get("mediaType")
    if isinstance(declared, str) and declared:
        return declared
    if doc.get("schemaVersion") == 1:
        return SCHEMA1_SIGNED_MANIFEST
    if isinstance(doc.get("manifests"), list):
        return OCI_INDEX
    config = doc.get("config")
    if isinstance(config, dict) and config.get("mediaType") == _OCI_CONFIG:
        return OCI_MANIFEST
    return SCHEMA2_MANIFEST


def manifest_size(doc: dict[str, Any], raw: bytes, media_type: str) -> int:
    """ECR's ``imageSizeInBytes``: layers plus config for an image, the manifest itself for an index."""
    if media_type in _INDEX_TYPES or not isinstance(doc.get("layers"), list):
        return len(raw)
    descriptors = [*doc["layers"], doc.get("config")]
    return sum(d["size"] for d in descriptors if isinstance(d, dict) and isinstance(d.get("size"), int))


def _read_link(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except (FileNotFoundError, NotADirectoryError):
        return None


class RegistryStorage:
    """Views and deletions on one registry root (``StackSettings.registry_root``)."""

    def __init__(self, root: Path) -> None:
        self._root = root
        self._v2 = root / "docker" / "registry" / "v2"

    # -- paths -------------------------------------------------------------------------------
    def _repo_dir(self, repo: str) -> Path:
        validate_repository_name(repo)
        return self._v2 / "repositories" / repo

    def _blob(self, hex_digest: str) -> Path:
        return self._v2 / "blobs" / "sha256" / hex_digest[:2] / hex_digest / "data"

    # -- reads -------------------------------------------------------------------------------
    def _tags_by_digest(self, manifests: Path) -> dict[str, list[str]]:
        tags: dict[str, list[str]] = {}
        tags_dir = manifests / "tags"
        if not tags_dir.is_dir():
            return tags
        for tag_dir in tags_dir.iterdir():
            digest = _read_link(tag_dir / "current" / "link")
            if digest is not None:
                tags.setdefault(digest, []).append(tag_dir.name)
        return tags

    def _first_tagged(self, manifests: Path) -> dict[str, float]:
        """Per digest hex, the earliest mtime among the tags' history links."""
        first: dict[str, float] = {}
        for link in manifests.glob("tags/*/index/sha256/*/link"):
            try:
                mtime = link.stat().st_mtime
            except FileNotFoundError:
                continue
            hex_digest = link.parent.name
            first[hex_digest] = min(mtime, first.get(hex_digest, mtime))
        return first

    def images(self, repo: str) -> list[ImageRecord]:
        """Every manifest revision of ``repo``, tagged or not, oldest push first; [] if none."""
        manifests = self._repo_dir(repo) / "_manifests"
        revisions = manifests / "revisions" / "sha256"
        if not revisions.is_dir():
            return []
        tags = self._tags_by_digest(manifests)
        first_tagged = self._first_tagged(manifests)
        records = []
        for revision in revisions.iterdir():
            record = self._record(revision, tags, first_tagged)
            if record is not None:
                records.append(record)
        records.sort(key=lambda r: (r.pushed_at, r.digest))
        return records

    def _record(
        self, revision: Path, tags: dict[str, list[str]], first_tagged: dict[str, float]
    ) -> ImageRecord | None:
        # The registry writes while we read: a revision that vanishes or whose content is
        # missing (deleted, or collected) is simply not an image any more.
        link = revision / "link"
        digest = _read_link(link)
        hex_digest = digest_hex(digest or "")
        if digest is None or hex_digest is None:
            return None
        try:
            # The registry rewrites the revision link on every PUT of the same manifest, but
            # ECR's push time is the first push: a tag's history link may remember it.
            pushed_at = min(link.stat().st_mtime, first_tagged.get(hex_digest, float("inf")))
            raw = self._blob(hex_digest).read_bytes()
        except (FileNotFoundError, NotADirectoryError):
            return None
        try:
            doc = json.loads(raw)
        except ValueError:
            doc = None
        if not isinstance(doc, dict):
            doc = {}
        media_type = manifest_media_type(doc)
        return ImageRecord(
            digest=digest,
            tags=tuple(sorted(tags.get(digest, ()))),
            pushed_at=pushed_at,
            size_bytes=manifest_size(doc, raw, media_type),
            media_type=media_type,
            manifest=raw,
        )

    def tag_digest(self, repo: str, tag: str) -> str | None:
        """The digest ``repo:tag`` points to, or None when the tag does not exist."""
        if not _TAG.fullmatch(tag):
            return None
        return _read_link(self._repo_dir(repo) / "_manifests" / "tags" / tag / "current" / "link")

    # -- deletions ---------------------------------------------------------------------------
    def delete_image(self, repo: str, digest: str) -> bool:
        """Remove the revision ``digest`` and every tag pointing at it; False when absent."""
        manifests = self._repo_dir(repo) / "_manifests"
        hex_digest = digest_hex(digest)
        if hex_digest is None:
            return False
        revision = manifests / "revisions" / "sha256" / hex_digest
        if not (revision / "link").is_file():
            return False
        for tag in self._tags_by_digest(manifests).get(digest, []):
            shutil.rmtree(manifests / "tags" / tag, ignore_errors=True)
        # Other tags' history may mention the digest; drop those entries too so nothing in
        # the repository still refers to the deleted revision.
        tags_dir = manifests / "tags"
        if tags_dir.is_dir():
            for tag_dir in tags_dir.iterdir():
                shutil.rmtree(tag_dir / "index" / "sha256" / hex_digest, ignore_errors=True)
        shutil.rmtree(revision, ignore_errors=True)
        return True

    def delete_tag(self, repo: str, tag: str) -> bool:
        """Remove the tag (the image it pointed to stays); False when there was no such tag."""
        if not _TAG.fullmatch(tag):
            return False
        tag_dir = self._repo_dir(repo) / "_manifests" / "tags" / tag
        if not (tag_dir / "current" / "link").is_file():
            return False
        shutil.rmtree(tag_dir, ignore_errors=True)
        return True

    def delete_repository(self, repo: str) -> None:
        """Remove the repository's manifests, layer links and uploads, keeping nested repositories."""
        repo_dir = self._repo_dir(repo)
        for name in _REPO_DIRS:
            shutil.rmtree(repo_dir / name, ignore_errors=True)
        # Prune directories left empty, up to (not including) the repositories root.
        top = self._v2 / "repositories"
        current = repo_dir
        while current != top and current.is_dir() and not any(current.iterdir()):
            current.rmdir()
            current = current.parent
