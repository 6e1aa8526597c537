"""The AWS checks: credentials resolve (and whose they are), and GetAuthorizationToken works."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

from airdock.analyst.doctor.registry_checks import registry_base_url
from airdock.analyst.doctor.report import CheckResult, failed, one_line, passed
from airdock.auth.credentials import RegistryCredentials
from airdock.auth.ecr import GET_TOKEN_ACTION, EcrTokenSource
from airdock.errors import AccessDeniedError, RegistryAuthError
from airdock.images import EcrRegistry

__all__ = [
    "CHECK_CREDENTIALS",
    "CHECK_TOKEN",
    "FIX_CREDENTIALS",
    "TokenOutcome",
    "check_credentials",
    "check_token",
    "mask_access_key",
    "token_fix",
]

CHECK_CREDENTIALS = "aws credentials"
CHECK_TOKEN = "ecr token"  # noqa: S105 - a check name
# Hosts of AWS's own API endpoints, to tell "AWS itself" from a stand-in or a private endpoint.
_AWS_API_SUFFIXES = (
    ".amazonaws.com",
    ".amazonaws.com.cn",
    ".api.aws",
    ".on.aws",
    ".c2s.ic.gov",
    ".sc2s.sgov.gov",
)

_REJECTED_CREDENTIALS = {
    "InvalidClientTokenId",
    "SignatureDoesNotMatch",
    "ExpiredToken",
    "ExpiredTokenException",
    "UnrecognizedClientException",
    "InvalidAccessKeyId",
}

FIX_CREDENTIALS = (
    "set AWS credentials (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE) "
    "or give the worker an IAM role"
)


def mask_access_key(key: str) -> str:
    """An access key id shown as its first and last 4 characters (``AKIA…MPLE``); short ones not at all."""
    if len(key) < 12:
        return "…" if not key else "****"
    return f"{key[:4]}…{key[-4:]}"


def _is_aws_endpoint(url: str | None) -> bool:
    host = (urlparse(url).hostname or "") if url else ""
    return host.endswith(_AWS_API_SUFFIXES)


def check_credentials(
    session: Any, sts_factory: Callable[[], Any] | None, ecr_endpoint: str | None
) -> CheckResult:
    """boto3's credential chain resolves, and whose credentials they are (STS GetCallerIdentity).

    An unreachable STS leaves the identity unknown but does not fail the check: the credentials
    resolved, and the token check tells whether ECR takes them. STS refusing them fails it,
    unless ECR is served elsewhere (a stand-in or private endpoint) while STS is AWS's own: such
    credentials are meant for that endpoint, not for AWS.
    """
    from botocore.exceptions import (
        BotoCoreError,
        ClientError,
        ConnectTimeoutError,
        EndpointConnectionError,
        ReadTimeoutError,
    )

    try:
        credentials = session.get_credentials()
        frozen = credentials.get_frozen_credentials() if credentials is not None else None
    except (BotoCoreError, ClientError) as exc:
        return failed(CHECK_CREDENTIALS, f"could not resolve them: {one_line(exc)}", FIX_CREDENTIALS)
    if frozen is None or not frozen.access_key:
        return failed(
            CHECK_CREDENTIALS,
            "none found (environment, shared credentials/config files, container or instance role)",
            FIX_CREDENTIALS,
        )
    source = (
        f"access key {mask_access_key(frozen.access_key)} from {getattr(credentials, 'method', None) or '?'}"
    )
    if sts_factory is None:
        return passed(CHECK_CREDENTIALS, f"{source} (identity not asked)")
    sts_endpoint: str | None = None
    try:
        sts = sts_factory()
        sts_endpoint = str(sts.meta.endpoint_url)
        if _is_aws_endpoint(sts_endpoint) and ecr_endpoint is not None and not _is_aws_endpoint(ecr_endpoint):
            # ECR is a stand-in (the local stack) or a private endpoint: AWS's own STS would not
            # know these credentials, and it may not even be reachable from here. Don't ask it.
            return passed(
                CHECK_CREDENTIALS,
                f"{source} (identity not asked: ECR is served at {ecr_endpoint}; "
                "set AWS_ENDPOINT_URL_STS to ask an STS there)",
            )
        arn = str(sts.get_caller_identity()["Arn"])
    except ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code", ""))
        if code in _REJECTED_CREDENTIALS:
            if _is_aws_endpoint(sts_endpoint) and not _is_aws_endpoint(ecr_endpoint):
                return passed(
                    CHECK_CREDENTIALS,
                    f"{source} (identity unknown: AWS STS refused them ({code}); "
                    f"ECR is served by {ecr_endpoint})",
                )
            return failed(
                CHECK_CREDENTIALS,
                f"{source}: AWS STS refused them ({code})",
                "refresh or replace the AWS credentials (expired session, deleted or mistyped key)",
            )
        return passed(CHECK_CREDENTIALS, f"{source} (identity unknown: STS answered {code or 'an error'})")
    except (EndpointConnectionError, ConnectTimeoutError, ReadTimeoutError):
        where = f" at {sts_endpoint}" if sts_endpoint else ""
        return passed(CHECK_CREDENTIALS, f"{source} (identity unknown: STS unreachable{where})")
    except BotoCoreError as exc:
        return passed(CHECK_CREDENTIALS, f"{source} (identity unknown: {one_line(exc, 160)})")
    return passed(CHECK_CREDENTIALS, f"{source}: {arn}")


@dataclass(frozen=True)
class TokenOutcome:
    """What the token check learnt: the credentials (None on failure) and the registry's URL."""

    result: CheckResult
    credentials: RegistryCredentials | None = field(default=None, repr=False)
    base_url: str | None = None


