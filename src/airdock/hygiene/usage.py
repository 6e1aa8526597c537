"""The host's record of image use: what airdock brought, when it last ran each image, who holds one now.

One small SQLite file per Docker engine, ``usage.sqlite`` in the state directory (see
:mod:`airdock.hygiene.state`: ``AIRDOCK_STATE_DIR``, else ``[airdock] state_dir``, else
``~/.local/state/airdock`` — the same rule for the CLI, the operators and the benchmarks).
Mode 0600 in a 0700 directory, WAL mode with a busy timeout so
every task process and the GC can use it at once. Tables:

- ``uses``: image id → the last time a container was started from it (the GC's LRU key);
- ``brought``: image ids airdock pulled or started here (the default GC scope);
- ``leases``: a reference or image id a task holds in use, until the task lets go or the lease
  expires (the expiry only matters for holders that crashed);
- ``meta``: the Docker engine the store belongs to (``docker info`` → ``ID``), written on first
  use. A store read by a GC of another engine would show none of that engine's leases, so
  :meth:`UsageStore.claim_engine` refuses it with one line naming both.

References are stored normalised (``busybox:1`` → ``docker.io/library/busybox:1``, digests as
``name@sha256:…``), and the engine's tags are normalised the same way when matched, so a lease on
any spelling of a reference protects the image carrying it.

The race protocol** (a task pulling an image vs. a GC removing it). A task about to run an image
takes a lease on its reference *before* the pull; the GC must never remove an image a lease
covers. Checking leases in the plan is not enough: the lease may appear between the GC's check
and its removal, and the task, seeing the image still present, would skip the pull and then fail
to create its container with "No such image". So both sides use one host-wide file lock,
:meth:`UsageStore.removal_lock`:

- the task holds it only while *inserting* its lease (:meth:`UsageStore.lease`), then releases
  it and pulls (or finds the image present) and creates its container;
- the GC holds it around "re-read the leases covering this image → remove the image", one image
  at a time (``airdock.hygiene.gc_apply.apply_gc``).

Both critical sections are serialised, so either the GC removed the image before the lease
existed (the task then finds it absent and pulls it again) or the lease is visible to the GC's
re-check and the image is skipped. Once the task's container exists, the engine itself refuses
to remove the image without force (which airdock never uses), so the lease only has to cover the
window from before the pull until the container is created; holders keep it until they finish.
"""

from __future__ import annotations

import contextlib
import os
import re
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

from filelock import FileLock
from filelock import Timeout as LockTimeout

from airdock.errors import ConfigError, PrerequisiteError
from airdock.hygiene.model import ImageInfo, ImageUsage
from airdock.hygiene.state import (
    STATE_DIR_ENV,
    EngineMark,
    EngineMismatchError,
    default_usage_path,
)
from airdock.images import DEFAULT_TAG, parse_image_ref

__all__ = ["DEFAULT_LEASE_SECONDS", "Lease", "UsageStore", "normalise_reference"]

DEFAULT_LEASE_SECONDS = 900.0
DEFAULT_LOCK_TIMEOUT_SECONDS = 120.0
BUSY_TIMEOUT_SECONDS = 30.0

_IMAGE_ID = re.compile(r"(?:sha256:)?([0-9a-f]{64})")
_SCHEMA_VERSION = 1  # PRAGMA user_version of a store whose tables _SCHEMA made

