"""A container's output as log lines, streamed: every line is emitted, only what is needed is kept.

The docker provider's ``fetch_logs`` keeps every line in a list for the whole run (memory grows
with the output), decodes each chunk on its own (a UTF-8 character split across two chunks turns
into two replacement characters) and re-splits a growing string while a long line arrives.
``LogLines`` works on bytes: it splits complete lines off each chunk, decodes them, hands each to
``emit`` and keeps only what ``keep`` asks for, plus a bounded tail for failure messages.
"""

from __future__ import annotations

import contextlib
import enum
import queue
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import Any

__all__ = [
    "DEFAULT_LINES_PER_RECORD",
    "DEFAULT_TAIL_LINES",
    "MAX_RECORD_BYTES",
    "KeepPolicy",
    "LogLines",
    "coalesce",
    "records",
    "stream_lines",
]

DEFAULT_TAIL_LINES = 100
DEFAULT_LINES_PER_RECORD = 1000
MAX_RECORD_BYTES = 64 * 1024


def _utf8_size(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode("utf-8", "replace"))


def records(lines: list[str], per_record: int, max_bytes: int = MAX_RECORD_BYTES) -> Iterator[str]:
    """``lines`` as log records: each the next lines joined by newlines, at most ``per_record``
    lines and ``max_bytes`` of UTF-8 (a longer line is a record of its own, never cut)."""
    if per_record <= 1:
        yield from lines
        return
    for start in range(0, len(lines), per_record):
        group = lines[start : start + per_record]
        text = "\n".join(group)
        if _utf8_size(text) <= max_bytes:
            yield text
            continue
        taken: list[str] = []
        size = 0
        for line in group:
            line_size = _utf8_size(line) + 1
            if taken and size + line_size > max_bytes:
                yield "\n".join(taken)
                taken, size = [], 0
            taken.append(line)
            size += line_size
        if taken:
            yield "\n".join(taken)


class KeepPolicy(enum.StrEnum):
    """Which lines outlive the stream (what an XCom of the output needs)."""

    NONE = "none"  # nothing (no XCom of the output)
    LAST = "last"  # the last line
    ALL = "all"  # every line: unbounded by nature, memory grows with the output

    @classmethod
    def for_xcom(cls, do_xcom_push: bool, xcom_all: bool) -> KeepPolicy:
        if not do_xcom_push:
            return cls.NONE
        return cls.ALL if xcom_all else cls.LAST


class LogLines:
    """Split a stream of byte chunks into lines; ``emit`` each; keep per ``keep`` plus a short tail.

    Lines end at ``\\n``; trailing whitespace (so a ``\\r`` of ``\\r\\n``) is stripped, as the docker
    provider does. A line is decoded (UTF-8, invalid bytes replaced) only once it is complete, so
    a multi-byte character split across chunks survives; a block of complete lines is decoded in
    one call, which gives the same text as decoding each line alone because ``\\n`` never occurs
    inside a UTF-8 sequence and ends any truncated one. A line arriving over many chunks is joined
    once, when its end arrives (linear time). ``close()`` emits a last line without a newline.

    Memory held: the current incomplete line, ``tail`` lines, and — only for ``KeepPolicy.ALL`` —
    every line.
    """

    def __init__(
        self,
        emit: Callable[[str], Any],
        keep: KeepPolicy = KeepPolicy.LAST,
        tail: int = DEFAULT_TAIL_LINES,
        lines_per_record: int = 1,
    ) -> None:
        self._emit = emit
        self.keep = keep
        self.lines_per_record = max(1, lines_per_record)
        self.count = 0
        self._pending: list[bytes] = []  # pieces of the incomplete last line
        self._all: list[str] | None = [] if keep is KeepPolicy.ALL else None
        self._tail: deque[str] = deque(maxlen=max(1, tail))

    def feed(self, chunk: bytes | str) -> None:
        """Take the next piece of output; emit the lines it completes."""
        if isinstance(chunk, str):
            chunk = chunk.encode("utf-8", "replace")
        end = chunk.rfind(b"\n")
        if end < 0:
            if chunk:
                self._pending.append(chunk)
            return
        if self._pending:
            self._pending.append(chunk[:end])
            block = b"".join(self._pending)
            self._pending.clear()
        else:
            block = chunk[:end]
        if end + 1 < len(chunk):
            self._pending.append(chunk[end + 1 :])
        self._lines(block.decode("utf-8", "replace").split("\n"))

    def close(self) -> None:
        """The stream ended: emit what is left (output not ending in a newline) as a last line."""
        if not self._pending:
            return
        text = b"".join(self._pending).decode("utf-8", "replace")
        self._pending.clear()
        self._lines([text])

    def _lines(self, raw: list[str]) -> None:
        lines = [line.rstrip() for line in raw]
        emit = self._emit
        if self.lines_per_record == 1:
            for line in lines:
                emit(line)
        else:
            for record in records(lines, self.lines_per_record):
                emit(record)
        self.count += len(lines)
        if self._all is not None:
            self._all.extend(lines)
        else:
            self._tail.extend(lines[-(self._tail.maxlen or 1) :])

    @property
    def kept(self) -> list[str]:
        """The lines ``keep`` retained: none, the last one, or all."""
        if self._all is not None:
            return self._all
        if self.keep is KeepPolicy.LAST and self._tail:
            return [self._tail[-1]]
        return []

    @property
    def tail(self) -> list[str]:
        """The last lines seen (at most ``tail``), for a failure message."""
        if self._all is not None:
            return self._all[-(self._tail.maxlen or 1) :]
        return list(self._tail)

    @property
    def last(self) -> str | None:
        if self._all is not None:
            return self._all[-1] if self._all else None
        return self._tail[-1] if self._tail else None


