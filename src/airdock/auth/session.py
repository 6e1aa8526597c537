"""Registry credentials outside Airflow (the ``airdock`` CLI): boto3's credential chain + the host cache.

The same ``EcrTokenSource`` and ``TokenCache`` as the operator, so the CLI and the tasks of a
host share tokens and behave alike; only the AWS identity comes from boto3 (environment, profile,
instance role) instead of an Airflow connection.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any

import boto3
from botocore.config import Config

from airdock.auth.cache import CachedCredentials, TokenCache
from airdock.auth.ecr import EcrTokenSource
from airdock.images import EcrRegistry

# Bounded retries with backoff for the ECR API itself (botocore's "standard" mode).
ECR_CLIENT_CONFIG = Config(
    retries={"max_attempts": 3, "mode": "standard"}, connect_timeout=5, read_timeout=15
)
_ENV = ("AWS_ACCESS_KEY_ID", "AWS_PROFILE", "AWS_ROLE_ARN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_ECR")


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
    facts = {
        "profile": profile,
        "region": client.meta.region_name,
        "endpoint": client.meta.endpoint_url,
        "env": {name: os.environ.get(name) for name in _ENV},
    }
    identity = hashlib.sha256(json.dumps(facts, sort_keys=True).encode()).hexdigest()[:24]
    host = registry.host if registry is not None else "default-registry"
    return CachedCredentials(
        cache if cache is not None else TokenCache(), f"{host}|{identity}", lambda: source.fetch(registry)
    )
