"""A host-wide cache of registry tokens, shared by every task process on the worker.

Each Airflow task is its own process, so an in-process cache saves nothing. Here a token lives
in one small file per (registry, AWS identity) key, mode 0600, in a 0700 directory under the
worker user's cache directory; a lock file per key makes concurrent misses wait for the one
process that fetches, so 20 tasks starting together cost one GetAuthorizationToken call.

A cached token counts as valid until ``margin`` before it expires (proactive refresh). The
margin is capped at half the token's lifetime, so short-lived tokens (the local stack's 20 s)
are still reused rather than refetched on every read. ``invalidate`` drops a token the registry
refused (reactive refresh), but only if nobody replaced it already.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock
from filelock import Timeout as LockTimeout

from airdock.auth.credentials import RegistryCredentials
from airdock.errors import RegistryAuthError

DEFAULT_MARGIN_SECONDS = 3600.0
DEFAULT_LOCK_TIMEOUT_SECONDS = 120.0


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
    ) -> None:
        self.directory = directory if directory is not None else default_cache_dir()
        self.margin_seconds = margin_seconds
        self._clock = clock
        self._lock_timeout = lock_timeout_seconds

    def path_for(self, key: str) -> Path:
        return self.directory / f"{hashlib.sha256(key.encode()).hexdigest()[:32]}.json"

    def get(self, key: str, fetch: Callable[[], RegistryCredentials]) -> CachedToken:
        """Return valid credentials for ``key``, calling ``fetch`` only when no valid ones are cached."""
        path = self.path_for(key)
        entry = self._read(path)
        if entry is not None and self._usable(entry):
            return CachedToken(entry[0], fetched=False)
        self._ensure_directory()
        try:
            with FileLock(str(path) + ".lock", timeout=self._lock_timeout):
                entry = self._read(path)  # someone may have refreshed while we waited
                if entry is not None and self._usable(entry):
                    return CachedToken(entry[0], fetched=False)
                credentials = fetch()
                self._write(path, credentials)
                return CachedToken(
                    credentials, fetched=True, previous_expired_at=entry[0].expires_at if entry else None
                )
        except LockTimeout:
            raise RegistryAuthError(
                f"timed out after {self._lock_timeout:.0f} s waiting for the token cache lock {path}.lock; "
                "another process holds it — remove the lock file if that process is gone"
            ) from None

    def peek(self, key: str) -> RegistryCredentials | None:
        """The cached credentials for ``key``, valid or not (for inspection and tests)."""
        entry = self._read(self.path_for(key))
        return None if entry is None else entry[0]

    def invalidate(self, key: str, stale: RegistryCredentials) -> bool:
        """Drop ``stale`` from the cache if it is still what is cached; True when dropped."""
        path = self.path_for(key)
        if not path.exists():
            return False
        with FileLock(str(path) + ".lock", timeout=self._lock_timeout):
            entry = self._read(path)
            if entry is None or entry[0].password != stale.password:
                return False
            path.unlink(missing_ok=True)
            return True

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

    def _write(self, path: Path, credentials: RegistryCredentials) -> None:
        payload = json.dumps(
            {"credentials": json.loads(credentials.to_json()), "fetched_at": self._clock()},
            separators=(",", ":"),
        )
        # mkstemp creates the file 0600; os.replace makes the new entry appear atomically.
        fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=".tmp-", suffix=".json")
        try:
            with os.fdopen(fd, "w") as handle:
                handle.write(payload)
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

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
    ) -> None:
        self.cache = cache
        self.key = key
        self._fetch = fetch
        self._on_result = on_result

    def get(self) -> RegistryCredentials:
        return self.lookup().credentials

    def lookup(self) -> CachedToken:
        """Like ``get``, saying also whether the credentials were fetched just now."""
        result = self.cache.get(self.key, self._fetch)
        if self._on_result is not None:
            self._on_result(result)
        return result

    def refresh(self, stale: RegistryCredentials) -> RegistryCredentials:
        self.cache.invalidate(self.key, stale)
        return self.get()
