"""ECR's image operations: list, describe, get (manifests), delete — by tag or digest."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from airdock.local.api.ecr.backend import (
    IMAGE_DIGEST,
    IMAGE_NOT_FOUND_REASON,
    INVALID_DIGEST_REASON,
    MAX_IMAGE_IDS,
    MISSING_ID_REASON,
    TAG_DIGEST_MISMATCH_REASON,
    TAG_STATUSES,
    Backend,
    image_detail,
)
from airdock.local.api.ecr.repositories import repository_name, with_token
from airdock.local.api.errors import ApiError
from airdock.local.api.pagination import paginate
from airdock.local.api.params import JsonObject, Params
from airdock.local.registry import ImageRecord


class ImageFailure(Exception):
    """A per-image failure of a batch operation (not an error of the whole request)."""

    def __init__(self, image_id: JsonObject, code: str, reason: str) -> None:
        super().__init__(reason)
        self.image_id = image_id
        self.code = code
        self.reason = reason

    def shape(self) -> JsonObject:
        return {"imageId": self.image_id, "failureCode": self.code, "failureReason": self.reason}


@dataclass(frozen=True)
class ImageId:
    """An ``ImageIdentifier`` as the caller wrote it."""

    digest: str | None
    tag: str | None

    def shape(self) -> JsonObject:
        out: JsonObject = {}
        if self.digest is not None:
            out["imageDigest"] = self.digest
        if self.tag is not None:
            out["imageTag"] = self.tag
        return out

    def describe(self) -> str:
        # ECR's rendering in ImageNotFoundException: {imageDigest:'null', imageTag:'x'}.
        return f"{{imageDigest:'{self.digest}', imageTag:'{self.tag}'}}".replace("'None'", "'null'")


def image_ids(params: Params, *, required: bool) -> list[ImageId] | None:
    members = params.structs("imageIds", required=required, min_len=1, max_len=MAX_IMAGE_IDS)
    if members is None:
        return None
    return [
        ImageId(
            digest=member.string("imageDigest"),
            tag=member.string("imageTag", min_len=1, max_len=300),
        )
        for member in members
    ]


@dataclass(frozen=True)
class ImageIndex:
    """A snapshot of a repository's images, by digest and by tag."""

    images: dict[str, ImageRecord]
    tags: dict[str, str]

    @classmethod
    def of(cls, records: Iterable[ImageRecord]) -> ImageIndex:
        images = {r.digest: r for r in records}
        tags = {tag: r.digest for r in images.values() for tag in r.tags}
        return cls(images=images, tags=tags)

    def resolve(self, image_id: ImageId) -> ImageRecord:
        """The image ``image_id`` names; raise ImageFailure with ECR's code when none."""
        shape = image_id.shape()
        if image_id.digest is None and image_id.tag is None:
            raise ImageFailure(shape, "MissingDigestAndTag", MISSING_ID_REASON)
        if image_id.digest is not None and not IMAGE_DIGEST.fullmatch(image_id.digest):
            raise ImageFailure(shape, "InvalidImageDigest", INVALID_DIGEST_REASON)
        if image_id.tag is not None:
            digest = self.tags.get(image_id.tag)
            if digest is None:
                raise ImageFailure(shape, "ImageNotFound", IMAGE_NOT_FOUND_REASON)
            if image_id.digest is not None and image_id.digest != digest:
                raise ImageFailure(shape, "ImageTagDoesNotMatchDigest", TAG_DIGEST_MISMATCH_REASON)
            return self.images[digest]
        assert image_id.digest is not None
        record = self.images.get(image_id.digest)
        if record is None:
            raise ImageFailure(shape, "ImageNotFound", IMAGE_NOT_FOUND_REASON)
        return record


def tag_status(params: Params) -> str:
    filt = params.struct("filter")
    return "ANY" if filt is None else filt.enum("tagStatus", TAG_STATUSES, default="ANY")


def _matches_status(tagged: bool, status: str) -> bool:
    return status == "ANY" or (status == "TAGGED") == tagged


