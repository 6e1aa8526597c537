"""Registry credentials from Amazon ECR's GetAuthorizationToken.

The token is a secret from its birth: botocore logs whole response bodies at DEBUG
(``botocore.parsers``: ``Response body: b'{"authorizationData": [{"authorizationToken": ...``),
so a filter on that logger blanks every ``authorizationToken`` value in such records, whoever
made the call; and each form of the secret (the password, ``AWS:<password>``, its base64) goes
to ``on_secret`` (Airflow's secrets masker) before the fetch returns, so nothing airdock logs
afterwards can show it.
"""

from __future__ import annotations

import base64
import logging
import random
import re
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any
from urllib.parse import urlparse

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    NoRegionError,
    ReadTimeoutError,
)

from airdock.auth.credentials import RegistryCredentials
from airdock.errors import AccessDeniedError, RegistryAuthError
from airdock.images import EcrRegistry

GET_TOKEN_ACTION = "ecr:GetAuthorizationToken"  # noqa: S105 - an IAM action name
# AWS's answers to too many calls: retried with backoff beyond botocore's own attempts, so a burst
# of throttling (many hosts renewing at once) delays a task instead of failing it.
THROTTLED_CODES = frozenset({"ThrottlingException", "TooManyRequestsException", "RequestLimitExceeded"})
THROTTLE_RETRIES = 6
_LOG = logging.getLogger(__name__)
_TOKEN_VALUE = re.compile(r"""(authorizationToken['"]?\s*[:=]\s*['"]?)[A-Za-z0-9+/=_-]+""")
REDACTED = "***"
# botocore's loggers that write response bodies (and parsed responses) at DEBUG.
_BODY_LOGGERS = ("botocore.parsers", "botocore.endpoint", "botocore.hooks", "botocore.retryhandler")


class _TokenRedactingFilter(logging.Filter):
    """Blank the value of every ``authorizationToken`` in a record (botocore's DEBUG response bodies)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            text = record.getMessage()
        except Exception:  # a record that cannot be formatted is not ours to judge
            return True
        if "authorizationToken" in text:
            record.msg = _TOKEN_VALUE.sub(lambda m: m.group(1) + REDACTED, text)
            record.args = None
        return True


_FILTER = _TokenRedactingFilter()


def redact_token_logging() -> None:
    """Install the redacting filter on botocore's body-logging loggers (idempotent)."""
    for name in _BODY_LOGGERS:
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)


redact_token_logging()


class EcrTokenSource:
    """Fetch a registry login for one ECR registry with a boto3 ECR client.

    ``client`` is a ``boto3.client("ecr")`` (or the Amazon provider's ``EcrHook.conn``) already
    bound to the right credentials, region and endpoint. ``where`` names the credential source
    in error messages (e.g. "the Airflow connection 'aws_default'").
    """

    def __init__(
        self,
        client: Any,
        where: str = "the AWS credential chain",
        on_secret: Callable[[str], None] | None = None,
        *,
        throttle_retries: int = THROTTLE_RETRIES,
        sleep: Callable[[float], None] = time.sleep,
        log: Any = None,
    ) -> None:
        self._client = client
        self._where = where
        self._on_secret = on_secret
        self._throttle_retries = throttle_retries
        self._sleep = sleep
        self._log = log if log is not None else _LOG  # the task's logger, when given

    def _call(self, label: str, kwargs: dict[str, Any]) -> Any:
        """GetAuthorizationToken; when botocore's own attempts (the client's retry config) all end
        throttled, it is asked again with jittered exponential backoff (0.5 s doubling, at most 8 s)
        up to ``throttle_retries`` times."""
        for attempt in range(self._throttle_retries + 1):
            try:
                return self._client.get_authorization_token(**kwargs)
            except ClientError as exc:
                code = str(exc.response.get("Error", {}).get("Code", ""))
                if code not in THROTTLED_CODES or attempt == self._throttle_retries:
                    raise
                delay = min(8.0, 0.5 * 2**attempt) * random.uniform(0.5, 1.0)
                message = "ECR throttled GetAuthorizationToken for %s (%s): retrying in %.1f s"
                self._log.warning(message, label, code, delay)
                self._sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    def fetch(self, registry: EcrRegistry | None) -> RegistryCredentials:
        """Call GetAuthorizationToken for ``registry`` (its account when the host names one).

        ``None`` asks for the caller's default registry; the credentials then name the registry
        host from the reply's ``proxyEndpoint``.
        """
        kwargs: dict[str, Any] = {}
        label = registry.host if registry is not None else "the default registry"
        if registry is not None and registry.account_id:
            kwargs["registryIds"] = [registry.account_id]
        try:
            reply = self._call(label, kwargs)
        except NoCredentialsError:
            raise RegistryAuthError(
                f"no AWS credentials found for ECR registry {label} in {self._where}: give the "
                "worker an IAM role, or set credentials in the environment or in that Airflow connection"
            ) from None
        except NoRegionError:
            raise RegistryAuthError(
                f"no AWS region for ECR registry {label}: set region_name in {self._where} "
                "or AWS_DEFAULT_REGION"
            ) from None
        except (EndpointConnectionError, ConnectTimeoutError, ReadTimeoutError) as exc:
            raise RegistryAuthError(
                f"ECR API unreachable for registry {label} after retries: {exc}"
            ) from None
        except ClientError as exc:
            error = exc.response.get("Error", {})
            code, message = str(error.get("Code", "")), str(error.get("Message", ""))
            if code in ("AccessDeniedException", "AccessDenied", "UnauthorizedOperation"):
                raise AccessDeniedError(
                    f"access denied: the AWS identity from {self._where} may not call {GET_TOKEN_ACTION} "
                    f'(registry {label}); allow it on resource "*" in its IAM policy',
                    action=GET_TOKEN_ACTION,
                ) from None
            if code in THROTTLED_CODES:
                through = f" through {self._throttle_retries} retries" if self._throttle_retries else ""
                raise RegistryAuthError(
                    f"ECR kept throttling GetAuthorizationToken for {label} ({code}){through}: too many "
                    "hosts renew at once, or another client uses the account's ECR rate; the task's "
                    "retry will try again"
                ) from None
            if code in ("UnrecognizedClientException", "InvalidClientTokenId", "ExpiredTokenException"):
                raise RegistryAuthError(
                    f"AWS rejected the credentials from {self._where} ({code}): refresh or replace them"
                ) from None
            raise RegistryAuthError(f"GetAuthorizationToken failed for {label}: {code}: {message}") from None
        except BotoCoreError as exc:
            raise RegistryAuthError(f"GetAuthorizationToken failed for {label}: {exc}") from None

        data = reply["authorizationData"][0]
        token = str(data["authorizationToken"])
        if self._on_secret is not None:
            self._on_secret(token)  # masked before it is even decoded
        username, _, password = base64.b64decode(token).decode().partition(":")
        if self._on_secret is not None:
            for form in (password, f"{username}:{password}"):
                self._on_secret(form)
        expires = data["expiresAt"]
        expires_at = expires.timestamp() if isinstance(expires, datetime) else float(expires)
        host = registry.host if registry is not None else urlparse(str(data.get("proxyEndpoint", ""))).netloc
        return RegistryCredentials(registry=host, username=username, password=password, expires_at=expires_at)
