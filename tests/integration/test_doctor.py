"""`airdock doctor` against the real engine and the local ECR stack, through the real command line.

Every run gets a hermetic environment: the stack's variables (`client_environment()`), the test
engine's DOCKER_HOST, and a HOME of its own, so no ~/.aws, ~/.docker or ~/airflow of the machine
leaks in (and Airflow is imported only by the tests that point AIRFLOW_HOME somewhere).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from airdock.local import settings as local_settings
from tests.conftest import StackHandle, airdock, free_port
from tests.integration.test_docker_flow import push

pytestmark = pytest.mark.integration

AIRFLOW = str(Path(sys.executable).parent / "airflow")
REPO = "doctor/app"
TAG = "v1"


@pytest.fixture(scope="module")
def pushed(stack: StackHandle, docker_client: Any, base_image: str) -> str:
    """An image pushed into the stack: <host>/doctor/app:v1; returns its reference."""
    stack.ensure_repository(REPO)
    ref = f"{stack.settings.registry_host}/{REPO}:{TAG}"
    docker_client.images.get(base_image).tag(ref)
    assert push(docker_client, ref, stack.auth_config()).startswith("sha256:")
    return ref


@pytest.fixture
def env(stack: StackHandle, tmp_path: Path) -> dict[str, str]:
    """The environment of a working local set-up, and nothing else of the machine's AWS or Airflow."""
    home = tmp_path / "home"
    home.mkdir()
    base = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AWS_", "AIRFLOW_", "AIRFLOW__", "AIRDOCK_")) and k != "HOME"
    }
    return {
        **base,
        **stack.settings.client_environment(),
        "HOME": str(home),
        "AWS_EC2_METADATA_DISABLED": "true",  # no instance-role probing on a machine without one
    }


