"""A container's whole output, following it while it runs, with no line lost when it exits.

The engine's ``logs?follow=1`` stream can end before the end of the log when the container exits
while the reader is behind: Docker 20.10 (Debian 12's ``docker.io``) ended such streams after
~5,000 of 20,000–200,000 lines in one run of four to twelve here (and after 19,566 of 200,000 in a
CI run of the local ECS). ``follow_output`` notices that the
stream ended, and when the container no longer runs reads the rest without ``follow`` — from the
last whole second it delivered (the engine's ``since`` is inclusive), skipping the records of that
second it delivered already, so every record comes once, in the engine's order. A stream that ends
while the container still runs (an engine restarting with live-restore) is followed again the same
way.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

__all__ = ["follow_output"]

_STAMP_WIDTH = 30  # 2026-12-01T22:39:04.123456789Z: the engine pads the fraction to 9 digits
_SECOND = 19  # the stamp's whole-second prefix, 2026-12-01T22:39:04


class _Reached:
    """Where a reader is: the latest whole second delivered and how many records of it it took."""

    def __init__(self) -> None:
        self.second = b""
        self.at_second = 0
        self.total = 0
        self.stamped = True  # False once a record came without a UTC timestamp: resume by count

    def take(self, stamp: bytes) -> None:
        self.total += 1
        if len(stamp) != _STAMP_WIDTH or stamp[-1:] != b"Z" or stamp[10:11] != b"T":
            self.stamped = False
            return
        second = stamp[:_SECOND]
        if second == self.second:
            self.at_second += 1
        elif second > self.second:
            self.second, self.at_second = second, 1
        # an earlier second (stdout and stderr stamped out of order) is counted in at_second's
        # stream position by neither side: the engine's since filter drops it too

    def resume(self) -> tuple[int | None, int]:
        """(``since`` for the engine, records to skip at the start of the new stream)."""
        if not self.total:
            return None, 0
        if not self.stamped or not self.second:
            return None, self.total
        second = datetime.strptime(self.second.decode(), "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC)
        return int(second.timestamp()), self.at_second


def _records(chunks: Any, tty: bool, last: bool) -> Iterator[tuple[bytes, bytes]]:
    """(timestamp, data) per record of a ``timestamps=True`` stream from docker-py: one record
    per frame without a TTY; lines of the raw text with one (an unfinished line at the end only
    when ``last``: a stream that ended early is read again from that line)."""
    if not tty:
        for frame in chunks:
            stamp, _, data = frame.partition(b" ")
            yield stamp, data
        return
    pending = b""
    for chunk in chunks:
        pending += chunk
        *complete, pending = pending.split(b"\n")
        for line in complete:
            stamp, _, data = line.partition(b" ")
            yield stamp, data + b"\n"
    if pending and last:
        stamp, _, data = pending.partition(b" ")
        yield stamp, data


def follow_output(cli: Any, container_id: str, retry_delay_s: float = 0.5) -> Iterator[bytes]:
    """Every piece of the container's output (stdout and stderr as the engine interleaved them),
    following it until it no longer runs. ``cli`` is a docker-py ``APIClient``."""
    tty = bool((cli.inspect_container(container_id).get("Config") or {}).get("Tty"))
    reached = _Reached()
    follow = True
    while True:
        since, skip = reached.resume()
        chunks = cli.logs(
            container_id, stdout=True, stderr=True, stream=True, follow=follow, timestamps=True, since=since
        )
        try:
            for stamp, data in _records(chunks, tty, last=not follow):
                if skip:
                    skip -= 1
                    continue
                reached.take(stamp)
                yield data
        finally:
            close = getattr(chunks, "close", None)
            if callable(close):
                close()
        if not follow:
            return
        state = cli.inspect_container(container_id).get("State") or {}
        if state.get("Running"):
            time.sleep(retry_delay_s)  # the stream broke while the container runs: follow again
        else:
            follow = False  # it exited: read what the stream did not deliver, without following
