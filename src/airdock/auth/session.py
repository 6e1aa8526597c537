"""Registry credentials outside Airflow (the ``airdock`` CLI): boto3's credential chain + the host cache.

The same ``EcrTokenSource`` and ``TokenCache`` as the operator, so the CLI and the tasks of a
host share tokens and behave alike; only the AWS identity comes from boto3 (environment, profile,
instance role) instead of an Airflow connection.
"""

from __future__ import annotations

from typing import Any

import boto3
from botocore.config import Config

from airdock.auth.cache import CachedCredentials, TokenCache
from airdock.auth.credentials import RegistryCredentials
from airdock.auth.ecr import EcrTokenSource
from airdock.auth.identity import AwsIdentity
from airdock.images import EcrRegistry

# Bounded retries with backoff for the ECR API itself (botocore's "standard" mode).
ECR_CLIENT_CONFIG = Config(
    retries={"max_attempts": 3, "mode": "standard"}, connect_timeout=5, read_timeout=15
)


def ecr_client(region: str | None = None, profile: str | None = None) -> Any:
    """A boto3 ECR client (``AWS_ENDPOINT_URL_ECR`` and the rest of boto3's configuration apply)."""
    session = boto3.session.Session(profile_name=profile, region_name=region)
    return session.client("ecr", config=ECR_CLIENT_CONFIG)


def registry_credentials(
    registry: EcrRegistry | None,
    *,
    region: str | None = None,
    profile: str | None = None,
    cache: TokenCache | None = None,
    client: Any = None,
) -> CachedCredentials:
    """Cached credentials for ``registry`` (None: the caller's default registry)."""
    client = (
        client
        if client is not None
        else ecr_client((registry.region if registry else None) or region, profile)
    )
    where = f"the AWS profile '{profile}'" if profile else "the AWS credential chain"
    source = EcrTokenSource(client, where=where)
    identity = AwsIdentity.resolve(
        profile=profile, region=(registry.region if registry else None) or client.meta.region_name
    )
    store = cache if cache is not None else TokenCache()
    if registry is not None:
        return CachedCredentials(
            store,
            f"{registry.host}|{identity.key()}",
            lambda: source.fetch(registry),
            identity=identity.describe(),
        )

    def fetch_default() -> RegistryCredentials:
        # The default registry is known only from the token's proxyEndpoint: file the token under
        # that host as well, where the tasks of this host (which name the host) look for it.
        credentials = source.fetch(None)
        if credentials.registry:
            store.put(f"{credentials.registry}|{identity.key()}", credentials, identity=identity.describe())
        return credentials

    return CachedCredentials(
        store, f"default-registry|{identity.key()}", fetch_default, identity=identity.describe()
    )