def doctor(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return airdock("doctor", *args, env=env, check=False)


def line(output: str, check: str) -> str:
    """The line of ``check`` (``✓ name: ...`` or ``✗ name: ...``)."""
    found = [text for text in output.splitlines() if text[2:].startswith(f"{check}:")]
    assert len(found) == 1, f"no single line for {check!r} in:\n{output}"
    return found[0]


def fix_of(output: str, check: str) -> str:
    lines = output.splitlines()
    index = lines.index(line(output, check))
    assert lines[index + 1].startswith("    fix: "), f"no fix after {check!r} in:\n{output}"
    return lines[index + 1].removeprefix("    fix: ")


def test_all_checks_pass_on_a_working_local_setup(pushed: str, env: dict[str, str]) -> None:
    result = doctor(env, "--image", pushed)
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    assert out.splitlines()[-1] == "all 8 checks passed"
    for check in (
        "docker engine",
        "disk space",
        "aws credentials",
        "ecr token",
        "registry login",
        "repository",
        "image tag",
        "airflow connection",
    ):
        assert line(out, check).startswith("✓ ")
    assert line(out, "docker engine").startswith("✓ docker engine: Docker ")
    # whose credentials: the key id masked; the local stack serves no STS and AWS's own is not asked
    assert "access key AKID…OCAL from env (identity not asked: ECR is served at" in line(
        out, "aws credentials"
    )
    assert f"'{REPO}' exists in " in line(out, "repository")
    assert f"tag {TAG} of '{REPO}' resolves to sha256:" in line(out, "image tag")
    assert local_settings.LOCAL_SECRET_ACCESS_KEY not in out + result.stderr
    assert result.stderr == ""


def test_json_for_scripts(pushed: str, env: dict[str, str], stack: StackHandle) -> None:
    result = doctor(env, "--image", pushed, "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    data = json.loads(result.stdout)
    assert data["ok"] is True and data["failed"] == []
    assert data["registry"] == stack.settings.registry_host
    assert [c["name"] for c in data["checks"]][:4] == [
        "docker engine",
        "disk space",
        "aws credentials",
        "ecr token",
    ]
    assert "password" not in result.stdout.lower()


def test_without_an_image_the_default_registry_is_checked(env: dict[str, str], stack: StackHandle) -> None:
    result = doctor(env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"http://{stack.settings.registry_host}/v2/ accepted the token" in line(
        result.stdout, "registry login"
    )
    assert result.stdout.splitlines()[-1] == "all 6 checks passed"


def test_unreachable_ecr_endpoint(pushed: str, env: dict[str, str]) -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    started = time.monotonic()
    result = doctor({**env, "AWS_ENDPOINT_URL_ECR": closed}, "--image", pushed)
    out = result.stdout
    assert result.returncode == 1, out
    assert line(out, "ecr token").startswith("✗ ecr token: GetAuthorizationToken failed: ECR API unreachable")
    assert closed in fix_of(out, "ecr token") and "network path" in fix_of(out, "ecr token")
    assert line(out, "registry login").startswith("✗ registry login: skipped: no token")
    assert line(out, "docker engine").startswith("✓ ")
    assert out.splitlines()[-1].startswith(
        "4 of 8 checks failed: ecr token, registry login, repository, image tag"
    )
    assert time.monotonic() - started < 60


@pytest.mark.parametrize(
    ("stale", "why"), [(False, "no socket there"), (True, "connection refused (nothing listens)")]
)
def test_stopped_docker_engine(
    pushed: str, env: dict[str, str], tmp_path: Path, stale: bool, why: str
) -> None:
    nobody = tmp_path / "nobody.sock"  # a socket path nobody serves
    if stale:  # what a stopped daemon leaves behind: the socket file, with no listener
        with socket.socket(socket.AF_UNIX) as sock:
            sock.bind(str(nobody))
    result = doctor({**env, "DOCKER_HOST": f"unix://{nobody}"}, "--image", pushed)
    out = result.stdout
    assert result.returncode == 1, out
    assert line(out, "docker engine") == f"✗ docker engine: no answer at unix://{nobody}: {why}"
    assert "DOCKER_HOST" in fix_of(out, "docker engine")
    assert line(out, "disk space").startswith("✗ disk space: skipped")
    # the AWS and registry checks still ran, and passed
    for check in ("aws credentials", "ecr token", "registry login", "repository", "image tag"):
        assert line(out, check).startswith("✓ "), out
    assert out.splitlines()[-1] == "2 of 8 checks failed: docker engine, disk space"


def test_missing_repository(env: dict[str, str], stack: StackHandle) -> None:
    result = doctor(env, "--image", f"{stack.settings.registry_host}/no/such:v1")
    out = result.stdout
    assert result.returncode == 1, out
    assert line(out, "repository").startswith("✗ repository: 'no/such' does not exist in ")
    assert "The repository with name 'no/such' does not exist" in line(out, "repository")
    assert "create the repository: `aws ecr create-repository --repository-name no/such`" in fix_of(
        out, "repository"
    )
    assert line(out, "image tag").startswith("✗ image tag: skipped")
    assert line(out, "registry login").startswith("✓ ")


def test_missing_tag(pushed: str, env: dict[str, str]) -> None:
    missing = pushed.rsplit(":", 1)[0] + ":v9"
    result = doctor(env, "--image", missing)
    out = result.stdout
    assert result.returncode == 1, out
    assert line(out, "repository").startswith("✓ ")
    assert line(out, "image tag").startswith(f"✗ image tag: tag v9 not found in '{REPO}'")
    assert fix_of(out, "image tag").startswith(f"push the tag: `docker push {missing}`")
    assert out.splitlines()[-1] == "1 of 8 checks failed: image tag"


def test_no_aws_credentials(pushed: str, env: dict[str, str]) -> None:
    bare = {k: v for k, v in env.items() if k not in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")}
    result = doctor(bare, "--image", pushed)
    out = result.stdout
    assert result.returncode == 1, out
    assert line(out, "aws credentials").startswith("✗ aws credentials: none found")
    assert "give the worker an IAM role" in fix_of(out, "aws credentials")
    assert line(out, "ecr token").startswith("✗ ecr token: GetAuthorizationToken failed: no AWS credentials")
    assert "give the worker an IAM role" in fix_of(out, "ecr token")
    assert line(out, "docker engine").startswith("✓ ")


def test_disk_below_the_minimum(env: dict[str, str]) -> None:
    result = doctor(env, "--min-free", "100%")
    out = result.stdout
    assert result.returncode == 1, out
    assert line(out, "disk space").startswith("✗ disk space: ")
    assert "(minimum 100%)" in line(out, "disk space")
    assert "airdock gc" in fix_of(out, "disk space")


@pytest.fixture(scope="module")
def sts_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """moto's server on 127.0.0.1, used for STS only: the local stack serves ECR but not STS, and the
    project's rule is moto only for AWS APIs the stack does not serve."""
    port = free_port()
    log = (tmp_path_factory.mktemp("moto") / "moto.log").open("w")
    process = subprocess.Popen(
        [str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"{url}/moto-api/", timeout=1)
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise AssertionError("moto_server did not start") from None
                time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)
        log.close()


def test_identity_is_shown_when_sts_answers(pushed: str, env: dict[str, str], sts_endpoint: str) -> None:
    result = doctor({**env, "AWS_ENDPOINT_URL_STS": sts_endpoint}, "--image", pushed)
    assert result.returncode == 0, result.stdout
    assert line(result.stdout, "aws credentials") == (
        "✓ aws credentials: access key AKID…OCAL from env: arn:aws:sts::123456789012:user/moto"
    )


def test_airflow_connection_from_the_environment(env: dict[str, str], tmp_path: Path) -> None:
    home = tmp_path / "airflow"
    home.mkdir()
    with_conn = {**env, "AIRFLOW_HOME": str(home), "AIRFLOW_CONN_AWS_DEFAULT": '{"conn_type": "aws"}'}
    result = doctor(with_conn, "--aws-conn-id", "aws_default")
    assert result.returncode == 0, result.stdout + result.stderr
    assert line(result.stdout, "airflow connection").startswith(
        "✓ airflow connection: 'aws_default' exists (conn_type aws) in the Airflow at "
    )


@pytest.fixture(scope="module")
def migrated_airflow_home(airflow_template: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("doctor-airflow")
    shutil.copy2(airflow_template / "airflow.db", home / "airflow.db")
    return home


def test_missing_airflow_connection(env: dict[str, str], migrated_airflow_home: Path) -> None:
    inside = {**env, "AIRFLOW_HOME": str(migrated_airflow_home)}
    named = doctor(inside, "--aws-conn-id", "missing_conn")
    out = named.stdout
    assert named.returncode == 1, out + named.stderr
    assert line(out, "airflow connection") == (
        f"✗ airflow connection: 'missing_conn' does not exist in the Airflow at {migrated_airflow_home}"
    )
    assert fix_of(out, "airflow connection").startswith(
        "create it: `airflow connections add missing_conn --conn-type aws`"
    )
    assert out.splitlines()[-1] == "1 of 6 checks failed: airflow connection"
    # not named: EcrDockerOperator falls back to the default chain, so that is no failure
    default = doctor(inside)
    assert default.returncode == 0, default.stdout
    assert "not set in the Airflow at" in line(default.stdout, "airflow connection")


def test_help_has_examples() -> None:
    text = airdock("doctor", "--help").stdout
    assert "Examples:" in text and "airdock doctor --image" in text
    assert "[airdock]" in text  # not eaten as rich markup
    for flag in ("--image", "--registry", "--aws-conn-id", "--min-free", "--json"):
        assert flag in text


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ("--image", "Team/App:v1"),
            "invalid image reference 'Team/App:v1': repository names must be lowercase",
        ),
        (("--min-free", "lots"), "invalid --min-free 'lots': use a size (2GB) or a percentage (10%)"),
        (("--image", "docker.io/library/busybox:1"), "is not in an Amazon ECR registry"),
    ],
)
def test_bad_input_is_one_line(env: dict[str, str], args: tuple[str, ...], message: str) -> None:
    result = doctor(env, *args)
    assert result.returncode == 1
    assert result.stdout == ""
    assert len(result.stderr.strip().splitlines()) == 1
    assert message in result.stderr
