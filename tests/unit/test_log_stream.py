"""Streaming a container's output into log lines: splitting, decoding, what is kept, bounded memory."""

from __future__ import annotations

import threading
import tracemalloc
from collections.abc import Iterator
from typing import Any

import pytest
from airflow.providers.docker.exceptions import DockerContainerFailedException
from airflow.providers.docker.operators import docker as provider

from airdock.airflow.operators import EcrDockerOperator, _provider_fetch_logs
from airdock.engine.logs import KeepPolicy, LogLines, stream_lines

STOCK_FETCH_LOGS = provider.fetch_logs


def collect(
    chunks: list[bytes], keep: KeepPolicy = KeepPolicy.LAST, tail: int = 100
) -> tuple[list[str], LogLines]:
    emitted: list[str] = []
    lines = stream_lines(chunks, emitted.append, keep, tail)
    return emitted, lines


def every_split(data: bytes) -> Iterator[list[bytes]]:
    """``data`` cut in two at every position, and cut into single bytes."""
    for cut in range(len(data) + 1):
        yield [data[:cut], data[cut:]]
    yield [data[i : i + 1] for i in range(len(data))]


def test_lines_split_across_chunks_come_out_whole() -> None:
    emitted, lines = collect([b"fir", b"st\nsec", b"ond\n", b"third\nfou", b"rth\n"])
    assert emitted == ["first", "second", "third", "fourth"]
    assert lines.count == 4
    assert lines.kept == ["fourth"]


def test_a_multibyte_character_split_across_chunks_is_decoded_once_whole() -> None:
    data = "größe: 3 €\n日本語 ✓\n🚀 done\n".encode()
    for chunks in every_split(data):
        emitted, _ = collect(chunks)
        assert emitted == ["größe: 3 €", "日本語 ✓", "🚀 done"], chunks


def test_invalid_utf8_is_replaced_and_never_swallows_a_newline() -> None:
    emitted, _ = collect([b"ok \xff\xfe bytes\n", b"truncated \xe2\x82", b"\nnext\n"])
    assert emitted == ["ok \ufffd\ufffd bytes", "truncated \ufffd", "next"]


def test_crlf_and_trailing_whitespace_are_stripped_like_the_provider() -> None:
    for chunks in every_split(b"one\r\ntwo  \r\n\tthree\t\n"):
        emitted, _ = collect(chunks)
        assert emitted == ["one", "two", "\tthree"], chunks


def test_a_last_line_without_newline_is_emitted_at_the_end() -> None:
    emitted, lines = collect([b"a\nb", b"c"])
    assert emitted == ["a", "bc"]
    assert lines.kept == ["bc"]


def test_empty_output_and_blank_lines() -> None:
    emitted, lines = collect([])
    assert (emitted, lines.kept, lines.tail, lines.count) == ([], [], [], 0)
    emitted, lines = collect([b"", b"\n", b"\n", b"x\n", b""])
    assert emitted == ["", "", "x"]
    assert lines.kept == ["x"]


def test_the_same_as_the_stock_reader_on_plain_output() -> None:
    data = [b"alpha\nbe", b"ta \n\n", b"gamma\r\n", b"  delta", b" tail  "]
    stock_logged: list[str] = []

    class Log:
        def info(self, fmt: str, *args: Any) -> None:
            stock_logged.append(fmt % args)

    stock = provider.fetch_logs(iter(data), Log())
    emitted, lines = collect(data, KeepPolicy.ALL)
    assert emitted == stock_logged == stock
    assert lines.kept == stock


def test_a_very_long_line_over_many_chunks_is_joined_once() -> None:
    piece = b"x" * 4096
    chunks = [piece] * 2000 + [b"\nshort\n"]  # an 8 MB line
    emitted, _ = collect(chunks)
    assert [len(line) for line in emitted] == [4096 * 2000, 5]


def test_str_chunks_are_accepted() -> None:
    emitted, _ = collect(["héllo\nwor", "ld\n"])  # type: ignore[list-item]
    assert emitted == ["héllo", "world"]


@pytest.mark.parametrize(
    ("keep", "kept"),
    [
        (KeepPolicy.NONE, []),
        (KeepPolicy.LAST, ["line 5"]),
        (KeepPolicy.ALL, [f"line {i}" for i in range(1, 6)]),
    ],
)
def test_keep_policies(keep: KeepPolicy, kept: list[str]) -> None:
    emitted, lines = collect([b"".join(f"line {i}\n".encode() for i in range(1, 6))], keep, tail=3)
    assert len(emitted) == 5, "every line is emitted whatever is kept"
    assert lines.kept == kept
    assert lines.tail == ["line 3", "line 4", "line 5"]
    assert lines.last == "line 5"


