"""The host-wide token cache: reuse, proactive and reactive refresh, file modes, one fetch per host."""

from __future__ import annotations

import multiprocessing
import os
import stat
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from airdock.auth.cache import TokenCache
from airdock.auth.credentials import RegistryCredentials
from airdock.errors import AccessDeniedError, RegistryAuthError


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


class Fetcher:
    def __init__(self, clock: Clock, lifetime: float = 43200) -> None:
        self.clock = clock
        self.lifetime = lifetime
        self.calls = 0

    def __call__(self) -> RegistryCredentials:
        self.calls += 1
        return RegistryCredentials("reg", "AWS", f"pw-{self.calls}", self.clock.now + self.lifetime)


@pytest.fixture
def clock() -> Clock:
    return Clock()


def test_second_get_comes_from_the_cache(tmp_path: Path, clock: Clock) -> None:
    cache = TokenCache(tmp_path / "c", clock=clock)
    fetch = Fetcher(clock)
    first = cache.get("k", fetch)
    second = cache.get("k", fetch)
    assert first.fetched and not second.fetched
    assert second.credentials == first.credentials
    assert fetch.calls == 1


def test_keys_are_separate(tmp_path: Path, clock: Clock) -> None:
    cache = TokenCache(tmp_path, clock=clock)
    fetch = Fetcher(clock)
    cache.get("registry-a|identity-1", fetch)
    cache.get("registry-a|identity-2", fetch)
    cache.get("registry-b|identity-1", fetch)
    assert fetch.calls == 3


def test_proactive_refresh_inside_the_margin(tmp_path: Path, clock: Clock) -> None:
    cache = TokenCache(tmp_path, clock=clock, margin_seconds=3600)
    fetch = Fetcher(clock)  # 12 h tokens
    cache.get("k", fetch)
    clock.now += 43200 - 3601
    assert not cache.get("k", fetch).fetched
    clock.now += 2
    renewed = cache.get("k", fetch)
    assert renewed.fetched
    assert renewed.previous_expired_at is not None
    assert fetch.calls == 2


def test_margin_is_capped_at_half_the_lifetime_for_short_tokens(tmp_path: Path, clock: Clock) -> None:
    cache = TokenCache(tmp_path, clock=clock, margin_seconds=3600)
    fetch = Fetcher(clock, lifetime=20)
    cache.get("k", fetch)
    clock.now += 9
    assert not cache.get("k", fetch).fetched, "a 20 s token is reused for its first 10 s"
    clock.now += 2
    assert cache.get("k", fetch).fetched
    assert fetch.calls == 2


def test_invalidate_drops_only_the_stale_token(tmp_path: Path, clock: Clock) -> None:
    cache = TokenCache(tmp_path, clock=clock)
    fetch = Fetcher(clock)
    stale = cache.get("k", fetch).credentials
    assert cache.invalidate("k", stale)
    fresh = cache.get("k", fetch).credentials
    assert fresh.password != stale.password
    assert not cache.invalidate("k", stale), "someone already replaced it: keep the fresh one"
    assert cache.peek("k") == fresh


def test_files_are_private(tmp_path: Path, clock: Clock) -> None:
    directory = tmp_path / "tokens"
    cache = TokenCache(directory, clock=clock)
    cache.get("k", Fetcher(clock))
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    entry = cache.path_for("k")
    assert stat.S_IMODE(entry.stat().st_mode) == 0o600
    assert "pw-1" in entry.read_text()
    assert "k" not in entry.name, "file names are hashes of the key"


def test_a_damaged_entry_is_refetched(tmp_path: Path, clock: Clock) -> None:
    cache = TokenCache(tmp_path, clock=clock)
    fetch = Fetcher(clock)
    cache.get("k", fetch)
    cache.path_for("k").write_text("{garbage")
    assert cache.get("k", fetch).fetched
    assert fetch.calls == 2


def test_a_failed_fetch_leaves_the_cache_unchanged(tmp_path: Path, clock: Clock) -> None:
    cache = TokenCache(tmp_path, clock=clock)

    def boom() -> RegistryCredentials:
        raise RuntimeError("AWS said no")

    with pytest.raises(RuntimeError):
        cache.get("k", boom)
    assert cache.peek("k") is None
    assert [p.name for p in tmp_path.iterdir() if not p.name.endswith(".lock")] == []


def _racer(directory: str, counter: str, barrier: multiprocessing.synchronize.Barrier) -> None:
    def fetch() -> RegistryCredentials:
        with open(counter, "a") as handle:  # one line per real fetch
            handle.write(f"{os.getpid()}\n")
        time.sleep(0.3)  # a slow GetAuthorizationToken widens the race window
        return RegistryCredentials("reg", "AWS", "shared", time.time() + 3600)

    barrier.wait()
    TokenCache(Path(directory)).get("k", fetch)


