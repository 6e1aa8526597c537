"""A worker host's status record (``airdock.hosts``) and the Container hosts page's HTML
(``airdock.airflow.hosts_page``). The page served by a real api-server, from records real worker
hosts published, is tests/cluster/test_page.py's."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from airdock import hosts
from airdock.airflow.hosts_page import STALE_AFTER_S, render_detail, render_hosts
from airdock.auth.cache import TokenCache
from airdock.auth.credentials import RegistryCredentials

SECRET = "s3cret-registry-password"


class Engine:
    """What ``build_record`` asks of an engine (the real one: tests/cluster)."""

    def __init__(self) -> None:
        self.api = self

    def version(self) -> dict[str, str]:
        return {"Version": "20.10.24"}

    def images(self) -> list[dict[str, Any]]:
        return [{"Size": 3_000_000}, {"Size": 2_000_000}]

    def containers(self, filters: dict[str, str]) -> list[dict[str, Any]]:
        assert filters == {"label": "airdock.managed=true", "status": "running"}
        return [{"Id": "a"}]


def test_the_history_keeps_the_newest_entries_of_each_kind(tmp_path: Path) -> None:
    for n in range(25):
        hosts.record_event(tmp_path, "pulls", {"image": f"r/app:{n}"})
    record = hosts.build_record(
        Engine(), "worker-1", token_dir=tmp_path / "none", state_dir=tmp_path, budget_bytes=None
    )
    assert [pull["image"] for pull in record["pulls"]] == [f"r/app:{n}" for n in range(15, 25)]
    assert len(json.dumps(record)) < 4096, "a record stays small"
    for cluster, at in (("a", 1), ("b", 2), ("a", 3)):  # an ECS snapshot replaces its cluster's last
        hosts.record_event(tmp_path, "ecs", {"key": cluster, "at": at}, replace="key")
    assert hosts.history(tmp_path, "ecs") == [{"key": "b", "at": 2}, {"key": "a", "at": 3}]


def test_publishing_is_due_once_a_minute_and_always_when_forced(tmp_path: Path) -> None:
    now = time.time()
    assert hosts.due(tmp_path, now)
    assert not hosts.due(tmp_path, now + 30)
    assert hosts.due(tmp_path, now + 30, force=True)
    assert not hosts.due(tmp_path, now + 60)
    assert hosts.due(tmp_path, now + 91)


def test_a_record_names_the_hosts_tokens_by_registry_and_expiry_never_the_token(tmp_path: Path) -> None:
    cache = TokenCache(tmp_path / "tokens")
    expires = time.time() + 7200
    cache.get(
        "r.example|id",
        lambda: RegistryCredentials("r.example", "AWS", SECRET, expires),
        identity="connection aws_ecr: profile team",
    )
    record = hosts.build_record(
        Engine(), "worker-1", token_dir=tmp_path / "tokens", state_dir=tmp_path, budget_bytes=8_000_000
    )
    assert record["tokens"] == [
        {
            "registry": "r.example",
            "identity": "connection aws_ecr: profile team",
            "expires_in_s": record["tokens"][0]["expires_in_s"],
        }
    ]
    assert 7190 <= record["tokens"][0]["expires_in_s"] <= 7200
    assert (record["engine_version"], record["image_store_bytes"], record["containers_running"]) == (
        "20.10.24",
        5_000_000,
        1,
    )
    assert SECRET not in json.dumps(record)


def test_the_page_lists_hosts_marks_the_stale_and_escapes_what_it_shows() -> None:
    now = time.time()
    live = {
        "host": "worker-1", "reported_at": now - 30, "engine_version": "20.10.24",
        "image_store_bytes": 6_000_000, "budget_bytes": 8_000_000, "containers_running": 2,
        "tokens": [{"registry": "r.example:5000", "identity": "connection aws_ecr",
                    "expires_in_s": 3 * 3600 + 120}],
        "gc": [{"at": now - 90, "images_removed": 2, "bytes_reclaimed": 10_000_000, "reasons": ["a: lru"]}],
    }  # fmt: skip
    stale = {
        "host": "<b>worker-2</b>", "reported_at": now - STALE_AFTER_S - 5,
        "tokens": [{"registry": "r.example:5000", "expires_in_s": 20}],
    }  # fmt: skip
    html = render_hosts([live, stale], now)
    assert '<tr data-host="worker-1" class="live">' in html
    assert "r.example:5000: expires in 3 h 1 min" in html  # 3 h 2 min at the report, 30 s ago
    assert "(connection aws_ecr)" in html
    assert "6.0 MB of 8.0 MB" in html and "2 images, 10.0 MB" in html
    assert 'class="stale"' in html and "(stale)" in html
    assert "r.example:5000: expired 9m ago" in html  # 20 s after a report 10 min 5 s ago
    assert "<b>worker-2</b>" not in html and "&lt;b&gt;worker-2&lt;/b&gt;" in html
    assert "No worker host has reported yet" in render_hosts([], now)


def test_a_hosts_page_shows_its_pulls_gc_reasons_and_sweeps() -> None:
    now = time.time()
    record = {
        "host": "worker-1",
        "pulls": [
            {"at": now - 5, "image": "r/app:v1", "digest": "sha256:" + "a" * 64, "seconds": 2.0, "bytes": 8e6}
        ],
        "gc": [
            {
                "at": now - 60,
                "images_removed": 1,
                "bytes_reclaimed": 5e6,
                "reasons": ["r/old:v0: least recently used"],
            }
        ],
        "sweeps": [{"at": now - 120, "containers": ["0123456789ab (task ended: success)"]}],
    }
    html = render_detail(record, now)
    assert "r/app:v1" in html and "4.0 MB/s" in html and "sha256:aaaaaaaaaaaa" in html
    assert "r/old:v0: least recently used" in html
    assert "0123456789ab (task ended: success)" in html


def test_the_page_shows_each_ecs_clusters_newest_snapshot_with_its_tasks_and_families() -> None:
    now = time.time()

    def snap(at: float, running: list[dict[str, Any]], revisions: list[int]) -> dict[str, Any]:
        return {
            "key": "us-east-1/default", "cluster": "default", "region": "us-east-1", "at": at,
            "running": running, "running_count": len(running) + 3,
            "task_definitions": [{"family": "airdock-team-report", "revisions": revisions}],
            "family_count": 1,
        }  # fmt: skip

    task = {"task": "0123abcd", "definition": "airdock-team-report:7", "dag_id": "team",
            "task_id": "report", "status": "RUNNING", "started_at": now - 300}  # fmt: skip
    older = {"host": "worker-1", "reported_at": now, "ecs": [snap(now - 200, [], [6, 5])]}
    newer = {"host": "worker-2", "reported_at": now, "engine_version": None, "image_store_bytes": None,
             "ecs": [snap(now - 20, [task], [7, 6])]}  # fmt: skip
    html = render_hosts([older, newer], now)
    section = html[html.index('<h2 id="ecs">') :]
    assert section.count('class="ecs-cluster"') == 1, "one section per cluster: the newest snapshot"
    assert "as of 20s ago, from worker-2: 4 task(s) running" in section
    assert '<tr data-ecs-task="0123abcd">' in section and "team / report" in section
    assert "airdock-team-report:7" in section and "RUNNING" in section and "5m ago" in section
    assert "and 3 more" in section and "<td>7, 6</td>" in section
    assert "no engine reached" in html, "a host without an engine (ECS only) says so"
    assert "No airdock task has run on ECS yet" in render_hosts([{"host": "worker-1"}], now)


def test_the_readme_shows_the_page() -> None:
    """docs/container-hosts.png: a screenshot tests/cluster/test_page.py took in Chromium."""
    root = Path(__file__).resolve().parents[2]
    assert "](docs/container-hosts.png)" in (root / "README.md").read_text()
    assert (root / "docs" / "container-hosts.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
