"""The host's usage record: last use, leases, expiry, tag normalisation, file modes, the host-wide lock."""

from __future__ import annotations

import multiprocessing
import stat
import time
from pathlib import Path
from typing import Any

import pytest

from airdock.errors import ConfigError
from airdock.hygiene.model import ImageInfo
from airdock.hygiene.state import (
    STATE_DIR_ENV,
    EngineMark,
    EngineMismatchError,
    default_usage_path,
    resolve_state_dir,
)
from airdock.hygiene.usage import UsageStore, normalise_reference

ID_A = "sha256:" + "a" * 64
ID_B = "sha256:" + "b" * 64
DIGEST = "sha256:" + "c" * 64


def image(image_id: str, *tags: str, digests: tuple[str, ...] = ()) -> ImageInfo:
    return ImageInfo(id=image_id, tags=tags, size=1, created=0.0, repo_digests=digests)


@pytest.fixture
def store(tmp_path: Path) -> UsageStore:
    return UsageStore(tmp_path / "state" / "usage.sqlite")


def test_default_path_follows_xdg_state_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(STATE_DIR_ENV, raising=False)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    assert default_usage_path() == tmp_path / "airdock" / "usage.sqlite"
    monkeypatch.delenv("XDG_STATE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_usage_path() == tmp_path / "home" / ".local" / "state" / "airdock" / "usage.sqlite"


def test_one_resolution_env_then_airflow_option_then_xdg(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv(STATE_DIR_ENV, raising=False)
    assert resolve_state_dir() == tmp_path / "xdg" / "airdock"
    assert resolve_state_dir("  ") == tmp_path / "xdg" / "airdock"
    assert resolve_state_dir(str(tmp_path / "configured")) == tmp_path / "configured"
    assert UsageStore.for_host(str(tmp_path / "configured")).path == tmp_path / "configured" / "usage.sqlite"
    monkeypatch.setenv(STATE_DIR_ENV, str(tmp_path / "env"))
    assert resolve_state_dir(str(tmp_path / "configured")) == tmp_path / "env"
    assert UsageStore.for_host(str(tmp_path / "configured")).path == tmp_path / "env" / "usage.sqlite"
    assert UsageStore.for_host().path == tmp_path / "env" / "usage.sqlite"
    monkeypatch.setenv(STATE_DIR_ENV, "~/state")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert resolve_state_dir() == tmp_path / "home" / "state"


# -- the engine a store belongs to -------------------------------------------------------------

ENGINE_A = EngineMark("AAAA:BBBB:CCCC:DDDD", "unix:///run/engine-a.sock")
ENGINE_B = EngineMark("EEEE:FFFF:GGGG:HHHH", "unix:///run/engine-b.sock")


def test_a_new_store_is_created_and_marked_with_its_engine(tmp_path: Path) -> None:
    store = UsageStore(tmp_path / "new" / "usage.sqlite")
    assert store.engine_mark() is None
    store.claim_engine(ENGINE_A)
    assert store.path.exists()
    assert UsageStore(store.path).engine_mark() == ENGINE_A
    UsageStore(store.path).claim_engine(ENGINE_A)  # the same engine again: fine


def test_a_store_of_another_engine_is_refused_with_one_line_naming_both(tmp_path: Path) -> None:
    from airdock.errors import PrerequisiteError

    path = tmp_path / "usage.sqlite"
    UsageStore(path).claim_engine(ENGINE_A)
    with pytest.raises(EngineMismatchError) as caught:
        UsageStore(path).claim_engine(ENGINE_B)
    message = str(caught.value)
    assert isinstance(caught.value, PrerequisiteError)
    assert "\n" not in message
    assert str(path) in message
    assert "unix:///run/engine-a.sock" in message and "unix:///run/engine-b.sock" in message
    assert "AIRDOCK_STATE_DIR" in message
    assert UsageStore(path).engine_mark() == ENGINE_A, "the refusal changed nothing"


def test_mark_if_new_asks_for_the_engine_only_once(tmp_path: Path) -> None:
    asked: list[int] = []

    def engine() -> EngineMark:
        asked.append(1)
        return ENGINE_A

    store = UsageStore(tmp_path / "usage.sqlite")
    with store.lease(["team/app:v1"]):
        store.mark_if_new(engine)
        store.mark_if_new(engine)
    UsageStore(store.path).mark_if_new(engine)
    assert asked == [1]


def test_a_lease_uses_one_connection_for_its_insert_use_and_release(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    store = UsageStore(tmp_path / "usage.sqlite")
    store.claim_engine(ENGINE_A)
    task = UsageStore(store.path)  # a task's own store object, as each task process makes
    opened: list[int] = []
    real_open = UsageStore._open

    def counting_open(self: UsageStore) -> Any:
        opened.append(1)
        return real_open(self)

    monkeypatch.setattr(UsageStore, "_open", counting_open)
    with task.lease(["team/app:v1"]) as lease:
        lease.add(ID_A, used_at=7.0)
        task.mark_if_new(lambda: pytest.fail("the mark was read with the lease"))  # type: ignore[arg-type, return-value]
    assert len(opened) == 1, "one connection: the lease's insert, its image id and use, its release"
    monkeypatch.setattr(UsageStore, "_open", real_open)
    assert store.active_leases(time.time()) == []
    assert store.usage_for([image(ID_A)], now=time.time())[ID_A].last_used == 7.0


def test_a_lease_is_released_even_when_its_connection_broke(store: UsageStore) -> None:
    with store.lease(["team/app:v1"]) as lease:
        assert lease._db is not None
        lease._db.close()  # as if the file had been replaced under it
    assert store.active_leases(time.time()) == []


def test_pulled_and_started_images_are_in_airdocks_scope(store: UsageStore) -> None:
    store.record_pull(ID_A, 5.0)
    store.record_use(ID_B, 6.0)
    usage = store.usage_for([image(ID_A), image(ID_B), image(DIGEST)], now=10.0)
    assert usage[ID_A].brought and usage[ID_A].last_used is None
    assert usage[ID_B].brought and usage[ID_B].last_used == 6.0
    assert not usage[DIGEST].brought
    store.forget([ID_A])
    assert not store.usage_for([image(ID_A)], now=10.0)[ID_A].brought


def test_a_store_from_before_scopes_and_marks_is_upgraded(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "usage.sqlite"
    with sqlite3.connect(path) as db:
        db.executescript(
            "CREATE TABLE uses (image_id TEXT PRIMARY KEY, last_used REAL NOT NULL);"
            "CREATE TABLE leases (lease_id TEXT NOT NULL, key TEXT NOT NULL, expires REAL NOT NULL,"
            " PRIMARY KEY (lease_id, key));"
        )
        db.execute("INSERT INTO uses VALUES (?, ?)", (ID_A, 3.0))
    store = UsageStore(path)
    assert store.engine_mark() is None
    store.claim_engine(ENGINE_A)
    assert store.usage_for([image(ID_A)], now=10.0)[ID_A].last_used == 3.0
    with sqlite3.connect(path) as db:  # upgraded once: the next process skips the schema script
        assert db.execute("PRAGMA user_version").fetchone()[0] == 1
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")} >= {
            "uses", "leases", "brought", "meta"
        }  # fmt: skip


@pytest.mark.parametrize(
    ("text", "keys"),
    [
        ("busybox", ("docker.io/library/busybox:latest",)),
        ("busybox:1", ("docker.io/library/busybox:1",)),
        ("docker.io/library/busybox:1", ("docker.io/library/busybox:1",)),
        ("index.docker.io/library/busybox:1", ("docker.io/library/busybox:1",)),
        ("team/app:v1", ("docker.io/team/app:v1",)),
        ("127.0.0.1:5780/team/app:v1", ("127.0.0.1:5780/team/app:v1",)),
        (f"team/app@{DIGEST}", (f"docker.io/team/app@{DIGEST}",)),
        (f"team/app:v1@{DIGEST}", (f"docker.io/team/app@{DIGEST}", "docker.io/team/app:v1")),
        (ID_A, (ID_A,)),
        ("a" * 64, (ID_A,)),
    ],
)
def test_references_are_normalised(text: str, keys: tuple[str, ...]) -> None:
    assert normalise_reference(text) == keys


def test_a_bad_reference_is_a_config_error(store: UsageStore) -> None:
    with pytest.raises(ConfigError), store.lease(["Team/App:v1"]):
        pass


def test_record_use_keeps_the_latest(store: UsageStore) -> None:
    store.record_use(ID_A, 100.0)
    store.record_use(ID_A, 300.0)
    store.record_use(ID_A, 200.0)  # a late writer with an older time does not move it back
    usage = store.usage_for([image(ID_A), image(ID_B)], now=1000.0)
    assert usage[ID_A].last_used == 300.0
    assert usage[ID_B].last_used is None
    assert usage[ID_B].leased_until is None


def test_a_lease_holds_until_the_block_exits(store: UsageStore) -> None:
    img = image(ID_A, "busybox:1")
    with store.lease(["busybox:1"], seconds=60) as lease:
        held = store.usage_for([img], now=time.time())[ID_A].leased_until
        assert held is not None
        assert held == pytest.approx(time.time() + 60, abs=5)
        assert lease.expires == held
    assert store.usage_for([img], now=time.time())[ID_A].leased_until is None
    assert store.active_leases(time.time()) == []


@pytest.mark.parametrize(
    ("leased", "tags"),
    [
        ("busybox:1", ("docker.io/library/busybox:1",)),
        ("docker.io/library/busybox:1", ("busybox:1",)),
        ("busybox", ("busybox:latest",)),
        ("127.0.0.1:5780/team/app:v1", ("other:x", "127.0.0.1:5780/team/app:v1")),
    ],
)
def test_a_lease_on_any_spelling_protects_the_tagged_image(
    store: UsageStore, leased: str, tags: tuple[str, ...]
) -> None:
    with store.lease([leased]):
        usage = store.usage_for([image(ID_A, *tags), image(ID_B, "busybox:2")], now=time.time())
    assert usage[ID_A].leased_until is not None
    assert usage[ID_B].leased_until is None


def test_a_digest_lease_matches_repo_digests(store: UsageStore) -> None:
    with store.lease([f"team/app@{DIGEST}"]):
        usage = store.usage_for(
            [image(ID_A, digests=(f"docker.io/team/app@{DIGEST}",)), image(ID_B, "team/app:v1")],
            now=time.time(),
        )
    assert usage[ID_A].leased_until is not None
    assert usage[ID_B].leased_until is None


def test_lease_add_can_record_the_use_in_the_same_write(store: UsageStore) -> None:
    with store.lease(["team/app:v1"]) as lease:
        lease.add(ID_A, used_at=42.0)
        usage = store.usage_for([image(ID_A)], now=time.time())[ID_A]
        assert (usage.last_used, usage.brought, usage.leased_until is not None) == (42.0, True, True)


def test_lease_add_holds_the_image_id_even_after_the_tag_moves(store: UsageStore) -> None:
    with store.lease(["team/app:v1"]) as lease:
        lease.add(ID_A)
        usage = store.usage_for([image(ID_A), image(ID_B, "team/app:v1")], now=time.time())
        assert usage[ID_A].leased_until is not None  # by id: the tag now names another image
        assert usage[ID_B].leased_until is not None
        assert store.leased_until(ID_A, [], time.time()) is not None
    assert store.leased_until(ID_A, [], time.time()) is None


def test_an_expired_lease_no_longer_protects_and_is_pruned(store: UsageStore) -> None:
    with store.lease(["team/app:v1"], seconds=0.05):
        time.sleep(0.1)
        assert store.usage_for([image(ID_A, "team/app:v1")], now=time.time())[ID_A].leased_until is None
        assert store.leased_until(ID_A, ["team/app:v1"], time.time()) is None
        # the crashed holder's row is still there until pruned
        assert store.prune(time.time()) == 1


def test_a_crashed_holder_is_pruned_by_the_next_lease(store: UsageStore) -> None:
    held = store.lease(["team/app:v1"], seconds=0.05)
    held.__enter__()  # never exits, as a killed task would
    time.sleep(0.1)
    with store.lease(["team/other:v1"]):
        keys = [key for key, _ in store.active_leases(0.0)]
    assert keys == ["docker.io/team/other:v1"]


def test_forget_drops_records(store: UsageStore) -> None:
    store.record_use(ID_A, 100.0)
    store.record_use(ID_B, 100.0)
    store.forget([ID_A])
    usage = store.usage_for([image(ID_A), image(ID_B)], now=1000.0)
    assert usage[ID_A].last_used is None
    assert usage[ID_B].last_used == 100.0


def test_reading_a_missing_store_creates_nothing(tmp_path: Path) -> None:
    store = UsageStore(tmp_path / "absent" / "usage.sqlite")
    usage = store.usage_for([image(ID_A)], now=1.0)
    assert list(usage) == [ID_A]
    assert usage[ID_A].last_used is None
    assert usage[ID_A].leased_until is None
    assert store.leased_until(ID_A, [], 1.0) is None
    assert not (tmp_path / "absent").exists()


def test_file_modes_are_private(tmp_path: Path) -> None:
    store = UsageStore(tmp_path / "new" / "usage.sqlite")
    store.record_use(ID_A, 1.0)
    with store.lease(["x:1"]):
        pass
    assert stat.S_IMODE((tmp_path / "new").stat().st_mode) == 0o700
    files = sorted((tmp_path / "new").iterdir())
    assert {f.name for f in files} >= {"usage.sqlite", "usage.sqlite.lock"}
    for path in files:
        assert stat.S_IMODE(path.stat().st_mode) & 0o077 == 0, path


def test_the_default_directory_is_tightened(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(STATE_DIR_ENV, raising=False)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    (tmp_path / "airdock").mkdir(mode=0o755)
    (tmp_path / "airdock").chmod(0o755)
    UsageStore().record_use(ID_A, 1.0)
    assert stat.S_IMODE((tmp_path / "airdock").stat().st_mode) == 0o700


def test_the_store_uses_wal(store: UsageStore) -> None:
    import sqlite3

    store.record_use(ID_A, 1.0)
    with sqlite3.connect(store.path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


# -- across processes --------------------------------------------------------------------------


def _hold_lock(path: str, ready: multiprocessing.synchronize.Event, seconds: float) -> None:
    with UsageStore(Path(path)).removal_lock():
        ready.set()
        time.sleep(seconds)


def _lease_and_report(path: str, queue: multiprocessing.Queue[float]) -> None:
    with UsageStore(Path(path)).lease(["team/app:v1"]):
        queue.put(time.time())


def _record_many(path: str, offset: int) -> None:
    store = UsageStore(Path(path))
    for n in range(50):
        store.record_use("sha256:" + f"{offset + n:064x}", float(n))


def test_removal_lock_excludes_lease_insertion_in_another_process(store: UsageStore) -> None:
    ctx = multiprocessing.get_context("spawn")
    ready = ctx.Event()
    holder = ctx.Process(target=_hold_lock, args=(str(store.path), ready, 1.0))
    holder.start()
    try:
        assert ready.wait(30)
        released_at = time.time() + 0.8  # the holder sleeps 1 s after setting `ready`
        queue: multiprocessing.Queue[float] = ctx.Queue()
        task = ctx.Process(target=_lease_and_report, args=(str(store.path), queue))
        task.start()
        leased_at = queue.get(timeout=30)
        task.join(30)
    finally:
        holder.join(30)
    assert leased_at >= released_at, "the lease was inserted while another process held the removal lock"


def test_removal_lock_times_out_with_one_line(tmp_path: Path) -> None:
    from airdock.errors import PrerequisiteError

    path = tmp_path / "usage.sqlite"
    ctx = multiprocessing.get_context("spawn")
    ready = ctx.Event()
    holder = ctx.Process(target=_hold_lock, args=(str(path), ready, 3.0))
    holder.start()
    try:
        assert ready.wait(30)
        lock = UsageStore(path, lock_timeout_seconds=0.2).removal_lock()
        with pytest.raises(PrerequisiteError, match="timed out") as caught, lock:
            pass
        assert "\n" not in str(caught.value)
    finally:
        holder.join(30)


def test_concurrent_writers_in_several_processes(store: UsageStore) -> None:
    ctx = multiprocessing.get_context("spawn")
    workers = [ctx.Process(target=_record_many, args=(str(store.path), 1000 * i)) for i in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
        assert worker.exitcode == 0
    ids = ["sha256:" + f"{1000 * i + n:064x}" for i in range(4) for n in range(50)]
    usage = store.usage_for([image(i) for i in ids], now=0.0)
    assert all(usage[i].last_used is not None for i in ids)