_END = object()
QUEUED_CHUNKS = 256  # chunks read ahead at most (the reader waits beyond: memory stays bounded)


def coalesce(chunks: Iterable[bytes | str], max_bytes: int = MAX_RECORD_BYTES) -> Iterator[bytes]:
    """``chunks`` read ahead in a thread and handed on joined: each item is every chunk that had
    arrived (up to about ``max_bytes``), so output that arrives in many small pieces becomes few
    log records, and nothing waits for more — a lone line is handed on as soon as it came.

    The reader runs at most ``QUEUED_CHUNKS`` ahead; its error is raised here, in order; closing
    this generator early stops it at its next chunk (the caller closes the stream itself)."""
    ahead: queue.Queue[Any] = queue.Queue(maxsize=QUEUED_CHUNKS)
    stop = threading.Event()

    def read() -> None:
        try:
            for chunk in chunks:
                if stop.is_set():
                    return
                ahead.put(chunk.encode("utf-8", "replace") if isinstance(chunk, str) else chunk)
            ahead.put(_END)
        except BaseException as exc:  # handed to the consumer, raised there
            ahead.put(exc)

    reader = threading.Thread(target=read, name="airdock-log-reader", daemon=True)
    reader.start()
    try:
        while True:
            item = ahead.get()
            taken: list[bytes] = []
            size = 0
            while True:
                if item is _END or isinstance(item, BaseException):
                    if taken:
                        yield b"".join(taken)
                    if isinstance(item, BaseException):
                        raise item
                    return
                taken.append(item)
                size += len(item)
                if size >= max_bytes:
                    break
                try:
                    item = ahead.get_nowait()
                except queue.Empty:
                    break
            yield b"".join(taken) if len(taken) > 1 else taken[0]
    finally:
        stop.set()
        with contextlib.suppress(queue.Empty):  # a reader blocked on the full queue: free it to stop
            while True:
                ahead.get_nowait()


def stream_lines(
    stream: Iterable[bytes | str],
    emit: Callable[[str], Any],
    keep: KeepPolicy = KeepPolicy.LAST,
    tail: int = DEFAULT_TAIL_LINES,
    lines_per_record: int = 1,
    *,
    read_ahead: bool = True,
) -> LogLines:
    """Consume ``stream`` (a container's attach or logs stream) into a finished ``LogLines``; with
    ``lines_per_record`` above 1 the lines that arrived together go out as records of up to that
    many lines — gathered by ``coalesce``, unless ``read_ahead`` is False (a stream whose pieces
    are already what arrived together: ``airdock.engine.attach.socket_chunks``)."""
    lines = LogLines(emit, keep, tail, lines_per_record)
    feed = lines.feed
    for chunk in coalesce(stream) if lines_per_record > 1 and read_ahead else stream:
        feed(chunk)
    lines.close()
    return lines