def test_twenty_processes_fetch_once(tmp_path: Path) -> None:
    """Real processes and real file locks: concurrent misses wait for the one fetch."""
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(20)
    counter = tmp_path / "fetches"
    procs = [ctx.Process(target=_racer, args=(str(tmp_path / "c"), str(counter), barrier)) for _ in range(20)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(60)
        assert proc.exitcode == 0
    assert len(counter.read_text().splitlines()) == 1


# -- a failed fetch is remembered briefly -------------------------------------------------------


class Failing:
    def __init__(self, error: Exception) -> None:
        self.error = error
        self.calls = 0

    def __call__(self) -> RegistryCredentials:
        self.calls += 1
        raise self.error


def test_a_failed_fetch_is_remembered_for_fifteen_seconds(tmp_path: Path, clock: Clock) -> None:
    cache = TokenCache(tmp_path, clock=clock)
    fetch = Failing(RegistryAuthError("ECR API unreachable for registry reg after retries: boom"))
    for _ in range(3):
        with pytest.raises(RegistryAuthError) as caught:
            cache.get("reg|id", fetch)
        assert str(caught.value) == "ECR API unreachable for registry reg after retries: boom"
    assert fetch.calls == 1, "the waiters failed fast with the same error"
    assert cache.peek("reg|id") is None
    clock.now += 15.1
    with pytest.raises(RegistryAuthError):
        cache.get("reg|id", fetch)
    assert fetch.calls == 2, "after 15 s the fetch is tried again"
    ok = Fetcher(clock)
    clock.now += 15.1
    assert cache.get("reg|id", ok).fetched
    assert cache.get("reg|id", fetch).credentials.password == "pw-1", "a success clears the failure"
    assert not any(p.name.endswith(".failed.json") for p in tmp_path.iterdir())


def test_the_failure_cache_is_per_key_and_keeps_access_denied(tmp_path: Path, clock: Clock) -> None:
    cache = TokenCache(tmp_path, clock=clock)
    denied = Failing(AccessDeniedError("access denied: may not call ecr:GetAuthorizationToken", "ecr:X"))
    with pytest.raises(AccessDeniedError):
        cache.get("a|id", denied)
    with pytest.raises(AccessDeniedError) as caught:
        cache.get("a|id", Fetcher(clock))
    assert caught.value.action == "ecr:X"
    assert cache.get("b|id", Fetcher(clock)).fetched, "another key is not affected"


def test_unexpected_errors_are_not_remembered(tmp_path: Path, clock: Clock) -> None:
    cache = TokenCache(tmp_path, clock=clock)
    with pytest.raises(RuntimeError):
        cache.get("k", Failing(RuntimeError("a bug")))
    assert cache.get("k", Fetcher(clock)).fetched


# -- a cache that cannot be written never fails a task ------------------------------------------


@pytest.fixture
def immutable_dir(tmp_path: Path) -> Iterator[Path]:
    """A directory nobody can write, root included (chattr +i)."""
    directory = tmp_path / "immutable"
    directory.mkdir(mode=0o700)
    done = subprocess.run(["chattr", "+i", str(directory)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, f"chattr +i failed ({done.stderr.strip()}): this test needs it"
    try:
        yield directory
    finally:
        subprocess.run(["chattr", "-i", str(directory)], check=False)


@pytest.fixture
def read_only_fs(tmp_path: Path) -> Iterator[Path]:
    """A read-only filesystem (a tmpfs mounted ro)."""
    directory = tmp_path / "ro"
    directory.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(directory)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, f"mount failed ({done.stderr.strip()}): this test needs it"
    try:
        yield directory
    finally:
        subprocess.run(["umount", str(directory)], check=False)


@pytest.mark.parametrize("where", ["immutable_dir", "read_only_fs"])
def test_an_unwritable_cache_fetches_uncached_and_warns_once(
    where: str, request: pytest.FixtureRequest, clock: Clock
) -> None:
    base: Path = request.getfixturevalue(where)
    warnings: list[tuple[Path, OSError]] = []
    for directory in (base, base / "tokens"):  # the directory itself, or one to be created in it
        warnings.clear()
        cache = TokenCache(directory, clock=clock, on_unwritable=lambda d, e: warnings.append((d, e)))
        fetch = Fetcher(clock)
        first = cache.get("k", fetch)
        second = cache.get("k", fetch)
        assert first.fetched and second.fetched
        assert fetch.calls == 2, "nothing could be cached"
        assert [d for d, _ in warnings] == [directory], "one warning per cache, naming the directory"
        assert not cache.invalidate("k", first.credentials)


def test_the_lock_timeout_says_what_holds_it_and_not_to_delete_it(tmp_path: Path) -> None:
    import filelock

    cache = TokenCache(tmp_path, lock_timeout_seconds=0.2)
    lock = filelock.FileLock(str(cache.path_for("reg.example|id")) + ".lock")
    with lock, pytest.raises(RegistryAuthError) as caught:
        cache.get("reg.example|id", lambda: RegistryCredentials("r", "AWS", "x", time.time() + 60))
    message = str(caught.value)
    assert "\n" not in message
    assert "fetching a token for reg.example" in message
    assert "do not delete the lock file" in message
    assert "remove the lock file" not in message


def test_cached_credentials_say_whether_they_fetched_and_store_who_fetched(tmp_path: Path) -> None:
    """``fetched`` tells the host-status publisher the host's tokens changed; the cache entry names
    the identity that fetched the token (for the Container hosts page)."""
    import json

    from airdock.auth.cache import CachedCredentials

    cache = TokenCache(tmp_path)
    fetcher = Fetcher(Clock())
    fetcher.clock.now = time.time()
    first = CachedCredentials(cache, "reg|id", fetcher, identity="connection aws_ecr: profile team")
    again = CachedCredentials(cache, "reg|id", fetcher, identity="connection aws_ecr: profile team")
    assert not first.fetched
    first.get()
    again.get()
    assert (first.fetched, again.fetched, fetcher.calls) == (True, False, 1)
    (entry,) = [json.loads(path.read_text()) for path in tmp_path.glob("*.json")]
    assert entry["identity"] == "connection aws_ecr: profile team"
