"""The Docker engine: pull with auth (one retry on expiry), pull policy, image digests."""

from airdock.engine.pull import CredentialProvider, PulledImage, PullPolicy, ensure_image

__all__ = ["CredentialProvider", "PullPolicy", "PulledImage", "ensure_image"]
