"""The stack's tokens with a real Docker engine: login, push, pull, expiry and ECR's errors."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker.errors
import pytest

from tests.conftest import StackHandle, airdock, start_stack

pytestmark = pytest.mark.integration

TTL_S = 4


@pytest.fixture(scope="module")
def short_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackHandle]:
    handle = start_stack(tmp_path_factory.mktemp("short"), "--token-ttl", f"{TTL_S}s")
    yield handle
    airdock("local", "down", "--data-dir", str(handle.data_dir), check=False)


def push(client: Any, ref: str, auth: dict[str, str] | None) -> str:
    """Push ``ref`` and return its digest; raise docker.errors.APIError with the daemon's message."""
    repository, _, tag = ref.rpartition(":")
    digest = ""
    for event in client.api.push(repository, tag=tag, auth_config=auth, stream=True, decode=True):
        if "error" in event:
            raise docker.errors.APIError(event["error"])
        digest = event.get("aux", {}).get("Digest", digest)
    return digest


def remove_local(client: Any, ref: str) -> None:
    with contextlib.suppress(docker.errors.ImageNotFound):
        client.images.remove(ref, force=True)


def test_token_works_for_login_push_and_pull(stack: StackHandle, docker_client: Any, base_image: str) -> None:
    stack.ensure_repository("flow/app")
    ref = f"{stack.settings.registry_host}/flow/app:v1"
    docker_client.images.get(base_image).tag(ref)
    auth = stack.auth_config()

    login = docker_client.login(registry=stack.settings.registry_host, reauth=True, **auth)
    assert login["Status"] == "Login Succeeded"

    digest = push(docker_client, ref, auth)
    assert digest.startswith("sha256:")
    remove_local(docker_client, ref)
    pulled = docker_client.images.pull(ref, auth_config=auth)
    assert f"{stack.settings.registry_host}/flow/app@{digest}" in pulled.attrs["RepoDigests"]

    details = stack.ecr().describe_images(repositoryName="flow/app")["imageDetails"]
    assert [(d["imageDigest"], d["imageTags"]) for d in details] == [(digest, ["v1"])]
    assert details[0]["imageSizeInBytes"] > 0


def test_the_same_token_is_refused_as_expired_after_the_ttl(
    short_stack: StackHandle, docker_client: Any, base_image: str
) -> None:
    short_stack.ensure_repository("flow/expiring")
    ref = f"{short_stack.settings.registry_host}/flow/expiring:v1"
    docker_client.images.get(base_image).tag(ref)
    auth = short_stack.auth_config()
    issued = time.monotonic()
    push(docker_client, ref, auth)
    remove_local(docker_client, ref)
    docker_client.images.pull(ref, auth_config=auth)
    assert time.monotonic() - issued < TTL_S, "the machine was too slow to use the token within its TTL"

    remove_local(docker_client, ref)
    time.sleep(max(0.0, TTL_S + 0.5 - (time.monotonic() - issued)))
    with pytest.raises(
        docker.errors.APIError, match=r"Your authorization token has expired\. Reauthenticate"
    ):
        docker_client.images.pull(ref, auth_config=auth)
    with pytest.raises(docker.errors.APIError):
        docker_client.login(registry=short_stack.settings.registry_host, reauth=True, **auth)

    fresh = short_stack.auth_config()
    docker_client.images.pull(ref, auth_config=fresh)


def test_pull_without_credentials_says_no_basic_auth(
    stack: StackHandle, docker_client: Any, base_image: str
) -> None:
    stack.ensure_repository("flow/noauth")
    ref = f"{stack.settings.registry_host}/flow/noauth:v1"
    docker_client.images.get(base_image).tag(ref)
    push(docker_client, ref, stack.auth_config())
    remove_local(docker_client, ref)
    with pytest.raises(docker.errors.APIError, match="no basic auth credentials"):
        docker_client.images.pull(ref, auth_config={"username": "", "password": ""})


def test_push_to_a_repository_never_created_fails_with_ecr_wording(
    stack: StackHandle, docker_client: Any, base_image: str
) -> None:
    ref = f"{stack.settings.registry_host}/never/created:v1"
    docker_client.images.get(base_image).tag(ref)
    with pytest.raises(docker.errors.APIError) as caught:
        push(docker_client, ref, stack.auth_config())
    assert (
        "The repository with name 'never/created' does not exist in the registry with id "
        f"'{stack.settings.account_id}'" in str(caught.value)
    )
    assert stack.ecr().describe_repositories()["repositories"] is not None


def test_docker_config_json_is_not_written(stack: StackHandle, docker_client: Any, tmp_path: Path) -> None:
    """The SDK's login keeps credentials in memory; nothing lands in ~/.docker/config.json."""
    config = Path.home() / ".docker" / "config.json"
    before = config.read_text() if config.exists() else None
    password = stack.password()
    docker_client.login(registry=stack.settings.registry_host, username="AWS", password=password, reauth=True)
    after = config.read_text() if config.exists() else None
    assert after == before
    assert after is None or password not in after
