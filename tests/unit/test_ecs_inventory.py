"""The ECS snapshot of the Container hosts page (``airdock.targets.ecs.inventory``), taken from the
local ECS API with unmodified boto3 (its task runner replaced by a recorder, as in test_ecs_api:
the tasks stay pending, which ListTasks' RUNNING desired status includes)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from airdock.targets.ecs import inventory
from airdock.targets.spec import TaskIdentity
from tests.unit.test_ecs_api import Api, api, register  # noqa: F401  (api: the module's fixture)


def test_a_snapshot_lists_airdocks_running_tasks_and_its_families_active_revisions(api: Api) -> None:  # noqa: F811
    api.ecs.create_cluster(clusterName="inventory")
    for family in ("airdock-team-report", "airdock-team-report", "airdock-team-scrape", "someone-else"):
        register(api, family)
    api.ecs.deregister_task_definition(taskDefinition="airdock-team-scrape:1")
    register(api, "airdock-team-scrape")
    identity = TaskIdentity("team", "report", "scheduled__2026-12-01", -1, 1)
    ours = api.ecs.run_task(
        cluster="inventory",
        taskDefinition="airdock-team-report",
        startedBy=identity.started_by(),
        tags=[{"key": k, "value": v} for k, v in identity.tags().items()],
    )["tasks"][0]
    api.ecs.run_task(cluster="inventory", taskDefinition="someone-else")  # not airdock's
    managed = [{"key": "airdock.managed", "value": "true"}]
    stopped = api.ecs.run_task(cluster="inventory", taskDefinition="airdock-team-report", tags=managed)
    api.ecs.stop_task(cluster="inventory", task=stopped["tasks"][0]["taskArn"])

    snap = inventory.snapshot(api.ecs, "inventory", now=1000.0)

    assert (snap["key"], snap["cluster"], snap["at"]) == ("us-east-1/inventory", "inventory", 1000.0)
    assert snap["running"] == [
        {
            "task": ours["taskArn"].rsplit("/", 1)[-1],
            "definition": "airdock-team-report:2",
            "dag_id": "team",
            "task_id": "report",
            "status": "PROVISIONING",
            "started_at": snap["running"][0]["started_at"],
        }
    ]
    assert snap["running"][0]["started_at"] > 0 and snap["running_count"] == 1
    assert snap["task_definitions"] == [
        {"family": "airdock-team-report", "revisions": [2, 1]},
        {"family": "airdock-team-scrape", "revisions": [2]},
    ]
    assert snap["family_count"] == 2
    assert inventory.snapshot(api.ecs, "default")["running"] == [], "per cluster"
    assert len(json.dumps(snap)) < 2048


class Log:
    def __init__(self) -> None:
        self.warnings: list[str] = []

    def warning(self, message: str, *args: object) -> None:
        self.warnings.append(message % args)


def test_a_host_asks_ecs_at_most_once_a_minute_and_amends_its_snapshot_with_its_own_tasks_between(
    api: Api,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``host_status.note_ecs``'s rule, with its state directory in tmp_path and its publishing
    recorded (publishing through the Task SDK is tests/cluster/test_page.py's)."""
    from airdock import hosts
    from airdock.airflow import host_status

    published: list[bool] = []
    monkeypatch.setattr(host_status, "_state_dir", lambda: tmp_path)
    monkeypatch.setattr(host_status, "publish", lambda client, log, force=False: published.append(force))
    api.ecs.create_cluster(clusterName="minute")
    register(api, "airdock-minute-job")
    tags = TaskIdentity("minute", "job", "r1").tags()
    started = api.ecs.run_task(
        cluster="minute",
        taskDefinition="airdock-minute-job",
        tags=[{"key": k, "value": v} for k, v in tags.items()],
    )
    arn = started["tasks"][0]["taskArn"]
    task_id = arn.rsplit("/", 1)[-1]
    log = Log()
    engines: list[int] = []

    def engine() -> None:
        engines.append(1)  # a host without an engine: its record says so

    def listed() -> list[str]:
        (snap,) = hosts.history(tmp_path, "ecs")
        return [task["task"] for task in snap["running"]]

    host_status.note_ecs(api.ecs, "minute", engine, log)  # the first: asked of ECS
    assert published == [True] and listed() == [task_id]
    host_status.note_ecs(api.ecs, "minute", engine, log)  # nothing new within the minute
    assert published == [True] and len(engines) == 1, "no engine client made when nothing is published"
    other = inventory.task_entry(
        "arn:aws:ecs:r:1:task/minute/other", "airdock-minute-job:1", tags, "PENDING", 1.0
    )
    host_status.note_ecs(api.ecs, "minute", engine, log, started=other)  # amended, not asked
    assert published == [True, True] and listed() == [task_id, "other"]
    api.ecs.stop_task(cluster="minute", task=arn)
    host_status.note_ecs(api.ecs, "minute", engine, log, ended_task=task_id)
    assert published == [True, True, True] and listed() == ["other"]
    (snap,) = hosts.history(tmp_path, "ecs")
    assert snap["running_count"] == 1 and inventory.as_of(snap) >= snap["at"]
    host_status.note_ecs(api.ecs, "no-such-cluster", engine, log)
    assert len(published) == 3 and len(log.warnings) == 1
    assert log.warnings[0].startswith("could not take a snapshot of ECS cluster no-such-cluster")
