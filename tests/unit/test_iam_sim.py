from __future__ import annotations

import pytest

from airdock.errors import ConfigError
from airdock.local.iam_simulation import denial_message, registry_action, validate_actions


@pytest.mark.parametrize(
    ("method", "path", "action"),
    [
        ("GET", "/v2/team/app/manifests/v1", "ecr:BatchGetImage"),
        ("HEAD", "/v2/team/app/manifests/sha256:abc", "ecr:BatchGetImage"),
        ("PUT", "/v2/team/app/manifests/v1", "ecr:PutImage"),
        ("GET", "/v2/team/app/blobs/sha256:abc", "ecr:GetDownloadUrlForLayer"),
        ("HEAD", "/v2/team/app/blobs/sha256:abc", "ecr:BatchCheckLayerAvailability"),
        ("POST", "/v2/team/app/blobs/uploads/", "ecr:InitiateLayerUpload"),
        ("PATCH", "/v2/team/app/blobs/uploads/uuid-1", "ecr:UploadLayerPart"),
        ("PUT", "/v2/team/app/blobs/uploads/uuid-1", "ecr:CompleteLayerUpload"),
        ("GET", "/v2/team/app/tags/list", "ecr:ListImages"),
        ("GET", "/v2/", None),
    ],
)
def test_registry_requests_map_to_the_iam_action_ecr_checks(
    method: str, path: str, action: str | None
) -> None:
    assert registry_action(method, path) == action


def test_denial_message_has_aws_wording() -> None:
    message = denial_message("123456789012", "us-east-1", "ecr:BatchGetImage", "team/app")
    assert message == (
        "User: arn:aws:iam::123456789012:user/airdock-local is not authorized to perform: ecr:BatchGetImage "
        "on resource: arn:aws:ecr:us-east-1:123456789012:repository/team/app because no identity-based "
        "policy allows the ecr:BatchGetImage action"
    )
    assert "on resource: * because" in denial_message(
        "123456789012", "us-east-1", "ecr:GetAuthorizationToken", None
    )


@pytest.mark.parametrize("action", ["BatchGetImage", "ecr:", "s3:GetObject", "ecr:batch"])
def test_bad_actions_are_refused(action: str) -> None:
    with pytest.raises(ConfigError, match="invalid IAM action"):
        validate_actions((action,))
