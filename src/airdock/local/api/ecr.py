"""A subset of the Amazon ECR API over AWS's JSON 1.1 protocol, so unmodified boto3 works.

``POST /`` with ``X-Amz-Target: AmazonEC2ContainerRegistry_V20150921.<Op>`` and a JSON body;
answers ``application/x-amz-json-1.1`` with an ``x-amzn-RequestId``. Errors have ECR's shape
(HTTP 400, ``{"__type": ..., "message": ...}``) so botocore raises ``ClientError`` with ECR's
codes. Any SigV4-signed request is accepted: there is no IAM here, only the signature's shape is
checked, as AWS does before it looks at credentials.

Operations are small handlers over ``(Backend, Params)``: the repository records live in the
``Store`` (SQLite), the images in the registry's storage (``RegistryStorage``). Every input is
validated before any state changes. ``GET /_airdock/status`` (not ECR) reports counters.

Other registries: this stack is one registry (``settings.account_id``). A request naming any
other ``registryId`` is refused with ``AccessDeniedException``, as ECR refuses a caller with no
cross-account permission, and changes nothing.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import threading
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from airdock.local.iam_simulation import denial_message
from airdock.local.registry import ImageRecord, RegistryStorage
from airdock.local.settings import StackSettings
from airdock.local.store import Repository, RepositoryExists, Store

log = logging.getLogger("airdock.local.api.ecr")

TARGET_PREFIX = "AmazonEC2ContainerRegistry_V20150921."
CONTENT_TYPE = "application/x-amz-json-1.1"
STATUS_PATH = "/_airdock/status"
MAX_BODY_BYTES = 1 << 20

# ECR's own wording of its repository-name rule (what it prints in InvalidParameterException).
REPOSITORY_NAME_PATTERN = r"(?:[a-z0-9]+(?:[._-][a-z0-9]+)*/)*[a-z0-9]+(?:[._-][a-z0-9]+)*"
_REPOSITORY_NAME = re.compile(REPOSITORY_NAME_PATTERN)
_REGISTRY_ID = re.compile(r"[0-9]{12}")
_IMAGE_DIGEST_PATTERN = r"[a-zA-Z0-9-_+.]+:[a-fA-F0-9]+"
_IMAGE_DIGEST = re.compile(_IMAGE_DIGEST_PATTERN)

TAG_MUTABILITY = ("MUTABLE", "IMMUTABLE")
ENCRYPTION_TYPES = ("AES256", "KMS", "KMS_DSSE")
TAG_STATUSES = ("TAGGED", "UNTAGGED", "ANY")
MAX_RESOURCE_TAGS = 50
MAX_IMAGE_IDS = 100
DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000

IMAGE_NOT_FOUND_REASON = "Requested image not found"
TAG_DIGEST_MISMATCH_REASON = "Invalid request parameters: given tag does not map to the given digest"
MISSING_ID_REASON = "Invalid request parameters: both tag and digest cannot be null"
INVALID_DIGEST_REASON = (
    f"Invalid request parameters: image digest should satisfy the regex '{_IMAGE_DIGEST_PATTERN}'"
)

JsonObject = dict[str, Any]


# -- errors ------------------------------------------------------------------------------------
class ApiError(Exception):
    """An AWS JSON 1.1 error: ``code`` becomes ``__type`` (and botocore's ``Error.Code``)."""

    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status


def invalid_parameter(path: str, constraint: str) -> ApiError:
    return ApiError(
        "InvalidParameterException",
        f"Invalid parameter at '{path}' failed to satisfy constraint: '{constraint}'",
    )


def serialization_error(message: str) -> ApiError:
    return ApiError("SerializationException", message)


def repository_not_found(name: str, registry_id: str) -> ApiError:
    return ApiError(
        "RepositoryNotFoundException",
        f"The repository with name '{name}' does not exist in the registry with id '{registry_id}'",
    )


# -- parameters --------------------------------------------------------------------------------
_JSON_KINDS: tuple[tuple[type, str], ...] = (
    (bool, "BOOLEAN_VALUE"),
    (int, "NUMBER_VALUE"),
    (float, "NUMBER_VALUE"),
    (str, "STRING_VALUE"),
)


def _type_error(value: object, wanted: str) -> ApiError:
    # The wording of AWS's JSON deserializer ("NUMBER_VALUE can not be converted to a String").
    if isinstance(value, list):
        return serialization_error("Start of list found where not expected")
    if isinstance(value, dict):
        return serialization_error("Start of structure or map found where not expected")
    kind = next((name for typ, name in _JSON_KINDS if isinstance(value, typ)), "VALUE")
    return serialization_error(f"{kind} can not be converted to {wanted}")


class Params:
    """Typed access to one JSON object of a request; ``path`` names it in error messages."""

    def __init__(self, data: JsonObject, path: str = "") -> None:
        self._data = data
        self._path = path

    def where(self, name: str) -> str:
        return f"{self._path}.{name}" if self._path else name

    def has(self, name: str) -> bool:
        return self._data.get(name) is not None

    def _get(self, name: str, required: bool) -> Any:
        value = self._data.get(name)
        if value is None and required:
            raise invalid_parameter(self.where(name), "Member must not be null")
        return value

    def string(
        self, name: str, *, required: bool = False, min_len: int = 0, max_len: int | None = None
    ) -> str | None:
        value = self._get(name, required)
        if value is None:
            return None
        if not isinstance(value, str):
            raise _type_error(value, "a String")
        _check_length(self.where(name), len(value), min_len, max_len)
        return value

    def required_string(self, name: str, *, min_len: int = 0, max_len: int | None = None) -> str:
        value = self.string(name, required=True, min_len=min_len, max_len=max_len)
        assert value is not None
        return value

    def enum(self, name: str, allowed: Sequence[str], *, default: str) -> str:
        value = self.string(name)
        if value is None:
            return default
        if value not in allowed:
            raise invalid_parameter(
                self.where(name), f"Member must satisfy enum value set: [{', '.join(allowed)}]"
            )
        return value

    def boolean(self, name: str, *, default: bool = False) -> bool:
        value = self._get(name, False)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise _type_error(value, "a Boolean")
        return value

    def integer(self, name: str, *, low: int, high: int) -> int | None:
        value = self._get(name, False)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            raise _type_error(value, "an Integer")
        if value < low:
            raise invalid_parameter(
                self.where(name), f"Member must have value greater than or equal to {low}"
            )
        if value > high:
            raise invalid_parameter(self.where(name), f"Member must have value less than or equal to {high}")
        return value

    def struct(self, name: str) -> Params | None:
        value = self._get(name, False)
        if value is None:
            return None
        if not isinstance(value, dict):
            raise _type_error(value, "a Structure")
        return Params(value, self.where(name))

    def items(
        self, name: str, *, required: bool = False, min_len: int = 0, max_len: int | None = None
    ) -> list[Any] | None:
        value = self._get(name, required)
        if value is None:
            return None
        if not isinstance(value, list):
            raise _type_error(value, "a List")
        _check_length(self.where(name), len(value), min_len, max_len)
        return value

    def structs(
        self, name: str, *, required: bool = False, min_len: int = 0, max_len: int | None = None
    ) -> list[Params] | None:
        values = self.items(name, required=required, min_len=min_len, max_len=max_len)
        if values is None:
            return None
        out = []
        for value in values:
            if not isinstance(value, dict):
                raise _type_error(value, "a Structure")
            out.append(Params(value, f"{self.where(name)}.member"))
        return out

    def strings(self, name: str, *, min_len: int = 0, max_len: int | None = None) -> list[str] | None:
        values = self.items(name, min_len=min_len, max_len=max_len)
        if values is None:
            return None
        for value in values:
            if not isinstance(value, str):
                raise _type_error(value, "a String")
        return values


def _check_length(path: str, length: int, min_len: int, max_len: int | None) -> None:
    if length < min_len:
        raise invalid_parameter(path, f"Member must have length greater than or equal to {min_len}")
    if max_len is not None and length > max_len:
        raise invalid_parameter(path, f"Member must have length less than or equal to {max_len}")


def repository_name(params: Params, name: str = "repositoryName") -> str:
    """The request's repository name, checked the way ECR checks it."""
    return check_repository_name(params.required_string(name), params.where(name))


def check_repository_name(value: str, path: str = "repositoryName") -> str:
    if len(value) < 2:
        raise invalid_parameter(path, "must have length greater than or equal to 2")
    if len(value) > 256:
        raise invalid_parameter(path, "must have length less than or equal to 256")
    if not _REPOSITORY_NAME.fullmatch(value):
        raise invalid_parameter(path, f"must satisfy regular expression '{REPOSITORY_NAME_PATTERN}'")
    return value


# -- backend and shapes ------------------------------------------------------------------------
@dataclass(frozen=True)
class Backend:
    """What the handlers work on. ``lock`` serialises requests so check-then-act is atomic."""

    settings: StackSettings
    store: Store
    storage: RegistryStorage
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def registry_id(self) -> str:
        return self.settings.account_id

    def repository(self, name: str) -> Repository:
        repo = self.store.get_repository(name)
        if repo is None:
            raise repository_not_found(name, self.registry_id)
        return repo


def repository_shape(backend: Backend, repo: Repository) -> JsonObject:
    settings = backend.settings
    return {
        "repositoryArn": f"arn:aws:ecr:{settings.region}:{settings.account_id}:repository/{repo.name}",
        "registryId": settings.account_id,
        "repositoryName": repo.name,
        "repositoryUri": f"{settings.registry_host}/{repo.name}",
        "createdAt": repo.created_at,
        "imageTagMutability": repo.tag_mutability,
        "imageScanningConfiguration": {"scanOnPush": repo.scan_on_push},
        "encryptionConfiguration": {"encryptionType": repo.encryption_type},
    }


def image_detail(backend: Backend, repo: str, image: ImageRecord) -> JsonObject:
    detail: JsonObject = {
        "registryId": backend.registry_id,
        "repositoryName": repo,
        "imageDigest": image.digest,
        "imageSizeInBytes": image.size_bytes,
        "imagePushedAt": image.pushed_at,
        "imageManifestMediaType": image.media_type,
    }
    if image.tags:
        detail["imageTags"] = list(image.tags)
    return detail


# -- pagination --------------------------------------------------------------------------------
def _encode_token(key: Sequence[str]) -> str:
    return base64.urlsafe_b64encode(json.dumps(list(key)).encode()).decode()


def _decode_token(token: str) -> list[str]:
    try:
        key = json.loads(base64.urlsafe_b64decode(token.encode()))
    except ValueError:
        key = None
    if not (isinstance(key, list) and key and all(isinstance(part, str) for part in key)):
        raise invalid_parameter("nextToken", "Member must be a nextToken returned by a previous call")
    return key


def paginate(
    items: Iterable[JsonObject], key: Callable[[JsonObject], list[str]], params: Params
) -> tuple[list[JsonObject], str | None]:
    """One page of ``items`` (in ``key`` order) after ``nextToken``, and the token for the next."""
    max_results = params.integer("maxResults", low=1, high=MAX_PAGE_SIZE) or DEFAULT_PAGE_SIZE
    token = params.string("nextToken")
    ordered = sorted(items, key=key)
    if token is not None:
        after = _decode_token(token)
        ordered = [item for item in ordered if key(item) > after]
    page = ordered[:max_results]
    more = len(ordered) > max_results
    return page, (_encode_token(key(page[-1])) if more else None)


# -- image identifiers -------------------------------------------------------------------------
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
        if image_id.digest is not None and not _IMAGE_DIGEST.fullmatch(image_id.digest):
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


# -- handlers ----------------------------------------------------------------------------------
Handler = Callable[[Backend, Params], JsonObject]


def get_authorization_token(backend: Backend, params: Params) -> JsonObject:
    params.strings("registryIds", min_len=1, max_len=10)  # checked against this registry by dispatch
    backend.store.bump("GetAuthorizationToken")
    issued = backend.store.issue_token(backend.settings.token_ttl_seconds)
    token = base64.b64encode(f"AWS:{issued.password}".encode()).decode()
    return {
        "authorizationData": [
            {
                "authorizationToken": token,
                "expiresAt": issued.expires_at,
                "proxyEndpoint": backend.settings.gateway_url,
            }
        ]
    }


def resource_tags(params: Params) -> tuple[tuple[str, str], ...]:
    members = params.structs("tags") or []
    tags = []
    for member in members:
        key = member.required_string("Key")
        value = member.required_string("Value")
        if not 1 <= len(key) <= 128:
            raise ApiError("InvalidTagParameterException", "Tag keys must be from 1 to 128 characters long")
        if len(value) > 256:
            raise ApiError("InvalidTagParameterException", "Tag values must be at most 256 characters long")
        tags.append((key, value))
    if len({key for key, _ in tags}) != len(tags):
        raise ApiError("InvalidTagParameterException", "Tag keys must be unique")
    if len(tags) > MAX_RESOURCE_TAGS:
        raise ApiError(
            "TooManyTagsException",
            "The list of tags on the repository is over the limit. The maximum number of tags "
            f"that can be applied to a repository is {MAX_RESOURCE_TAGS}.",
        )
    return tuple(tags)


def create_repository(backend: Backend, params: Params) -> JsonObject:
    name = repository_name(params)
    mutability = params.enum("imageTagMutability", TAG_MUTABILITY, default="MUTABLE")
    scanning = params.struct("imageScanningConfiguration")
    scan_on_push = scanning.boolean("scanOnPush") if scanning else False
    encryption = params.struct("encryptionConfiguration")
    encryption_type = "AES256"
    if encryption is not None:
        encryption_type = encryption.required_string("encryptionType")
        if encryption_type not in ENCRYPTION_TYPES:
            raise invalid_parameter(
                encryption.where("encryptionType"),
                f"Member must satisfy enum value set: [{', '.join(ENCRYPTION_TYPES)}]",
            )
        encryption.string("kmsKey", min_len=1, max_len=2048)
    tags = resource_tags(params)
    try:
        repo = backend.store.create_repository(
            name,
            tag_mutability=mutability,
            scan_on_push=scan_on_push,
            encryption_type=encryption_type,
            resource_tags=tags,
        )
    except RepositoryExists:
        raise ApiError(
            "RepositoryAlreadyExistsException",
            f"The repository with name '{name}' already exists "
            f"in the registry with id '{backend.registry_id}'",
        ) from None
    return {"repository": repository_shape(backend, repo)}


def describe_repositories(backend: Backend, params: Params) -> JsonObject:
    names = params.strings("repositoryNames", min_len=1, max_len=100)
    if names is not None:
        if params.has("maxResults") or params.has("nextToken"):
            raise ApiError(
                "InvalidParameterException",
                "maxResults and nextToken cannot be used when repositoryNames are specified",
            )
        for name in names:
            check_repository_name(name, "repositoryNames.member")
        return {"repositories": [repository_shape(backend, backend.repository(name)) for name in names]}
    shapes = [repository_shape(backend, repo) for repo in backend.store.list_repositories()]
    page, token = paginate(shapes, lambda r: [r["repositoryName"]], params)
    return _with_token({"repositories": page}, token)


def delete_repository(backend: Backend, params: Params) -> JsonObject:
    name = repository_name(params)
    force = params.boolean("force")
    repo = backend.repository(name)
    if not force and backend.storage.images(name):
        raise ApiError(
            "RepositoryNotEmptyException",
            f"The repository with name '{name}' in registry with id '{backend.registry_id}' "
            "cannot be deleted because it still contains images",
        )
    backend.storage.delete_repository(name)
    backend.store.delete_repository(name)
    return {"repository": repository_shape(backend, repo)}


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
    return _with_token({"imageIds": page}, token)


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
        return _with_token({"imageDetails": page}, token)
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


def _validated_policy(text: str) -> str:
    def failure(detail: str) -> ApiError:
        return invalid_parameter("LifecyclePolicyText", f"Lifecycle policy validation failure: {detail}")

    try:
        doc = json.loads(text)
    except ValueError:
        raise failure("the policy is not valid JSON") from None
    if not isinstance(doc, dict):
        raise failure("the policy must be a JSON object")
    rules = doc.get("rules")
    if not isinstance(rules, list) or not rules:
        raise failure('object has missing required properties (["rules"]) or an empty rules list')
    if not all(isinstance(rule, dict) for rule in rules):
        raise failure("every rule must be a JSON object")
    return text


def put_lifecycle_policy(backend: Backend, params: Params) -> JsonObject:
    name = repository_name(params)
    text = _validated_policy(params.required_string("lifecyclePolicyText", min_len=100, max_len=30720))
    backend.repository(name)
    if backend.store.put_lifecycle_policy(name, text) is None:
        raise repository_not_found(name, backend.registry_id)
    return {"registryId": backend.registry_id, "repositoryName": name, "lifecyclePolicyText": text}


def get_lifecycle_policy(backend: Backend, params: Params) -> JsonObject:
    name = repository_name(params)
    repo = backend.repository(name)
    if repo.lifecycle_policy is None:
        raise ApiError(
            "LifecyclePolicyNotFoundException",
            f"Lifecycle policy does not exist for the repository with name '{name}' "
            f"in the registry with id '{backend.registry_id}'",
        )
    return {
        "registryId": backend.registry_id,
        "repositoryName": name,
        "lifecyclePolicyText": repo.lifecycle_policy,
    }


def _with_token(body: JsonObject, token: str | None) -> JsonObject:
    if token is not None:
        body["nextToken"] = token
    return body


OPERATIONS: dict[str, Handler] = {
    "GetAuthorizationToken": get_authorization_token,
    "CreateRepository": create_repository,
    "DescribeRepositories": describe_repositories,
    "DeleteRepository": delete_repository,
    "ListImages": list_images,
    "DescribeImages": describe_images,
    "BatchGetImage": batch_get_image,
    "BatchDeleteImage": batch_delete_image,
    "PutLifecyclePolicy": put_lifecycle_policy,
    "GetLifecyclePolicy": get_lifecycle_policy,
}


# -- protocol ----------------------------------------------------------------------------------
_SIGV4_PARTS = ("Credential", "SignedHeaders", "Signature")


def check_signature_shape(request: Request) -> None:
    """Refuse what AWS refuses before looking at credentials: no SigV4 header, or a malformed one."""
    header = request.headers.get("authorization")
    query = request.query_params
    if header is None and all(query.get(f"X-Amz-{k}") for k in ("Algorithm", "Credential", "Signature")):
        return  # a presigned (query-string) SigV4 request
    if header is None:
        raise ApiError("MissingAuthenticationTokenException", "Missing Authentication Token", status=403)
    scheme, _, rest = header.strip().partition(" ")
    problems = []
    if scheme != "AWS4-HMAC-SHA256":
        problems.append("Authorization header requires 'AWS4-HMAC-SHA256' as its algorithm.")
    fields = {}
    for part in rest.split(","):
        key, sep, value = part.strip().partition("=")
        if sep and value:
            fields[key] = value
    problems.extend(
        f"Authorization header requires '{part}' parameter." for part in _SIGV4_PARTS if part not in fields
    )
    if "x-amz-date" not in request.headers and "date" not in request.headers:
        problems.append(
            "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header."
        )
    if problems:
        raise ApiError("IncompleteSignatureException", " ".join(problems))


def operation_name(request: Request) -> str:
    target = request.headers.get("x-amz-target", "")
    prefix, _, op = target.partition(".")
    if f"{prefix}." != TARGET_PREFIX or op not in OPERATIONS:
        raise ApiError(
            "UnknownOperationException", f"Unknown operation {target!r}" if target else "Missing X-Amz-Target"
        )
    return op


def parse_body(body: bytes) -> JsonObject:
    if not body.strip():
        return {}
    try:
        doc = json.loads(body)
    except ValueError:
        raise serialization_error("The request body is not valid JSON") from None
    if not isinstance(doc, dict):
        raise _type_error(doc, "a Structure")
    return doc


def check_registry(backend: Backend, op: str, params: Params) -> None:
    """Only this stack's registry is reachable; refuse any other ``registryId`` up front."""
    ids = params.strings("registryIds") if op == "GetAuthorizationToken" else None
    single = params.string("registryId")
    for registry_id in [*(ids or []), *([single] if single is not None else [])]:
        if not _REGISTRY_ID.fullmatch(registry_id):
            field_name = "registryIds.member" if ids and registry_id in ids else "registryId"
            raise invalid_parameter(field_name, "must satisfy regular expression '[0-9]{12}'")
        if registry_id != backend.registry_id:
            raise ApiError(
                "AccessDeniedException",
                f"Not authorized to perform: ecr:{op} on registry '{registry_id}': this local stack "
                f"serves only registry '{backend.registry_id}'",
            )


def serve(backend: Backend, op: str, data: JsonObject) -> JsonObject:
    """Validate the registry and run one operation, serialised with every other one."""
    params = Params(data)
    with backend.lock:
        check_registry(backend, op, params)
        check_denied(backend, op, params)
        return OPERATIONS[op](backend, params)


def check_denied(backend: Backend, op: str, params: Params) -> None:
    """Refuse actions the stack was told to deny (``--deny-action``), as IAM would."""
    action = f"ecr:{op}"
    settings = backend.settings
    if action in settings.denied_actions:
        repository = None if op == "GetAuthorizationToken" else params.string("repositoryName")
        raise ApiError(
            "AccessDeniedException", denial_message(settings.account_id, settings.region, action, repository)
        )


def _response(status: int, body: JsonObject, request_id: str, error: str | None = None) -> Response:
    headers = {"x-amzn-RequestId": request_id}
    if error is not None:
        headers["x-amzn-ErrorType"] = error
    return Response(
        json.dumps(body, separators=(",", ":")), status_code=status, headers=headers, media_type=CONTENT_TYPE
    )


def create_api_app(settings: StackSettings, store: Store, storage: RegistryStorage) -> Starlette:
    """The ECR control plane as a Starlette app (serve it on ``settings.api_port``)."""
    backend = Backend(settings=settings, store=store, storage=storage)

    async def ecr(request: Request) -> Response:
        request_id = str(uuid.uuid4())
        # Log only known operation names: the header is the caller's text.
        claimed = request.headers.get("x-amz-target", "").removeprefix(TARGET_PREFIX)
        op = claimed if claimed in OPERATIONS else "-"
        try:
            check_signature_shape(request)
            op = operation_name(request)
            body = await request.body()
            if len(body) > MAX_BODY_BYTES:
                raise serialization_error(f"The request body is larger than {MAX_BODY_BYTES} bytes")
            result = await run_in_threadpool(serve, backend, op, parse_body(body))
        except ApiError as err:
            log.info("ecr %s -> %d %s request_id=%s", op, err.status, err.code, request_id)
            return _response(err.status, {"__type": err.code, "message": err.message}, request_id, err.code)
        except Exception:
            log.exception("ecr %s -> 500 ServerException request_id=%s", op, request_id)
            message = f"An internal error occurred; see the airdock API log for request {request_id}"
            return _response(
                500, {"__type": "ServerException", "message": message}, request_id, "ServerException"
            )
        log.info("ecr %s -> 200 request_id=%s", op, request_id)
        return _response(200, result, request_id)

    async def status(request: Request) -> Response:
        return JSONResponse(
            {
                "account_id": settings.account_id,
                "region": settings.region,
                "token_ttl_seconds": settings.token_ttl_seconds,
                "counters": await run_in_threadpool(store.counters),
            }
        )

    async def unknown(request: Request) -> Response:
        request_id = str(uuid.uuid4())
        log.info("%s %s -> 404 UnknownOperationException", request.method, request.url.path)
        body = {
            "__type": "UnknownOperationException",
            "message": f"No operation at {request.method} {request.url.path}",
        }
        return _response(404, body, request_id, "UnknownOperationException")

    return Starlette(
        routes=[
            Route("/", ecr, methods=["POST"]),
            Route(STATUS_PATH, status, methods=["GET"]),
            Route("/{path:path}", unknown, methods=["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD"]),
        ]
    )
