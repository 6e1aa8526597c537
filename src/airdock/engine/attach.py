"""A container's attach stream read straight from its socket: what arrived together, in one piece.

docker-py's attach stream hands out one frame per engine write — a ``poll`` and two reads per
frame, and for a job printing fast, tens of thousands of small pieces per second, each of which
would become a log record. ``socket_chunks`` reads the same socket in large blocks, gathers what
arrives within ``GATHER_SECONDS`` (at most ``GATHER_BYTES``) and returns the payload of its whole
frames as one piece (stdout and stderr in the engine's order, as docker-py's stream gives them).
It applies to plain connections (a unix socket or ``http://``); for TLS, SSH or a named pipe it
returns None and the caller reads docker-py's stream as it is.
"""

from __future__ import annotations

import os
import select
import struct
import time
from collections.abc import Iterator
from typing import Any

from airdock.engine.logs import MAX_RECORD_BYTES

__all__ = ["READ_BYTES", "socket_chunks"]

READ_BYTES = 256 * 1024
GATHER_BYTES = MAX_RECORD_BYTES  # a block goes on once it holds a full log record...
GATHER_SECONDS = 0.2  # ...or this long after its first byte: a slow job's lines are not held longer
_HEADER = 8  # stream type (1 byte), 3 zero bytes, payload length (4 bytes, big-endian)
_LENGTH = struct.Struct(">I")


def _plain(base_url: str) -> bool:
    return base_url == "http+docker://localhost" or base_url.startswith("http://")


def socket_chunks(stream: Any, base_url: str, tty: bool) -> Iterator[bytes] | None:
    """The payload of docker-py's attach ``stream`` (its ``CancellableStream``), read from its socket
    in blocks of up to ``READ_BYTES``; None when the stream is not one this can read (the caller
    then iterates ``stream`` itself). ``tty``: the container has a TTY (no frames, raw output)."""
    response = getattr(stream, "_response", None)
    try:
        fd = response.raw._fp.fp.raw.fileno() if response is not None and _plain(base_url) else None
    except (AttributeError, OSError, ValueError):
        fd = None
    if fd is None:
        return None
    return _read(fd, tty)


def _read(fd: int, tty: bool) -> Iterator[bytes]:
    """Blocks of the socket's payload: each what arrived within ``GATHER_SECONDS`` of its first
    byte (or ``GATHER_BYTES`` of it, whichever comes first), so a fast job's output goes out in
    few pieces and a slow job's lines wait at most that long."""
    ready = select.poll()  # the socket may be non-blocking (docker-py's client timeout)
    ready.register(fd, select.POLLIN | select.POLLPRI)
    carry = bytearray()  # an unfinished frame, kept for the next block
    ended = False
    while not ended:
        block = _next_read(fd, ready, None)
        if not block:
            return
        gathered = carry + block if carry else bytearray(block)
        deadline = time.monotonic() + GATHER_SECONDS
        while len(gathered) < GATHER_BYTES:
            more = _next_read(fd, ready, deadline)
            if more is None:  # the deadline passed with nothing more
                break
            if not more:
                ended = True
                break
            gathered += more
        if tty:
            carry = bytearray()
            yield bytes(gathered)
            continue
        payload, at = _frames(gathered)
        carry = gathered[at:]
        if payload:
            yield payload


def _next_read(fd: int, ready: Any, deadline: float | None) -> bytes | None:
    """The next read of ``fd``: b"" at its end (or an error), None when ``deadline`` passes first."""
    while True:
        try:
            return os.read(fd, READ_BYTES)
        except BlockingIOError:
            if deadline is None:
                ready.poll()
                continue
            left = deadline - time.monotonic()
            if left <= 0 or not ready.poll(left * 1000):
                return None
        except OSError:  # the connection went away: the stream ends, as docker-py's does
            return b""


def _frames(data: bytearray) -> tuple[bytes, int]:
    """The payloads of the whole frames at the start of ``data``, joined, and where they end."""
    view = memoryview(data)
    pieces = []
    at, end = 0, len(data)
    unpack = _LENGTH.unpack_from
    while end - at >= _HEADER:
        (size,) = unpack(data, at + 4)
        if end - at - _HEADER < size:
            break
        pieces.append(view[at + _HEADER : at + _HEADER + size])
        at += _HEADER + size
    joined = b"".join(pieces)
    del pieces
    view.release()
    return joined, at
