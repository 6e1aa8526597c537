"""The local stack's control-plane state, in one SQLite file.

Holds repositories (with their settings and lifecycle policy), the hashes of issued registry
passwords with their expiry, and counters of served calls. Passwords themselves are never
stored: only their SHA-256, so the file leaks nothing usable.
"""

from __future__ import annotations

import enum
import hashlib
import json
import secrets
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from airdock.local.sqlite_file import SqliteFile

_SCHEMA = """
CREATE TABLE IF NOT EXISTS repositories (
    name TEXT PRIMARY KEY,
    created_at REAL NOT NULL,
    tag_mutability TEXT NOT NULL,
    scan_on_push INTEGER NOT NULL,
    encryption_type TEXT NOT NULL,
    resource_tags TEXT NOT NULL,
    lifecycle_policy TEXT,
    lifecycle_updated_at REAL
);
CREATE TABLE IF NOT EXISTS tokens (
    sha256 TEXT PRIMARY KEY,
    expires_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS counters (
    name TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
"""

# Tokens stay recognisable (and so answered with "expired" rather than "invalid") this long
# after they expire; older ones are pruned.
_EXPIRED_TOKEN_MEMORY_S = 7 * 86400.0


class TokenState(enum.Enum):
    VALID = "valid"
    EXPIRED = "expired"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class IssuedToken:
    """A registry password just issued; ``password`` exists only in memory of the caller."""

    password: str = field(repr=False)
    expires_at: float


@dataclass(frozen=True)
class Repository:
    name: str
    created_at: float
    tag_mutability: str = "MUTABLE"
    scan_on_push: bool = False
    encryption_type: str = "AES256"
    resource_tags: tuple[tuple[str, str], ...] = ()
    lifecycle_policy: str | None = None
    lifecycle_updated_at: float | None = None


class RepositoryExists(Exception):
    """CreateRepository for a name that is taken."""


def _hash(password: str) -> str:
    return hashlib.sha256(password.encode()).hexdigest()


class Store(SqliteFile):
    """Thread-safe access to the stack's SQLite state file."""

    def __init__(self, path: Path, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        super().__init__(path, _SCHEMA)

    # -- tokens ---------------------------------------------------------------------------
    def issue_token(self, ttl_seconds: float) -> IssuedToken:
        """Create a fresh random password valid for ``ttl_seconds`` from now."""
        password = secrets.token_urlsafe(96)
        now = self._clock()
        expires_at = now + ttl_seconds
        with self._tx() as db:
            db.execute("INSERT INTO tokens (sha256, expires_at) VALUES (?, ?)", (_hash(password), expires_at))
            db.execute("DELETE FROM tokens WHERE expires_at < ?", (now - _EXPIRED_TOKEN_MEMORY_S,))
        return IssuedToken(password=password, expires_at=expires_at)

    def check_password(self, password: str) -> TokenState:
        with self._lock:
            row = self._db.execute(
                "SELECT expires_at FROM tokens WHERE sha256 = ?", (_hash(password),)
            ).fetchone()
        if row is None:
            return TokenState.UNKNOWN
        return TokenState.VALID if self._clock() < row[0] else TokenState.EXPIRED

    # -- counters -------------------------------------------------------------------------
    def bump(self, name: str) -> int:
        with self._tx() as db:
            db.execute(
                "INSERT INTO counters (name, value) VALUES (?, 1) "
                "ON CONFLICT(name) DO UPDATE SET value = value + 1",
                (name,),
            )
            row = db.execute("SELECT value FROM counters WHERE name = ?", (name,)).fetchone()
        return int(row[0])

    def counters(self) -> dict[str, int]:
        with self._lock:
            return {name: int(value) for name, value in self._db.execute("SELECT name, value FROM counters")}

    # -- repositories ---------------------------------------------------------------------
    def create_repository(
        self,
        name: str,
        *,
        tag_mutability: str = "MUTABLE",
        scan_on_push: bool = False,
        encryption_type: str = "AES256",
        resource_tags: tuple[tuple[str, str], ...] = (),
    ) -> Repository:
        """Record a new repository; raise RepositoryExists when the name is taken."""
        repo = Repository(
            name=name,
            created_at=self._clock(),
            tag_mutability=tag_mutability,
            scan_on_push=scan_on_push,
            encryption_type=encryption_type,
            resource_tags=resource_tags,
        )
        try:
            with self._tx() as db:
                db.execute(
                    "INSERT INTO repositories (name, created_at, tag_mutability, scan_on_push,"
                    " encryption_type, resource_tags) VALUES (?, ?, ?, ?, ?, ?)",
                    (
                        repo.name,
                        repo.created_at,
                        repo.tag_mutability,
                        int(repo.scan_on_push),
                        repo.encryption_type,
                        json.dumps(list(repo.resource_tags)),
                    ),
                )
        except sqlite3.IntegrityError:
            raise RepositoryExists(name) from None
        return repo

    def get_repository(self, name: str) -> Repository | None:
        with self._lock:
            row = self._db.execute("SELECT * FROM repositories WHERE name = ?", (name,)).fetchone()
        return None if row is None else _repo(row)

    def list_repositories(self) -> list[Repository]:
        with self._lock:
            rows = self._db.execute("SELECT * FROM repositories ORDER BY name").fetchall()
        return [_repo(row) for row in rows]

    def delete_repository(self, name: str) -> Repository | None:
        """Forget a repository; return what it was, or None when there was none."""
        with self._tx() as db:
            row = db.execute("SELECT * FROM repositories WHERE name = ?", (name,)).fetchone()
            db.execute("DELETE FROM repositories WHERE name = ?", (name,))
        return None if row is None else _repo(row)

    def put_lifecycle_policy(self, name: str, policy_text: str) -> Repository | None:
        """Store a lifecycle policy; return the updated repository, or None when it does not exist."""
        with self._tx() as db:
            cur = db.execute(
                "UPDATE repositories SET lifecycle_policy = ?, lifecycle_updated_at = ? WHERE name = ?",
                (policy_text, self._clock(), name),
            )
            if cur.rowcount == 0:
                return None
            row = db.execute("SELECT * FROM repositories WHERE name = ?", (name,)).fetchone()
        return _repo(row)


def _repo(row: tuple[object, ...]) -> Repository:
    name, created_at, mutability, scan, encryption, tags, policy, policy_at = row
    return Repository(
        name=str(name),
        created_at=float(created_at),  # type: ignore[arg-type]
        tag_mutability=str(mutability),
        scan_on_push=bool(scan),
        encryption_type=str(encryption),
        resource_tags=tuple((str(k), str(v)) for k, v in json.loads(str(tags))),
        lifecycle_policy=None if policy is None else str(policy),
        lifecycle_updated_at=None if policy_at is None else float(policy_at),  # type: ignore[arg-type]
    )
