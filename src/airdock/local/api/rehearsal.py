"""Faults the local stack plays on request, to rehearse them (not AWS): ``POST /_airdock/rehearsal``.

``{"throttle": {"ecr:GetAuthorizationToken": 5}}`` answers the next 5 such calls with AWS's
``ThrottlingException``, as ECR does when an account calls too often; ``{"token_ttl_seconds": 20}``
makes the registry tokens issued from now on last 20 s (``null``: the stack's setting again);
``{"blob_delay_seconds": 5}`` makes the registry gateway hold every blob download 5 s before it
answers (``null``: no delay), so that a pull is reliably in progress when a test stops the gateway.
The answer, and the status route's ``rehearsal``, say what is armed, how many calls it refused and
how many blob downloads it held (``delayed_blobs``).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from airdock.local.api.errors import ApiError

__all__ = ["REHEARSAL_PATH", "Rehearsal"]

REHEARSAL_PATH = "/_airdock/rehearsal"


@dataclass
class Rehearsal:
    throttles: dict[str, int] = field(default_factory=dict)  # "ecr:GetAuthorizationToken" → still to refuse
    token_ttl_seconds: float | None = None
    blob_delay_seconds: float | None = None
    throttled_calls: int = 0
    delayed_blobs: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def apply(self, body: Any) -> dict[str, Any]:
        """Arm what ``body`` asks (validated whole before anything changes); what is armed now."""
        if not isinstance(body, dict) or set(body) - {"throttle", "token_ttl_seconds", "blob_delay_seconds"}:
            raise ApiError(
                "ValidationException",
                'expected {"throttle": {"service:Operation": n}, "token_ttl_seconds": s, '
                '"blob_delay_seconds": s}',
            )
        throttle = body.get("throttle", {})
        if not isinstance(throttle, dict) or not all(
            isinstance(k, str) and ":" in k and isinstance(v, int) and v >= 0 for k, v in throttle.items()
        ):
            raise ApiError("ValidationException", 'throttle: {"<service>:<Operation>": <calls ≥ 0>}')
        ttl = body.get("token_ttl_seconds", self.token_ttl_seconds)
        if ttl is not None and (not isinstance(ttl, int | float) or ttl <= 0):
            raise ApiError("ValidationException", "token_ttl_seconds: a positive number, or null")
        delay = body.get("blob_delay_seconds", self.blob_delay_seconds)
        if delay is not None and (not isinstance(delay, int | float) or not 0 < delay <= 600):
            raise ApiError("ValidationException", "blob_delay_seconds: seconds in (0, 600], or null")
        with self._lock:
            self.throttles.update(throttle)
            self.token_ttl_seconds = None if ttl is None else float(ttl)
            self.blob_delay_seconds = None if delay is None else float(delay)
        return self.describe()

    def throttled(self, service: str, operation: str) -> bool:
        """Whether this call is one to refuse (and count it)."""
        key = f"{service}:{operation}"
        with self._lock:
            left = self.throttles.get(key, 0)
            if left <= 0:
                return False
            self.throttles[key] = left - 1
            self.throttled_calls += 1
            return True

    def blob_delay(self) -> float:
        """How long to hold this blob download (0: not at all), counting the held ones."""
        with self._lock:
            if not self.blob_delay_seconds:
                return 0.0
            self.delayed_blobs += 1
            return self.blob_delay_seconds

    def describe(self) -> dict[str, Any]:
        with self._lock:
            return {
                "throttle": {k: v for k, v in self.throttles.items() if v > 0},
                "token_ttl_seconds": self.token_ttl_seconds,
                "throttled_calls": self.throttled_calls,
                "blob_delay_seconds": self.blob_delay_seconds,
                "delayed_blobs": self.delayed_blobs,
            }
