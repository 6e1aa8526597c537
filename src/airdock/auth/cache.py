"""A host-wide cache of registry tokens, shared by every task process on the worker.

Each Airflow task is its own process, so an in-process cache saves nothing. Here a token lives
in one small file per (registry, AWS identity) key, mode 0600, in a 0700 directory under the
worker user's cache directory; a lock file per key makes concurrent misses wait for the one
process that fetches, so 20 tasks starting together cost one GetAuthorizationToken call.

A cached token counts as valid until ``margin`` before it expires (proactive refresh). The
margin is capped at half the token's lifetime, so short-lived tokens (the local stack's 20 s)
are still reused rather than refetched on every read. ``invalidate`` drops a token the registry
refused (reactive refresh), but only if nobody replaced it already.

A failed fetch is remembered for ``FAILURE_TTL_SECONDS`` (per key, in the same directory): during
an ECR outage the processes waiting on the lock fail at once with the same one-line error
instead of each re-running the failing call in turn. The cache is an optimisation, never a
reason to fail: when its directory cannot be written (read-only filesystem, immutable or foreign
directory), the token is fetched without it and ``on_unwritable`` is told once.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock
from filelock import Timeout as LockTimeout

from airdock import metrics
from airdock.auth.credentials import RegistryCredentials
from airdock.errors import AccessDeniedError, RegistryAuthError
from airdock.files import write_atomically

DEFAULT_MARGIN_SECONDS = 3600.0
DEFAULT_LOCK_TIMEOUT_SECONDS = 120.0
FAILURE_TTL_SECONDS = 15.0


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/airdock/registry-tokens``, else ``~/.cache/airdock/registry-tokens``."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "airdock" / "registry-tokens"


@dataclass(frozen=True)
class CachedToken:
    """What ``TokenCache.get`` returns: the credentials and where they came from."""

    credentials: RegistryCredentials
    fetched: bool  # True when this call fetched them, False when they came from the cache
    previous_expired_at: float | None = None  # expiry of the entry that was replaced, if any


class TokenCache:
    """File-backed token cache; all methods are safe across processes."""

    def __init__(
        self,
        directory: Path | None = None,
        *,
        margin_seconds: float = DEFAULT_MARGIN_SECONDS,
        clock: Callable[[], float] = time.time,
        lock_timeout_seconds: float = DEFAULT_LOCK_TIMEOUT_SECONDS,
        failure_ttl_seconds: float = FAILURE_TTL_SECONDS,
        on_unwritable: Callable[[Path, OSError], None] | None = None,
    ) -> None:
        self.directory = directory if directory is not None else default_cache_dir()
        self.margin_seconds = margin_seconds
        self._clock = clock
        self._lock_timeout = lock_timeout_seconds
        self._failure_ttl = failure_ttl_seconds
        self._on_unwritable = on_unwritable
        self._warned = False

    def path_for(self, key: str) -> Path:
        return self.directory / f"{hashlib.sha256(key.encode()).hexdigest()[:32]}.json"

    def get(
        self, key: str, fetch: Callable[[], RegistryCredentials], *, identity: str | None = None
    ) -> CachedToken:
        """Return valid credentials for ``key``, calling ``fetch`` only when no valid ones are cached;
        ``identity`` (who fetched them, for people: ``AwsIdentity.describe``) is stored beside them.

        Raises the fetch's RegistryAuthError — or, within ``failure_ttl_seconds`` of a failed fetch
        for the same key on this host, that same error again without calling ``fetch``.
        """
        path = self.path_for(key)
        entry = self._read(path)
        if entry is not None and self._usable(entry):
            return CachedToken(entry[0], fetched=False)
        self._raise_recent_failure(path)
        try:
            self._ensure_directory()
            lock = FileLock(str(path) + ".lock", timeout=self._lock_timeout, mode=0o600)
            lock.acquire()
        except LockTimeout:
            registry = key.split("|", 1)[0]
            raise RegistryAuthError(
                f"timed out after {self._lock_timeout:.0f} s waiting for another process on this host that "
                f"is fetching a token for {registry} (lock {path}.lock); the lock is released when that "
                "fetch ends or its process dies — retry the task, and do not delete the lock file"
            ) from None
        except OSError as exc:  # the directory or the lock file cannot be created: go on uncached
            self._unwritable(exc)
            return CachedToken(fetch(), fetched=True, previous_expired_at=None)
        try:
            entry = self._read(path)  # someone may have refreshed while we waited
            if entry is not None and self._usable(entry):
                return CachedToken(entry[0], fetched=False)
            self._raise_recent_failure(path)
            try:
                credentials = fetch()
            except RegistryAuthError as exc:
                self._remember_failure(path, exc)
                raise
            try:
                self._write(path, credentials, identity)
                self._failure_path(path).unlink(missing_ok=True)
            except OSError as exc:
                self._unwritable(exc)
            return CachedToken(
                credentials, fetched=True, previous_expired_at=entry[0].expires_at if entry else None
            )
        finally:
            lock.release()

    def put(self, key: str, credentials: RegistryCredentials, *, identity: str | None = None) -> None:
        """Store ``credentials`` under ``key`` too (a token fetched for the caller's default registry is
        also the named registry's); best effort: an unwritable cache only warns."""
        path = self.path_for(key)
        try:
            self._ensure_directory()
            with FileLock(str(path) + ".lock", timeout=self._lock_timeout, mode=0o600):
                self._write(path, credentials, identity)
        except (OSError, LockTimeout) as exc:
            if isinstance(exc, OSError):
                self._unwritable(exc)

    def peek(self, key: str) -> RegistryCredentials | None:
        """The cached credentials for ``key``, valid or not (for inspection and tests)."""
        entry = self._read(self.path_for(key))
        return None if entry is None else entry[0]

    def invalidate(self, key: str, stale: RegistryCredentials) -> bool:
        """Drop ``stale`` from the cache if it is still what is cached; True when dropped."""
        path = self.path_for(key)
        if not path.exists():
            return False
        try:
            with FileLock(str(path) + ".lock", timeout=self._lock_timeout, mode=0o600):
                entry = self._read(path)
                if entry is None or entry[0].password != stale.password:
                    return False
                path.unlink(missing_ok=True)
                return True
        except OSError as exc:
            self._unwritable(exc)
            return False

    # -- internals ------------------------------------------------------------------------
    def _usable(self, entry: tuple[RegistryCredentials, float]) -> bool:
        credentials, fetched_at = entry
        lifetime = max(0.0, credentials.expires_at - fetched_at)
        margin = min(self.margin_seconds, lifetime / 2)
        return credentials.seconds_left(self._clock()) > margin

    def _read(self, path: Path) -> tuple[RegistryCredentials, float] | None:
        try:
            text = path.read_text()
            data = json.loads(text)
            return RegistryCredentials.from_json(json.dumps(data["credentials"])), float(data["fetched_at"])
        except (OSError, ValueError, KeyError, TypeError):
            return None  # absent or damaged: treated as a miss and overwritten

    def _write(self, path: Path, credentials: RegistryCredentials, identity: str | None) -> None:
        entry = {"credentials": json.loads(credentials.to_json()), "fetched_at": self._clock()}
        if identity:
            entry["identity"] = identity
        payload = json.dumps(entry, separators=(",", ":"))
        write_atomically(path, payload)  # 0600, and the new entry appears in one step

    @staticmethod
    def _failure_path(path: Path) -> Path:
        return path.with_name(path.stem + ".failed.json")

    def _remember_failure(self, path: Path, exc: RegistryAuthError) -> None:
        """Keep the error for ``failure_ttl_seconds`` so the next waiters fail fast with the same line."""
        if self._failure_ttl <= 0:
            return
        record = {
            "message": str(exc),
            "action": getattr(exc, "action", None),
            "denied": isinstance(exc, AccessDeniedError),
            "until": self._clock() + self._failure_ttl,
        }
        with contextlib.suppress(OSError):
            write_atomically(self._failure_path(path), json.dumps(record))

    def _raise_recent_failure(self, path: Path) -> None:
        try:
            record = json.loads(self._failure_path(path).read_text())
            until, message = float(record["until"]), str(record["message"])
        except (OSError, ValueError, KeyError, TypeError):
            return
        if until <= self._clock():
            return
        if record.get("denied"):
            raise AccessDeniedError(message, action=record.get("action"))
        raise RegistryAuthError(message)

    def _unwritable(self, exc: OSError) -> None:
        if not self._warned and self._on_unwritable is not None:
            self._on_unwritable(self.directory, exc)
        self._warned = True

    def _ensure_directory(self) -> None:
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        if self.directory.stat().st_mode & 0o077:
            with contextlib.suppress(PermissionError):
                self.directory.chmod(0o700)


class CachedCredentials:
    """A pull's ``CredentialProvider`` over one cache entry.

    ``get`` returns cached credentials (fetching on a miss); ``refresh`` drops credentials the
    registry refused and gets fresh ones. ``on_result`` sees every result (to mask, to log).
    """

    def __init__(
        self,
        cache: TokenCache,
        key: str,
        fetch: Callable[[], RegistryCredentials],
        on_result: Callable[[CachedToken], None] | None = None,
        *,
        identity: str | None = None,
    ) -> None:
        self.cache = cache
        self.key = key
        self.identity = identity
        self.fetched = False  # whether a lookup fetched a new token (the host's tokens changed)
        self._fetch = fetch
        self._on_result = on_result

    def get(self) -> RegistryCredentials:
        return self.lookup().credentials

    def lookup(self) -> CachedToken:
        """Like ``get``, saying also whether the credentials were fetched just now."""
        result = self.cache.get(self.key, self._fetch, identity=self.identity)
        self.fetched = self.fetched or result.fetched
        registry = result.credentials.registry
        metrics.emit(metrics.TOKEN_FETCH if result.fetched else metrics.TOKEN_CACHE_HIT, registry=registry)
        metrics.emit(
            metrics.TOKEN_SECONDS_LEFT, result.credentials.seconds_left(time.time()), registry=registry
        )
        if self._on_result is not None:
            self._on_result(result)
        return result

    def refresh(self, stale: RegistryCredentials) -> RegistryCredentials:
        metrics.emit(metrics.TOKEN_REFRESH_ON_REFUSAL, registry=stale.registry)
        self.cache.invalidate(self.key, stale)
        return self.get()
