"""Airflow → core: turn an AWS connection and airdock's config into cached ECR registry logins."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airdock.airflow.config import option
from airdock.auth.cache import (
    DEFAULT_MARGIN_SECONDS,
    CachedCredentials,
    CachedToken,
    TokenCache,
    default_cache_dir,
)
from airdock.auth.credentials import RegistryCredentials
from airdock.auth.ecr import EcrTokenSource
from airdock.auth.identity import AwsIdentity
from airdock.auth.session import ECR_CLIENT_CONFIG
from airdock.durations import parse_duration
from airdock.images import EcrRegistry, parse_registry_list

if TYPE_CHECKING:
    from pathlib import Path

from airflow.sdk.log import mask_secret


def configured_ecr_registries() -> tuple[str, ...]:
    """Hosts listed in ``[airdock] ecr_registries`` (``AIRFLOW__AIRDOCK__ECR_REGISTRIES``)."""
    return parse_registry_list(option("ecr_registries"))


def token_cache(margin: float | str | None = None) -> TokenCache:
    """The worker's host-wide token cache, configured from ``[airdock]`` unless ``margin`` is given."""
    if margin is None:
        margin = option("token_refresh_margin")
    seconds = (
        DEFAULT_MARGIN_SECONDS
        if margin is None
        else (parse_duration(margin) if isinstance(margin, str) else float(margin))
    )
    directory: Path | None = None
    configured_dir = option("token_cache_dir")
    if configured_dir:
        from pathlib import Path

        directory = Path(configured_dir).expanduser()
    return TokenCache(
        directory or default_cache_dir(), margin_seconds=seconds, on_unwritable=_warn_unwritable
    )


def _warn_unwritable(directory: Path, exc: OSError) -> None:
    import logging

    logging.getLogger("airdock.auth").warning(
        "the token cache directory %s cannot be written (%s): going on with the token fetched now, "
        "uncached; fix that directory or point [airdock] token_cache_dir at a writable one",
        directory,
        exc.strerror or type(exc).__name__,
    )


def identity_of(hook: Any) -> AwsIdentity:
    """The AWS identity an ``EcrHook`` will use, resolved without AWS calls.

    The connection's own facts first, then the environment as boto3 would fill them: the same
    identity (and cache key) as the ``airdock`` CLI computes for the same credentials
    (``airdock.auth.identity``).
    """
    config = hook.conn_config
    return AwsIdentity.resolve(
        access_key_id=getattr(config, "aws_access_key_id", None) or None,
        profile=getattr(config, "profile_name", None) or None,
        role_arn=getattr(config, "role_arn", None) or None,
        endpoint_url=getattr(config, "endpoint_url", None) or None,
        region=getattr(hook, "region_name", None) or getattr(config, "region_name", None) or None,
    )


class AirflowEcrCredentials(CachedCredentials):
    """A ``CredentialProvider`` for one ECR registry, backed by the host-wide cache.

    Tokens come from GetAuthorizationToken through the Amazon provider's ``EcrHook`` on the
    given AWS connection (instance roles, profiles, assume-role and ``endpoint_url`` all work),
    and every password handed out, cached or fresh, is registered with Airflow's secrets masker.
    """

    def __init__(
        self,
        registry: EcrRegistry,
        *,
        aws_conn_id: str | None,
        region_name: str | None = None,
        cache: TokenCache | None = None,
        log: Any = None,
    ) -> None:
        from airflow.providers.amazon.aws.hooks.ecr import EcrHook

        self.registry = registry
        self.aws_conn_id = aws_conn_id
        self.hook = EcrHook(
            aws_conn_id=aws_conn_id, region_name=registry.region or region_name, config=ECR_CLIENT_CONFIG
        )
        self._log = log
        identity = identity_of(self.hook)
        who = identity.describe()
        super().__init__(
            cache if cache is not None else token_cache(),
            key=f"{registry.host}|{identity.key()}",
            fetch=self._fetch_token,
            on_result=self._seen,
            identity=f"connection {aws_conn_id}: {who}" if aws_conn_id else who,
        )

    @property
    def _where(self) -> str:
        return (
            f"the Airflow connection '{self.aws_conn_id}'" if self.aws_conn_id else "the AWS credential chain"
        )

    def _fetch_token(self) -> RegistryCredentials:
        source = EcrTokenSource(self.hook.conn, where=self._where, on_secret=mask_secret, log=self._log)
        return source.fetch(self.registry)

    def _seen(self, result: CachedToken) -> None:
        for form in result.credentials.secret_forms():  # cached tokens too: a new process masks anew
            mask_secret(form)
        if self._log is None:
            return
        import time

        left = result.credentials.seconds_left(time.time())
        if not result.fetched:
            self._log.info(
                "ECR token for %s from the host cache (valid %.0f s more)", self.registry.host, left
            )
        elif result.previous_expired_at is None:
            self._log.info("fetched an ECR token for %s (valid %.0f s)", self.registry.host, left)
        else:
            ago = time.time() - result.previous_expired_at
            when = f"expired {ago:.0f} s ago" if ago >= 0 else f"expires in {-ago:.0f} s"
            self._log.info(
                "renewed the ECR token for %s: the cached one %s; the new one is valid %.0f s",
                self.registry.host,
                when,
                left,
            )
