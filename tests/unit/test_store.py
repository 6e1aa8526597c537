from __future__ import annotations

import stat
from pathlib import Path

import pytest

from airdock.local.store import RepositoryExists, Store, TokenState


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(tmp_path: Path, clock: Clock) -> Store:
    return Store(tmp_path / "state.sqlite", clock=clock)


def test_token_lifecycle(store: Store, clock: Clock) -> None:
    token = store.issue_token(20)
    assert token.expires_at == clock.now + 20
    assert store.check_password(token.password) is TokenState.VALID
    clock.now += 19.9
    assert store.check_password(token.password) is TokenState.VALID
    clock.now += 0.1
    assert store.check_password(token.password) is TokenState.EXPIRED
    assert store.check_password("never-issued") is TokenState.UNKNOWN


def test_every_token_is_fresh(store: Store) -> None:
    passwords = {store.issue_token(60).password for _ in range(50)}
    assert len(passwords) == 50


def test_passwords_are_not_stored_in_clear_and_file_is_private(tmp_path: Path, store: Store) -> None:
    token = store.issue_token(60)
    store.close()
    raw = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.is_file())
    assert token.password.encode() not in raw
    assert stat.S_IMODE((tmp_path / "state.sqlite").stat().st_mode) == 0o600
    assert "password" not in repr(token)


def test_old_expired_tokens_are_pruned(store: Store, clock: Clock) -> None:
    old = store.issue_token(1)
    clock.now += 8 * 86400
    store.issue_token(1)
    assert store.check_password(old.password) is TokenState.UNKNOWN


def test_repositories(store: Store) -> None:
    created = store.create_repository("team/app", tag_mutability="IMMUTABLE", scan_on_push=True)
    assert store.get_repository("team/app") == created
    with pytest.raises(RepositoryExists):
        store.create_repository("team/app")
    store.create_repository("a")
    assert [r.name for r in store.list_repositories()] == ["a", "team/app"]
    updated = store.put_lifecycle_policy("a", '{"rules": []}')
    assert updated is not None
    assert updated.lifecycle_policy == '{"rules": []}'
    assert store.put_lifecycle_policy("missing", "{}") is None
    assert store.delete_repository("a") is not None
    assert store.delete_repository("a") is None
    assert store.get_repository("a") is None


def test_state_persists_across_reopen(tmp_path: Path, clock: Clock) -> None:
    first = Store(tmp_path / "s.sqlite", clock=clock)
    first.create_repository("kept")
    token = first.issue_token(100)
    first.bump("GetAuthorizationToken")
    first.close()
    second = Store(tmp_path / "s.sqlite", clock=clock)
    assert second.get_repository("kept") is not None
    assert second.check_password(token.password) is TokenState.VALID
    assert second.counters() == {"GetAuthorizationToken": 1}


def test_counters(store: Store) -> None:
    assert store.counters() == {}
    assert store.bump("x") == 1
    assert store.bump("x") == 2
    assert store.counters() == {"x": 2}
