"""The host-wide token cache: reuse, proactive and reactive refresh, file modes, one fetch per host."""

from __future__ import annotations

import multiprocessing
import os
import stat
import time
from pathlib import Path

import pytest

from airdock.auth.cache import TokenCache
from airdock.auth.credentials import RegistryCredentials


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