_SCHEMA = """
CREATE TABLE IF NOT EXISTS uses (
    image_id  TEXT PRIMARY KEY,
    last_used REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS leases (
    lease_id TEXT NOT NULL,
    key      TEXT NOT NULL,
    expires  REAL NOT NULL,
    PRIMARY KEY (lease_id, key)
);
CREATE INDEX IF NOT EXISTS leases_by_key ON leases (key, expires);
CREATE TABLE IF NOT EXISTS brought (
    image_id TEXT PRIMARY KEY,
    since    REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""


def _record_use(db: sqlite3.Connection, image_id: str, when: float) -> None:
    key = normalise_reference(image_id)[0]
    db.execute(
        "INSERT INTO uses (image_id, last_used) VALUES (?, ?) "
        "ON CONFLICT (image_id) DO UPDATE SET last_used = max(last_used, excluded.last_used)",
        (key, when),
    )
    db.execute("INSERT OR IGNORE INTO brought (image_id, since) VALUES (?, ?)", (key, when))


def normalise_reference(text: str) -> tuple[str, ...]:
    """The keys a reference or image id is recorded under (one, or two for ``name:tag@digest``).

    ``sha256:<hex>`` or a bare 64-hex id → ``sha256:<hex>``; ``busybox`` →
    ``docker.io/library/busybox:latest``; ``x@sha256:…`` → ``docker.io/library/x@sha256:…``.
    Raises ImageReferenceError (a ConfigError) for text that is neither.
    """
    match = _IMAGE_ID.fullmatch(text)
    if match:
        return (f"sha256:{match.group(1)}",)
    ref = parse_image_ref(text)
    if ref.digest:
        keys = [f"{ref.name}@{ref.digest}"]
        if ref.tag:
            keys.append(f"{ref.name}:{ref.tag}")
        return tuple(keys)
    return (f"{ref.name}:{ref.tag or DEFAULT_TAG}",)


def _image_keys(image_id: str, references: Iterable[str]) -> set[str]:
    """Every key an image may be leased under: its id, its tags and repo digests, normalised."""
    keys = set(normalise_reference(image_id)) if _IMAGE_ID.fullmatch(image_id) else {image_id}
    for reference in references:
        if not reference or reference.startswith("<none>"):
            continue
        with contextlib.suppress(ConfigError):  # an odd tag on the engine must not break the GC
            keys.update(normalise_reference(reference))
    return keys


class Lease:
    """A task's hold on the images it is about to run; see :meth:`UsageStore.lease`."""

    def __init__(
        self, store: UsageStore, lease_id: str, expires: float, db: sqlite3.Connection | None = None
    ) -> None:
        self._store = store
        self.lease_id = lease_id
        self.expires = expires
        self._db = db  # the lease's own connection (see ``UsageStore.lease``)

    def add(self, image_id: str, *, used_at: float | None = None) -> None:
        """Hold the image id too, once the pull resolved it (tags may move; the id does not); with
        ``used_at``, record its use in the same transaction (``UsageStore.record_use``)."""
        self._store._insert_lease(
            self.lease_id, normalise_reference(image_id), self.expires, used=(image_id, used_at), db=self._db
        )


