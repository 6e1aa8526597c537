"""`make demo`: build the example job image, push it to the local ECR stack, run the example DAGs.

Runs under scripts/engine.sh (DOCKER_HOST points at a live engine). Steps, each announced:
stack up → build → create repository → push → drop the local copy → Airflow DB → `airflow dags test`
of the scraper DAG (tokens renewed between two scrapes) → the portable scraper DAG on the worker's
Docker engine, then unchanged on the local stack's ECS (`AIRFLOW__AIRDOCK__RUN_ON=ecs`).
Exits non-zero with one line when a step fails.
"""

from __future__ import annotations

import base64
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import boto3
import docker
from botocore.exceptions import ClientError

from airdock.local import settings as local_settings
from airdock.local.offline_images import build_image
from airdock.local.stack import LocalStack

ROOT = Path(__file__).resolve().parent.parent
STATE = ROOT / ".airdock"
DAG_ID = "airdock_example_scraper"
PORTABLE_DAG_ID = "airdock_example_portable_scraper"
EXECUTION_ROLE = "arn:aws:iam::123456789012:role/ecsTaskExecutionRole"  # any well-formed ARN locally
TOKEN_TTL = "20s"  # noqa: S105 - a lifetime; the DAG pauses 25 s between scrapes, so the 2nd renews
REPOSITORY = "airdock-demo/scraper"
AIRDOCK = str(ROOT / ".venv/bin/airdock")
AIRFLOW = str(ROOT / ".venv/bin/airflow")


# Lines of `airflow dags test` worth showing live: the pull, the job's output, errors, the outcome.
SHOWN = (
    "scraper:",
    "ECR token",
    "pulled ",
    "running ",
    "started ECS task",
    "registered ECS task definition",
    "sleep",
    "DagRun Finished",
    "[error",
    "ERROR",
)
_STRUCTLOG = re.compile(r"^\S+ \[(\w+)\s*\] (.*?)\s+\[[\w.]+\](?: loc=\S+)?(.*)$")


def summarise(line: str) -> str:
    """``<time> [info ] message [logger] loc=... k=v`` → ``message k=v`` (shortened)."""
    match = _STRUCTLOG.match(line.rstrip())
    text = f"{match.group(2)}{match.group(3)}" if match else line.rstrip()
    return text if len(text) <= 200 else text[:197] + "..."


def step(message: str) -> None:
    print(f"demo: {message}", flush=True)


def fail(message: str) -> None:
    print(f"demo: error: {message}", file=sys.stderr, flush=True)
    sys.exit(1)


def main() -> None:
    data_dir = STATE / "local"
    stack = LocalStack(data_dir)
    started_stack = not stack.status().running
    up = [AIRDOCK, "local", "up", "--data-dir", str(data_dir), "--token-ttl", TOKEN_TTL]
    if subprocess.run(up, check=False).returncode:
        fail("the local ECR stack did not start (see the line above)")
    try:
        run_demo(stack)
    finally:
        if started_stack:
            subprocess.run([AIRDOCK, "local", "down", "--data-dir", str(data_dir)], check=False)


