"""The Container hosts page on the local cluster, seen as a user sees it: in headless Chromium
(Debian's ``chromium``, driven by Playwright), logged in with the UI's JWT cookie.

Prints one line: what was run, what the page showed, what was checked. The screenshot lands in
``.airdock/container-hosts.png`` (the README's, docs/container-hosts.png, is a copy of one).
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.cluster.conftest import ROOT, WORKERS, ClusterHandle, wait_until

pytestmark = pytest.mark.cluster

SCREENSHOT = ROOT / ".airdock" / "container-hosts.png"

PAGE_DAG = """
from datetime import datetime

from airflow.sdk import DAG

from airdock.airflow import ContainerOperator

IMAGE = "{registry}/airdock-demo/scraper:latest"

with DAG("airdock_cluster_page", schedule=None, start_date=datetime(2026, 1, 1), catchup=False):
    # a job on each worker's engine, then one on ECS from worker-1 (it runs while the page is looked at)
    scrapes = [
        ContainerOperator(
            task_id=f"scrape_{{worker.replace('-', '_')}}", image=IMAGE, run_on="docker", queue=worker,
            pull_policy="always",
        )
        for worker in ("worker-1", "worker-2")
    ]
    scrapes[0] >> ContainerOperator(
        task_id="report", image=IMAGE, run_on="ecs", queue="worker-1", entrypoint=["sh", "-c"],
        command=["echo report-started; sleep 25; echo report-done"],
    )
"""


def page(cluster: ClusterHandle, path: str = "") -> httpx.Response:
    return httpx.get(f"{cluster.api_url}/airdock/hosts{path}", headers=cluster.headers(), timeout=30)


def in_chromium(cluster: ClusterHandle, look: Callable[[Any], dict[str, Any]]) -> dict[str, Any]:
    """``look(page)`` on the hosts page opened in headless Chromium with the UI's login cookie."""
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium")
    assert chromium, "Debian's chromium is not installed (make test installs it)"
    token = cluster.headers()["Authorization"].removeprefix("Bearer ")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        try:
            context = browser.new_context(viewport={"width": 1400, "height": 900})
            context.add_cookies([{"name": "_token", "value": token, "url": cluster.api_url}])
            tab = context.new_page()
            response = tab.goto(f"{cluster.api_url}/airdock/hosts")
            assert response is not None and response.status == 200, response and response.status
            return look(tab)
        finally:
            browser.close()


def test_the_container_hosts_page_shows_both_workers_their_tokens_and_ecs_and_no_secret(
    cluster: ClusterHandle,
) -> None:
    """A DAG runs a job on each worker's engine, then one on ECS (from worker-1). While the ECS job
    runs, Chromium renders the page: a live row per worker with its engine, image store and
    tokens (registry, identity, expiry), the ECS cluster with the running job and its family's
    revisions; the host link leads to its pulls. When the run has ended the ECS job is no longer
    listed. No token issued to a worker is in any page, and an anonymous request is refused."""
    cluster.write_dag("airdock_cluster_page", PAGE_DAG.format(registry=cluster.registry_host))
    run_id = cluster.trigger("airdock_cluster_page")
    wait_until(lambda: "data-ecs-task=" in page(cluster).text, 120, "the page lists the running ECS job")
    wait_until(
        lambda: all(f'data-host="{w}" class="live"' in page(cluster).text for w in WORKERS),
        120,
        "both workers reported",
    )

    def look(tab: Any) -> dict[str, Any]:
        hosts = {
            row.get_attribute("data-host"): row.inner_text()
            for row in tab.locator("#hosts tr[data-host].live").all()
        }
        ecs_rows = [row.inner_text() for row in tab.locator("section.ecs-cluster tr[data-ecs-task]").all()]
        families = [row.get_attribute("data-family") for row in tab.locator("tr[data-family]").all()]
        bars = tab.locator("#hosts .bar").count()
        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        tab.screenshot(path=str(SCREENSHOT), full_page=True)
        html = tab.content()
        tab.locator(f'#hosts a[href="hosts/{WORKERS[1]}"]').first.click()
        tab.wait_for_load_state()
        detail = {"title": tab.title(), "pulls": tab.locator("#pulls + table").inner_text()}
        return {"hosts": hosts, "ecs": ecs_rows, "families": families, "bars": bars, "html": html, **detail}

    seen = in_chromium(cluster, look)
    state = cluster.wait("airdock_cluster_page", run_id, timeout=300)

    def without_ecs_jobs() -> str | None:
        text = page(cluster).text
        return text if "data-ecs-task=" not in text else None

    after = wait_until(without_ecs_jobs, 60, "the ended ECS job leaves the page")
    anonymous = httpx.get(f"{cluster.api_url}/airdock/hosts", timeout=30)
    details = "".join(page(cluster, f"/{worker}").text for worker in WORKERS)
    issued = [
        json.loads(path.read_text())["credentials"]["password"]
        for worker in WORKERS
        for path in (cluster.worker_dir(worker) / "cache").rglob("*.json")
        if not path.name.endswith(".failed.json")
    ]
    plugins = {plugin["name"]: plugin for plugin in cluster.api("GET", "/plugins")["plugins"]}
    print(
        f"\nContainer hosts page in Chromium: run {state}; live hosts {sorted(seen['hosts'])}, "
        f"ECS jobs running {len(seen['ecs'])}, families {seen['families']}; after the run "
        f"{after.count('data-ecs-task=')} listed; anonymous {anonymous.status_code}; "
        f"{len(issued)} issued tokens searched for; screenshot {SCREENSHOT.relative_to(ROOT)}"
    )
    assert state == "success", cluster.task_logs("airdock_cluster_page", run_id)[-4000:]
    assert sorted(seen["hosts"]) == sorted(WORKERS)
    for worker, row in seen["hosts"].items():
        assert re.search(r"\d+\.\d+\.\d+", row), f"{worker}: the engine's version ({row})"
        assert " MB" in row, f"{worker}: its image store ({row})"
    assert seen["bars"] == len(WORKERS) or "(no budget)" in seen["html"]
    tokens = [row for row in seen["hosts"].values() if cluster.registry_host in row]
    assert tokens and all(re.search(r"(expires in|expired) \d", row) for row in tokens), seen["hosts"]
    assert all("connection aws_default" in row for row in tokens), "the identity that fetched the token"
    assert len(seen["ecs"]) == 1 and "airdock_cluster_page / report" in seen["ecs"][0], seen["ecs"]
    assert "airdock-airdock_cluster_page-report" in seen["families"]
    assert seen["title"] == f"Container host {WORKERS[1]}" and "airdock-demo/scraper" in seen["pulls"]
    assert SCREENSHOT.stat().st_size > 10_000
    assert anonymous.status_code in (401, 403), anonymous.text[:500]
    assert issued and not any(token in seen["html"] + after + details for token in issued)
    views = plugins["airdock"]["external_views"]
    assert [(view["name"], view["href"]) for view in views] == [("Container hosts", "/airdock/hosts")]
