"""The local stack's CloudWatch Logs state, in its own SQLite file.

Log groups, their log streams, and the streams' events. Events are ordered as CloudWatch Logs
orders them, by (timestamp, sequence number): the sequence number only ever grows, so it also
breaks ties between events of one millisecond in ingestion order. A position in that order
(:class:`Position`) is what the API's paging tokens carry. Both event indexes end in
(timestamp, seq), so every read is an index range scan with a LIMIT: nothing loads a whole stream.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from airdock.local.sqlite_file import SqliteFile

__all__ = ["LogEvent", "LogGroup", "LogGroupExists", "LogGroupMissing", "LogStore", "LogStream"]
__all__ += ["LogStreamExists", "LogStreamMissing", "Position"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS log_groups (
    id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, created_ms INTEGER NOT NULL,
    retention_days INTEGER, tags TEXT NOT NULL, group_class TEXT NOT NULL, kms_key_id TEXT,
    stored_bytes INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS log_streams (
    id INTEGER PRIMARY KEY, group_id INTEGER NOT NULL, name TEXT NOT NULL, created_ms INTEGER NOT NULL,
    first_ts INTEGER, last_ts INTEGER, last_ingestion_ms INTEGER, last_seq INTEGER,
    UNIQUE (group_id, name)
);
CREATE TABLE IF NOT EXISTS log_events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, group_id INTEGER NOT NULL, stream_id INTEGER NOT NULL,
    ts INTEGER NOT NULL, ingested_ms INTEGER NOT NULL, message TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS log_events_by_stream ON log_events (stream_id, ts, seq);
CREATE INDEX IF NOT EXISTS log_events_by_group ON log_events (group_id, ts, seq);
"""
# AUTOINCREMENT: a sequence number is never reused, even after the newest events are deleted, so
# a paging token or sequence token handed out earlier never points at a different event.

_SELECT_GROUPS = (
    "SELECT name, created_ms, retention_days, tags, group_class, kms_key_id, stored_bytes FROM log_groups"
)
_SELECT_STREAMS = (
    "SELECT s.name, s.created_ms, s.first_ts, s.last_ts, s.last_ingestion_ms, s.last_seq FROM log_streams s"
)
_LONG_MAX = (1 << 63) - 1  # SQLite's largest integer
# Queries below interpolate only fixed SQL fragments (columns, ASC/DESC, ? placeholders): never input.


class LogGroupMissing(Exception):
    """The log group does not exist."""


class LogStreamMissing(KeyError):
    """The log stream does not exist (in a log group that does)."""


class LogGroupExists(Exception):
    """CreateLogGroup for a name that is taken."""


class LogStreamExists(Exception):
    """CreateLogStream for a name that is taken in its group."""


class Position(NamedTuple):
    """A place in a stream's (or group's) event order: (timestamp ms, sequence number)."""

    ts: int
    seq: int


@dataclass(frozen=True)
class LogGroup:
    name: str
    created_ms: int
    retention_days: int | None = None
    tags: dict[str, str] = field(default_factory=dict)
    group_class: str = "STANDARD"
    kms_key_id: str | None = None
    stored_bytes: int = 0


@dataclass(frozen=True)
class LogStream:
    name: str
    created_ms: int
    first_ts: int | None = None
    last_ts: int | None = None
    last_ingestion_ms: int | None = None
    last_seq: int | None = None


@dataclass(frozen=True)
class LogEvent:
    """One stored event, with the name of its stream."""

    seq: int
    ts: int
    ingested_ms: int
    message: str
    stream: str

    @property
    def position(self) -> Position:
        return Position(self.ts, self.seq)


