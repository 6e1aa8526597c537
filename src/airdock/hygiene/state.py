"""Where a host's airdock state lives, and which Docker engine a usage store belongs to.

One rule for every entry point (the CLI, the operators, the benchmarks): ``AIRDOCK_STATE_DIR``,
else ``[airdock] state_dir`` (passed in by the Airflow layer), else ``$XDG_STATE_HOME/airdock``
(``~/.local/state/airdock``). A usage store there is marked on first use with the engine's
``docker info`` ID (:class:`EngineMark`); a store of another engine is refused
(:class:`EngineMismatchError`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from airdock.errors import PrerequisiteError

__all__ = [
    "STATE_DIR_ENV",
    "USAGE_FILE",
    "EngineMark",
    "EngineMismatchError",
    "default_usage_path",
    "engine_mark",
    "resolve_state_dir",
]

STATE_DIR_ENV = "AIRDOCK_STATE_DIR"
USAGE_FILE = "usage.sqlite"


def resolve_state_dir(configured: str | None = None) -> Path:
    """The state directory: ``AIRDOCK_STATE_DIR``, else ``configured`` (``[airdock] state_dir``), else XDG's.

    The XDG default is ``$XDG_STATE_HOME/airdock``, else ``~/.local/state/airdock``. Every entry
    point resolves it with this one function, so a GC and the tasks of one engine meet in one store.
    """
    for value in (os.environ.get(STATE_DIR_ENV), configured):
        if value and value.strip():
            return Path(value.strip()).expanduser()
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "airdock"


def default_usage_path(configured: str | None = None) -> Path:
    """``usage.sqlite`` in :func:`resolve_state_dir`."""
    return resolve_state_dir(configured) / USAGE_FILE


@dataclass(frozen=True)
class EngineMark:
    """The Docker engine a store belongs to: its ``docker info`` ID, and where it was reached."""

    engine_id: str
    address: str  # unix:///var/run/docker.sock, tcp://host:2376, ...

    def describe(self) -> str:
        return f"{self.address} (ID {self.engine_id[:14]})"


class EngineMismatchError(PrerequisiteError):
    """The usage store opened belongs to another Docker engine: its leases are not this engine's."""


def engine_mark(api: Any) -> EngineMark:
    """The identity of the engine behind a docker ``APIClient``: ``docker info`` → ``ID``, and its address."""
    from airdock.engine.client import engine_address

    return EngineMark(engine_id=str(api.info().get("ID") or "unknown"), address=engine_address(api))