def test_keep_policy_from_the_xcom_settings() -> None:
    assert KeepPolicy.for_xcom(do_xcom_push=False, xcom_all=True) is KeepPolicy.NONE
    assert KeepPolicy.for_xcom(do_xcom_push=True, xcom_all=False) is KeepPolicy.LAST
    assert KeepPolicy.for_xcom(do_xcom_push=True, xcom_all=True) is KeepPolicy.ALL


def _many_lines(n: int, per_chunk: int = 64) -> Iterator[bytes]:
    for start in range(0, n, per_chunk):
        yield b"".join(
            b"%09d some payload text to make the line longer\n" % i
            for i in range(start, min(n, start + per_chunk))
        )


@pytest.mark.parametrize("keep", [KeepPolicy.LAST, KeepPolicy.NONE])
def test_memory_of_kept_lines_is_bounded(keep: KeepPolicy) -> None:
    count = 0

    def emit(line: str) -> None:
        nonlocal count
        count += 1

    lines = LogLines(emit, keep, tail=100)
    tracemalloc.start()
    try:
        for chunk in _many_lines(200_000):
            lines.feed(chunk)
        lines.close()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == lines.count == 200_000
    assert len(lines.kept) <= 1
    assert len(lines.tail) == 100
    assert peak < 1_000_000, f"{peak:,} bytes traced while streaming 200k lines (~10 MB of output)"


def test_keep_all_keeps_everything() -> None:
    lines = LogLines(lambda line: None, KeepPolicy.ALL)
    for chunk in _many_lines(10_000):
        lines.feed(chunk)
    lines.close()
    assert len(lines.kept) == 10_000
    assert len(lines.tail) == 100


# --- the operator's use of the provider's run path, with a fake Docker client ---------------------


class FakeDockerClient:
    def __init__(self, chunks: list[bytes], status: int = 0) -> None:
        self.chunks = chunks
        self.status = status

    def create_host_config(self, **kwargs: Any) -> dict[str, Any]:
        return kwargs

    def create_container(self, **kwargs: Any) -> dict[str, str]:
        return {"Id": "c0ffee"}

    def attach(self, **kwargs: Any) -> Iterator[bytes]:
        return iter(self.chunks)

    def start(self, container_id: str) -> None:
        pass

    def wait(self, container_id: str) -> dict[str, int]:
        return {"StatusCode": self.status}


def operator_with(client: FakeDockerClient, monkeypatch: pytest.MonkeyPatch, **kwargs: Any) -> Any:
    op = EcrDockerOperator(task_id="t", image="example.com/x:1", mount_tmp_dir=False, **kwargs)
    monkeypatch.setattr(EcrDockerOperator, "cli", property(lambda self: client))
    return op


def run_image(op: Any) -> Any:
    emitted: list[str] = []

    class Log:
        def info(self, line: str, *args: Any) -> None:
            emitted.append(line % args if args else line)

        def warning(self, *args: Any) -> None:
            raise AssertionError("airdock's reader was not used")

    op._test_log = Log()
    return op._run_image(), emitted


