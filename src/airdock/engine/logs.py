"""A container's output as log lines, streamed: every line is emitted, only what is needed is kept.

The docker provider's ``fetch_logs`` keeps every line in a list for the whole run (memory grows
with the output), decodes each chunk on its own (a UTF-8 character split across two chunks turns
into two replacement characters) and re-splits a growing string while a long line arrives.
``LogLines`` works on bytes: it splits complete lines off each chunk, decodes them, hands each to
``emit`` and keeps only what ``keep`` asks for, plus a bounded tail for failure messages.
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

__all__ = ["DEFAULT_TAIL_LINES", "KeepPolicy", "LogLines", "stream_lines"]

DEFAULT_TAIL_LINES = 100


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
    ) -> None:
        self._emit = emit
        self.keep = keep
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
        for line in lines:
            emit(line)
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


def stream_lines(
    stream: Iterable[bytes | str],
    emit: Callable[[str], Any],
    keep: KeepPolicy = KeepPolicy.LAST,
    tail: int = DEFAULT_TAIL_LINES,
) -> LogLines:
    """Consume ``stream`` (a container's attach or logs stream) into a finished ``LogLines``."""
    lines = LogLines(emit, keep, tail)
    feed = lines.feed
    for chunk in stream:
        feed(chunk)
    lines.close()
    return lines
