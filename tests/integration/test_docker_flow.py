"""The stack's tokens with a real Docker engine: push, pull, expiry and ECR's errors.

Credentials go to the engine the way airdock sends them — per request, as ``auth_config`` of a
pull or push — never through ``docker login`` (which airdock never calls).
"""

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


def test_token_works_for_push_and_pull(stack: StackHandle, docker_client: Any, base_image: str) -> None:
    stack.ensure_repository("flow/app")
    ref = f"{stack.settings.registry_host}/flow/app:v1"
    docker_client.images.get(base_image).tag(ref)
    auth = stack.auth_config()

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
    docker_client.images.get(base_image).tag(ref)
    with pytest.raises(docker.errors.APIError, match=r"Your authorization token has expired"):
        push(docker_client, ref, auth)
    remove_local(docker_client, ref)

    fresh = short_stack.auth_config()
    docker_client.images.pull(ref, auth_config=fresh)


def test_pull_without_credentials_says_no_basic_auth(
    stack: StackHandle, docker_client: Any, base_image: str
) -> None:
    ref = stack.publish(docker_client, base_image, "flow/noauth")
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


def test_airdocks_pull_leaves_no_login_behind(
    stack: StackHandle, docker_client: Any, base_image: str
) -> None:
    """What airdock does — a pull with per-request credentials — stores them nowhere: no docker config
    file, and the engine itself does not remember them (a pull without credentials is refused)."""
    from airdock.auth.cache import CachedCredentials, TokenCache
    from airdock.auth.ecr import EcrTokenSource
    from airdock.engine.pull import PullPolicy, ensure_image
    from airdock.images import ecr_registry_for, parse_image_ref

    ref = stack.publish(docker_client, base_image, "flow/nologin")
    config = Path.home() / ".docker" / "config.json"
    before = config.read_text() if config.exists() else None
    registry = ecr_registry_for(parse_image_ref(ref), [stack.settings.registry_host])
    assert registry is not None
    source = EcrTokenSource(stack.ecr())
    credentials = CachedCredentials(
        TokenCache(Path(docker_client.info()["DockerRootDir"]).parent / "nologin-cache"),
        registry.host,
        lambda: source.fetch(registry),
    )
    assert ensure_image(docker_client.api, parse_image_ref(ref), PullPolicy.ALWAYS, credentials).pulled
    after = config.read_text() if config.exists() else None
    assert after == before
    assert after is None or credentials.get().password not in after
    remove_local(docker_client, ref)
    with pytest.raises(docker.errors.APIError, match="no basic auth credentials"):
        docker_client.images.pull(ref)
