"""What a registry's refusal means: one classification of the engine's pull and push error messages.

The Docker engine passes a registry's refusal on as text (``denied: Your authorization token has
expired. ...``, ``name unknown: The repository with name 'x' does not exist ...``, ``dial tcp ...:
connection refused``). Pulls (``airdock.engine.pull``) and pushes (``airdock.analyst``'s
``publish``) read the same texts, so they read them here, in one precedence:

1. ``DENIED_ACTION`` — an IAM refusal naming the action (``not authorized to perform: ecr:X``);
2. ``REPOSITORY_MISSING`` — ``NAME_UNKNOWN`` / ECR's "repository with name ... does not exist";
3. ``TAG_MISSING`` — ``MANIFEST_UNKNOWN`` / "manifest for ... not found" (pulls);
4. ``TAG_IMMUTABLE`` — ``TAG_INVALID`` / "cannot be overwritten because the repository is immutable";
5. ``AUTH_REFUSED`` — the token itself refused (missing, expired: ECR's 403, malformed: its 400, a
   401): worth exactly one fresh token;
6. ``UNREACHABLE`` — the registry could not be reached or answered 503: worth a bounded retry;
7. ``DENIED`` — any other refusal (403, "denied");
8. ``OTHER``.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

__all__ = ["Refusal", "RegistryRefusal", "classify", "denied_action", "first_line"]

_ACTION = re.compile(r"not authorized to perform: (ecr:\w+)")
_REPOSITORY_MISSING = re.compile(
    r"NAME_UNKNOWN|name unknown|repository with name '[^']*' does not exist", re.IGNORECASE
)
_TAG_MISSING = re.compile(
    r"manifest unknown|MANIFEST_UNKNOWN|not found: manifest|manifest for .* not found", re.IGNORECASE
)
_TAG_IMMUTABLE = re.compile(
    r"TAG_INVALID|tag invalid|cannot be overwritten because the repository is immutable", re.IGNORECASE
)
_AUTH_REFUSED = re.compile(
    r"no basic auth credentials|authorization token has expired|authorization token is invalid|"
    r"\b401\b|unauthorized|authentication required",
    re.IGNORECASE,
)
_UNREACHABLE = re.compile(
    r"connection refused|no such host|i/o timeout|dial tcp|tls handshake timeout|network is unreachable|"
    r"connection reset|server misbehaving|\bEOF\b|503 Service Unavailable|\bUNAVAILABLE\b",
    re.IGNORECASE,
)
_DENIED = re.compile(r"\bdenied\b|403 Forbidden|not authorized to perform", re.IGNORECASE)


class Refusal(enum.Enum):
    DENIED_ACTION = "denied_action"
    REPOSITORY_MISSING = "repository_missing"
    TAG_MISSING = "tag_missing"
    TAG_IMMUTABLE = "tag_immutable"
    AUTH_REFUSED = "auth_refused"
    UNREACHABLE = "unreachable"
    DENIED = "denied"
    OTHER = "other"


@dataclass(frozen=True)
class RegistryRefusal:
    """A classified refusal: its kind, the IAM action it names (if any), and its first line."""

    kind: Refusal
    line: str
    action: str | None = None


def denied_action(message: str) -> str | None:
    """The IAM action an AWS "not authorized to perform: ecr:X" message names, if any."""
    match = _ACTION.search(message)
    return match.group(1) if match else None


def first_line(message: str) -> str:
    """The message on one line (its lines joined), or ``no detail``."""
    text = " ".join(part.strip() for part in message.strip().splitlines() if part.strip())
    return text or "no detail"


def classify(message: str) -> RegistryRefusal:
    """Classify the engine's text for a refused pull or push (see the module docstring)."""
    line = first_line(message)
    action = denied_action(message)
    if action:
        return RegistryRefusal(Refusal.DENIED_ACTION, line, action)
    for kind, pattern in (
        (Refusal.REPOSITORY_MISSING, _REPOSITORY_MISSING),
        (Refusal.TAG_MISSING, _TAG_MISSING),
        (Refusal.TAG_IMMUTABLE, _TAG_IMMUTABLE),
        (Refusal.AUTH_REFUSED, _AUTH_REFUSED),
        (Refusal.UNREACHABLE, _UNREACHABLE),
        (Refusal.DENIED, _DENIED),
    ):
        if pattern.search(message):
            return RegistryRefusal(kind, line)
    return RegistryRefusal(Refusal.OTHER, line)