def run_demo(stack: LocalStack) -> None:
    settings = stack.saved_settings()
    assert settings is not None
    ecr = boto3.client(
        "ecr",
        endpoint_url=settings.api_url,
        region_name=settings.region,
        aws_access_key_id=local_settings.LOCAL_ACCESS_KEY_ID,
        aws_secret_access_key=local_settings.LOCAL_SECRET_ACCESS_KEY,
    )
    client = docker.from_env(timeout=300)
    remote = f"{settings.registry_host}/{REPOSITORY}"

    step(f"building the example job image from examples/scraper ({REPOSITORY}:latest)")
    image = build_image(client, f"{REPOSITORY}:latest", context=ROOT / "examples/scraper")
    image.tag(remote, "latest")

    try:
        ecr.create_repository(repositoryName=REPOSITORY)
        step(f"created repository {REPOSITORY}")
    except ClientError as exc:
        if exc.response["Error"]["Code"] != "RepositoryAlreadyExistsException":
            fail(f"CreateRepository failed: {exc}")
        step(f"repository {REPOSITORY} exists")

    auth = ecr.get_authorization_token()["authorizationData"][0]
    user, _, password = base64.b64decode(auth["authorizationToken"]).decode().partition(":")
    step(f"pushing {remote}:latest (with a token from GetAuthorizationToken, valid {TOKEN_TTL})")
    digest = ""
    for event in client.api.push(
        remote, tag="latest", auth_config={"username": user, "password": password}, stream=True, decode=True
    ):
        if "error" in event:
            fail(f"push failed: {event['error']}")
        digest = event.get("aux", {}).get("Digest", digest)
    step(f"pushed {remote}@{digest}")
    client.images.remove(f"{remote}:latest")
    step("removed the local copy, so the tasks must pull it from the registry")

    airflow_home = STATE / "airflow"
    airflow_home.mkdir(parents=True, exist_ok=True)
    # What `eval "$(airdock local env)"` sets: the ECR endpoint, placeholder AWS keys, the registry
    # host airdock treats as ECR. No Docker connection, no password anywhere: the operator asks
    # GetAuthorizationToken itself and caches the token host-wide.
    env = dict(os.environ)
    env.update(settings.client_environment())
    env.update(
        {
            "AIRFLOW_HOME": str(airflow_home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "src/airdock/airflow/example_dags"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        }
    )
    step(f"preparing Airflow's metadata DB in {airflow_home} (first run takes ~30 s)")
    migrate = subprocess.run([AIRFLOW, "db", "migrate"], env=env, capture_output=True, text=True, check=False)
    if migrate.returncode:
        fail(f"airflow db migrate failed: {(migrate.stderr or migrate.stdout).strip().splitlines()[-1:]}")

    step(f"running `airflow dags test {DAG_ID}`: scrape, pause 25 s, scrape again")
    dags_test(DAG_ID, env, airflow_home)
    for target in ("docker", "ecs"):
        where = "the worker's Docker engine" if target == "docker" else "the local stack's ECS"
        step(f"running `airflow dags test {PORTABLE_DAG_ID}` with AIRFLOW__AIRDOCK__RUN_ON={target}: {where}")
        dags_test(
            PORTABLE_DAG_ID,
            {
                **env,
                "AIRFLOW__AIRDOCK__RUN_ON": target,
                "AIRFLOW__AIRDOCK__ECS_SUBNETS": "subnet-0demo",
                "AIRFLOW__AIRDOCK__ECS_EXECUTION_ROLE_ARN": EXECUTION_ROLE,
            },
            airflow_home,
        )


def dags_test(dag_id: str, env: dict[str, str], airflow_home: Path) -> None:
    """``airflow dags test dag_id``, its telling lines shown live; fail() unless it succeeds."""
    log_path = STATE / "demo" / f"dags-test-{dag_id}-{time.strftime('%Y%m%dT%H%M%S')}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    step(f"full output: {log_path}")
    state = "unknown"
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            [AIRFLOW, "dags", "test", dag_id],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        assert proc.stdout is not None
        for line in proc.stdout:
            log.write(line)
            if any(key in line for key in SHOWN):
                print(f"  | {summarise(line)}", flush=True)
            found = re.search(r"DagRun Finished: .*state=(\w+)", line)
            if found:
                state = found.group(1)
        proc.wait()
    task_logs = sorted(
        (airflow_home / "logs").glob(f"dag_id={dag_id}/**/*.log"), key=lambda p: p.stat().st_mtime
    )
    step(f"DAG run state: {state}")
    if task_logs:
        step(f"task log: {task_logs[-1]}")
    if state != "success" or proc.returncode:
        fail(f"the DAG run did not succeed (state {state}); see {log_path}")


if __name__ == "__main__":
    main()
