"""Pin an ECR image reference to its digest, so the digest logged is the digest ECS runs."""

from __future__ import annotations

from typing import Any

from airdock.errors import AccessDeniedError, ImagePullError
from airdock.images import EcrRegistry, ImageRef

__all__ = ["pin_to_digest"]


def pin_to_digest(ecr: Any, ref: ImageRef, registry: EcrRegistry) -> tuple[str, str]:
    """(``registry/repository@digest``, digest) for ``ref``, resolved with ECR's BatchGetImage."""
    from botocore.exceptions import ClientError

    if ref.digest:
        return f"{ref.registry}/{ref.repository}@{ref.digest}", ref.digest
    kwargs: dict[str, Any] = {
        "repositoryName": ref.repository,
        "imageIds": [{"imageTag": ref.tag or "latest"}],
        "acceptedMediaTypes": [
            "application/vnd.docker.distribution.manifest.v2+json",
            "application/vnd.docker.distribution.manifest.list.v2+json",
            "application/vnd.oci.image.manifest.v1+json",
            "application/vnd.oci.image.index.v1+json",
        ],
    }
    if registry.account_id:
        kwargs["registryId"] = registry.account_id
    try:
        response = ecr.batch_get_image(**kwargs)
    except ClientError as exc:
        error = exc.response["Error"]
        if error.get("Code") == "RepositoryNotFoundException":
            raise ImagePullError(
                f"image {ref} does not exist: repository {ref.repository} is not in {registry.host}"
            ) from None
        if error.get("Code") == "AccessDeniedException":
            raise AccessDeniedError(
                f"the worker's AWS identity may not read {ref} (ecr:BatchGetImage): grant it, see "
                "`airdock iam-policy ecs-runner`",
                action="ecr:BatchGetImage",
            ) from None
        raise ImagePullError(f"could not resolve {ref} to a digest: {error.get('Message')}") from None
    images = response.get("images") or []
    if not images:
        failure = (response.get("failures") or [{}])[0]
        raise ImagePullError(
            f"image {ref} does not exist in {registry.host} ({failure.get('failureReason', 'not found')}): "
            "push it or fix the tag"
        )
    digest = str(images[0]["imageId"]["imageDigest"])
    return f"{ref.registry}/{ref.repository}@{digest}", digest
