"""What a task's container output looks like in Airflow's UI, in both shapes of
``[airdock] log_lines_per_record``: records of the lines that arrived together (the default), and
a record per line (``1``). The task log page is opened in headless Chromium (Debian's
``chromium``, driven by Playwright) on the session's api-server; the screenshots land in
``.airdock/log-records.png`` and ``.airdock/log-lines.png`` (the README's images are copies)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import StackHandle
from tests.e2e.conftest import Deployment, run_dag, write_dag
from tests.e2e.test_ecr_operator import publish_job_image

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
SHOTS = {"records": ROOT / ".airdock" / "log-records.png", "lines": ROOT / ".airdock" / "log-lines.png"}

VIEW_DAG = """
    import os
    from datetime import datetime

    from airflow.sdk import DAG

    from airdock.airflow import EcrDockerOperator

    IMAGE = os.environ["AIRDOCK_LOCAL_REGISTRY"] + "/e2e/job:v1"
    # Three bursts of six lines, a second apart: each burst arrives together.
    SCRIPT = (
        "for b in 1 2 3; do for i in 1 2 3 4 5 6; do "
        "echo \\"batch $b row $i: scored $((b * 100 + i))\\"; done; sleep 1; done"
    )

    with DAG("airdock_e2e_log_view", schedule=None, start_date=datetime(2026, 1, 1), catchup=False):
        EcrDockerOperator(task_id="report", image=IMAGE, command=["sh", "-c", SCRIPT])
"""

LINE = re.compile(r"batch (\d) row (\d): scored \d+")


def shown_lines(text: str) -> list[tuple[str, bool]]:
    """Each container line the log view shows, and whether its row starts with a timestamp (a record
    of its own) rather than continuing the record above."""
    rows = []
    for row in text.splitlines():
        found = LINE.search(row)
        if found:
            rows.append((found.group(0), bool(re.match(r"\s*\[?\d{4}-\d\d-\d\d", row))))
    return rows


def open_log(deployment: Deployment, run_id: str, shot: Path) -> str:
    """The text of the task's log page once the last line shows; a full-page screenshot to ``shot``."""
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium")
    assert chromium, "Debian's chromium is not installed (make test installs it)"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        try:
            context = browser.new_context(viewport={"width": 1300, "height": 900})
            context.add_cookies([{"name": "_token", "value": deployment.token(), "url": deployment.url}])
            tab = context.new_page()
            tab.goto(f"{deployment.url}/dags/airdock_e2e_log_view/runs/{run_id}/tasks/report")
            tab.get_by_text("batch 3 row 6", exact=False).first.wait_for(timeout=60_000)
            shot.parent.mkdir(parents=True, exist_ok=True)
            tab.screenshot(path=str(shot), full_page=True)
            return str(tab.locator("body").inner_text())
        finally:
            browser.close()


def test_both_log_shapes_as_the_ui_shows_them(
    stack: StackHandle, docker_client: Any, base_image: str, deployment: Deployment, tmp_path: Path
) -> None:
    publish_job_image(stack, docker_client, base_image)
    dags = tmp_path / "dags"
    write_dag(dags, "log_view", VIEW_DAG)
    seen: dict[str, list[tuple[str, bool]]] = {}
    for shape, per_record, date in (("records", "1000", "2026-01-01"), ("lines", "1", "2026-01-02")):
        run = run_dag(
            deployment, dags, "airdock_e2e_log_view", stack, tmp_path / "cache", date,
            AIRFLOW__AIRDOCK__LOG_LINES_PER_RECORD=per_record,
        )  # fmt: skip
        assert run.state == "success" and run.run_id, run.output[-3000:]
        seen[shape] = shown_lines(open_log(deployment, run.run_id, SHOTS[shape]))

    expected = [f"batch {b} row {i}: scored {b * 100 + i}" for b in (1, 2, 3) for i in range(1, 7)]
    for shape, rows in seen.items():
        assert [line for line, _ in rows] == expected, f"{shape}: every line, once, in order"
    # A record per burst: its first line carries the timestamp, the other five continue it.
    assert [starts for _, starts in seen["records"]] == [i == 1 for _ in (1, 2, 3) for i in range(1, 7)]
    # A record per line: every line has its own timestamp.
    assert all(starts for _, starts in seen["lines"])
