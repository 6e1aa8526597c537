"""The one way the local stack keeps state in SQLite (tokens and repositories, ECS, CloudWatch Logs).

A :class:`SqliteFile` is one file, mode 0600 from its creation (its ``-wal`` and ``-shm`` files
take the same mode), in WAL mode, opened once and shared by the server's threads under a
re-entrant lock. :meth:`SqliteFile.transaction` is one ``BEGIN IMMEDIATE`` … ``COMMIT`` (rolled
back on any exception), so a check and the write that depends on it are atomic.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

__all__ = ["SqliteFile"]


class SqliteFile:
    """See the module docstring; stores subclass it and pass their schema."""

    def __init__(self, path: Path, schema: str, *, synchronous_normal: bool = False) -> None:
        self._lock = threading.RLock()
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)  # before SQLite opens it: its -wal and -shm files take the same mode
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        if synchronous_normal:
            # WAL stays consistent without an fsync per commit; a crash may lose only the last batches.
            self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(schema)
        path.chmod(0o600)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction; the lock is held throughout (check-then-act is atomic)."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    _tx = transaction

    def _rows(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            return list(self._db.execute(sql, args).fetchall())
