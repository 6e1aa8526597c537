"""The pure parts of deferral: the engine's log records and positions, resuming after a position,
the checkpoint files, where a docker task may defer, what a trigger's kwargs may hold, and the preload."""

from __future__ import annotations

import json
import os
import struct
import time
from pathlib import Path
from typing import Any

import pytest

from airdock.targets.checkpoint import LogCheckpoints
from airdock.targets.docker import deferral_blocker
from airdock.targets.docker_async import (
    EngineUnreachable,
    LogPosition,
    LogRecord,
    RecordParser,
    Resume,
    _split_url,
    parse_timestamp,
)


def frame(stream: int, payload: bytes) -> bytes:
    return struct.pack(">BxxxI", stream, len(payload)) + payload


def test_timestamps_with_any_number_of_fraction_digits() -> None:
    base = parse_timestamp(b"2026-12-01T15:03:29", None)
    assert base == 1796137409 * 1_000_000_000
    assert parse_timestamp(b"2026-12-01T15:03:29", b"5") == base + 500_000_000
    assert parse_timestamp(b"2026-12-01T15:03:29", b"123456789") == base + 123_456_789
    assert parse_timestamp(b"2026-12-01T15:03:29", b"000001") == base + 1_000


def test_multiplexed_frames_split_anywhere_give_the_same_records() -> None:
    data = (
        frame(1, b"2026-12-01T15:03:29.1Z one\n")
        + frame(2, b"2026-12-01T15:03:29.2Z two on stderr\n")
        + frame(1, b"2026-12-01T15:03:29.3Z part")  # a long line the engine split
        + frame(1, b"2026-12-01T15:03:29.3Z ial\n")
    )
    whole = RecordParser(multiplexed=True).feed(data)
    assert [r.data for r in whole] == [b"one\n", b"two on stderr\n", b"part", b"ial\n"]
    for cut in range(1, len(data)):
        parser = RecordParser(multiplexed=True)
        assert parser.feed(data[:cut]) + parser.feed(data[cut:]) == whole


def test_a_tty_stream_is_split_on_newlines() -> None:
    parser = RecordParser(multiplexed=False)
    records = parser.feed(b"2026-12-01T15:03:29.1Z a\r\n2026-12-01T15:03:29.2Z b")
    records += parser.feed(b"c\n")
    assert [r.data for r in records] == [b"a\r\n", b"bc\n"]
    assert records[1].timestamp_ns > records[0].timestamp_ns


def test_resume_skips_exactly_what_was_taken_even_among_equal_timestamps() -> None:
    stamps = [10, 20, 20, 20, 30]
    records = [LogRecord(ts, f"r{i}\n".encode()) for i, ts in enumerate(stamps)]
    for taken in range(len(records) + 1):
        position = LogPosition()
        for record in records[:taken]:
            position = position.after(record.timestamp_ns)
        # The engine answers since=<position> inclusively: every record from that timestamp on.
        replay = [r for r in records if r.timestamp_ns >= position.timestamp_ns]
        resume = Resume(position)
        assert [r for r in replay if resume.fresh(r)] == records[taken:], taken


def test_position_since_is_the_engines_seconds_dot_nanoseconds() -> None:
    assert LogPosition(1796137409_000000042, 1).since() == "1796137409.000000042"
    assert LogPosition().since() == "0.000000000"


def test_engine_urls() -> None:
    assert _split_url("unix:///var/run/docker.sock") == ("http://docker", "/var/run/docker.sock", False)
    assert _split_url("unix://var/run/docker.sock") == ("http://docker", "/var/run/docker.sock", False)
    assert _split_url("tcp://10.0.0.5:2376") == ("http://10.0.0.5:2376", None, False)
    assert _split_url("tcp+tls://docker.internal:2376") == ("https://docker.internal:2376", None, True)
    with pytest.raises(EngineUnreachable, match="unsupported engine URL"):
        _split_url("ssh://user@host")


def test_checkpoints_are_private_atomic_and_pruned(tmp_path: Path) -> None:
    store = LogCheckpoints(tmp_path / "positions")
    assert store.load("missing") is None
    store.save("dag/task/run:1", {"timestamp_ns": 5, "count": 2})
    assert store.load("dag/task/run:1") == {"timestamp_ns": 5, "count": 2}
    (path,) = list(store.directory.iterdir())
    assert path.stat().st_mode & 0o777 == 0o600 and "/" not in path.name
    path.write_text("{not json")
    assert store.load("dag/task/run:1") is None  # unreadable: start from the beginning
    store.save("old", {"token": "f/1"})
    old = store._path("old")
    os.utime(old, (time.time() - 30 * 86400,) * 2)
    assert store.prune() == 1 and not old.exists() and path.exists()


