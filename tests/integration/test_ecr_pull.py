"""Pulling private images through the local stack with airdock's core: credentials, retries, failures.

Everything here is real: the Docker engine, the registry, the gateway, the ECR API, the token
cache on disk. The local stack's `--deny-action` stands in for an IAM policy that lacks an action.
"""

from __future__ import annotations

import base64
import contextlib
import multiprocessing
import os
import re
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from airdock.auth.cache import CachedCredentials, TokenCache
from airdock.auth.credentials import RegistryCredentials
from airdock.auth.ecr import EcrTokenSource
from airdock.engine.pull import PullPolicy, ensure_image
from airdock.errors import AccessDeniedError, ConfigError, ImagePullError, RegistryAuthError
from airdock.images import ecr_registry_for, parse_image_ref
from airdock.local.offline_images import import_image
from tests.conftest import StackHandle, free_port, stacks_denying
from tests.integration.test_docker_flow import push, remove_local

pytestmark = pytest.mark.integration


def provider(stack: StackHandle, cache_dir: Path, host: str | None = None) -> CachedCredentials:
    registry = ecr_registry_for(
        parse_image_ref(f"{host or stack.settings.registry_host}/x"), [host or stack.settings.registry_host]
    )
    assert registry is not None
    source = EcrTokenSource(stack.ecr())
    return CachedCredentials(TokenCache(cache_dir), registry.host, lambda: source.fetch(registry))


def token_calls(stack: StackHandle) -> int:
    return int(stack.status()["get_authorization_token_calls"])


@pytest.fixture(scope="module")
def pushed(stack: StackHandle, docker_client: Any, base_image: str) -> str:
    """`<gateway>/pull/app:v1` pushed to the session stack; returns the reference."""
    ref = stack.publish(docker_client, base_image, "pull/app")
    return ref


def test_pull_with_cached_token_and_policies(
    stack: StackHandle, docker_client: Any, pushed: str, tmp_path: Path
) -> None:
    creds = provider(stack, tmp_path / "cache")
    ref = parse_image_ref(pushed)
    remove_local(docker_client, pushed)
    before = token_calls(stack)

    first = ensure_image(docker_client.api, ref, PullPolicy.IF_NOT_PRESENT, creds)
    assert first.pulled and first.digest and first.digest.startswith("sha256:")
    again = ensure_image(docker_client.api, ref, PullPolicy.IF_NOT_PRESENT, creds)
    assert not again.pulled and again.digest == first.digest
    always = ensure_image(docker_client.api, ref, PullPolicy.ALWAYS, creds)
    assert always.pulled and always.digest == first.digest
    assert token_calls(stack) == before + 1, "the second pull used the cached token"
    registry_digest = stack.ecr().describe_images(repositoryName="pull/app")["imageDetails"][0]["imageDigest"]
    assert first.digest == registry_digest

    entry = creds.cache.path_for(creds.key)
    assert stat.S_IMODE(entry.stat().st_mode) == 0o600


def test_never_policy_refuses_a_missing_image(
    stack: StackHandle, docker_client: Any, pushed: str, tmp_path: Path
) -> None:
    remove_local(docker_client, pushed)
    with pytest.raises(
        ImagePullError, match=r"is not on this worker and pull_policy='never' forbids pulling it"
    ):
        ensure_image(docker_client.api, parse_image_ref(pushed), PullPolicy.NEVER, provider(stack, tmp_path))


