"""A worker host's status record: what an operator wants to see without a shell on the host.

Tasks keep a small history on the host (``<state dir>/host-history.json``: recent pulls, GC runs
with their reasons, sweeps) and, at most once a minute and after each GC or sweep, build the
host's record from it and from the host itself (engine version, image store bytes, airdock's
running containers, the registry tokens in the host cache — registry and expiry, never the token)
for ``airdock.airflow.host_status`` to publish. Everything here is bounded: a record stays a few KB.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from filelock import FileLock
from filelock import Timeout as LockTimeout

__all__ = ["HISTORY_FILE", "KEEP", "build_record", "due", "record_event"]

HISTORY_FILE = "host-history.json"
STAMP_FILE = "host-status.published"
KEEP = {"pulls": 10, "gc": 5, "sweeps": 5}  # entries of each kind kept, newest last
MAX_REASONS = 20  # GC decisions kept per run
PUBLISH_EVERY_S = 60.0


def _read(path: Path) -> dict[str, list[dict[str, Any]]]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def record_event(state_dir: Path, kind: str, entry: Mapping[str, Any]) -> None:
    """Append ``entry`` to the host's history of ``kind`` (``pulls``, ``gc``, ``sweeps``), keeping
    the newest ``KEEP[kind]``. A history that cannot be written is skipped, never raised."""
    if kind not in KEEP:
        raise ValueError(f"unknown host history kind {kind!r}")
    path = state_dir / HISTORY_FILE
    with contextlib.suppress(OSError, LockTimeout):
        state_dir.mkdir(parents=True, exist_ok=True)
        with FileLock(str(path) + ".lock", timeout=5):
            history = _read(path)
            entries = [*history.get(kind, []), dict(entry)][-KEEP[kind] :]
            history[kind] = entries
            tmp = path.with_suffix(f".tmp-{os.getpid()}")
            tmp.write_text(json.dumps(history, separators=(",", ":")))
            os.replace(tmp, path)


def due(state_dir: Path, now: float, *, force: bool = False) -> bool:
    """Whether to publish now (the last was a minute ago or more, or ``force``); marks it done."""
    stamp = state_dir / STAMP_FILE
    with contextlib.suppress(OSError):
        if not force and now - stamp.stat().st_mtime < PUBLISH_EVERY_S:
            return False
    with contextlib.suppress(OSError):
        state_dir.mkdir(parents=True, exist_ok=True)
        stamp.touch()
        os.utime(stamp, (now, now))
    return True


def _tokens(token_dir: Path, now: float) -> list[dict[str, Any]]:
    """The host cache's logins: registry and expiry only."""
    found = []
    for path in sorted(token_dir.glob("*.json")):
        if path.name.endswith(".failed.json"):
            continue
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
            credentials = json.loads(path.read_text())["credentials"]
            expires = float(credentials["expires_at"])
            found.append({"registry": str(credentials["registry"]), "expires_in_s": round(expires - now)})
    return found


def build_record(
    client: Any,
    host: str,
    *,
    token_dir: Path,
    state_dir: Path,
    budget_bytes: int | None,
    now: float | None = None,
) -> dict[str, Any]:
    """The host's record (JSON-ready) from its engine (``client``: a docker ``DockerClient``), its
    token cache and its history."""
    now = time.time() if now is None else now
    version = str(client.version().get("Version", "?"))
    image_bytes = sum(int(image.get("Size") or 0) for image in client.api.images())
    running = client.api.containers(filters={"label": "airdock.managed=true", "status": "running"})
    history = _read(state_dir / HISTORY_FILE)
    return {
        "host": host,
        "reported_at": now,
        "engine_version": version,
        "image_store_bytes": image_bytes,
        "budget_bytes": budget_bytes,
        "containers_running": len(running),
        "tokens": _tokens(token_dir, now),
        "pulls": history.get("pulls", [])[-KEEP["pulls"] :],
        "gc": history.get("gc", [])[-KEEP["gc"] :],
        "sweeps": history.get("sweeps", [])[-KEEP["sweeps"] :],
    }
