"""The local stack's CloudWatch Logs API: validation, backend (shapes, tokens), groups, streams,
events, filter patterns, service (wiring)."""

from airdock.local.api.logs.backend import TARGET_PREFIX
from airdock.local.api.logs.service import OPERATIONS, logs_service

__all__ = ["OPERATIONS", "TARGET_PREFIX", "logs_service"]