@pytest.fixture
def quiet_log(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(EcrDockerOperator, "log", property(lambda self: self._test_log))


@pytest.mark.usefixtures("quiet_log")
def test_the_operator_returns_the_last_line_and_logs_all(monkeypatch: pytest.MonkeyPatch) -> None:
    op = operator_with(FakeDockerClient([b"one\ntw", b"o\nthree"]), monkeypatch)
    result, emitted = run_image(op)
    assert result == "three"
    records = emitted[emitted.index(next(r for r in emitted if r.startswith("one"))) :]
    assert "\n".join(records).split("\n") == ["one", "two", "three"], records
    op = operator_with(FakeDockerClient([b"one\ntwo\nthree\n"]), monkeypatch)
    assert run_image(op)[1][-1] == "one\ntwo\nthree", "lines that arrived together: one record"
    assert provider.fetch_logs is STOCK_FETCH_LOGS, "the provider's reader is restored"


@pytest.mark.usefixtures("quiet_log")
def test_the_operator_logs_a_record_per_line_when_configured(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW__AIRDOCK__LOG_LINES_PER_RECORD", "1")
    op = operator_with(FakeDockerClient([b"one\ntw", b"o\nthree"]), monkeypatch)
    result, emitted = run_image(op)
    assert (result, emitted[-3:]) == ("three", ["one", "two", "three"])


@pytest.mark.parametrize("value", ["0", "-3", "many"])
def test_a_bad_lines_per_record_fails_the_task_in_one_line(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    from airflow.exceptions import AirflowFailException

    monkeypatch.setenv("AIRFLOW__AIRDOCK__LOG_LINES_PER_RECORD", value)
    op = operator_with(FakeDockerClient([b"one\n"]), monkeypatch)
    with pytest.raises(AirflowFailException, match=r"log_lines_per_record = '.+': use a whole number"):
        op._run_image()


@pytest.mark.usefixtures("quiet_log")
def test_the_operator_xcom_all_and_no_xcom(monkeypatch: pytest.MonkeyPatch) -> None:
    op = operator_with(FakeDockerClient([b"1\n2\n3\n"]), monkeypatch, xcom_all=True)
    assert run_image(op)[0] == ["1", "2", "3"]
    op = operator_with(FakeDockerClient([b"1\n2\n3\n"]), monkeypatch, do_xcom_push=False)
    assert run_image(op)[0] is None


@pytest.mark.usefixtures("quiet_log")
def test_a_failed_container_carries_the_last_100_lines(monkeypatch: pytest.MonkeyPatch) -> None:
    output = b"".join(b"line %d\n" % i for i in range(1, 1001))
    op = operator_with(FakeDockerClient([output], status=2), monkeypatch)
    with pytest.raises(DockerContainerFailedException) as failed:
        run_image(op)
    assert failed.value.logs == [f"line {i}" for i in range(901, 1001)]


def test_the_substitution_is_local_to_its_context_and_restored() -> None:
    stock = STOCK_FETCH_LOGS
    seen: dict[str, Any] = {}
    inside = threading.Event()
    release = threading.Event()

    def airdock_reader(stream: Any, log: Any) -> list[str]:
        return ["airdock"]

    def other_thread() -> None:
        inside.wait(5)
        # A stock DockerOperator in another thread, while airdock's substitution is active.
        seen["other"] = provider.fetch_logs(iter([b"stock\n"]), type("L", (), {"info": lambda *a: None})())
        release.set()

    worker = threading.Thread(target=other_thread)
    worker.start()
    with _provider_fetch_logs(airdock_reader):
        assert provider.fetch_logs is not stock
        seen["mine"] = provider.fetch_logs(iter([]), None)
        inside.set()
        release.wait(5)
    worker.join(5)
    assert seen == {"mine": ["airdock"], "other": ["stock"]}
    assert provider.fetch_logs is stock

    with pytest.raises(RuntimeError), _provider_fetch_logs(airdock_reader):
        raise RuntimeError("boom")
    assert provider.fetch_logs is stock, "restored after an exception too"


def test_records_carry_at_most_n_lines_and_64_kb_and_never_cut_a_line() -> None:
    from airdock.engine.logs import MAX_RECORD_BYTES, records

    lines = [f"{i:05d} {'é' * 40}" for i in range(2500)]  # 87 bytes each in UTF-8
    out = list(records(lines, 1000))
    assert "\n".join(out).split("\n") == lines
    assert all(len(r.split("\n")) <= 1000 and len(r.encode()) <= MAX_RECORD_BYTES for r in out)
    assert len(out) == 5, "1000 lines of 87 B exceed 64 KB: each thousand in two records, then 500"
    huge = "x" * (MAX_RECORD_BYTES + 10)
    assert list(records(["a", huge, "b"], 1000)) == ["a", huge, "b"], "a longer line is a record alone"
    assert list(records(["a", "b"], 1)) == ["a", "b"]


def test_batched_lines_arrive_whole_in_order_with_count_tail_and_kept_as_line_by_line() -> None:
    import random

    data = b"".join(b"line %d \r\n" % i for i in range(5000)) + b"last"
    rng = random.Random(7)
    chunks, at = [], 0
    while at < len(data):
        step = rng.randint(1, 300)
        chunks.append(data[at : at + step])
        at += step
    batched: list[str] = []
    one: list[str] = []
    many = stream_lines(chunks, batched.append, KeepPolicy.ALL, 10, 100)
    single = stream_lines(chunks, one.append, KeepPolicy.ALL, 10, 1)
    assert "\n".join(batched).split("\n") == one == [f"line {i}" for i in range(5000)] + ["last"]
    assert len(batched) < len(one) and all(len(r.split("\n")) <= 100 for r in batched)
    assert (many.count, many.tail, many.kept) == (single.count, single.tail, single.kept)


def test_coalesce_hands_on_what_arrived_without_waiting_and_raises_the_readers_error_in_order() -> None:
    import threading
    import time

    from airdock.engine.logs import coalesce

    released = threading.Event()

    def slow() -> Any:
        yield b"first\n"
        released.wait(5)  # nothing more until the consumer has the first chunk
        yield b"second\n"
        raise OSError("the engine went away")

    got = coalesce(slow())
    started = time.monotonic()
    assert next(got) == b"first\n" and time.monotonic() - started < 1, "a lone line is not held back"
    released.set()
    assert next(got) == b"second\n"
    with pytest.raises(OSError, match="went away"):
        next(got)

    endless = coalesce(iter(lambda: b"x\n", None))
    assert next(endless).startswith(b"x\n")
    endless.close()  # the consumer stops early: the reader stops at its next chunk
