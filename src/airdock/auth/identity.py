"""Which AWS identity and endpoint a token request uses, as one secret-free cache key.

The host token cache is keyed by registry and AWS identity. Two callers on one host that would
get the same token — ``airdock push`` with the environment's credentials, and a task whose Airflow
connection holds those same credentials — must compute the same key, or each fetches its own.
So both reduce what they know to the same few facts, resolved the way boto3 resolves them:
explicit values first (a connection's login, its ``role_arn``, profile, ``endpoint_url`` and
region; the CLI's ``--profile`` and ``--region``), then boto3's environment variables. No AWS call
is made and no secret is part of the key (an access key *id* is not a secret).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass

__all__ = ["AwsIdentity"]


def _env(environ: Mapping[str, str], *names: str) -> str | None:
    for name in names:
        value = environ.get(name)
        if value:
            return value
    return None


@dataclass(frozen=True)
class AwsIdentity:
    access_key_id: str | None = None
    profile: str | None = None
    role_arn: str | None = None
    endpoint_url: str | None = None
    region: str | None = None

    @classmethod
    def resolve(
        cls,
        *,
        access_key_id: str | None = None,
        profile: str | None = None,
        role_arn: str | None = None,
        endpoint_url: str | None = None,
        region: str | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> AwsIdentity:
        """Fill what is not given explicitly from the environment, in boto3's order.

        Static keys win over a profile; an explicitly named profile ignores the environment's keys
        (as botocore does); the ECR endpoint is ``AWS_ENDPOINT_URL_ECR``, else ``AWS_ENDPOINT_URL``.
        """
        env = os.environ if environ is None else environ
        if access_key_id is None and profile is None:
            access_key_id = _env(env, "AWS_ACCESS_KEY_ID")
        if access_key_id is None and profile is None:
            profile = _env(env, "AWS_PROFILE", "AWS_DEFAULT_PROFILE")
        return cls(
            access_key_id=access_key_id,
            profile=profile,
            role_arn=role_arn or _env(env, "AWS_ROLE_ARN"),
            endpoint_url=(endpoint_url or _env(env, "AWS_ENDPOINT_URL_ECR", "AWS_ENDPOINT_URL") or None),
            region=region or _env(env, "AWS_REGION", "AWS_DEFAULT_REGION"),
        )

    def describe(self) -> str:
        """Who this identity is, for people (the Container hosts page): the role, the profile or
        the access key id's last four characters — never a secret."""
        parts = []
        if self.role_arn:
            parts.append(f"role {self.role_arn}")
        if self.profile:
            parts.append(f"profile {self.profile}")
        if self.access_key_id and not self.role_arn:
            parts.append(f"access key …{self.access_key_id[-4:]}")
        if not parts:
            parts.append("default credentials")
        if self.endpoint_url:
            parts.append(f"at {self.endpoint_url.rstrip('/')}")
        return " ".join(parts)

    def key(self) -> str:
        """A short stable hash of the facts (the cache key's identity half)."""
        facts = {k: (v.rstrip("/") if k == "endpoint_url" and v else v) for k, v in asdict(self).items()}
        return hashlib.sha256(json.dumps(facts, sort_keys=True).encode()).hexdigest()[:24]
