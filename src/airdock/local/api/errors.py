"""AWS's JSON 1.1 error shapes, as botocore reads them: ``{"__type": code, "message": ...}``.

Shared by every service the local stack serves (ECR today; ECS and CloudWatch Logs beside it).
"""

from __future__ import annotations

__all__ = ["ApiError", "invalid_parameter", "serialization_error"]


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