@pytest.mark.parametrize("refusal", ["expired (403)", "malformed (400)"])
def test_a_token_the_registry_refuses_is_renewed(
    stack: StackHandle, docker_client: Any, pushed: str, tmp_path: Path, short_ttl_password: str, refusal: str
) -> None:
    """The cache believes its token is valid; the registry refuses it — expired (ECR: 403 DENIED) or
    malformed (ECR: 400 DENIED): refresh once, retry, succeed."""
    import httpx

    password = short_ttl_password if refusal.startswith("expired") else "never-issued-by-this-registry"
    status = httpx.get(f"{stack.settings.gateway_url}/v2/", auth=("AWS", password), timeout=10).status_code
    assert status == int(refusal[-4:-1]), "the gateway answers as ECR does"
    creds = provider(stack, tmp_path / "cache")
    stale = RegistryCredentials(stack.settings.registry_host, "AWS", password, time.time() + 3600)
    creds.cache.get(creds.key, lambda: stale)  # seed the cache with the stale token
    remove_local(docker_client, pushed)
    before = token_calls(stack)
    pulled = ensure_image(docker_client.api, parse_image_ref(pushed), PullPolicy.IF_NOT_PRESENT, creds)
    assert pulled.pulled
    assert token_calls(stack) == before + 1
    renewed = creds.cache.peek(creds.key)
    assert renewed is not None and renewed.password != password


@pytest.fixture
def short_ttl_password(stack: StackHandle) -> str:
    """A password the session stack has issued and that is expired at the registry.

    The session stack's tokens live 12 h, so a second stack with a 1 s TTL sharing nothing would not
    do; instead the stack's own store issues one with a 0.2 s lifetime (as GetAuthorizationToken would
    with that TTL) and we wait for it to lapse.
    """
    from airdock.local.store import Store

    token = Store(stack.settings.store_path).issue_token(0.2)
    time.sleep(0.5)
    return token.password


def test_missing_repository(stack: StackHandle, docker_client: Any, tmp_path: Path) -> None:
    ref = parse_image_ref(f"{stack.settings.registry_host}/no/such-repo:v1")
    with pytest.raises(ImagePullError) as caught:
        ensure_image(docker_client.api, ref, PullPolicy.ALWAYS, provider(stack, tmp_path))
    assert str(caught.value) == (
        f"repository 'no/such-repo' does not exist in registry {stack.settings.registry_host}: "
        "create it and push the image, or fix the image name"
    )


def test_missing_tag(stack: StackHandle, docker_client: Any, pushed: str, tmp_path: Path) -> None:
    ref = parse_image_ref(pushed.replace(":v1", ":v404"))
    with pytest.raises(ImagePullError) as caught:
        ensure_image(docker_client.api, ref, PullPolicy.ALWAYS, provider(stack, tmp_path))
    assert str(caught.value) == (
        f"tag 'v404' does not exist in repository 'pull/app' of registry {stack.settings.registry_host}: "
        "push it or fix the image reference"
    )


def test_malformed_reference() -> None:
    with pytest.raises(ConfigError, match=r"^invalid image reference 'Team/App:v1': "):
        parse_image_ref("Team/App:v1")


