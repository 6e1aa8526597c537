"""The API version each Docker engine speaks, remembered per host.

docker-py's ``APIClient(version=None)`` asks the engine ``GET /version`` before its first call; the
engine answers slowly (it gathers its components' versions), ~7 ms of a task's start here. A task
that knows the version passes it instead and only pings. The version is remembered in the host's
state directory (next to the usage store), per engine address, for :data:`FRESH_SECONDS`; an
engine that was downgraded (or upgraded past a minimum) answers the ping with "client version … is
too new/old", and the caller forgets the entry and asks again (:func:`is_version_refusal`).

The file is a cache: unreadable, corrupt or missing, it is ignored (and rewritten); it holds no
secret, and is written atomically (0600) so concurrent tasks never read half of it.
"""

from __future__ import annotations

import contextlib
import json
import re
import time
from pathlib import Path
from typing import Any

from airdock.files import write_atomically

__all__ = ["CACHE_FILE", "FRESH_SECONDS", "forget", "is_version_refusal", "refusal", "remember", "remembered"]

CACHE_FILE = "engine-api-versions.json"
FRESH_SECONDS = 3600.0  # an engine upgraded meanwhile is spoken to in its older API for at most this long
_VERSION = re.compile(r"1\.\d{1,3}")
_REFUSAL = re.compile(r"client version \S+ is too (?:new|old)[^\"()\n]*")


def remembered(state_dir: Path, address: str, *, now: float | None = None) -> str | None:
    """The API version remembered for the engine at ``address``, if fresh; else None."""
    entry = _read(state_dir).get(address)
    if not isinstance(entry, dict):
        return None
    version, at = entry.get("version"), entry.get("at")
    if not isinstance(version, str) or not _VERSION.fullmatch(version) or not isinstance(at, int | float):
        return None
    current = time.time() if now is None else now
    return version if 0 <= current - at < FRESH_SECONDS else None


def remember(state_dir: Path, address: str, version: str) -> None:
    """Remember that the engine at ``address`` speaks API ``version`` (best effort: never raises)."""
    if not _VERSION.fullmatch(version):
        return
    entries = _read(state_dir)
    entries[address] = {"version": version, "at": time.time()}
    _write(state_dir, entries)


def forget(state_dir: Path, address: str) -> None:
    """Drop the entry for ``address`` (its engine refused the remembered version)."""
    entries = _read(state_dir)
    if entries.pop(address, None) is not None:
        _write(state_dir, entries)


def is_version_refusal(exc: BaseException) -> bool:
    """The engine refused the client's API version ("client version 1.45 is too new. …")."""
    return refusal(exc) is not None


def refusal(exc: BaseException) -> str | None:
    """The engine's own sentence refusing the client's API version, without docker-py's wrapping
    ("400 Client Error for http+docker://…: Bad Request (…)"); ``None`` for any other error."""
    found = _REFUSAL.search(str(exc))
    return found[0].strip().rstrip(".") if found else None


def _read(state_dir: Path) -> dict[str, Any]:
    try:
        data = json.loads((state_dir / CACHE_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write(state_dir: Path, entries: dict[str, Any]) -> None:
    with contextlib.suppress(OSError):  # a cache: a read-only or full disk only costs the next task 7 ms
        state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        write_atomically(state_dir / CACHE_FILE, json.dumps(entries), prefix=".engine-api-")
