"""Simulated IAM denials for the local stack (``airdock local up --deny-action ecr:X``).

The stack is not IAM: it accepts any signed request. To let tests and users see how airdock
reacts when a worker's policy lacks an action, the stack can be told to refuse chosen ECR
actions, with the wording AWS uses ("User: ... is not authorized to perform: ecr:X on resource:
... because no identity-based policy allows the ecr:X action").
"""

from __future__ import annotations

import re

from airdock.errors import ConfigError

ACTION = re.compile(r"^ecr:[A-Z][A-Za-z]+$")
LOCAL_PRINCIPAL = "user/airdock-local"

# The data-plane requests and the IAM action ECR checks for each.
_BLOB_UPLOAD = re.compile(r"/blobs/uploads/?")


def validate_actions(actions: tuple[str, ...]) -> tuple[str, ...]:
    for action in actions:
        if not ACTION.match(action):
            raise ConfigError(f"invalid IAM action {action!r}: use the form ecr:BatchGetImage")
    return actions


def denial_message(account_id: str, region: str, action: str, repository: str | None) -> str:
    resource = "*" if repository is None else f"arn:aws:ecr:{region}:{account_id}:repository/{repository}"
    return (
        f"User: arn:aws:iam::{account_id}:{LOCAL_PRINCIPAL} is not authorized to perform: {action} "
        f"on resource: {resource} because no identity-based policy allows the {action} action"
    )


def registry_action(method: str, path: str) -> str | None:
    """The ECR IAM action a registry (``/v2/<name>/...``) request needs, or None for ``/v2/`` itself."""
    if "/manifests/" in path:
        return "ecr:PutImage" if method in ("PUT", "DELETE") else "ecr:BatchGetImage"
    if _BLOB_UPLOAD.search(path):
        if method == "POST":
            return "ecr:InitiateLayerUpload"
        if method == "PATCH":
            return "ecr:UploadLayerPart"
        return "ecr:CompleteLayerUpload"
    if "/blobs/" in path:
        return "ecr:BatchCheckLayerAvailability" if method == "HEAD" else "ecr:GetDownloadUrlForLayer"
    if path.endswith("/tags/list"):
        return "ecr:ListImages"
    return None
