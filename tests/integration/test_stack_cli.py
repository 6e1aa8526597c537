"""`airdock local up | down | status | env` against real processes."""

from __future__ import annotations

import json
import os
import shlex
import socket
from pathlib import Path

import httpx
import pytest

from tests.conftest import StackHandle, airdock, free_port, make_env, start_stack

pytestmark = pytest.mark.integration


def test_up_is_idempotent_and_status_reports_what_runs_where(stack: StackHandle) -> None:
    again = airdock("local", "up", "--data-dir", str(stack.data_dir))
    assert "already running" in again.stderr
    status = stack.status()
    assert status["running"] is True
    assert status["gateway"]["url"] == stack.settings.gateway_url
    assert status["api"]["url"] == stack.settings.api_url
    assert status["registry"]["alive"] is True
    assert isinstance(status["gateway"]["pid"], int)
    assert status["registry"]["pid"] != status["gateway"]["pid"]


def test_status_counts_get_authorization_token_calls(stack: StackHandle) -> None:
    before = stack.status()["get_authorization_token_calls"]
    for _ in range(3):
        stack.password()
    assert stack.status()["get_authorization_token_calls"] == before + 3


def test_env_prints_posix_exports(stack: StackHandle) -> None:
    out = airdock("local", "env", "--data-dir", str(stack.data_dir)).stdout
    values = {}
    for line in out.strip().splitlines():
        keyword, assignment = line.split(" ", 1)
        assert keyword == "export"
        name, _, value = assignment.partition("=")
        values[name] = shlex.split(value)[0]
    host = stack.settings.registry_host
    assert values == {
        "AWS_ENDPOINT_URL_ECR": stack.settings.api_url,
        "AWS_ENDPOINT_URL_ECS": stack.settings.api_url,
        "AWS_ENDPOINT_URL_LOGS": stack.settings.api_url,
        "AWS_ENDPOINT_URL_CLOUDWATCH_LOGS": stack.settings.api_url,
        "AWS_ACCESS_KEY_ID": values["AWS_ACCESS_KEY_ID"],
        "AWS_SECRET_ACCESS_KEY": values["AWS_SECRET_ACCESS_KEY"],
        "AWS_DEFAULT_REGION": "us-east-1",
        "AIRDOCK_LOCAL_REGISTRY": host,
        "AIRFLOW__AIRDOCK__ECR_REGISTRIES": host,
    }


def test_boto3_works_unmodified_through_env_endpoint(stack: StackHandle) -> None:
    """`eval "$(airdock local env)"` is all boto3 needs for ECR, ECS and CloudWatch Logs: no endpoint_url."""
    out = airdock("local", "env", "--data-dir", str(stack.data_dir)).stdout
    probe = (
        "import boto3; "
        'print(boto3.client("ecr").describe_repositories()["repositories"]); '
        'print(boto3.client("ecs").list_clusters()["clusterArns"]); '
        'print(boto3.client("logs").describe_log_groups()["logGroups"])'
    )
    script = out + f"\npython -c '{probe}'"
    import subprocess
    import sys

    env = make_env(PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    for key in ("AWS_PROFILE", "AWS_CONFIG_FILE"):
        env.pop(key, None)
    result = subprocess.run(["sh", "-c", script], capture_output=True, text=True, env=env, check=False)
    assert result.returncode == 0, result.stderr
    repositories, clusters, groups = result.stdout.splitlines()
    assert repositories.startswith("[") and groups.startswith("[")
    assert clusters == "['arn:aws:ecs:us-east-1:123456789012:cluster/default']"


def test_up_refuses_changed_settings_while_running(stack: StackHandle) -> None:
    result = airdock("local", "up", "--data-dir", str(stack.data_dir), "--token-ttl", "5s", check=False)
    assert result.returncode == 1
    assert "already runs with other settings" in result.stderr
    assert "airdock local down" in result.stderr
    assert stack.status()["token_ttl_seconds"] == 43200


def test_up_fails_in_one_line_when_a_port_is_taken(tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        taken = holder.getsockname()[1]
        result = airdock(
            "local", "up", "--data-dir", str(tmp_path),
            "--gateway-port", str(taken), "--api-port", str(free_port()), "--registry-port", str(free_port()),
            check=False,
        )  # fmt: skip
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert f"port {taken} on 127.0.0.1 (for the gateway) is in use" in lines[0]
    assert "--gateway-port" in lines[0]
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "pids.json").exists()
    assert not (tmp_path / "stack.json").exists()


def test_up_fails_in_one_line_without_the_registry_binary(tmp_path: Path) -> None:
    env = make_env(AIRDOCK_REGISTRY_BIN="/nonexistent/docker-registry")
    result = airdock(
        "local", "up", "--data-dir", str(tmp_path), "--gateway-port", str(free_port()), env=env, check=False
    )
    assert result.returncode == 1
    assert len(result.stderr.strip().splitlines()) == 1
    assert "not found: install Debian's registry (apt-get install docker-registry)" in result.stderr
    assert not (tmp_path / "pids.json").exists()


def test_bad_token_ttl_is_refused_before_anything_starts(tmp_path: Path) -> None:
    result = airdock("local", "up", "--data-dir", str(tmp_path), "--token-ttl", "soon", check=False)
    assert result.returncode == 1
    assert "invalid duration 'soon'" in result.stderr
    assert not tmp_path.joinpath("stack.json").exists()


def test_status_and_env_without_a_stack(tmp_path: Path) -> None:
    status = airdock("local", "status", "--json", "--data-dir", str(tmp_path), check=False)
    assert json.loads(status.stdout)["running"] is False
    env = airdock("local", "env", "--data-dir", str(tmp_path), check=False)
    assert env.returncode == 1
    assert "run `airdock local up` first" in env.stderr


def test_down_then_up_keeps_repositories_tokens_and_counts(tmp_path: Path) -> None:
    handle = start_stack(tmp_path / "persist", "--token-ttl", "1h")
    try:
        handle.ecr().create_repository(repositoryName="kept/repo", imageTagMutability="IMMUTABLE")
        password = handle.password()
        calls = handle.status()["get_authorization_token_calls"]
        first = airdock("local", "down", "--data-dir", str(handle.data_dir))
        assert "stopped" in first.stderr
        again = airdock("local", "down", "--data-dir", str(handle.data_dir))
        assert "not running" in again.stderr
        assert handle.status()["running"] is False
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{handle.settings.gateway_url}/v2/", timeout=2)

        airdock("local", "up", "--data-dir", str(handle.data_dir))  # remembered ports and TTL
        assert handle.status()["token_ttl_seconds"] == 3600
        repos = handle.ecr().describe_repositories()["repositories"]
        assert [(r["repositoryName"], r["imageTagMutability"]) for r in repos] == [("kept/repo", "IMMUTABLE")]
        reply = httpx.get(f"{handle.settings.gateway_url}/v2/", auth=("AWS", password), timeout=5)
        assert reply.status_code == 200, "a token issued before the restart stays valid until it expires"
        assert handle.status()["get_authorization_token_calls"] == calls
    finally:
        airdock("local", "down", "--data-dir", str(handle.data_dir), check=False)
