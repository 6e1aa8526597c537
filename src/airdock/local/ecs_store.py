"""The local ECS's state, in its own SQLite file: clusters, task definitions, tasks.

Records are plain JSON documents in ECS's own shapes (what DescribeClusters, DescribeTaskDefinition
and DescribeTasks answer), plus the few columns the queries filter on. The task runner
(:mod:`airdock.local.ecs_runner`) and the API (:mod:`airdock.local.api.ecs`) both write here;
every method is one short transaction under one lock, so they can from different threads. The
state survives the stack's restarts: tasks that still run are found again by the runner.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from airdock.local.sqlite_file import SqliteFile

__all__ = ["EcsStore", "JsonDoc"]

JsonDoc = dict[str, Any]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS clusters (
    name TEXT PRIMARY KEY,
    doc  TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS task_definitions (
    family   TEXT NOT NULL,
    revision INTEGER NOT NULL,
    arn      TEXT NOT NULL UNIQUE,
    status   TEXT NOT NULL,
    doc      TEXT NOT NULL,
    tags     TEXT NOT NULL,
    PRIMARY KEY (family, revision)
);
CREATE TABLE IF NOT EXISTS tasks (
    arn            TEXT PRIMARY KEY,
    cluster        TEXT NOT NULL,
    family         TEXT NOT NULL,
    started_by     TEXT,
    desired_status TEXT NOT NULL,
    last_status    TEXT NOT NULL,
    created_at     REAL NOT NULL,
    doc            TEXT NOT NULL,
    runtime        TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS tasks_by_cluster ON tasks (cluster, desired_status, created_at);
CREATE TABLE IF NOT EXISTS client_tokens (
    token      TEXT PRIMARY KEY,
    task_arns  TEXT NOT NULL,
    created_at REAL NOT NULL
);
"""