@pytest.mark.parametrize(
    ("url", "triggerer_here", "blocked"),
    [
        ("unix:///var/run/docker.sock", False, True),
        ("unix:///var/run/docker.sock", True, False),
        ("tcp://127.0.0.1:2375", False, True),
        ("tcp://localhost:2375", False, True),
        ("tcp://docker.internal:2376", False, False),
        ("tcp+tls://203.0.113.7:2376", False, False),
    ],
)
def test_where_a_docker_task_may_defer(url: str, triggerer_here: bool, blocked: bool) -> None:
    reason = deferral_blocker(url, triggerer_here)
    assert (reason is not None) == blocked
    if reason:
        assert "\n" not in reason and url in reason and "triggerer" in reason


def test_trigger_kwargs_round_trip_through_json_and_hold_no_secret() -> None:
    from airdock.airflow.triggers import DockerContainerTrigger, EcsTaskTrigger

    docker = DockerContainerTrigger(
        container_id="c" * 64,
        docker_url="tcp://docker.internal:2376",
        checkpoint_key="k",
        tls={"ca_cert": "/etc/docker/ca.pem", "client_cert": "/etc/docker/cert.pem", "client_key": "/k.pem"},
        secret_refs=["var:api_token", "conn:warehouse"],
        remove="on_success",
    )
    ecs = EcsTaskTrigger(
        task_arn="arn:aws:ecs:eu-west-1:123456789012:task/default/abc",
        cluster="default",
        log_group="/airdock/tasks",
        log_stream="airdock/main/abc",
        image="123456789012.dkr.ecr.eu-west-1.amazonaws.com/app@sha256:" + "0" * 64,
        region_name="eu-west-1",
        checkpoint_key="k",
        secret_refs=["var:api_token"],
    )
    for trigger in (docker, ecs):
        classpath, kwargs = trigger.serialize()
        stored = json.loads(json.dumps(kwargs))  # what the metadata DB keeps
        assert classpath == f"airdock.airflow.triggers.{type(trigger).__name__}"
        again = type(trigger)(**stored)
        assert again.serialize() == (classpath, kwargs)
        assert "password" not in json.dumps(kwargs).lower()
        assert all(ref.startswith(("var:", "conn:")) for ref in kwargs["secret_refs"])


class _Ecs:
    """A stand-in for boto3's ECS client (DescribeTasks only): the board's batching is pure logic,
    the real local ECS serves it in tests/integration/test_triggers.py."""

    def __init__(self, known: set[str], error: Exception | None = None) -> None:
        self.known = known
        self.error = error
        self.calls: list[list[str]] = []

    def describe_tasks(self, cluster: str, tasks: list[str]) -> dict[str, object]:
        self.calls.append(list(tasks))
        if self.error is not None:
            raise self.error
        found = [{"taskArn": arn, "lastStatus": "RUNNING"} for arn in tasks if arn in self.known]
        return {"tasks": found, "failures": []}


def test_the_ecs_triggers_board_answers_everyone_who_asked_with_one_call_per_hundred_tasks() -> None:
    import asyncio

    from airdock.airflow.triggers import _TaskBoard

    arns = [f"arn:aws:ecs:us-east-1:123456789012:task/default/{n:032x}" for n in range(150)]
    ecs = _Ecs(set(arns[:-1]))  # the last one ECS does not know

    async def ask_all() -> list[object]:
        board = _TaskBoard(ecs, "default")
        return list(await asyncio.gather(*(board.describe(arn) for arn in arns), board.describe(arns[0])))

    answers = asyncio.run(ask_all())
    assert [len(call) for call in ecs.calls] == [100, 50]  # 151 questions, 150 tasks, two calls
    assert [a["taskArn"] for a in answers[:149]] == arns[:149]  # type: ignore[index]
    assert answers[149] is None and answers[150]["taskArn"] == arns[0]  # type: ignore[index]

    failing = _Ecs(set(arns), error=RuntimeError("ThrottlingException"))

    async def ask_failing() -> list[object]:
        board = _TaskBoard(failing, "default")
        return list(await asyncio.gather(*(board.describe(arn) for arn in arns[:3]), return_exceptions=True))

    assert [str(e) for e in asyncio.run(ask_failing())] == ["ThrottlingException"] * 3
    assert len(failing.calls) == 1


