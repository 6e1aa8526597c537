"""What the ECR operations work on: the repository records (Store), the images (RegistryStorage),
ECR's limits and wording, and the response shapes of repositories and images."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from airdock.local.api.errors import ApiError
from airdock.local.api.params import JsonObject, Params
from airdock.local.api.rehearsal import Rehearsal
from airdock.local.registry import ImageRecord, RegistryStorage
from airdock.local.settings import StackSettings
from airdock.local.store import Repository, Store

TARGET_PREFIX = "AmazonEC2ContainerRegistry_V20150921."

# ECR's own wording of its repository-name rule (what it prints in InvalidParameterException).
REPOSITORY_NAME_PATTERN = r"(?:[a-z0-9]+(?:[._-][a-z0-9]+)*/)*[a-z0-9]+(?:[._-][a-z0-9]+)*"
REPOSITORY_NAME = re.compile(REPOSITORY_NAME_PATTERN)
REGISTRY_ID = re.compile(r"[0-9]{12}")
IMAGE_DIGEST_PATTERN = r"[a-zA-Z0-9-_+.]+:[a-fA-F0-9]+"
IMAGE_DIGEST = re.compile(IMAGE_DIGEST_PATTERN)

TAG_MUTABILITY = ("MUTABLE", "IMMUTABLE")
ENCRYPTION_TYPES = ("AES256", "KMS", "KMS_DSSE")
TAG_STATUSES = ("TAGGED", "UNTAGGED", "ANY")
MAX_RESOURCE_TAGS = 50
MAX_IMAGE_IDS = 100

IMAGE_NOT_FOUND_REASON = "Requested image not found"
TAG_DIGEST_MISMATCH_REASON = "Invalid request parameters: given tag does not map to the given digest"
MISSING_ID_REASON = "Invalid request parameters: both tag and digest cannot be null"
INVALID_DIGEST_REASON = (
    f"Invalid request parameters: image digest should satisfy the regex '{IMAGE_DIGEST_PATTERN}'"
)


def repository_not_found(name: str, registry_id: str) -> ApiError:
    return ApiError(
        "RepositoryNotFoundException",
        f"The repository with name '{name}' does not exist in the registry with id '{registry_id}'",
    )


@dataclass(frozen=True)
class Backend:
    """What the handlers work on. ``lock`` serialises requests so check-then-act is atomic."""

    settings: StackSettings
    store: Store
    storage: RegistryStorage
    rehearsal: Rehearsal | None = None  # faults played on request (throttling, token lifetime)
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


Handler = Callable[[Backend, Params], JsonObject]
