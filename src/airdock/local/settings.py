"""Where the local stack keeps its state and which loopback ports it listens on."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from airdock.errors import ConfigError

HOST = "127.0.0.1"
DEFAULT_DATA_DIR = Path(".airdock/local")
DEFAULT_GATEWAY_PORT = 5780
DEFAULT_API_PORT = 5781
DEFAULT_REGISTRY_PORT = 5782
DEFAULT_ACCOUNT_ID = "123456789012"
DEFAULT_REGION = "us-east-1"
DEFAULT_TOKEN_TTL_SECONDS = 12 * 3600.0

# Credentials for the stack's API. The stack accepts any SigV4-signed request, so these are
# placeholders that let boto3 sign; they protect nothing and are safe to print.
LOCAL_ACCESS_KEY_ID = "AKIDAIRDOCKLOCAL"
LOCAL_SECRET_ACCESS_KEY = "airdock-local-not-a-secret"  # noqa: S105

SETTINGS_FILE = "stack.json"


@dataclass(frozen=True)
class StackSettings:
    """Everything that identifies one local stack; persisted as ``<data_dir>/stack.json``."""

    data_dir: Path
    gateway_port: int = DEFAULT_GATEWAY_PORT
    api_port: int = DEFAULT_API_PORT
    registry_port: int = DEFAULT_REGISTRY_PORT
    account_id: str = DEFAULT_ACCOUNT_ID
    region: str = DEFAULT_REGION
    token_ttl_seconds: float = DEFAULT_TOKEN_TTL_SECONDS
    # IAM actions the stack refuses, to simulate a worker policy that lacks them (see local.iam).
    denied_actions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        ports = (self.gateway_port, self.api_port, self.registry_port)
        for port in ports:
            if not 1 <= port <= 65535:
                raise ConfigError(f"invalid port {port}: use a number from 1 to 65535")
        if len(set(ports)) != 3:
            raise ConfigError(f"gateway, API and registry ports must differ (got {ports})")
        if not (self.account_id.isdigit() and len(self.account_id) == 12):
            raise ConfigError(f"invalid account id {self.account_id!r}: use 12 digits")
        if self.token_ttl_seconds <= 0:
            raise ConfigError("token TTL must be positive (e.g. 20s, 12h)")
        from airdock.local.iam_simulation import validate_actions

        object.__setattr__(self, "denied_actions", validate_actions(tuple(self.denied_actions)))

    @property
    def registry_host(self) -> str:
        """``host:port`` of the gateway: the registry part of image references."""
        return f"{HOST}:{self.gateway_port}"

    @property
    def gateway_url(self) -> str:
        return f"http://{self.registry_host}"

    @property
    def api_url(self) -> str:
        return f"http://{HOST}:{self.api_port}"

    @property
    def registry_url(self) -> str:
        """The Distribution registry itself; only the gateway and the stack talk to it."""
        return f"http://{HOST}:{self.registry_port}"

    @property
    def registry_root(self) -> Path:
        """The registry's filesystem storage root."""
        return self.data_dir / "registry"

    @property
    def store_path(self) -> Path:
        return self.data_dir / "state.sqlite"

    @property
    def ecs_store_path(self) -> Path:
        return self.data_dir / "ecs.sqlite"

    @property
    def log_store_path(self) -> Path:
        return self.data_dir / "logs.sqlite"

    def client_environment(self) -> dict[str, str]:
        """The variables that point boto3, docker users and airdock's operators at this stack."""
        return {
            "AWS_ENDPOINT_URL_ECR": self.api_url,
            "AWS_ENDPOINT_URL_ECS": self.api_url,
            "AWS_ENDPOINT_URL_LOGS": self.api_url,
            # botocore names CloudWatch Logs' variable after its service id, "CloudWatch Logs".
            "AWS_ENDPOINT_URL_CLOUDWATCH_LOGS": self.api_url,
            "AWS_ACCESS_KEY_ID": LOCAL_ACCESS_KEY_ID,
            "AWS_SECRET_ACCESS_KEY": LOCAL_SECRET_ACCESS_KEY,
            "AWS_DEFAULT_REGION": self.region,
            "AIRDOCK_LOCAL_REGISTRY": self.registry_host,
            "AIRFLOW__AIRDOCK__ECR_REGISTRIES": self.registry_host,
        }

    def to_json(self) -> str:
        data = asdict(self)
        data["data_dir"] = str(self.data_dir)
        return json.dumps(data, indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> StackSettings:
        data = json.loads(text)
        data["data_dir"] = Path(data["data_dir"])
        data["denied_actions"] = tuple(data.get("denied_actions", ()))
        return cls(**data)

    @classmethod
    def load(cls, data_dir: Path) -> StackSettings:
        """Read ``stack.json`` from ``data_dir``; raise ConfigError when there is none."""
        path = data_dir / SETTINGS_FILE
        try:
            return cls.from_json(path.read_text())
        except FileNotFoundError:
            raise ConfigError(f"no local stack in {data_dir}: run `airdock local up` first") from None
        except (ValueError, TypeError, KeyError) as exc:
            raise ConfigError(f"{path} is unreadable ({exc}); remove it and run `airdock local up`") from None

    def save(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        (self.data_dir / SETTINGS_FILE).write_text(self.to_json() + "\n")