def test_a_lazy_aws_client_is_made_on_first_use_only(monkeypatch: pytest.MonkeyPatch) -> None:
    import copy

    from airdock.airflow import secret_refs

    made: list[tuple[object, ...]] = []

    class Client:
        def get_log_events(self) -> str:
            return "events"

    def fake(*args: object) -> Client:
        made.append(args)
        return Client()

    monkeypatch.setattr(secret_refs, "aws_client", fake)
    lazy = secret_refs.LazyClient("logs", "us-east-1", "aws_default")
    copy.copy(lazy)
    assert made == []
    assert lazy.get_log_events() == "events"
    assert lazy.get_log_events() == "events"
    assert made == [("logs", "us-east-1", "aws_default")]


def test_a_forked_child_makes_its_own_aws_clients(monkeypatch: pytest.MonkeyPatch) -> None:
    """Clients are cached per process: a child forked after the parent made one (the benchmarks'
    fan-out, any forking executor) must not share its connection pool."""
    from airdock.airflow.secret_refs import aws_client

    extra = {"region_name": "us-east-1", "endpoint_url": "http://127.0.0.1:9"}
    connection = {"conn_type": "aws", "login": "AKIDFORKTEST", "password": "not-a-secret", "extra": extra}
    monkeypatch.setenv("AIRFLOW_CONN_AIRDOCK_FORK_TEST", json.dumps(connection))
    parent = aws_client("ecs", "us-east-1", "airdock_fork_test")
    assert aws_client("ecs", "us-east-1", "airdock_fork_test") is parent  # cached in this process
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report, then leave without pytest's teardown
        try:
            child = aws_client("ecs", "us-east-1", "airdock_fork_test")
            os.write(write, b"own" if child is not parent else b"shared")
        finally:
            os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    assert os.read(read, 16) == b"own"
    os.close(read)


def test_the_preload_is_inherited_by_forked_tasks_and_their_clients_share_its_parsed_models(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``airdock.airflow.preload`` (imported by airdock's Airflow plugin, registered as an
    ``airflow.plugins`` entry point) fills one botocore data loader; a forked child's sessions use
    that loader, so making its clients parses no service model again."""
    from importlib.metadata import entry_points

    from airdock.airflow import preload, secret_refs
    from airdock.airflow.plugin import AirdockPlugin
    from airdock.airflow.secret_refs import aws_client

    plugins = {e.name: e.value for e in entry_points(group="airflow.plugins")}
    assert (
        plugins.get("airdock") == "airdock.airflow.plugin:AirdockPlugin" and AirdockPlugin.name == "airdock"
    )
    assert not preload.inherited()  # this process imported it
    loader = secret_refs._data_loader()
    assert loader.load_service_model.__self__ is loader
    connection = {"conn_type": "aws", "login": "AKIDPRELOAD", "password": "not-a-secret",
                  "extra": {"region_name": "us-east-1", "endpoint_url": "http://127.0.0.1:9"}}  # fmt: skip
    monkeypatch.setenv("AIRFLOW_CONN_AIRDOCK_PRELOAD_TEST", json.dumps(connection))
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report, then leave without pytest's teardown
        try:
            from botocore.loaders import Loader

            parsed: list[str] = []
            real = Loader.load_data_with_path

            def counting(self: Any, name: str) -> Any:
                parsed.append(name)
                return real(self, name)

            Loader.load_data_with_path = counting  # type: ignore[method-assign]  # counts files parsed
            aws_client("ecs", "us-east-1", "airdock_preload_test")
            aws_client("logs", "us-east-1", "airdock_preload_test")
            shared = secret_refs._sessions and all(
                s._session.get_component("data_loader") is loader for s in secret_refs._sessions.values()
            )
            report = {"inherited": preload.inherited(), "shared": bool(shared), "parsed": parsed}
            os.write(write, json.dumps(report).encode())
        finally:
            os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    report = json.loads(os.read(read, 65536))
    os.close(read)
    assert report["inherited"] and report["shared"], report
    assert not [name for name in report["parsed"] if "ecs" in name or "logs" in name], report
