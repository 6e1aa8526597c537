"""airdock's exception types.

Every message names what failed and what to do about it, in one line, and never carries a
token or password.
"""

from __future__ import annotations


class AirdockError(Exception):
    """Base of every error airdock raises on purpose; its message is meant for a person."""


class ConfigError(AirdockError):
    """Bad input from the user: a flag, a path, a duration."""


class PrerequisiteError(AirdockError):
    """Something airdock needs is missing or busy: a binary, a port, an engine."""


class StackError(AirdockError):
    """The local ECR-compatible stack failed to start, stop or answer."""


class ImageReferenceError(ConfigError):
    """An image reference that cannot be parsed."""


class RegistryAuthError(AirdockError):
    """Registry credentials could not be obtained (no AWS credentials, access denied, API down)."""


class ImagePullError(AirdockError):
    """An image could not be pulled; the message says why (missing repository or tag, denied, unreachable)."""


class AccessDeniedError(RegistryAuthError):
    """The AWS identity lacks an IAM action; ``action`` names it (e.g. ``ecr:BatchGetImage``)."""

    def __init__(self, message: str, action: str | None = None) -> None:
        super().__init__(message)
        self.action = action


class PublishError(AirdockError):
    """An image could not be built or pushed; the message says why and what to do."""


class BuildError(PublishError):
    """The build failed: bad context, Dockerfile error, a failing step."""
