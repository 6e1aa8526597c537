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