@pytest.fixture(scope="module")
def denying_stacks(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, StackHandle]]:
    """Stacks whose simulated IAM refuses one action each."""
    actions = ("ecr:GetAuthorizationToken", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer")
    with stacks_denying(tmp_path_factory, actions) as stacks:
        yield stacks


@pytest.mark.parametrize("action", ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"])
def test_access_denied_names_the_missing_action(
    denying_stacks: dict[str, StackHandle], docker_client: Any, base_image: str, tmp_path: Path, action: str
) -> None:
    stack = denying_stacks[action]
    stack.ensure_repository("team/app")
    ref = f"{stack.settings.registry_host}/team/app:v1"
    # An image with a layer of its own, so that removing it locally forces a blob download.
    import_image(docker_client, ref, {"etc/unique": os.urandom(16)})
    push(docker_client, ref, stack.auth_config())
    remove_local(docker_client, ref)
    with pytest.raises(AccessDeniedError) as caught:
        ensure_image(docker_client.api, parse_image_ref(ref), PullPolicy.ALWAYS, provider(stack, tmp_path))
    assert caught.value.action == action
    assert str(caught.value) == (
        f"access denied pulling {ref}: the worker's AWS identity lacks {action} on repository 'team/app'; "
        "add it to its IAM policy (see `airdock iam-policy puller`)"
    )


def test_access_denied_for_get_authorization_token(
    denying_stacks: dict[str, StackHandle], tmp_path: Path
) -> None:
    stack = denying_stacks["ecr:GetAuthorizationToken"]
    with pytest.raises(AccessDeniedError) as caught:
        provider(stack, tmp_path).get()
    assert caught.value.action == "ecr:GetAuthorizationToken"
    assert "may not call ecr:GetAuthorizationToken" in str(caught.value)
    assert 'allow it on resource "*" in its IAM policy' in str(caught.value)


def test_no_aws_credentials(stack: StackHandle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A boto3 session with no credentials anywhere (env, files, instance metadata)."""
    import boto3

    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    client = boto3.session.Session().client(
        "ecr", endpoint_url=stack.settings.api_url, region_name="us-east-1"
    )
    registry = ecr_registry_for(
        parse_image_ref(f"{stack.settings.registry_host}/x"), [stack.settings.registry_host]
    )
    assert registry is not None
    with pytest.raises(
        RegistryAuthError, match=r"^no AWS credentials found for ECR registry 127\.0\.0\.1:\d+ in "
    ):
        EcrTokenSource(client).fetch(registry)


def test_unreachable_registry_after_bounded_retries(
    stack: StackHandle, docker_client: Any, tmp_path: Path
) -> None:
    host = f"127.0.0.1:{free_port()}"  # nothing listens there
    creds = provider(stack, tmp_path, host=host)
    delays: list[float] = []
    with pytest.raises(ImagePullError) as caught:
        ensure_image(
            docker_client.api, parse_image_ref(f"{host}/team/app:v1"), PullPolicy.ALWAYS, creds,
            attempts=3, backoff_seconds=0.01, sleep=delays.append,
        )  # fmt: skip
    assert str(caught.value).startswith(f"registry {host} unreachable after 3 attempts: ")
    assert "connection refused" in str(caught.value)
    assert delays == [0.01, 0.02], "exponential backoff between the attempts"


def _fetch_in_process(api_url: str, host: str, cache_dir: str, barrier: Any) -> None:
    import boto3

    from airdock.local import settings as local_settings

    client = boto3.client(
        "ecr", endpoint_url=api_url, region_name="us-east-1",
        aws_access_key_id=local_settings.LOCAL_ACCESS_KEY_ID,
        aws_secret_access_key=local_settings.LOCAL_SECRET_ACCESS_KEY,
    )  # fmt: skip
    registry = ecr_registry_for(parse_image_ref(f"{host}/x"), [host])
    assert registry is not None
    source = EcrTokenSource(client)
    barrier.wait()
    CachedCredentials(TokenCache(Path(cache_dir)), host, lambda: source.fetch(registry)).get()


def test_twenty_processes_make_one_get_authorization_token_call(stack: StackHandle, tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(20)
    before = token_calls(stack)
    args = (stack.settings.api_url, stack.settings.registry_host, str(tmp_path / "cache"), barrier)
    procs = [ctx.Process(target=_fetch_in_process, args=args) for _ in range(20)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(120)
        assert proc.exitcode == 0
    assert token_calls(stack) == before + 1


_SPAWN_EVENTS = frozenset(
    {
        "subprocess.Popen",
        "os.exec",
        "os.posix_spawn",
        "os.spawn",
        "os.system",
        "os.fork",
        "os.forkpty",
        "pty.spawn",
    }
)


@contextlib.contextmanager
def spawns_recorded() -> Iterator[list[str]]:
    """Every process this interpreter starts while the block runs (Python's audit events: a child
    that could see the password in its argv or environment cannot start unnoticed)."""
    seen: list[str] = []
    active = True

    def hook(event: str, args: tuple[Any, ...]) -> None:
        if active and event in _SPAWN_EVENTS:
            seen.append(f"{event}: {args[:2]!r}")

    sys.addaudithook(hook)  # audit hooks cannot be removed: this one goes quiet after the block
    try:
        yield seen
    finally:
        active = False


def test_the_spawn_recorder_sees_a_child_process() -> None:
    """The recorder below can fail: it notices a subprocess and an exec-family call."""
    with spawns_recorded() as seen:
        subprocess.run(["true"], check=True)
    assert any(event.startswith("subprocess.Popen") for event in seen), seen


def test_token_never_reaches_docker_config_argv_or_a_child_process(
    stack: StackHandle, docker_client: Any, pushed: str, tmp_path: Path
) -> None:
    config = Path.home() / ".docker" / "config.json"
    before = config.read_bytes() if config.exists() else None
    creds = provider(stack, tmp_path / "cache")
    remove_local(docker_client, pushed)
    with spawns_recorded() as spawned:
        pulled = ensure_image(docker_client.api, parse_image_ref(pushed), PullPolicy.ALWAYS, creds)
    assert pulled.pulled
    assert spawned == [], "the pull started a process (which could see the token)"
    password = creds.get().password
    assert (config.read_bytes() if config.exists() else None) == before
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True, check=True).stdout
    for form in creds.get().secret_forms():
        assert form not in ps
    assert base64.b64encode(f"AWS:{password}".encode()).decode() not in ps


# -- ECR outages and secrets at DEBUG ------------------------------------------------------------


def _fetch_from_blackhole(endpoint: str, host: str, cache_dir: str, barrier: Any, results: Any) -> None:
    import boto3
    from botocore.config import Config

    from airdock.local import settings as local_settings

    client = boto3.client(
        "ecr", endpoint_url=endpoint, region_name="us-east-1",
        aws_access_key_id=local_settings.LOCAL_ACCESS_KEY_ID,
        aws_secret_access_key=local_settings.LOCAL_SECRET_ACCESS_KEY,
        # One attempt with a short read timeout: a failing fetch takes a fixed ~1.5 s, so the
        # comparison below measures queueing, not botocore's random backoff.
        config=Config(retries={"max_attempts": 1, "mode": "standard"}, connect_timeout=1, read_timeout=1.5),
    )  # fmt: skip
    registry = ecr_registry_for(parse_image_ref(f"{host}/x"), [host])
    assert registry is not None
    source = EcrTokenSource(client)
    credentials = CachedCredentials(TokenCache(Path(cache_dir)), f"{host}|id", lambda: source.fetch(registry))
    barrier.wait()
    started = time.monotonic()
    try:
        credentials.get()
        results.put(("no error", started, time.monotonic()))
    except RegistryAuthError as exc:
        results.put((str(exc), started, time.monotonic()))


def _outage(processes: int, endpoint: str, cache_dir: Path) -> tuple[float, set[str]]:
    """``processes`` processes fetch at once from a dead ECR API; (wall seconds, distinct messages)."""
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(processes)
    results = ctx.Queue()
    args = (endpoint, "127.0.0.1:5999", str(cache_dir), barrier, results)
    procs = [ctx.Process(target=_fetch_from_blackhole, args=args) for _ in range(processes)]
    for proc in procs:
        proc.start()
    outcomes = [results.get(timeout=120) for _ in procs]
    for proc in procs:
        proc.join(60)
    wall = max(end for _, _, end in outcomes) - min(start for _, start, _ in outcomes)
    return wall, {message for message, _, _ in outcomes}


def test_ten_tasks_during_an_ecr_outage_fail_as_fast_as_one(tmp_path: Path) -> None:
    """An ECR API that accepts connections and never answers: the waiters share the first failure."""
    import socket

    with socket.socket() as blackhole:
        blackhole.bind(("127.0.0.1", 0))
        blackhole.listen(64)  # connections complete in the backlog; nothing ever answers
        endpoint = f"http://127.0.0.1:{blackhole.getsockname()[1]}"
        one, one_messages = _outage(1, endpoint, tmp_path / "one")
        ten, ten_messages = _outage(10, endpoint, tmp_path / "ten")
    print(f"outage: 1 process {one:.2f} s, 10 processes {ten:.2f} s")
    assert len(one_messages) == 1 and len(ten_messages) == 1, ten_messages
    message = next(iter(ten_messages))
    assert message.startswith("ECR API unreachable for registry 127.0.0.1:5999 after retries: "), message
    assert "\n" not in message
    assert one_messages == ten_messages, "every waiter fails with the same one-line error"
    assert ten <= 1.5 * one, f"10 processes took {ten:.2f} s, one took {one:.2f} s"


def test_the_token_reaches_no_log_record_even_at_debug(
    stack: StackHandle, caplog: pytest.LogCaptureFixture
) -> None:
    import logging

    registry = ecr_registry_for(
        parse_image_ref(f"{stack.settings.registry_host}/x"), [stack.settings.registry_host]
    )
    assert registry is not None
    masked: list[str] = []
    with caplog.at_level(logging.DEBUG):
        credentials = EcrTokenSource(stack.ecr(), on_secret=masked.append).fetch(registry)
    text = "\n".join(record.getMessage() for record in caplog.records)
    assert "Response body" in text, "botocore logged the response body (the test would prove nothing)"
    assert '"authorizationToken":"***"' in text.replace(" ", "")
    for form in credentials.secret_forms():
        assert form not in text
        assert form in masked, "each form went to the masker before the fetch returned"


def test_a_stalled_pull_says_so_naming_the_registry_and_counts_right(
    stack: StackHandle, docker_client: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A registry that stops sending mid-layer: the engine sends no event at all, yet the log says so."""
    import logging

    from tests.faults import stalling_proxy

    stack.ensure_repository("pull/stall")
    pushed_ref = f"{stack.settings.registry_host}/pull/stall:v1"
    image = import_image(docker_client, pushed_ref, {"payload.bin": os.urandom(3_000_000)})
    push(docker_client, pushed_ref, stack.auth_config())
    gateway_port = int(stack.settings.registry_host.rsplit(":", 1)[1])
    logger = logging.getLogger("airdock.test.stall")
    try:
        with stalling_proxy(gateway_port, stall_after=500_000, stall_for=5.0) as proxy:
            docker_client.api.remove_image(image.id, force=True)
            ref = parse_image_ref(f"{proxy.host}/pull/stall:v1")
            creds = provider(stack, tmp_path, host=proxy.host)
            with caplog.at_level(logging.INFO, logger="airdock.test.stall"):
                pulled = ensure_image(
                    docker_client.api, ref, PullPolicy.ALWAYS, creds, logger=logger,
                    progress_seconds=1.0, stall_seconds=2.0,
                )  # fmt: skip
            assert proxy.stalls == 1, "the download really stalled"
    finally:
        for leftover in docker_client.images.list(name="*/pull/stall"):
            docker_client.images.remove(leftover.id, force=True)
    messages = [record.getMessage() for record in caplog.records]
    stalled = [m for m in messages if "no progress for" in m]
    assert stalled, messages
    assert f"from registry {proxy.host}" in stalled[0]
    assert "0/1 layers done" in stalled[0], stalled[0]
    assert pulled.pulled
    final = [m for m in messages if m.startswith(f"pulled {ref} ")]
    assert len(final) == 1, messages
    # One layer (busybox and 3 MB of random bytes): every byte counted, the tag line not a layer.
    match = re.search(r"(\d+)/(\d+) layers done, ([\d.]+) of ([\d.]+) MB downloaded", final[0])
    assert match is not None, final[0]
    assert match.group(1) == match.group(2) == "1"
    assert match.group(3) == match.group(4)
    details = stack.ecr().describe_images(repositoryName="pull/stall")["imageDetails"][0]
    manifest_bytes = 2_000  # the stack counts the config blob and manifest in the image size
    assert abs(float(match.group(4)) * 1e6 - details["imageSizeInBytes"]) <= 0.05e6 + manifest_bytes, (
        final[0],
        details["imageSizeInBytes"],
    )
