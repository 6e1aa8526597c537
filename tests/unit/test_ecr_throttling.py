"""GetAuthorizationToken answered with ThrottlingException: retried with backoff, then one line.

The ECR client is a stand-in (a few lines) because the point is the retry schedule, which the
local stack's rehearsal drives end to end on the cluster (tests/cluster/test_faults.py).
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from botocore.exceptions import ClientError

from airdock.auth.ecr import EcrTokenSource
from airdock.errors import RegistryAuthError
from airdock.images import ecr_registry_for, parse_image_ref


class ThrottledThenServed:
    def __init__(self, throttled: int, code: str = "ThrottlingException") -> None:
        self.throttled, self.code, self.calls = throttled, code, 0

    def get_authorization_token(self, **kwargs: Any) -> dict[str, Any]:
        self.calls += 1
        if self.calls <= self.throttled:
            raise ClientError(
                {"Error": {"Code": self.code, "Message": "Rate exceeded"}}, "GetAuthorizationToken"
            )
        token = base64.b64encode(b"AWS:secret-password").decode()
        expires = datetime.now(UTC) + timedelta(hours=12)
        return {
            "authorizationData": [{"authorizationToken": token, "expiresAt": expires, "proxyEndpoint": "x"}]
        }


_FOUND = ecr_registry_for(parse_image_ref("123456789012.dkr.ecr.us-east-1.amazonaws.com/team/job:v1"))
assert _FOUND is not None
REGISTRY = _FOUND


@pytest.mark.parametrize("code", ["ThrottlingException", "TooManyRequestsException"])
def test_five_throttled_answers_delay_the_token_and_back_off(code: str) -> None:
    client, slept = ThrottledThenServed(5, code), []
    credentials = EcrTokenSource(client, sleep=slept.append).fetch(REGISTRY)
    assert credentials.password == "secret-password"
    assert client.calls == 6
    assert len(slept) == 5 and all(0.25 <= s <= 8 for s in slept)
    assert slept[-1] > slept[0], "the waits grow"


def test_throttled_past_the_retries_is_one_line_naming_the_cause() -> None:
    client = ThrottledThenServed(100)
    with pytest.raises(RegistryAuthError) as raised:
        EcrTokenSource(client, sleep=lambda _: None, throttle_retries=3).fetch(REGISTRY)
    assert client.calls == 4
    message = str(raised.value)
    assert "\n" not in message
    assert message.startswith(
        f"ECR kept throttling GetAuthorizationToken for {REGISTRY.host} (ThrottlingException)"
    )


def test_other_errors_are_not_retried() -> None:
    client = ThrottledThenServed(100, code="AccessDeniedException")
    with pytest.raises(Exception, match="access denied"):
        EcrTokenSource(client, sleep=lambda _: pytest.fail("slept")).fetch(REGISTRY)
    assert client.calls == 1
