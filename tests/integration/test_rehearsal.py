"""The local stack's rehearsal route: throttled ECR calls and a shorter token lifetime, on request."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import boto3
import httpx
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from airdock.local import settings as local_settings
from tests.conftest import StackHandle, airdock, start_stack

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def own_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackHandle]:
    """A stack of its own: what is armed here must not reach other tests."""
    handle = start_stack(tmp_path_factory.mktemp("rehearsal"))
    yield handle
    airdock("local", "down", "--data-dir", str(handle.data_dir), check=False)


def rehearse(stack: StackHandle, body: object) -> httpx.Response:
    return httpx.post(f"{stack.settings.api_url}/_airdock/rehearsal", json=body, timeout=10)


def ecr_without_retries(stack: StackHandle) -> object:
    return boto3.client(
        "ecr", endpoint_url=stack.settings.api_url, region_name=stack.settings.region,
        aws_access_key_id=local_settings.LOCAL_ACCESS_KEY_ID,
        aws_secret_access_key=local_settings.LOCAL_SECRET_ACCESS_KEY,
        config=Config(retries={"total_max_attempts": 1}),
    )  # fmt: skip


def test_armed_throttling_refuses_that_many_calls_then_serves(own_stack: StackHandle) -> None:
    ecr = ecr_without_retries(own_stack)
    armed = rehearse(own_stack, {"throttle": {"ecr:GetAuthorizationToken": 2}})
    assert armed.status_code == 200 and armed.json()["throttle"] == {"ecr:GetAuthorizationToken": 2}
    for _ in range(2):
        with pytest.raises(ClientError) as refused:
            ecr.get_authorization_token()  # type: ignore[attr-defined]
        assert refused.value.response["Error"]["Code"] == "ThrottlingException"
    ecr.get_authorization_token()  # type: ignore[attr-defined]
    status = own_stack.status()
    assert status["rehearsal"]["throttled_calls"] == 2 and status["rehearsal"]["throttle"] == {}


def test_the_token_lifetime_changes_for_tokens_issued_after(own_stack: StackHandle) -> None:
    ecr = ecr_without_retries(own_stack)
    assert rehearse(own_stack, {"token_ttl_seconds": 20}).status_code == 200
    expires = ecr.get_authorization_token()["authorizationData"][0]["expiresAt"]  # type: ignore[attr-defined]
    assert 15 < expires.timestamp() - time.time() <= 21
    assert rehearse(own_stack, {"token_ttl_seconds": None}).json()["token_ttl_seconds"] is None
    expires = ecr.get_authorization_token()["authorizationData"][0]["expiresAt"]  # type: ignore[attr-defined]
    assert expires.timestamp() - time.time() > 11 * 3600


@pytest.mark.parametrize(
    "body",
    [
        {"throttle": {"GetAuthorizationToken": 1}},  # no service
        {"throttle": {"ecr:GetAuthorizationToken": -1}},
        {"token_ttl_seconds": 0},
        {"throttle": {"ecr:GetAuthorizationToken": 3}, "token_ttl_seconds": "soon"},  # nothing armed
        {"blob_delay_seconds": 0},
        {"blob_delay_seconds": 601},
        {"throttle": {"ecr:GetAuthorizationToken": 2}, "blob_delay_seconds": "slow"},  # nothing armed
        {"other": 1},
        [1],
    ],
)
def test_bad_input_is_refused_and_arms_nothing(own_stack: StackHandle, body: object) -> None:
    before = own_stack.status()["rehearsal"]
    refused = rehearse(own_stack, body)
    assert refused.status_code == 400
    assert refused.json()["__type"] in ("ValidationException", "SerializationException")
    assert own_stack.status()["rehearsal"] == before


def test_a_blob_delay_holds_blob_downloads_through_the_gateway(
    own_stack: StackHandle, docker_client: Any, base_image: str
) -> None:
    """The gateway holds each blob download as long as armed (so that a pull is surely in progress
    when a test stops the gateway); manifests are not held, and ``null`` ends it."""
    own_stack.publish(docker_client, base_image, "rehearsal/job")
    auth = httpx.BasicAuth(**own_stack.auth_config())
    base = f"{own_stack.settings.gateway_url}/v2/rehearsal/job"
    accept = {"Accept": "application/vnd.docker.distribution.manifest.v2+json"}
    armed = rehearse(own_stack, {"blob_delay_seconds": 1.5}).json()
    assert armed["blob_delay_seconds"] == 1.5
    manifest = httpx.get(f"{base}/manifests/v1", headers=accept, auth=auth, timeout=30)
    assert own_stack.status()["rehearsal"]["delayed_blobs"] == armed["delayed_blobs"], "manifests: not held"
    config = manifest.json()["config"]["digest"]
    started = time.monotonic()
    blob = httpx.get(f"{base}/blobs/{config}", auth=auth, timeout=30, follow_redirects=True)
    blob_s = time.monotonic() - started
    assert blob.status_code == 200 and blob.json()["rootfs"]["type"] == "layers"
    assert blob_s >= 1.5, blob_s
    assert own_stack.status()["rehearsal"]["delayed_blobs"] == armed["delayed_blobs"] + 1
    assert rehearse(own_stack, {"blob_delay_seconds": None}).json()["blob_delay_seconds"] is None
    httpx.get(f"{base}/blobs/{config}", auth=auth, timeout=30, follow_redirects=True).raise_for_status()
    assert own_stack.status()["rehearsal"]["delayed_blobs"] == armed["delayed_blobs"] + 1, "no longer held"
