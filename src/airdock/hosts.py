"""A worker host's status record: what an operator wants to see without a shell on the host.

Tasks keep a small history on the host (``<state dir>/host-history.json``: recent pulls, GC runs
with their reasons, sweeps, the latest ECS snapshot per cluster) and, at most once a minute and
after each GC, sweep or ECS snapshot, build the host's record from it and from the host itself
(engine version, image store bytes, airdock's running containers, the registry tokens in the host
cache — registry, identity and expiry, never the token) for ``airdock.airflow.host_status`` to
publish. Everything here is bounded: a record stays a few KB (tens with many ECS clusters).
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

from airdock.files import write_atomically

__all__ = ["HISTORY_FILE", "KEEP", "build_record", "due", "history", "record_event"]

HISTORY_FILE = "host-history.json"
STAMP_FILE = "host-status.published"
KEEP = {"pulls": 10, "gc": 5, "sweeps": 5, "ecs": 5}  # entries of each kind kept, newest last
MAX_REASONS = 20  # GC decisions kept per run
PUBLISH_EVERY_S = 60.0


def _read(path: Path) -> dict[str, list[dict[str, Any]]]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def record_event(state_dir: Path, kind: str, entry: Mapping[str, Any], *, replace: str | None = None) -> None:
    """Append ``entry`` to the host's history of ``kind`` (``pulls``, ``gc``, ``sweeps``, ``ecs``),
    keeping the newest ``KEEP[kind]``; with ``replace``, an older entry with the same value of that
    field goes (one ECS snapshot per cluster). A history that cannot be written is skipped, never
    raised."""
    if kind not in KEEP:
        raise ValueError(f"unknown host history kind {kind!r}")
    path = state_dir / HISTORY_FILE
    with contextlib.suppress(OSError, LockTimeout):
        state_dir.mkdir(parents=True, exist_ok=True)
        with FileLock(str(path) + ".lock", timeout=5):
            history = _read(path)
            kept = [
                old
                for old in history.get(kind, [])
                if replace is None or not isinstance(old, dict) or old.get(replace) != entry.get(replace)
            ]
            entries = [*kept, dict(entry)][-KEEP[kind] :]
            history[kind] = entries
            write_atomically(path, json.dumps(history, separators=(",", ":")))


def history(state_dir: Path, kind: str) -> list[dict[str, Any]]:
    """The host's history of ``kind``, oldest first (empty when there is none)."""
    return [entry for entry in _read(state_dir / HISTORY_FILE).get(kind, []) if isinstance(entry, dict)]


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
    """The host cache's logins: registry, who fetched them and expiry — never the token."""
    found = []
    for path in sorted(token_dir.glob("*.json")):
        if path.name.endswith(".failed.json"):
            continue
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
            entry = json.loads(path.read_text())
            credentials = entry["credentials"]
            expires = float(credentials["expires_at"])
            found.append(
                {
                    "registry": str(credentials["registry"]),
                    "identity": str(entry.get("identity") or "?"),
                    "expires_in_s": round(expires - now),
                }
            )
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
    """The host's record (JSON-ready) from its engine (``client``: a docker ``DockerClient``; None
    or unreachable on a host that runs only ECS tasks: the engine's facts are then None), its
    token cache and its history."""
    now = time.time() if now is None else now
    engine: dict[str, Any] = {"engine_version": None, "image_store_bytes": None, "containers_running": None}
    if client is not None:
        with contextlib.suppress(Exception):  # an engine that is down is shown as such, not raised
            engine["engine_version"] = str(client.version().get("Version", "?"))
            engine["image_store_bytes"] = sum(int(image.get("Size") or 0) for image in client.api.images())
            running = client.api.containers(filters={"label": "airdock.managed=true", "status": "running"})
            engine["containers_running"] = len(running)
    history = _read(state_dir / HISTORY_FILE)
    return {
        "host": host,
        "reported_at": now,
        **engine,
        "budget_bytes": budget_bytes,
        "tokens": _tokens(token_dir, now),
        **{kind: history.get(kind, [])[-keep:] for kind, keep in KEEP.items()},
    }
