"""The local stack's ECR API: backend (state and shapes), repositories, images, service (wiring)."""

from airdock.local.api.ecr.backend import REPOSITORY_NAME_PATTERN, TARGET_PREFIX
from airdock.local.api.ecr.service import OPERATIONS, create_api_app, ecr_service

__all__ = ["OPERATIONS", "REPOSITORY_NAME_PATTERN", "TARGET_PREFIX", "create_api_app", "ecr_service"]