class UsageStore:
    """The per-host usage record and in-use leases; every method is safe across processes."""

    def __init__(
        self, path: Path | None = None, *, lock_timeout_seconds: float = DEFAULT_LOCK_TIMEOUT_SECONDS
    ):
        self.path = (path if path is not None else default_usage_path()).expanduser()
        xdg_default = default_usage_path() if not os.environ.get(STATE_DIR_ENV) else None
        self._default_location = path is None and xdg_default == self.path
        self._lock_timeout = lock_timeout_seconds
        self._ready = False
        self._mark: EngineMark | None = None

    @classmethod
    def for_host(cls, configured_state_dir: str | None = None, **kwargs: float) -> UsageStore:
        """The store at :func:`resolve_state_dir` (``configured_state_dir`` is ``[airdock] state_dir``)."""
        explicit = os.environ.get(STATE_DIR_ENV) or configured_state_dir
        return cls(default_usage_path(configured_state_dir) if explicit else None, **kwargs)

    @property
    def lock_path(self) -> Path:
        return self.path.with_name(self.path.name + ".lock")

    # -- writes ---------------------------------------------------------------------------
    def record_use(self, image_id: str, when: float) -> None:
        """Remember that a container was started from ``image_id`` at ``when`` (the latest wins)."""
        with self._connect() as db:
            _record_use(db, image_id, when)

    def record_pull(self, image_id: str, when: float) -> None:
        """Remember that airdock pulled ``image_id`` (it is in the GC's default scope from now on)."""
        key = normalise_reference(image_id)[0]
        with self._connect() as db:
            db.execute("INSERT OR IGNORE INTO brought (image_id, since) VALUES (?, ?)", (key, when))

    @contextlib.contextmanager
    def lease(self, references: Iterable[str], seconds: float = DEFAULT_LEASE_SECONDS) -> Iterator[Lease]:
        """Hold ``references`` (``repo:tag`` as written, and/or image ids) in use until the block exits.

        The lease is inserted under :meth:`removal_lock` (see the module docstring), so once this
        returns no GC can remove an image carrying one of the references. A holder that dies keeps
        its lease until ``seconds`` have passed.
        """
        keys = tuple(dict.fromkeys(key for reference in references for key in normalise_reference(reference)))
        lease_id = uuid.uuid4().hex
        expires = time.time() + seconds
        # One connection for the lease's life (its insert, its image id and use, its release): a
        # connection that is the store's only one pays for creating and checkpointing the WAL each
        # time it opens and closes, ~2 ms on this machine.
        db = self._open_ready()
        try:
            with self.removal_lock():
                self._insert_lease(lease_id, keys, expires, prune_before=time.time(), db=db)
            try:
                yield Lease(self, lease_id, expires, db)
            finally:
                try:
                    with self._connect(db=db) as tx:
                        tx.execute("DELETE FROM leases WHERE lease_id = ?", (lease_id,))
                except sqlite3.Error:  # that connection broke (the file was replaced?): a new one
                    with self._connect() as tx:
                        tx.execute("DELETE FROM leases WHERE lease_id = ?", (lease_id,))
        finally:
            db.close()

    def forget(self, image_ids: Iterable[str]) -> None:
        """Drop the use records of removed images, and every expired lease."""
        keys = [key for image_id in image_ids for key in normalise_reference(image_id)]
        with self._connect() as db:
            db.executemany("DELETE FROM uses WHERE image_id = ?", [(key,) for key in keys])
            db.executemany("DELETE FROM brought WHERE image_id = ?", [(key,) for key in keys])
            db.execute("DELETE FROM leases WHERE expires <= ?", (time.time(),))

    def prune(self, now: float) -> int:
        """Delete leases expired at ``now``; returns how many."""
        with self._connect() as db:
            return db.execute("DELETE FROM leases WHERE expires <= ?", (now,)).rowcount

    # -- reads ----------------------------------------------------------------------------
    def usage_for(self, images: Sequence[ImageInfo], now: float) -> dict[str, ImageUsage]:
        """Usage of each image, keyed by image id: its last use, and the latest live lease covering it.

        A record counts when it names the image id or any of its tags or repo digests (normalised).
        Reads only: a missing file means nothing is recorded (and is not created).
        """
        if not self.path.exists():
            return {image.id: ImageUsage(image.id) for image in images}
        with self._connect(write=False) as db:
            uses = dict(db.execute("SELECT image_id, last_used FROM uses").fetchall())
            brought = {str(row[0]) for row in db.execute("SELECT image_id FROM brought").fetchall()}
            leases: dict[str, float] = dict(
                db.execute(
                    "SELECT key, max(expires) FROM leases WHERE expires > ? GROUP BY key", (now,)
                ).fetchall()
            )
        result: dict[str, ImageUsage] = {}
        for image in images:
            key = normalise_reference(image.id)[0] if _IMAGE_ID.fullmatch(image.id) else None
            held = [
                leases[k] for k in _image_keys(image.id, (*image.tags, *image.repo_digests)) if k in leases
            ]
            result[image.id] = ImageUsage(
                image.id,
                last_used=uses.get(key) if key else None,
                leased_until=max(held, default=None),
                brought=key in brought,
            )
        return result

    def leased_until(self, image_id: str, references: Iterable[str], now: float) -> float | None:
        """The expiry of the latest live lease on the image (by id, tag or digest), else None.

        The GC calls this under :meth:`removal_lock` right before removing the image.
        """
        if not self.path.exists():
            return None
        keys = sorted(_image_keys(image_id, references))
        marks = ",".join("?" * len(keys))
        with self._connect(write=False) as db:
            row = db.execute(
                f"SELECT max(expires) FROM leases WHERE expires > ? AND key IN ({marks})",  # noqa: S608
                (now, *keys),
            ).fetchone()
        return None if row is None or row[0] is None else float(row[0])

    def active_leases(self, now: float) -> list[tuple[str, float]]:
        """(key, expires) of every live lease (for inspection and tests)."""
        if not self.path.exists():
            return []
        with self._connect(write=False) as db:
            rows = db.execute("SELECT key, expires FROM leases WHERE expires > ? ORDER BY key", (now,))
            return [(str(key), float(expires)) for key, expires in rows.fetchall()]

    # -- the engine it belongs to ----------------------------------------------------------
    def engine_mark(self) -> EngineMark | None:
        """The engine this store was marked with on first use; None for a new or unmarked store."""
        if self._mark is not None:
            return self._mark
        if not self.path.exists():
            return None
        with self._connect(write=False) as db:
            self._mark = self._read_mark(db)
        return self._mark

    @staticmethod
    def _read_mark(db: sqlite3.Connection) -> EngineMark | None:
        rows = dict(db.execute("SELECT key, value FROM meta").fetchall())
        if "engine_id" not in rows:
            return None
        return EngineMark(str(rows["engine_id"]), str(rows.get("engine_address", "")))

    def claim_engine(self, engine: EngineMark) -> None:
        """Make sure this store is ``engine``'s: mark a new or unmarked store, refuse another engine's.

        Raises EngineMismatchError (one line naming the store and both engines) when the store was
        marked by another engine: a GC reading it would see none of this engine's leases.
        """
        with self._connect() as db:
            rows = dict(db.execute("SELECT key, value FROM meta").fetchall())
            if "engine_id" not in rows:
                db.executemany(
                    "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                    [
                        ("engine_id", engine.engine_id),
                        ("engine_address", engine.address),
                        ("marked_at", str(time.time())),
                    ],
                )
                self._mark = engine
                return
        mark = EngineMark(str(rows["engine_id"]), str(rows.get("engine_address", "")))
        self._mark = mark
        if mark.engine_id != engine.engine_id:
            raise EngineMismatchError(
                f"the usage store {self.path} belongs to the Docker engine at {mark.describe()}, not to "
                f"the one at {engine.describe()}: its leases are not this engine's, so image GC refuses "
                f"to use it. Give each engine its own {STATE_DIR_ENV} (or [airdock] state_dir), the same "
                f"for its tasks and its GC; if this engine replaced that one, delete {self.path}"
            )

    def mark_if_new(self, engine: Callable[[], EngineMark]) -> None:
        """Mark an unmarked store with the engine ``engine()`` names (called only then: it costs a call)."""
        if self.engine_mark() is None:
            self.claim_engine(engine())

    # -- the host-wide lock -----------------------------------------------------------------
    @contextlib.contextmanager
    def removal_lock(self) -> Iterator[None]:
        """The host-wide lock serialising lease insertion with the GC's check-then-remove."""
        self._ensure_directory()
        lock = FileLock(str(self.lock_path), timeout=self._lock_timeout, mode=0o600)
        try:
            lock.acquire()
        except LockTimeout:
            raise PrerequisiteError(
                f"timed out after {self._lock_timeout:.0f} s waiting for the image-usage lock "
                f"{self.lock_path}: another airdock process holds it (a GC removing an image, or a task "
                "taking its lease); the lock is released when that process finishes or dies — "
                "retry, and do not delete the lock file"
            ) from None
        try:
            yield
        finally:
            lock.release()

    # -- internals ------------------------------------------------------------------------
    def _insert_lease(
        self,
        lease_id: str,
        keys: Iterable[str],
        expires: float,
        *,
        prune_before: float | None = None,
        used: tuple[str, float | None] | None = None,
        db: sqlite3.Connection | None = None,
    ) -> None:
        with self._connect(db=db) as db:
            if prune_before is not None:
                db.execute("DELETE FROM leases WHERE expires <= ?", (prune_before,))
            db.executemany(
                "INSERT INTO leases (lease_id, key, expires) VALUES (?, ?, ?) "
                "ON CONFLICT (lease_id, key) DO UPDATE SET expires = excluded.expires",
                [(lease_id, key, expires) for key in keys],
            )
            if used is not None and used[1] is not None:
                _record_use(db, used[0], used[1])
            if self._mark is None:  # learnt in the same transaction: ``mark_if_new`` then costs nothing
                self._mark = self._read_mark(db)

    @contextlib.contextmanager
    def _connect(
        self, *, write: bool = True, db: sqlite3.Connection | None = None
    ) -> Iterator[sqlite3.Connection]:
        """One transaction, committed on success: on ``db`` (left open), else on a short-lived
        connection (always closed)."""
        own = db is None
        if db is None:
            db = self._open_ready()
        try:
            # A writer takes the write lock up front, so the busy timeout applies (no upgrade deadlock).
            db.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            try:
                yield db
            except BaseException:
                with contextlib.suppress(sqlite3.Error):  # the transaction's own error is the one to see
                    db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
        finally:
            if own:
                db.close()

    def _open(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_SECONDS, isolation_level=None)
        # WAL with synchronous=NORMAL: a commit survives any process's crash without an fsync
        # (only a power loss may drop the last ones; the containers they describe die with it).
        db.execute("PRAGMA synchronous=NORMAL")
        return db

    def _open_ready(self) -> sqlite3.Connection:
        """A new connection to the store, made (0600, with its schema) on this object's first use."""
        if self._ready:
            return self._open()
        self._ensure_directory()
        # Create the file 0600 before SQLite opens it; SQLite gives its -wal and -shm files the
        # database file's permissions.
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        os.close(fd)
        db = self._open()
        try:
            # A store made by this version says so (user_version): the next process skips the script.
            if db.execute("PRAGMA user_version").fetchone()[0] < _SCHEMA_VERSION:
                db.execute("PRAGMA journal_mode=WAL")
                db.executescript(_SCHEMA)
                db.execute(f"PRAGMA user_version = {_SCHEMA_VERSION}")
        except BaseException:
            db.close()
            raise
        self._ready = True
        return db

    def _ensure_directory(self) -> None:
        directory = self.path.parent
        if not directory.exists():
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        elif self._default_location and directory.stat().st_mode & 0o077:
            # Only airdock's own default directory is tightened; a directory the caller chose is theirs.
            with contextlib.suppress(PermissionError):
                directory.chmod(0o700)
