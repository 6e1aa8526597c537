"""Two runs of one DAG on the e2e deployment, shared by the tests here.

- What a task's container output looks like in Airflow's UI, in both shapes of ``[airdock]
  log_lines_per_record``: records of the lines that arrived together (the default, first run) and
  a record per line (``1``, second run). The task log page is opened in headless Chromium
  (Debian's ``chromium``, driven by Playwright); the screenshots land in ``.airdock/log-records.png``
  and ``.airdock/log-lines.png`` (the README's images are copies).
- What a task's start skips: the engine's API version is remembered per host (the first task of
  the first run asks the engine; the second task does not), a remembered version the engine
  refuses (planted before the second run) is forgotten, asked again and remembered, in one log
  line; the attach learns the container's TTY without inspecting it (the second task has one).
"""

from __future__ import annotations

import json
import re
import shutil
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from airdock.engine.api_version import CACHE_FILE
from tests.conftest import StackHandle
from tests.e2e.conftest import DagRun, Deployment, run_dag, write_dag
from tests.e2e.test_ecr_operator import publish_job_image

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
SHOTS = {"records": ROOT / ".airdock" / "log-records.png", "lines": ROOT / ".airdock" / "log-lines.png"}
DAG_ID = "airdock_e2e_log_view"

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
        report = EcrDockerOperator(task_id="report", image=IMAGE, command=["sh", "-c", SCRIPT])
        tty = EcrDockerOperator(
            task_id="tty", image=IMAGE, command=["sh", "-c", "echo tty-1; echo tty-2"], tty=True
        )
        report >> tty
"""

LINE = re.compile(r"batch (\d) row (\d): scored \d+")


@dataclass
class Run:
    run: DagRun
    versions: dict[str, Any]  # engine-api-versions.json after the run
    tty_started: float  # when the second task started (epoch seconds)
    xcom: dict[str, Any]


@dataclass
class Runs:
    records: Run  # log_lines_per_record 1000, a new host
    lines: Run  # log_lines_per_record 1, a planted version the engine refuses
    state: Path
    engine_version: str


@pytest.fixture(scope="module")
def runs(
    stack: StackHandle,
    docker_client: Any,
    base_image: str,
    deployment: Deployment,
    tmp_path_factory: pytest.TempPathFactory,
) -> Runs:
    publish_job_image(stack, docker_client, base_image)
    tmp = tmp_path_factory.mktemp("log-view")
    write_dag(tmp / "dags", "log_view", VIEW_DAG)
    state = tmp / "state"

    def run(per_record: str) -> Run:
        result = run_dag(
            deployment, tmp / "dags", DAG_ID, stack, tmp / "cache",
            AIRFLOW__AIRDOCK__LOG_LINES_PER_RECORD=per_record, AIRDOCK_STATE_DIR=str(state),
        )  # fmt: skip
        assert result.state == "success" and result.run_id, result.output[-3000:]
        with sqlite3.connect(deployment.home / "airflow.db") as db:
            (started,) = db.execute(
                "SELECT start_date FROM task_instance WHERE dag_id = ? AND run_id = ? AND task_id = 'tty'",
                (DAG_ID, result.run_id),
            ).fetchone()
            xcom = db.execute(
                "SELECT task_id, value FROM xcom WHERE dag_id = ? AND run_id = ? AND key = 'return_value'",
                (DAG_ID, result.run_id),
            ).fetchall()
        when = datetime.fromisoformat(str(started))
        when = when if when.tzinfo else when.replace(tzinfo=UTC)  # Airflow stores UTC
        versions = json.loads((state / CACHE_FILE).read_text())
        return Run(result, versions, when.timestamp(), {task: json.loads(value) for task, value in xcom})

    records = run("1000")
    (address,) = records.versions
    planted = {address: {"version": "1.99", "at": records.versions[address]["at"]}}
    (state / CACHE_FILE).write_text(json.dumps(planted))  # as if the engine had been downgraded
    lines = run("1")
    return Runs(records, lines, state, str(docker_client.version()["ApiVersion"]))


def shown_lines(text: str) -> list[tuple[str, bool]]:
    """Each container line the log view shows, and whether its row starts with a timestamp (a record
    of its own) rather than continuing the record above."""
    rows = []
    for row in text.splitlines():
        found = LINE.search(row)
        if found:
            rows.append((found.group(0), bool(re.match(r"\s*\[?\d{4}-\d\d-\d\d", row))))
    return rows


def open_logs(deployment: Deployment, pages: dict[str, str]) -> dict[str, str]:
    """Each run's task log page (shape → run id) as text once its last line shows; a full-page
    screenshot of each."""
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium")
    assert chromium, "Debian's chromium is not installed (make test installs it)"
    seen = {}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        try:
            context = browser.new_context(viewport={"width": 1300, "height": 900})
            context.add_cookies([{"name": "_token", "value": deployment.token(), "url": deployment.url}])
            tab = context.new_page()
            for shape, run_id in pages.items():
                tab.goto(f"{deployment.url}/dags/{DAG_ID}/runs/{run_id}/tasks/report")
                tab.get_by_text("batch 3 row 6", exact=False).first.wait_for(timeout=60_000)
                SHOTS[shape].parent.mkdir(parents=True, exist_ok=True)
                tab.screenshot(path=str(SHOTS[shape]), full_page=True)
                seen[shape] = str(tab.locator("body").inner_text())
        finally:
            browser.close()
    return seen


def test_both_log_shapes_as_the_ui_shows_them(runs: Runs, deployment: Deployment) -> None:
    pages = {"records": str(runs.records.run.run_id), "lines": str(runs.lines.run.run_id)}
    seen = {shape: shown_lines(text) for shape, text in open_logs(deployment, pages).items()}

    expected = [f"batch {b} row {i}: scored {b * 100 + i}" for b in (1, 2, 3) for i in range(1, 7)]
    for shape, rows in seen.items():
        assert [line for line, _ in rows] == expected, f"{shape}: every line, once, in order"
    # A record per burst: its first line carries the timestamp, the other five continue it.
    assert [starts for _, starts in seen["records"]] == [i == 1 for _ in (1, 2, 3) for i in range(1, 7)]
    # A record per line: every line has its own timestamp.
    assert all(starts for _, starts in seen["lines"])


def test_the_engine_api_version_is_remembered_and_a_refused_one_asked_again(runs: Runs) -> None:
    first, second = runs.records, runs.lines
    # A new host: the first task asked the engine (auto) and remembered its version, privately; the
    # second task used it (had it asked, the entry would be dated after that task started).
    ((address, entry),) = first.versions.items()
    assert entry["version"] == runs.engine_version
    assert entry["at"] < first.tty_started
    assert (runs.state / CACHE_FILE).stat().st_mode & 0o077 == 0
    # The planted version: the engine refused it, the task said so in one line and went on; what the
    # engine speaks is remembered again, before the second task started.
    refused = re.search(
        r"^.*refused the API version this host remembered.*$", second.run.task_log, re.MULTILINE
    )
    assert refused, second.run.task_log[-3000:]
    assert "(client version 1.99 is too new. Maximum supported API version is " in refused[0]
    assert "Client Error" not in refused[0], "the engine's words, not docker-py's wrapping"
    assert second.versions[address]["version"] == runs.engine_version
    assert first.tty_started < second.versions[address]["at"] < second.tty_started
    # A TTY container's output, read without inspecting the container first.
    for run in (first, second):
        assert "tty-1" in run.run.task_log and "tty-2" in run.run.task_log
        assert str(run.xcom["tty"]).strip() == "tty-2"
        assert run.xcom["report"] == "batch 3 row 6: scored 306"
