"""Where a log follower got to, kept on disk so that a restarted follower neither loses nor repeats lines.

A deferred task's trigger forwards a container's output to the task log; when the triggerer
restarts (or the trigger moves to another triggerer on the same host), the new trigger instance
reads the position its predecessor saved and continues after it. One small JSON file per key,
written atomically (temporary file + rename) with mode 0600 — a position is not a secret, but the
directory also holds nothing anyone else should write.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

from airdock.files import write_atomically

__all__ = ["LogCheckpoints"]

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")
MAX_AGE_S = 7 * 24 * 3600


class LogCheckpoints:
    """A directory of positions, keyed by a follower's identity (see the module docstring)."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)

    def _path(self, key: str) -> Path:
        return self.directory / (_UNSAFE.sub("_", key)[:200] + ".json")

    def load(self, key: str) -> dict[str, Any] | None:
        """The saved position, or None (never saved, or unreadable: start from the beginning)."""
        try:
            value = json.loads(self._path(key).read_text())
        except (OSError, ValueError):
            return None
        return value if isinstance(value, dict) else None

    def save(self, key: str, position: dict[str, Any]) -> None:
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        write_atomically(self._path(key), json.dumps(position))

    def forget(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def prune(self, max_age_s: float = MAX_AGE_S, now: float | None = None) -> int:
        """Remove positions nobody wrote for ``max_age_s`` (their followers are long finished)."""
        cutoff = (time.time() if now is None else now) - max_age_s
        removed = 0
        try:
            entries = list(self.directory.iterdir())
        except OSError:
            return 0
        for path in entries:
            try:
                if path.stat().st_mtime < cutoff:
                    path.unlink()
                    removed += 1
            except OSError:
                continue
        return removed
