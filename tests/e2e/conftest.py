"""E2E fixtures: an Airflow home with a migrated SQLite DB, and `airflow dags test` runs."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

from airdock.local import settings as local_settings
from tests.conftest import StackHandle, make_env

AIRFLOW = str(Path(sys.executable).parent / "airflow")
_STATE = re.compile(r"DagRun Finished: .*state=(\w+)")


@pytest.fixture(scope="session")
def airflow_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An Airflow home with a freshly migrated SQLite DB (`airflow db migrate`, once per session).

    Tests that need a pristine database copy its ``airflow.db``; never run DAGs in it.
    """
    home = tmp_path_factory.mktemp("airflow-template")
    result = subprocess.run(
        [AIRFLOW, "db", "migrate"],
        env=make_env(AIRFLOW_HOME=str(home)),
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert (home / "airflow.db").exists()
    return home


@pytest.fixture(scope="session")
def airflow_home(airflow_template: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The Airflow home the session's DAG runs share (a copy of the template)."""
    home = tmp_path_factory.mktemp("airflow-home")
    shutil.copy2(airflow_template / "airflow.db", home / "airflow.db")
    return home


@dataclass
class DagRun:
    state: str | None
    output: str
    returncode: int


def aws_connection_env(stack: StackHandle) -> dict[str, str]:
    """Only an Airflow AWS connection: no AWS_* variables, so nothing else can supply credentials."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env["AIRFLOW_CONN_AWS_DEFAULT"] = json.dumps(
        {
            "conn_type": "aws",
            "login": local_settings.LOCAL_ACCESS_KEY_ID,
            "password": local_settings.LOCAL_SECRET_ACCESS_KEY,
            "extra": {"region_name": stack.settings.region, "endpoint_url": stack.settings.api_url},
        }
    )
    env["AWS_SHARED_CREDENTIALS_FILE"] = "/nonexistent"
    env["AWS_CONFIG_FILE"] = "/nonexistent"
    env["AWS_EC2_METADATA_DISABLED"] = "true"
    return env


def dag_env(
    airflow_home: Path, dags: Path, stack: StackHandle, cache_home: Path, **extra_env: str
) -> dict[str, str]:
    """The environment of an `airflow dags test` run against ``stack`` with only an AWS connection."""
    env = aws_connection_env(stack)
    env.update(
        AIRFLOW_HOME=str(airflow_home),
        AIRFLOW__CORE__DAGS_FOLDER=str(dags),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__AIRDOCK__ECR_REGISTRIES=stack.settings.registry_host,
        AIRDOCK_LOCAL_REGISTRY=stack.settings.registry_host,
        XDG_CACHE_HOME=str(cache_home),
        **extra_env,
    )
    return env


def run_dag(
    airflow_home: Path,
    dags: Path,
    dag_id: str,
    stack: StackHandle,
    cache_home: Path,
    logical_date: str | None = None,
    **extra_env: str,
) -> DagRun:
    result = subprocess.run(
        [AIRFLOW, "dags", "test", dag_id, *([logical_date] if logical_date else [])],
        env=dag_env(airflow_home, dags, stack, cache_home, **extra_env),
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    output = result.stdout + result.stderr
    match = _STATE.search(output)
    return DagRun(match.group(1) if match else None, output, result.returncode)


def write_dag(folder: Path, name: str, body: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.py"
    path.write_text(textwrap.dedent(body))
    return path
