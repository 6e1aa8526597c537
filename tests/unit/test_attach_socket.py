"""Reading a container's attach socket directly (``airdock.engine.attach``): the engine's framing
written to a real socket pair here (the engine itself: tests/e2e/test_log_output.py and
``make bench``'s logs benchmark)."""

from __future__ import annotations

import socket
import threading
import time
from types import SimpleNamespace
from typing import Any

from airdock.engine.attach import socket_chunks

UNIX = "http+docker://localhost"


def frame(stream: int, payload: bytes) -> bytes:
    return bytes([stream, 0, 0, 0]) + len(payload).to_bytes(4, "big") + payload


def attached(sock: socket.socket) -> Any:
    """What docker-py's ``attach(stream=True)`` returns, as far as ``socket_chunks`` looks."""
    raw = SimpleNamespace(fileno=sock.fileno)
    fp = SimpleNamespace(fp=SimpleNamespace(raw=raw))
    return SimpleNamespace(_response=SimpleNamespace(raw=SimpleNamespace(_fp=fp)))


def test_frames_split_anywhere_come_out_whole_in_order_and_joined_when_they_arrive_together() -> None:
    ours, engine = socket.socketpair()
    data = frame(1, b"one\ntwo\n") + frame(2, b"err\n") + frame(1, b"thr") + frame(1, b"ee\n")
    writes = [data[:5], data[5:20], data[20:]]  # a header and a payload cut in two

    def write() -> None:
        for piece in writes:
            time.sleep(0.05)
            engine.sendall(piece)
        engine.close()

    ours.setblocking(False)  # as docker-py's client leaves it (its timeout): reads wait for data
    chunks = socket_chunks(attached(ours), UNIX, tty=False)
    assert chunks is not None
    writer = threading.Thread(target=write)
    writer.start()
    out = list(chunks)
    writer.join()
    assert b"".join(out) == b"one\ntwo\nerr\nthree\n"
    assert len(out) <= 3
    ours.close()


def test_a_tty_stream_is_raw_and_other_transports_are_left_to_docker_py() -> None:
    ours, engine = socket.socketpair()
    engine.sendall(b"\x01raw tty output\n")
    engine.close()
    chunks = socket_chunks(attached(ours), "http://127.0.0.1:2375", tty=True)
    assert chunks is not None and b"".join(chunks) == b"\x01raw tty output\n"
    ours.close()
    assert socket_chunks(attached(ours), "https://engine:2376", tty=False) is None, "TLS"
    assert socket_chunks(attached(ours), "http+docker://ssh", tty=False) is None
    assert socket_chunks(iter([b"x"]), UNIX, tty=False) is None, "not docker-py's attach stream"


def test_a_slow_jobs_line_is_handed_on_within_the_gather_time_and_a_fast_jobs_lines_together() -> None:
    from airdock.engine.attach import GATHER_SECONDS

    ours, engine = socket.socketpair()
    ours.setblocking(False)
    chunks = socket_chunks(attached(ours), UNIX, tty=False)
    assert chunks is not None
    engine.sendall(b"".join(frame(1, b"fast %d\n" % i) for i in range(500)))
    started = time.monotonic()
    engine.sendall(frame(1, b"slow\n"))  # then nothing for a while
    first = next(chunks)
    waited = time.monotonic() - started
    assert first.count(b"\n") == 501 and first.endswith(b"slow\n"), "what arrived together: one piece"
    assert waited < GATHER_SECONDS + 1.0, f"held {waited:.2f} s (only the deadline ends this wait)"
    engine.close()
    assert list(chunks) == []
    ours.close()
