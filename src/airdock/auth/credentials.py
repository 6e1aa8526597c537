"""A registry login: user, password and when it stops working."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class RegistryCredentials:
    """Credentials for one registry; ``password`` never shows in ``repr``."""

    registry: str
    username: str
    password: str = field(repr=False)
    expires_at: float  # epoch seconds

    def seconds_left(self, now: float) -> float:
        return self.expires_at - now

    def secret_forms(self) -> tuple[str, ...]:
        """Every form the secret takes on its way: the password, ``user:password`` and its base64
        (ECR's ``authorizationToken``). Each must be masked before anything can log it."""
        pair = f"{self.username}:{self.password}"
        return (self.password, pair, base64.b64encode(pair.encode()).decode())

    def auth_config(self) -> dict[str, str]:
        """The docker SDK's ``auth_config`` for a pull or push (kept in memory, never written)."""
        return {"username": self.username, "password": self.password}

    def to_json(self) -> str:
        return json.dumps(
            {
                "registry": self.registry,
                "username": self.username,
                "password": self.password,
                "expires_at": self.expires_at,
            }
        )

    @classmethod
    def from_json(cls, text: str) -> RegistryCredentials:
        data: dict[str, Any] = json.loads(text)
        return cls(
            registry=str(data["registry"]),
            username=str(data["username"]),
            password=str(data["password"]),
            expires_at=float(data["expires_at"]),
        )