class EcsStore(SqliteFile):
    """Thread-safe access to the local ECS state file (``<data_dir>/ecs.sqlite``)."""

    def __init__(self, path: Path, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        super().__init__(path, _SCHEMA)

    def cluster(self, name: str) -> JsonDoc | None:
        rows = self._rows("SELECT doc FROM clusters WHERE name = ?", (name,))
        return json.loads(rows[0][0]) if rows else None

    def clusters(self) -> list[JsonDoc]:
        return [json.loads(doc) for (doc,) in self._rows("SELECT doc FROM clusters ORDER BY name")]

    def put_cluster(self, name: str, doc: JsonDoc) -> None:
        with self.transaction() as db:
            db.execute(
                "INSERT INTO clusters (name, doc) VALUES (?, ?) "
                "ON CONFLICT (name) DO UPDATE SET doc = excluded.doc",
                (name, json.dumps(doc)),
            )

    # -- task definitions -----------------------------------------------------------------
    def next_revision(self, db: sqlite3.Connection, family: str) -> int:
        row = db.execute("SELECT max(revision) FROM task_definitions WHERE family = ?", (family,)).fetchone()
        return int(row[0] or 0) + 1

    def add_task_definition(self, db: sqlite3.Connection, doc: JsonDoc, tags: list[JsonDoc]) -> None:
        db.execute(
            "INSERT INTO task_definitions (family, revision, arn, status, doc, tags) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (
                doc["family"],
                doc["revision"],
                doc["taskDefinitionArn"],
                doc["status"],
                json.dumps(doc),
                json.dumps(tags),
            ),
        )

    def task_definition(self, family: str, revision: int | None) -> tuple[JsonDoc, list[JsonDoc]] | None:
        """``family:revision``, or the latest ACTIVE revision of ``family`` when ``revision`` is None."""
        if revision is None:
            rows = self._rows(
                "SELECT doc, tags FROM task_definitions WHERE family = ? AND status = 'ACTIVE' "
                "ORDER BY revision DESC LIMIT 1",
                (family,),
            )
        else:
            rows = self._rows(
                "SELECT doc, tags FROM task_definitions WHERE family = ? AND revision = ?", (family, revision)
            )
        return (json.loads(rows[0][0]), json.loads(rows[0][1])) if rows else None

    def task_definition_arns(
        self, family_prefix: str | None, status: str | None
    ) -> list[tuple[str, int, str]]:
        """(family, revision, arn) of the matching task definitions, family and revision ascending."""
        sql = "SELECT family, revision, arn FROM task_definitions WHERE 1 = 1"
        args: list[Any] = []
        if family_prefix:
            sql += " AND substr(family, 1, ?) = ?"
            args += [len(family_prefix), family_prefix]
        if status:
            sql += " AND status = ?"
            args.append(status)
        rows = self._rows(sql + " ORDER BY family, revision", tuple(args))
        return [(str(f), int(r), str(a)) for f, r, a in rows]

    def families(self, family_prefix: str | None, status: str | None) -> list[str]:
        return sorted({family for family, _, _ in self.task_definition_arns(family_prefix, status)})

    def set_task_definition_status(self, db: sqlite3.Connection, doc: JsonDoc) -> None:
        db.execute(
            "UPDATE task_definitions SET status = ?, doc = ? WHERE arn = ?",
            (doc["status"], json.dumps(doc), doc["taskDefinitionArn"]),
        )

    def set_task_definition_tags(self, db: sqlite3.Connection, arn: str, tags: list[JsonDoc]) -> None:
        db.execute("UPDATE task_definitions SET tags = ? WHERE arn = ?", (json.dumps(tags), arn))

    def task_definition_by_arn(self, arn: str) -> tuple[JsonDoc, list[JsonDoc]] | None:
        rows = self._rows("SELECT doc, tags FROM task_definitions WHERE arn = ?", (arn,))
        return (json.loads(rows[0][0]), json.loads(rows[0][1])) if rows else None

    # -- tasks ----------------------------------------------------------------------------
    def add_task(self, db: sqlite3.Connection, doc: JsonDoc, runtime: JsonDoc) -> None:
        db.execute(
            "INSERT INTO tasks (arn, cluster, family, started_by, desired_status, last_status, created_at, "
            "doc, runtime) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                doc["taskArn"],
                doc["clusterArn"],
                runtime["family"],
                doc.get("startedBy"),
                doc["desiredStatus"],
                doc["lastStatus"],
                doc["createdAt"],
                json.dumps(doc),
                json.dumps(runtime),
            ),
        )

    def task(self, arn: str) -> tuple[JsonDoc, JsonDoc] | None:
        """(the DescribeTasks document, the runner's private record) of a task."""
        rows = self._rows("SELECT doc, runtime FROM tasks WHERE arn = ?", (arn,))
        return (json.loads(rows[0][0]), json.loads(rows[0][1])) if rows else None

    def update_task(self, arn: str, change: Callable[[JsonDoc, JsonDoc], None]) -> JsonDoc | None:
        """Apply ``change(doc, runtime)`` to a task in one transaction; return the new document."""
        with self.transaction() as db:
            row = db.execute("SELECT doc, runtime FROM tasks WHERE arn = ?", (arn,)).fetchone()
            if row is None:
                return None
            doc, runtime = json.loads(row[0]), json.loads(row[1])
            change(doc, runtime)
            result: JsonDoc = doc
            db.execute(
                "UPDATE tasks SET doc = ?, runtime = ?, desired_status = ?, last_status = ? WHERE arn = ?",
                (json.dumps(doc), json.dumps(runtime), doc["desiredStatus"], doc["lastStatus"], arn),
            )
            return result

    def task_arns(
        self,
        cluster_arn: str | None,
        *,
        family: str | None = None,
        started_by: str | None = None,
        desired_status: str | None = None,
    ) -> list[str]:
        sql = "SELECT arn FROM tasks WHERE 1 = 1"
        args: list[Any] = []
        for column, value in (
            ("cluster", cluster_arn),
            ("family", family),
            ("started_by", started_by),
            ("desired_status", desired_status),
        ):
            if value is not None:
                sql += f" AND {column} = ?"
                args.append(value)
        return [str(arn) for (arn,) in self._rows(sql + " ORDER BY created_at, arn", tuple(args))]

    def unfinished_tasks(self) -> list[str]:
        """Tasks the runner still owes work: not yet STOPPED."""
        return [str(arn) for (arn,) in self._rows("SELECT arn FROM tasks WHERE last_status != 'STOPPED'")]

    def tasks_by_status(self) -> dict[str, int]:
        return {str(s): int(n) for s, n in self._rows("SELECT last_status, count(*) FROM tasks GROUP BY 1")}

    def count_tasks(self, cluster_arn: str, statuses: tuple[str, ...]) -> int:
        marks = ",".join("?" * len(statuses))
        rows = self._rows(
            f"SELECT count(*) FROM tasks WHERE cluster = ? AND last_status IN ({marks})",  # noqa: S608
            (cluster_arn, *statuses),
        )
        return int(rows[0][0])

    # -- RunTask idempotency ------------------------------------------------------------------
    def client_token(self, db: sqlite3.Connection, token: str) -> list[str] | None:
        row = db.execute("SELECT task_arns FROM client_tokens WHERE token = ?", (token,)).fetchone()
        return None if row is None else list(json.loads(row[0]))

    def remember_client_token(self, db: sqlite3.Connection, token: str, arns: list[str]) -> None:
        db.execute(
            "INSERT INTO client_tokens (token, task_arns, created_at) VALUES (?, ?, ?)",
            (token, json.dumps(arns), self.clock()),
        )
