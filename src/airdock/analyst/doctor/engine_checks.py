"""The Docker engine's checks: it answers, and its data root has room."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from airdock.analyst.doctor.report import CheckResult, failed, one_line, passed, skipped
from airdock.engine.client import describe_engine_error
from airdock.errors import ConfigError

__all__ = [
    "CHECK_DISK",
    "CHECK_ENGINE",
    "DEFAULT_MIN_FREE",
    "DEFAULT_MIN_FREE_BYTES",
    "FIX_ENGINE",
    "FreeSpaceThreshold",
    "check_disk",
    "check_engine",
]

CHECK_ENGINE = "docker engine"
CHECK_DISK = "disk space"
DEFAULT_MIN_FREE = "2GB"
DEFAULT_MIN_FREE_BYTES = 2_000_000_000
FIX_ENGINE = "start the Docker daemon or set DOCKER_HOST to the socket of one that runs"


@dataclass(frozen=True)
class FreeSpaceThreshold:
    """The least free space under the engine's data root: bytes (``2GB``) or a percentage (``10%``)."""

    min_bytes: int | None = None
    min_percent: float | None = None

    @classmethod
    def parse(cls, text: str) -> FreeSpaceThreshold:
        value = text.strip()
        if value.endswith("%"):
            try:
                percent = float(value[:-1])
            except ValueError:
                percent = -1.0
            if not 0.0 <= percent <= 100.0:
                raise ConfigError(f"invalid --min-free {text!r}: use a size (2GB) or a percentage (10%)")
            return cls(min_percent=percent)
        from airdock.hygiene.units import parse_size

        try:
            return cls(min_bytes=parse_size(value))
        except ConfigError:
            raise ConfigError(
                f"invalid --min-free {text!r}: use a size (2GB) or a percentage (10%)"
            ) from None

    def describe(self) -> str:
        from airdock.hygiene.units import format_bytes

        if self.min_percent is not None:
            return f"{self.min_percent:g}%"
        return format_bytes(self.min_bytes or 0)

    def enough(self, free: int, total: int) -> bool:
        if self.min_percent is not None:
            return total > 0 and free * 100 >= self.min_percent * total
        return free >= (self.min_bytes or 0)


def check_engine(client_factory: Callable[[], Any], where: str) -> tuple[CheckResult, Any | None]:
    """The engine answers: its version, and the client for the checks that need it (None when down)."""
    try:
        client = client_factory()
        version = client.version()
    except Exception as exc:  # any failure to talk to the engine is this check's verdict
        return failed(CHECK_ENGINE, f"no answer at {where}: {describe_engine_error(exc)}", FIX_ENGINE), None
    detail = f"Docker {version.get('Version', '?')} (API {version.get('ApiVersion', '?')}) at {where}"
    return passed(CHECK_ENGINE, detail), client


def check_disk(client: Any | None, threshold: FreeSpaceThreshold) -> CheckResult:
    """Free space on the filesystem under the engine's data root is at least ``threshold``."""
    from airdock.hygiene.inventory import read_disk
    from airdock.hygiene.units import format_bytes

    if client is None:
        return skipped(CHECK_DISK, "the Docker engine does not answer", FIX_ENGINE)
    try:
        root = str((client.info() or {}).get("DockerRootDir") or "?")
        disk = read_disk(client)
    except Exception as exc:
        return failed(CHECK_DISK, f"could not read the engine's data root: {one_line(exc)}", FIX_ENGINE)
    if disk is None:
        return passed(CHECK_DISK, f"not measured: the data root {root} is not on this machine")
    free, total = disk.total_bytes - disk.used_bytes, disk.total_bytes
    percent = free * 100 / total if total else 0.0
    detail = (
        f"{format_bytes(free)} free of {format_bytes(total)} ({percent:.0f}%) under {root} "
        f"(minimum {threshold.describe()})"
    )
    if threshold.enough(free, total):
        return passed(CHECK_DISK, detail)
    return failed(
        CHECK_DISK,
        detail,
        "run `airdock gc` (try `airdock gc --dry-run` first) or free space on that filesystem",
    )