class LogStore(SqliteFile):
    """Thread-safe access to the CloudWatch Logs SQLite file: one connection, one lock, WAL."""

    def __init__(self, path: Path, *, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        super().__init__(path, _SCHEMA, synchronous_normal=True)

    def now_ms(self) -> int:
        return int(self._clock() * 1000)

    @staticmethod
    def _group_id(db: sqlite3.Connection, group: str) -> int:
        row = db.execute("SELECT id FROM log_groups WHERE name = ?", (group,)).fetchone()
        if row is None:
            raise LogGroupMissing(group)
        return int(row[0])

    @classmethod
    def _stream_ids(cls, db: sqlite3.Connection, group: str, stream: str) -> tuple[int, int]:
        group_id = cls._group_id(db, group)
        row = db.execute(
            "SELECT id FROM log_streams WHERE group_id = ? AND name = ?", (group_id, stream)
        ).fetchone()
        if row is None:
            raise LogStreamMissing(stream)
        return group_id, int(row[0])

    # -- groups ---------------------------------------------------------------------------
    def group_exists(self, group: str) -> bool:
        with self._lock:
            row = self._db.execute("SELECT 1 FROM log_groups WHERE name = ?", (group,)).fetchone()
        return row is not None

    def create_group(
        self,
        group: str,
        *,
        tags: dict[str, str] | None = None,
        group_class: str = "STANDARD",
        kms_key_id: str | None = None,
    ) -> None:
        """Record a new log group; raise LogGroupExists when the name is taken."""
        try:
            with self._tx() as db:
                db.execute(
                    "INSERT INTO log_groups (name, created_ms, tags, group_class, kms_key_id)"
                    " VALUES (?, ?, ?, ?, ?)",
                    (group, self.now_ms(), json.dumps(tags or {}), group_class, kms_key_id),
                )
        except sqlite3.IntegrityError:
            raise LogGroupExists(group) from None

    def ensure_group(self, group: str) -> None:
        """Create the group when missing (what the awslogs driver's ``awslogs-create-group`` does)."""
        with self._tx() as db:
            db.execute(
                "INSERT OR IGNORE INTO log_groups (name, created_ms, tags, group_class)"
                " VALUES (?, ?, '{}', 'STANDARD')",
                (group, self.now_ms()),
            )

    def get_group(self, group: str) -> LogGroup | None:
        with self._lock:
            row = self._db.execute(_SELECT_GROUPS + " WHERE name = ?", (group,)).fetchone()
        return None if row is None else _group(row)

    def list_groups(
        self,
        *,
        prefix: str = "",
        contains: str = "",
        group_class: str | None = None,
        names: Sequence[str] | None = None,
        after: str | None = None,
        limit: int = 50,
    ) -> list[LogGroup]:
        """Up to ``limit`` groups by name, after the name ``after``: those named ``prefix…``, with
        ``contains`` in their name, of ``group_class`` and among ``names`` when given."""
        conditions = "name >= ? AND substr(name, 1, ?) = ? AND instr(name, ?) > 0 AND name > ?"
        args: list[object] = [prefix, len(prefix), prefix, contains, after or ""]
        if group_class is not None:
            conditions += " AND group_class = ?"
            args.append(group_class)
        if names is not None:
            conditions += f" AND name IN ({', '.join('?' * len(names))})"
            args.extend(names)
        with self._lock:
            rows = self._db.execute(
                f"{_SELECT_GROUPS} WHERE {conditions} ORDER BY name LIMIT ?", (*args, limit)
            ).fetchall()
        return [_group(row) for row in rows]

    def set_retention(self, group: str, days: int | None) -> None:
        with self._tx() as db:
            cur = db.execute("UPDATE log_groups SET retention_days = ? WHERE name = ?", (days, group))
            if cur.rowcount == 0:
                raise LogGroupMissing(group)

    def delete_group(self, group: str) -> None:
        """Forget a group with its streams and events; raise LogGroupMissing when there is none."""
        with self._tx() as db:
            group_id = self._group_id(db, group)
            db.execute("DELETE FROM log_events WHERE group_id = ?", (group_id,))
            db.execute("DELETE FROM log_streams WHERE group_id = ?", (group_id,))
            db.execute("DELETE FROM log_groups WHERE id = ?", (group_id,))

    # -- streams --------------------------------------------------------------------------
    def create_stream(self, group: str, stream: str) -> None:
        """Record a new stream; LogGroupMissing without its group, LogStreamExists when taken."""
        try:
            with self._tx() as db:
                db.execute(
                    "INSERT INTO log_streams (group_id, name, created_ms) VALUES (?, ?, ?)",
                    (self._group_id(db, group), stream, self.now_ms()),
                )
        except sqlite3.IntegrityError:
            raise LogStreamExists(stream) from None

    def ensure_stream(self, group: str, stream: str) -> None:
        """Create the stream when missing; LogGroupMissing when its group is."""
        with self._tx() as db:
            db.execute(
                "INSERT OR IGNORE INTO log_streams (group_id, name, created_ms) VALUES (?, ?, ?)",
                (self._group_id(db, group), stream, self.now_ms()),
            )

    def get_stream(self, group: str, stream: str) -> LogStream:
        """The stream; LogGroupMissing or LogStreamMissing."""
        with self._lock:
            _, stream_id = self._stream_ids(self._db, group, stream)
            row = self._db.execute(_SELECT_STREAMS + " WHERE s.id = ?", (stream_id,)).fetchone()
        return _stream(row)

    def list_streams(
        self,
        group: str,
        *,
        prefix: str = "",
        by_last_event: bool = False,
        descending: bool = False,
        after: tuple[int, str] | None = None,
        limit: int = 50,
    ) -> list[LogStream]:
        """Up to ``limit`` streams of ``group`` in order of name, or of (last event time, name),
        strictly after the key ``after`` (last event time is 0 when ordering by name)."""
        direction, compare = ("DESC", "<") if descending else ("ASC", ">")
        key = "(coalesce(s.last_ts, 0), s.name)" if by_last_event else "(0, s.name)"
        where = f"AND {key} {compare} (?, ?)" if after is not None else ""
        order = f"coalesce(s.last_ts, 0) {direction}, " if by_last_event else ""
        with self._lock:
            group_id = self._group_id(self._db, group)
            rows = self._db.execute(
                _SELECT_STREAMS + " WHERE s.group_id = ? AND substr(s.name, 1, ?) = ?"
                f" {where} ORDER BY {order}s.name {direction} LIMIT ?",
                (group_id, len(prefix), prefix, *(after or ()), limit),
            ).fetchall()
        return [_stream(row) for row in rows]

    def delete_stream(self, group: str, stream: str) -> None:
        """Forget a stream and its events; LogGroupMissing or LogStreamMissing when there is none."""
        with self._tx() as db:
            group_id, stream_id = self._stream_ids(db, group, stream)
            deleted = db.execute(
                "SELECT coalesce(sum(length(CAST(message AS BLOB))), 0) FROM log_events WHERE stream_id = ?",
                (stream_id,),
            ).fetchone()[0]
            db.execute("DELETE FROM log_events WHERE stream_id = ?", (stream_id,))
            db.execute("DELETE FROM log_streams WHERE id = ?", (stream_id,))
            db.execute(
                "UPDATE log_groups SET stored_bytes = stored_bytes - ? WHERE id = ?", (deleted, group_id)
            )

    # -- events ---------------------------------------------------------------------------
    def append(self, group: str, stream: str, events: Sequence[tuple[int, str]]) -> int:
        """Store ``(timestamp ms, message)`` events in one transaction; return how many.

        LogGroupMissing or LogStreamMissing (a KeyError) when the stream does not exist.
        """
        if not events:
            with self._lock:
                self._stream_ids(self._db, group, stream)
            return 0
        now = self.now_ms()
        low = min(ts for ts, _ in events)
        high = max(ts for ts, _ in events)
        size = sum(len(message.encode("utf-8")) for _, message in events)  # refuses lone surrogates early
        with self._tx() as db:
            group_id, stream_id = self._stream_ids(db, group, stream)
            db.executemany(
                "INSERT INTO log_events (group_id, stream_id, ts, ingested_ms, message)"
                " VALUES (?, ?, ?, ?, ?)",
                ((group_id, stream_id, ts, now, message) for ts, message in events),
            )
            last_seq = db.execute("SELECT last_insert_rowid()").fetchone()[0]
            db.execute(
                "UPDATE log_streams SET first_ts = min(coalesce(first_ts, ?), ?),"
                " last_ts = max(coalesce(last_ts, ?), ?), last_ingestion_ms = ?, last_seq = ? WHERE id = ?",
                (low, low, high, high, now, last_seq, stream_id),
            )
            db.execute("UPDATE log_groups SET stored_bytes = stored_bytes + ? WHERE id = ?", (size, group_id))
        return len(events)

    def last_timestamp(self, group: str, stream: str) -> int | None:
        """The newest event's timestamp; None when the stream has no events or does not exist."""
        with self._lock:
            row = self._db.execute(
                "SELECT s.last_ts FROM log_streams s JOIN log_groups g ON g.id = s.group_id"
                " WHERE g.name = ? AND s.name = ?",
                (group, stream),
            ).fetchone()
        return None if row is None or row[0] is None else int(row[0])

    def event_count(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT count(*) FROM log_events").fetchone()[0])

    def read_events(
        self,
        group: str,
        stream: str | None = None,
        *,
        streams: Sequence[str] | None = None,
        stream_prefix: str | None = None,
        start: int = 0,
        end: int | None = None,
        end_inclusive: bool = False,
        after: Position | None = None,
        before: Position | None = None,
        backward: bool = False,
        limit: int = 10_000,
        max_bytes: int | None = None,
        overhead: int = 0,
    ) -> list[LogEvent]:
        """Up to ``limit`` events of ``stream``, or of the group's streams (those in ``streams``, or
        named ``stream_prefix…``), with ``start <= timestamp < end`` (``<=`` when ``end_inclusive``),
        strictly between ``after`` and ``before``, in order; ``backward`` takes the last ones of that.

        Stops before the messages' UTF-8 size (plus ``overhead`` each) passes ``max_bytes``, one
        event at least. LogGroupMissing, or LogStreamMissing when ``stream`` does not exist.
        """
        where = f"e.ts >= ? AND e.ts {'<=' if end_inclusive or end is None else '<'} ?"
        args: list[object] = [start, _LONG_MAX if end is None else end]
        for bound, compare in ((after, ">"), (before, "<")):
            if bound is not None:
                where += f" AND (e.ts, e.seq) {compare} (?, ?)"
                args.extend(bound)
        if streams is not None:
            where += f" AND s.name IN ({', '.join('?' * len(streams))})"
            args.extend(streams)
        if stream_prefix is not None:
            where += " AND substr(s.name, 1, ?) = ?"
            args.extend((len(stream_prefix), stream_prefix))
        order = "DESC" if backward else "ASC"
        with self._lock:
            if stream is None:
                owner = "e.group_id = ?"
                args.insert(0, self._group_id(self._db, group))
            else:
                owner = "e.stream_id = ?"
                args.insert(0, self._stream_ids(self._db, group, stream)[1])
            cursor = self._db.execute(
                "SELECT e.seq, e.ts, e.ingested_ms, e.message, s.name FROM log_events e"  # noqa: S608
                f" JOIN log_streams s ON s.id = e.stream_id WHERE {owner} AND {where}"
                f" ORDER BY e.ts {order}, e.seq {order} LIMIT ?",
                (*args, limit),
            )
            events: list[LogEvent] = []
            used = 0
            for row in cursor:  # stepped row by row: the byte budget stops before big messages pile up
                used += len(row[3].encode("utf-8")) + overhead
                if max_bytes is not None and used > max_bytes and events:
                    break
                events.append(LogEvent(*row))
        return events[::-1] if backward else events


def _group(row: Sequence[Any]) -> LogGroup:
    name, created_ms, retention_days, tags, *rest = row  # the columns of _SELECT_GROUPS, in order
    return LogGroup(name, created_ms, retention_days, dict(json.loads(tags)), *rest)


def _stream(row: Sequence[Any]) -> LogStream:
    return LogStream(*row)  # the columns of _SELECT_STREAMS, in order; SQLite gives int/str/None
