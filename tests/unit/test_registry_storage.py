"""RegistryStorage against storage written by the real Distribution registry (pushed over HTTP)."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from airdock.local.registry import (
    MANIFEST_LIST,
    OCI_INDEX,
    OCI_MANIFEST,
    SCHEMA2_MANIFEST,
    RegistryStorage,
    manifest_media_type,
    manifest_size,
    validate_repository_name,
)
from tests.registry_push import needs_registry, push_image, push_index, running_registry

pytestmark = pytest.mark.timeout(120)

V2 = Path("docker/registry/v2")


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[tuple[str, RegistryStorage]]:
    """A real registry on a free port over a fresh root, and a RegistryStorage on that root."""
    root = tmp_path / "registry"
    with running_registry(root) as url:
        yield url, RegistryStorage(root)


def manifest_status(url: str, repo: str, reference: str) -> int:
    headers = {"Accept": f"{SCHEMA2_MANIFEST}, {MANIFEST_LIST}"}
    return httpx.get(f"{url}/v2/{repo}/manifests/{reference}", headers=headers, trust_env=False).status_code


@needs_registry
def test_images_lists_tagged_and_untagged_revisions_with_sizes(registry: tuple[str, RegistryStorage]) -> None:
    url, storage = registry
    tagged = push_image(url, "team/app", "v1", layers=[b"a" * 1000, b"b" * 24])
    untagged = push_image(url, "team/app", None, layers=[b"c" * 7])

    images = {image.digest: image for image in storage.images("team/app")}

    assert set(images) == {tagged.digest, untagged.digest}
    assert images[tagged.digest].tags == ("v1",)
    assert images[untagged.digest].tags == ()
    assert images[tagged.digest].size_bytes == tagged.size_bytes
    assert tagged.size_bytes > 1024  # layers plus config, not the manifest's own length
    assert images[untagged.digest].size_bytes == untagged.size_bytes
    assert images[tagged.digest].media_type == SCHEMA2_MANIFEST
    assert images[tagged.digest].manifest == tagged.manifest
    assert abs(images[tagged.digest].pushed_at - time.time()) < 60


@needs_registry
def test_tags_are_sorted_and_follow_the_latest_push(registry: tuple[str, RegistryStorage]) -> None:
    url, storage = registry
    first = push_image(url, "app", "stable", layers=[b"one"])
    push_image(url, "app", "zeta", layers=[b"one"])
    push_image(url, "app", "alpha", layers=[b"one"])
    second = push_image(url, "app", "stable", layers=[b"two"])  # moves "stable"

    images = {image.digest: image for image in storage.images("app")}

    assert images[first.digest].tags == ("alpha", "zeta")
    assert images[second.digest].tags == ("stable",)
    assert storage.tag_digest("app", "stable") == second.digest
    assert storage.tag_digest("app", "missing") is None
    assert storage.tag_digest("nothing-here", "stable") is None


@needs_registry
def test_push_time_is_the_first_push_not_a_re_push(registry: tuple[str, RegistryStorage]) -> None:
    url, storage = registry
    image = push_image(url, "app", "v1", layers=[b"same"])
    first = storage.images("app")[0].pushed_at
    time.sleep(0.05)
    push_image(url, "app", "v2", layers=[b"same"])  # same manifest: the registry rewrites its link

    (record,) = storage.images("app")
    assert record.digest == image.digest
    assert record.tags == ("v1", "v2")
    assert record.pushed_at == pytest.approx(first, abs=0.01)


@needs_registry
def test_manifest_list_size_is_its_own_length(registry: tuple[str, RegistryStorage]) -> None:
    url, storage = registry
    amd = push_image(url, "multi", None, layers=[b"amd" * 100])
    arm = push_image(url, "multi", None, layers=[b"arm" * 100])
    index = push_index(url, "multi", "latest", [amd, arm])

    images = {image.digest: image for image in storage.images("multi")}

    assert images[index.digest].media_type == MANIFEST_LIST
    assert images[index.digest].size_bytes == len(index.manifest)
    assert images[index.digest].tags == ("latest",)
    assert len(images) == 3


@needs_registry
def test_nested_repositories_are_separate(registry: tuple[str, RegistryStorage]) -> None:
    url, storage = registry
    parent = push_image(url, "a1", "v1", layers=[b"parent"])
    child = push_image(url, "a1/b1", "v1", layers=[b"child"])

    assert [i.digest for i in storage.images("a1")] == [parent.digest]
    assert [i.digest for i in storage.images("a1/b1")] == [child.digest]
    assert storage.images("a1/b1/c1") == []
    assert storage.images("never-pushed") == []


@needs_registry
def test_delete_image_removes_revision_and_its_tags(registry: tuple[str, RegistryStorage]) -> None:
    url, storage = registry
    doomed = push_image(url, "app", "v1", layers=[b"doomed"])
    push_image(url, "app", "v2", layers=[b"doomed"])
    kept = push_image(url, "app", "v3", layers=[b"kept"])

    assert storage.delete_image("app", doomed.digest) is True

    assert [i.digest for i in storage.images("app")] == [kept.digest]
    assert storage.tag_digest("app", "v1") is None
    assert storage.tag_digest("app", "v2") is None
    # The running registry agrees: the manifest and its tags are gone, the other image stays.
    assert manifest_status(url, "app", doomed.digest) == 404
    assert manifest_status(url, "app", "v1") == 404
    assert manifest_status(url, "app", "v3") == 200
    assert storage.delete_image("app", doomed.digest) is False
    assert storage.delete_image("app", "sha256:" + "0" * 64) is False
    assert storage.delete_image("app", "not-a-digest") is False


@needs_registry
def test_delete_tag_keeps_the_image(registry: tuple[str, RegistryStorage]) -> None:
    url, storage = registry
    image = push_image(url, "app", "v1", layers=[b"x"])
    push_image(url, "app", "latest", layers=[b"x"])

    assert storage.delete_tag("app", "latest") is True

    (record,) = storage.images("app")
    assert record.digest == image.digest
    assert record.tags == ("v1",)
    assert manifest_status(url, "app", "latest") == 404
    assert manifest_status(url, "app", image.digest) == 200
    assert storage.delete_tag("app", "latest") is False
    assert storage.delete_tag("app", "../../etc") is False


@needs_registry
def test_delete_repository_keeps_nested_children(registry: tuple[str, RegistryStorage]) -> None:
    url, storage = registry
    push_image(url, "a1", "v1", layers=[b"parent"])
    child = push_image(url, "a1/b1", "v1", layers=[b"child"])

    storage.delete_repository("a1")

    assert storage.images("a1") == []
    assert [i.digest for i in storage.images("a1/b1")] == [child.digest]
    assert manifest_status(url, "a1", "v1") == 404
    assert manifest_status(url, "a1/b1", "v1") == 200
    # The registry can take new pushes to the deleted name.
    again = push_image(url, "a1", "v2", layers=[b"again"])
    assert [i.digest for i in storage.images("a1")] == [again.digest]


@needs_registry
def test_delete_repository_prunes_empty_directories(
    registry: tuple[str, RegistryStorage], tmp_path: Path
) -> None:
    url, storage = registry
    push_image(url, "solo/deep/name", "v1", layers=[b"x"])
    root = tmp_path / "registry" / V2 / "repositories"
    assert (root / "solo" / "deep" / "name" / "_manifests").is_dir()

    storage.delete_repository("solo/deep/name")

    assert not (root / "solo").exists()
    storage.delete_repository("solo/deep/name")  # idempotent


@needs_registry
def test_vanished_blob_is_not_an_image(registry: tuple[str, RegistryStorage], tmp_path: Path) -> None:
    url, storage = registry
    image = push_image(url, "app", "v1", layers=[b"x"])
    hex_digest = image.digest.removeprefix("sha256:")
    blob = tmp_path / "registry" / V2 / "blobs" / "sha256" / hex_digest[:2] / hex_digest / "data"
    assert blob.is_file()
    os.remove(blob)

    assert storage.images("app") == []


@pytest.mark.parametrize(
    "name", ["..", "a/../b", "../escape", "/abs", "a//b", "a/", "_manifests", "a/_layers", "UPPER", ""]
)
def test_unsafe_repository_names_are_rejected(tmp_path: Path, name: str) -> None:
    storage = RegistryStorage(tmp_path)
    with pytest.raises(ValueError, match="invalid repository name"):
        storage.images(name)
    with pytest.raises(ValueError, match="invalid repository name"):
        storage.delete_repository(name)
    with pytest.raises(ValueError, match="invalid repository name"):
        validate_repository_name(name)


def test_media_type_and_size_inference() -> None:
    oci_manifest = {
        "schemaVersion": 2,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "size": 10},
        "layers": [{"size": 5}, {"size": 7}],
    }
    assert manifest_media_type(oci_manifest) == OCI_MANIFEST
    assert manifest_size(oci_manifest, b"raw", OCI_MANIFEST) == 22
    assert manifest_media_type({"schemaVersion": 2, "manifests": []}) == OCI_INDEX
    assert manifest_size({"manifests": []}, b"12345", OCI_INDEX) == 5
    assert manifest_media_type({"schemaVersion": 2}) == SCHEMA2_MANIFEST
    assert manifest_media_type({"mediaType": "x/y"}) == "x/y"
