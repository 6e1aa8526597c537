"""How daemon pull errors become one-line messages, on the wordings the docker daemon really produces.

The integration tests provoke most of these against the real engine and stack; the cases here
cover wordings the local stack cannot produce (real ECR's own texts, DNS failures).
"""

from __future__ import annotations

import pytest

from airdock.engine.pull import PullPolicy, _classify
from airdock.errors import AccessDeniedError, ConfigError, ImagePullError
from airdock.images import parse_image_ref

HOST = "123456789012.dkr.ecr.eu-west-1.amazonaws.com"
REF = parse_image_ref(f"{HOST}/team/app:v1")


@pytest.mark.parametrize(
    ("daemon_says", "expected"),
    [
        (
            f"pull access denied for {HOST}/team/app, repository does not exist or may require "
            "'docker login': denied: User: arn:aws:sts::123456789012:assumed-role/worker/i-1 "
            "is not authorized to perform: ecr:BatchGetImage on resource: arn:aws:ecr:eu-west-1:123456789012:"
            "repository/team/app because no identity-based policy allows the ecr:BatchGetImage action",
            f"access denied pulling {HOST}/team/app:v1: the worker's AWS "
            "identity lacks ecr:BatchGetImage on repository 'team/app'; add it to its IAM policy "
            "(see `airdock iam-policy puller`)",
        ),
        (
            "name unknown: The repository with name 'team/app' does not exist in the registry with id "
            "'123456789012'",
            f"repository 'team/app' does not exist in registry {HOST}: "
            "create it and push the image, or fix the image name",
        ),
        (
            f"manifest for {HOST}/team/app:v1 not found: manifest unknown: "
            "Requested image not found",
            f"tag 'v1' does not exist in repository 'team/app' of registry {HOST}: "
            "push it or fix the image reference",
        ),
        (
            f'Head "https://{HOST}/v2/team/app/manifests/v1": no basic auth credentials',
            f"registry {HOST} refused the credentials for {HOST}/team/app:v1: "
            f'Head "https://{HOST}/v2/team/app/manifests/v1": no basic auth credentials',
        ),
        ("something else entirely", f"pull of {HOST}/team/app:v1 failed: something else entirely"),
    ],
)  # fmt: skip
def test_classification(daemon_says: str, expected: str) -> None:
    error = _classify(REF, daemon_says)
    assert str(error) == expected
    assert "\n" not in str(error)


def test_denied_errors_carry_the_action() -> None:
    error = _classify(REF, "denied: ... is not authorized to perform: ecr:GetDownloadUrlForLayer on resource")
    assert isinstance(error, AccessDeniedError)
    assert error.action == "ecr:GetDownloadUrlForLayer"


def test_digest_references_name_the_digest() -> None:
    ref = parse_image_ref(f"{HOST}/team/app@sha256:" + "a" * 64)
    error = _classify(ref, "manifest unknown")
    assert isinstance(error, ImagePullError)
    assert str(error).startswith(f"digest sha256:{'a' * 64} does not exist in repository 'team/app'")


def test_pull_policy_parsing() -> None:
    assert PullPolicy.parse("always") is PullPolicy.ALWAYS
    with pytest.raises(ConfigError, match=r"invalid pull_policy 'sometimes': use one of if_not_present, "):
        PullPolicy.parse("sometimes")