class _RecordingClient:
    """An ECR client that keeps GetAuthorizationToken's reply, for its ``proxyEndpoint``."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.reply: dict[str, Any] | None = None

    def get_authorization_token(self, **kwargs: Any) -> Any:
        self.reply = self._client.get_authorization_token(**kwargs)
        return self.reply


def token_fix(exc: RegistryAuthError, endpoint: str | None) -> str:
    """The fix for a failed GetAuthorizationToken, from the kind of failure EcrTokenSource reports."""
    text = str(exc)
    if isinstance(exc, AccessDeniedError):
        return (
            f'allow {exc.action or GET_TOKEN_ACTION} on resource "*" in the IAM policy of this AWS identity'
        )
    if "no AWS credentials" in text:
        return FIX_CREDENTIALS
    if "no AWS region" in text:
        return "set AWS_DEFAULT_REGION (or pass --region), or name an ECR host that carries its region"
    if "unreachable" in text:
        return (
            f"check the network path to the ECR API at {endpoint or 'its endpoint'} "
            "(AWS_ENDPOINT_URL_ECR, proxy, VPC endpoint)"
        )
    if "rejected the credentials" in text:
        return "refresh or replace the AWS credentials (expired session, deleted or mistyped key)"
    return "check the ECR API's answer above; retry, or check the AWS service health"


def check_token(
    ecr_factory: Callable[[], Any], registry: EcrRegistry | None, clock: Callable[[], float] = time.time
) -> TokenOutcome:
    """ECR GetAuthorizationToken works for ``registry`` (None: the caller's default registry).

    Always calls the API (no token cache): the question is whether the call works now.
    """
    from botocore.exceptions import BotoCoreError, NoRegionError

    label = registry.host if registry is not None else "the default registry"
    try:
        client = ecr_factory()
    except NoRegionError:
        return TokenOutcome(
            failed(
                CHECK_TOKEN,
                f"no AWS region for {label}",
                "set AWS_DEFAULT_REGION (or pass --region), or name an ECR host that carries its region",
            )
        )
    except BotoCoreError as exc:
        return TokenOutcome(failed(CHECK_TOKEN, f"no ECR client: {one_line(exc)}", FIX_CREDENTIALS))
    endpoint = str(getattr(getattr(client, "meta", None), "endpoint_url", "") or "") or None
    recording = _RecordingClient(client)
    try:
        # A diagnosis reports throttling at once (botocore's own attempts aside) rather than wait it out.
        credentials = EcrTokenSource(recording, throttle_retries=0).fetch(registry)
    except RegistryAuthError as exc:
        return TokenOutcome(
            failed(CHECK_TOKEN, f"GetAuthorizationToken failed: {exc}", token_fix(exc, endpoint))
        )
    proxy = None
    if recording.reply:
        proxy = str(recording.reply["authorizationData"][0].get("proxyEndpoint") or "") or None
    from airdock.hygiene.units import format_age

    left = format_age(credentials.seconds_left(clock()))
    via = f" from {endpoint}" if endpoint else ""
    return TokenOutcome(
        passed(
            CHECK_TOKEN, f"GetAuthorizationToken gave a token for {credentials.registry}{via}, valid {left}"
        ),
        credentials,
        registry_base_url(credentials.registry, proxy),
    )
