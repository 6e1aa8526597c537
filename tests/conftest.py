"""Session fixtures: the Docker engine, local stacks started through the real CLI, test images.

Integration fixtures fail (not skip) when the engine or the registry is missing: `make test`
provides both, and a suite that silently skips its integration half proves nothing.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest

from airdock.local import settings as local_settings
from airdock.local.settings import StackSettings

AIRDOCK = [sys.executable, "-m", "airdock.cli"]
AIRFLOW = str(Path(sys.executable).parent / "airflow")

# No test may probe the instance-metadata address looking for credentials: there is no AWS here.
os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")


@pytest.fixture(scope="session", autouse=True)
def airdock_state_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One state directory (usage store) for the session and every process it starts, never ~/.local.

    Tests that need a store of their own set AIRDOCK_STATE_DIR for the process they start.
    """
    path = tmp_path_factory.mktemp("airdock-state")
    os.environ["AIRDOCK_STATE_DIR"] = str(path)
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def airdock(
    *args: str, env: dict[str, str] | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run the real `airdock` command line."""
    result = subprocess.run(
        [*AIRDOCK, *args], capture_output=True, text=True, env=env, check=False, timeout=120
    )
    if check and result.returncode != 0:
        raise AssertionError(f"airdock {' '.join(args)} failed ({result.returncode}): {result.stderr}")
    return result


@dataclass
class StackHandle:
    """A running local stack, started with `airdock local up` on free ports."""

    settings: StackSettings

    @property
    def data_dir(self) -> Path:
        return self.settings.data_dir

    def ecr(self) -> Any:
        return boto3.client(
            "ecr",
            endpoint_url=self.settings.api_url,
            region_name=self.settings.region,
            aws_access_key_id=local_settings.LOCAL_ACCESS_KEY_ID,
            aws_secret_access_key=local_settings.LOCAL_SECRET_ACCESS_KEY,
        )

    def password(self) -> str:
        """A fresh registry password from GetAuthorizationToken."""
        data = self.ecr().get_authorization_token()["authorizationData"][0]
        user, _, password = base64.b64decode(data["authorizationToken"]).decode().partition(":")
        assert user == "AWS"
        return password

    def auth_config(self) -> dict[str, str]:
        return {"username": "AWS", "password": self.password()}

    def status(self) -> dict[str, Any]:
        return dict(json.loads(airdock("local", "status", "--json", "--data-dir", str(self.data_dir)).stdout))

    def ensure_repository(self, name: str) -> None:
        ecr = self.ecr()
        with contextlib.suppress(ecr.exceptions.RepositoryAlreadyExistsException):
            ecr.create_repository(repositoryName=name)

    def publish(self, docker_client: Any, image: str, repository: str, tag: str = "v1") -> str:
        """``image`` (of the engine) pushed as ``repository:tag`` (the repository made if need be),
        then its local tag removed, so that a task must pull it; the remote reference."""
        import docker.errors

        self.ensure_repository(repository)
        ref = f"{self.settings.registry_host}/{repository}:{tag}"
        docker_client.images.get(image).tag(ref)
        for event in docker_client.api.push(ref, auth_config=self.auth_config(), stream=True, decode=True):
            if "error" in event:
                raise docker.errors.APIError(event["error"])
        docker_client.images.remove(ref)
        return ref


def start_stack(data_dir: Path, *extra: str) -> StackHandle:
    ports = [str(free_port()) for _ in range(3)]
    airdock(
        "local", "up", "--data-dir", str(data_dir),
        "--gateway-port", ports[0], "--api-port", ports[1], "--registry-port", ports[2],
        *extra,
    )  # fmt: skip
    return StackHandle(StackSettings.load(data_dir.resolve()))


@contextlib.contextmanager
def stacks_denying(
    tmp_path_factory: pytest.TempPathFactory, actions: Sequence[str]
) -> Iterator[dict[str, StackHandle]]:
    """One stack per IAM action, each refusing that action as IAM would (`--deny-action`); stopped after."""
    stacks: dict[str, StackHandle] = {}
    try:
        for action in actions:
            stacks[action] = start_stack(tmp_path_factory.mktemp("deny"), "--deny-action", action)
        yield stacks
    finally:
        for handle in stacks.values():
            airdock("local", "down", "--data-dir", str(handle.data_dir), check=False)


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackHandle]:
    """The session's local stack, default token lifetime."""
    handle = start_stack(tmp_path_factory.mktemp("stack"))
    yield handle
    airdock("local", "down", "--data-dir", str(handle.data_dir), check=False)


@pytest.fixture(scope="session")
def docker_client() -> Any:
    """A client of the engine `make test` ensured (DOCKER_HOST)."""
    import docker

    try:
        client = docker.from_env(timeout=300)
        client.ping()
    except Exception as exc:
        pytest.fail(f"no Docker engine answers ({exc}); run the tests with `make test`, which starts one")
    return client


@pytest.fixture(scope="session")
def base_image(docker_client: Any) -> str:
    """A tiny local image (scratch + static busybox), built once per session."""
    from airdock.local.offline_images import import_image

    tag = "airdock-test/base:latest"
    import_image(docker_client, tag, {"etc/airdock-test": b"base\n"})
    return tag


def make_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(extra)
    return env


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


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The local cluster's tests run last: its session fixture stops it when the session ends, so
    its idle components never share the two cores with the other tiers' timing-sensitive tests."""
    items.sort(key=lambda item: "tests/cluster/" in item.nodeid)
