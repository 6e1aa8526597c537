"""Registry credentials: the ECR token source and the host-wide token cache."""

from airdock.auth.cache import CachedCredentials, TokenCache, default_cache_dir
from airdock.auth.credentials import RegistryCredentials
from airdock.auth.ecr import EcrTokenSource

__all__ = ["CachedCredentials", "EcrTokenSource", "RegistryCredentials", "TokenCache", "default_cache_dir"]