def list_images(backend: Backend, params: Params) -> JsonObject:
    name = repository_name(params)
    status = tag_status(params)
    backend.repository(name)
    entries: list[JsonObject] = []
    for image in backend.storage.images(name):
        if image.tags and _matches_status(True, status):
            entries.extend({"imageDigest": image.digest, "imageTag": tag} for tag in image.tags)
        elif not image.tags and _matches_status(False, status):
            entries.append({"imageDigest": image.digest})
    page, token = paginate(entries, lambda e: [e["imageDigest"], e.get("imageTag", "")], params)
    return with_token({"imageIds": page}, token)


def describe_images(backend: Backend, params: Params) -> JsonObject:
    name = repository_name(params)
    wanted = image_ids(params, required=False)
    status = tag_status(params)
    backend.repository(name)
    index = ImageIndex.of(backend.storage.images(name))
    if wanted is None:
        details = [
            image_detail(backend, name, image)
            for image in index.images.values()
            if _matches_status(bool(image.tags), status)
        ]
        page, token = paginate(details, lambda d: [d["imageDigest"]], params)
        return with_token({"imageDetails": page}, token)
    if params.has("maxResults") or params.has("nextToken"):
        raise ApiError(
            "InvalidParameterException", "maxResults and nextToken cannot be used when imageIds are specified"
        )
    found: dict[str, ImageRecord] = {}
    for image_id in wanted:
        try:
            record = index.resolve(image_id)
        except ImageFailure as failure:
            if failure.code in ("MissingDigestAndTag", "InvalidImageDigest"):
                raise ApiError("InvalidParameterException", failure.reason) from None
            raise ApiError(
                "ImageNotFoundException",
                f"The image with imageId {image_id.describe()} does not exist within the repository "
                f"with name '{name}' in the registry with id '{backend.registry_id}'",
            ) from None
        found.setdefault(record.digest, record)
    return {"imageDetails": [image_detail(backend, name, image) for image in found.values()]}


def batch_get_image(backend: Backend, params: Params) -> JsonObject:
    name = repository_name(params)
    wanted = image_ids(params, required=True)
    assert wanted is not None
    # Accepted, not acted on: the registry serves manifests as pushed, with no conversion.
    params.strings("acceptedMediaTypes", min_len=1, max_len=100)
    backend.repository(name)
    index = ImageIndex.of(backend.storage.images(name))
    images: list[JsonObject] = []
    failures: list[JsonObject] = []
    for image_id in wanted:
        try:
            record = index.resolve(image_id)
        except ImageFailure as failure:
            failures.append(failure.shape())
            continue
        images.append(
            {
                "registryId": backend.registry_id,
                "repositoryName": name,
                "imageId": {**image_id.shape(), "imageDigest": record.digest},
                "imageManifest": record.manifest.decode("utf-8", errors="replace"),
                "imageManifestMediaType": record.media_type,
            }
        )
    return {"images": images, "failures": failures}


def batch_delete_image(backend: Backend, params: Params) -> JsonObject:
    """Delete by digest (the image and all its tags) or by tag (the tag; the image with its last tag)."""
    name = repository_name(params)
    wanted = image_ids(params, required=True)
    assert wanted is not None
    backend.repository(name)
    index = ImageIndex.of(backend.storage.images(name))
    failures: list[JsonObject] = []
    whole: dict[str, ImageRecord] = {}
    untag: dict[str, set[str]] = {}
    for image_id in wanted:
        try:
            record = index.resolve(image_id)
        except ImageFailure as failure:
            failures.append(failure.shape())
            continue
        if image_id.tag is None:
            whole[record.digest] = record
        else:
            untag.setdefault(record.digest, set()).add(image_id.tag)
    deleted: list[JsonObject] = []
    for digest, record in whole.items():
        backend.storage.delete_image(name, digest)
        deleted.extend(_deleted_ids(digest, record.tags))
    for digest, tags in untag.items():
        if digest in whole:
            continue
        for tag in sorted(tags):
            backend.storage.delete_tag(name, tag)
        if tags >= set(index.images[digest].tags):
            backend.storage.delete_image(name, digest)
        deleted.extend(_deleted_ids(digest, sorted(tags)))
    return {"imageIds": deleted, "failures": failures}


def _deleted_ids(digest: str, tags: Iterable[str]) -> list[JsonObject]:
    ids = [{"imageDigest": digest, "imageTag": tag} for tag in tags]
    return ids or [{"imageDigest": digest}]
