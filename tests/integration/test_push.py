"""`airdock push` against the real engine and the local stack: build, create, tag, push, print.

The command runs as a subprocess with the environment `eval "$(airdock local env)"` would give
it, a private token cache (XDG_CACHE_HOME) and a private HOME whose ~/.docker/config.json must
come out untouched.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from airdock.analyst.build import resolve_build
from airdock.analyst.push import publish
from airdock.analyst.reporter import SilentReporter
from airdock.analyst.repository import RepositoryOptions
from airdock.auth.cache import CachedCredentials, TokenCache
from airdock.auth.credentials import RegistryCredentials
from airdock.auth.ecr import EcrTokenSource
from airdock.images import EcrRegistry
from tests.conftest import AIRDOCK, StackHandle, stacks_denying
from tests.integration.test_docker_flow import remove_local

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.integration

DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
DOCKER_CONFIG = '{"auths": {"example.invalid": {}}, "note": "must stay as it is"}\n'
GIT_ENV = {"GIT_CONFIG_GLOBAL": "/dev/null", "GIT_CONFIG_NOSYSTEM": "1", "PATH": "/usr/bin:/bin"}


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """A private HOME holding a ~/.docker/config.json that nothing may change."""
    path = tmp_path / "home"
    (path / ".docker").mkdir(parents=True)
    (path / ".docker" / "config.json").write_text(DOCKER_CONFIG)
    return path


def env_for(stack: StackHandle, home: Path) -> dict[str, str]:
    """What `eval "$(airdock local env)"` gives a shell, plus a private HOME and token cache."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "AIRDOCK_", "XDG_"))}
    env.update(stack.settings.client_environment())
    env["HOME"] = str(home)
    env["XDG_CACHE_HOME"] = str(home / "cache")
    return env


def run_push(env: dict[str, str], *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*AIRDOCK, "push", *args], capture_output=True, text=True, env=env, cwd=cwd, check=False, timeout=300
    )


def make_context(path: Path, payload: str, extra: str = "") -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / "Dockerfile").write_text(f"FROM scratch\nCOPY hello.txt /hello.txt\n{extra}")
    (path / "hello.txt").write_text(payload)
    return path


def repositories(stack: StackHandle) -> dict[str, dict[str, Any]]:
    return {r["repositoryName"]: r for r in stack.ecr().describe_repositories()["repositories"]}


def images(stack: StackHandle, repo: str) -> dict[str, list[str]]:
    """digest → sorted tags, from DescribeImages."""
    details = stack.ecr().describe_images(repositoryName=repo)["imageDetails"]
    return {d["imageDigest"]: sorted(d.get("imageTags", [])) for d in details}


def error_line(result: subprocess.CompletedProcess[str]) -> str:
    """The one error line of a failed push (the lines before it are progress)."""
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    errors = [line for line in lines if line.startswith("airdock: error: ")]
    assert errors == [lines[-1]], result.stderr
    assert result.stdout == ""
    return lines[-1].removeprefix("airdock: error: ")


def cached_passwords(home: Path) -> list[str]:
    return [
        json.loads(path.read_text())["credentials"]["password"]
        for path in (home / "cache" / "airdock" / "registry-tokens").glob("*.json")
    ]


def test_push_creates_the_repository_and_prints_the_registry_digest(
    stack: StackHandle, home: Path, tmp_path: Path
) -> None:
    host = stack.settings.registry_host
    context = make_context(tmp_path / "ctx", "hello from a new repository\n")
    assert "push/scraper" not in repositories(stack)

    started = time.monotonic()
    result = run_push(
        env_for(stack, home), str(context), "--repo", "push/scraper", "--tag", "v1", "--tag", "stable"
    )
    elapsed = time.monotonic() - started
    assert result.returncode == 0, result.stderr
    print(f"airdock push of the FROM scratch test image: {elapsed:.2f} s wall, CLI start included")

    lines = result.stdout.splitlines()
    assert len(lines) == 3, result.stdout
    match = re.fullmatch(rf"pushed {re.escape(host)}/push/scraper@({DIGEST.pattern})", lines[0])
    assert match, lines[0]
    digest = match.group(1)
    assert lines[1:] == [f"tag    {host}/push/scraper:v1", f"tag    {host}/push/scraper:stable"]

    repo = repositories(stack)["push/scraper"]
    assert repo["imageTagMutability"] == "IMMUTABLE"
    assert repo["imageScanningConfiguration"] == {"scanOnPush": True}
    assert images(stack, "push/scraper") == {digest: ["stable", "v1"]}, "the printed digest is the registry's"
    assert "push: created repository push/scraper (tags IMMUTABLE, scan on push on)" in result.stderr
    assert "build: Step 2/2 : COPY hello.txt /hello.txt" in result.stderr

    # The token went to the engine only: not in the output, not in ~/.docker/config.json.
    # One token, filed under the default registry and under its host (where the host's tasks look).
    passwords = cached_passwords(home)
    assert len(passwords) == 2 and len(set(passwords)) == 1, passwords
    assert passwords[0] not in result.stdout + result.stderr
    assert (home / ".docker" / "config.json").read_text() == DOCKER_CONFIG
    assert sorted(p.name for p in (home / ".docker").iterdir()) == ["config.json"]


def test_without_tags_the_build_tag_makes_a_repeated_push_harmless(
    stack: StackHandle, home: Path, tmp_path: Path
) -> None:
    context = make_context(tmp_path / "ctx", "no tag given\n")
    env = env_for(stack, home)
    first = run_push(env, str(context), "--repo", "push/untagged", "--json")
    assert first.returncode == 0, first.stderr
    data = json.loads(first.stdout)
    assert data["repository_created"] is True
    assert data["tags"] == [f"build-{data['image_id'].removeprefix('sha256:')[:12]}"]
    assert data["reference"] == f"{stack.settings.registry_host}/push/untagged@{data['digest']}"

    again = run_push(env, str(context), "--repo", "push/untagged", "--json")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["digest"] == data["digest"]
    assert json.loads(again.stdout)["repository_created"] is False
    assert "push: repository push/untagged exists (tags IMMUTABLE, scan on push on)" in again.stderr
    assert images(stack, "push/untagged") == {data["digest"]: data["tags"]}


def _git(cwd: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
        cwd=cwd,
        check=True,
        capture_output=True,
        text=True,
        env=GIT_ENV,
    ).stdout.strip()


def test_a_git_checkout_adds_its_commit_and_a_dirty_one_says_so(
    stack: StackHandle, home: Path, tmp_path: Path
) -> None:
    host = stack.settings.registry_host
    context = make_context(tmp_path / "repo", "committed\n")
    _git(context, "init", "-q")
    _git(context, "add", ".")
    _git(context, "commit", "-qm", "the job")
    commit = _git(context, "rev-parse", "HEAD")[:12]
    env = env_for(stack, home)

    result = run_push(
        env,
        str(context),
        "--repo", "push/gitjob",
        "--registry", host,
        "--tag", "v1",
        "--mutable-tags",
        "--no-scan-on-push",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    clean_digest = result.stdout.splitlines()[0].rpartition("@")[2]
    assert result.stdout.splitlines()[1:] == [
        f"tag    {host}/push/gitjob:v1",
        f"tag    {host}/push/gitjob:{commit}",
    ]
    repo = repositories(stack)["push/gitjob"]
    assert repo["imageTagMutability"] == "MUTABLE"
    assert repo["imageScanningConfiguration"] == {"scanOnPush": False}
    assert images(stack, "push/gitjob") == {clean_digest: sorted(["v1", commit])}

    (context / "hello.txt").write_text("edited, not committed\n")
    dirty = run_push(env, str(context), "--repo", "push/gitjob", "--json")
    assert dirty.returncode == 0, dirty.stderr
    data = json.loads(dirty.stdout)
    assert data["tags"] == [f"{commit}-dirty-{data['image_id'].removeprefix('sha256:')[:12]}"]
    assert "the context has uncommitted changes" in dirty.stderr
    assert images(stack, "push/gitjob") == {
        clean_digest: sorted(["v1", commit]),
        data["digest"]: data["tags"],
    }


# -- failures: one line, exit 1, nothing created -------------------------------------------------
def test_missing_context(stack: StackHandle, home: Path, tmp_path: Path) -> None:
    before = repositories(stack)
    result = run_push(env_for(stack, home), str(tmp_path / "nope"), "--repo", "push/missing")
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"airdock: error: build context '{tmp_path / 'nope'}' does not exist: give the directory that holds "
        "the Dockerfile and the files it copies"
    )
    assert repositories(stack) == before


def test_invalid_repository_name(stack: StackHandle, home: Path, tmp_path: Path) -> None:
    before = repositories(stack)
    context = make_context(tmp_path / "ctx", "x\n")
    result = run_push(env_for(stack, home), str(context), "--repo", "Team/App")
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "airdock: error: invalid repository name 'Team/App': ECR repository names are 2 to 256 "
        "characters: lowercase letters and digits in '/'-separated parts, joined inside a part by single "
        "'.', '_' or '-'; did you mean 'team/app'?"
    )
    assert repositories(stack) == before


def test_a_failing_build_step_is_named(stack: StackHandle, home: Path, tmp_path: Path) -> None:
    before = repositories(stack)
    # scratch has no shell: an exec-form RUN of a missing program fails at that step.
    context = make_context(tmp_path / "ctx", "x\n", 'RUN ["/nonexistent"]\n')
    result = run_push(env_for(stack, home), str(context), "--repo", "push/broken")
    line = error_line(result)
    assert line.startswith(
        f'build failed at Step 3/3 : RUN ["/nonexistent"] (Dockerfile {context.resolve() / "Dockerfile"}): '
    ), line
    assert "/nonexistent" in line.partition("): ")[2], "the daemon's reason follows the step"
    assert repositories(stack) == before


def test_a_dockerfile_syntax_error_is_one_line(stack: StackHandle, home: Path, tmp_path: Path) -> None:
    context = make_context(tmp_path / "ctx", "x\n")
    (tmp_path / "bad.Dockerfile").write_text("FROMM scratch\n")
    result = run_push(
        env_for(stack, home), str(context), "--repo", "push/syntax", "-f", "bad.Dockerfile", cwd=tmp_path
    )
    assert error_line(result) == (
        f"Dockerfile {tmp_path / 'bad.Dockerfile'} is invalid: dockerfile parse error line 1: "
        "unknown instruction: FROMM"
    )
    assert "push/syntax" not in repositories(stack)


def test_an_immutable_tag_is_not_overwritten(stack: StackHandle, home: Path, tmp_path: Path) -> None:
    env = env_for(stack, home)
    first = run_push(
        env, str(make_context(tmp_path / "a", "first\n")), "--repo", "push/immutable", "-t", "v1"
    )
    assert first.returncode == 0, first.stderr
    digest = first.stdout.splitlines()[0].rpartition("@")[2]

    second = run_push(
        env, str(make_context(tmp_path / "b", "second\n")), "--repo", "push/immutable", "-t", "v1"
    )
    assert error_line(second) == (
        "tag 'v1' already exists in repository 'push/immutable' for another image and the repository's "
        "tags are immutable: push under a new --tag, or delete that image first"
    )
    assert images(stack, "push/immutable") == {digest: ["v1"]}


@pytest.fixture(scope="module")
def denying_stacks(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, StackHandle]]:
    with stacks_denying(tmp_path_factory, ("ecr:InitiateLayerUpload", "ecr:PutImage")) as stacks:
        yield stacks


@pytest.mark.parametrize("action", ["ecr:InitiateLayerUpload", "ecr:PutImage"])
def test_a_denied_push_names_the_missing_action(
    denying_stacks: dict[str, StackHandle], home: Path, tmp_path: Path, action: str
) -> None:
    stack = denying_stacks[action]
    host = stack.settings.registry_host
    # Unique content, so the engine has to upload a layer (none is known to this registry yet).
    context = make_context(tmp_path / "ctx", f"denied {os.urandom(8).hex()}\n")
    result = run_push(env_for(stack, home), str(context), "--repo", "push/denied", "--tag", "v1")
    assert error_line(result) == (
        f"access denied pushing {host}/push/denied:v1: your AWS identity lacks {action} on repository "
        "'push/denied'; add it to its IAM policy (see `airdock iam-policy pusher`)"
    )
    assert "push: created repository push/denied" in result.stderr
    assert "push: deleted repository push/denied again" in result.stderr
    assert "push/denied" not in repositories(stack), "a failed push leaves no repository behind"


# -- the core, directly: a token the registry refuses is replaced once ---------------------------
def test_a_refused_cached_token_is_renewed_once(
    stack: StackHandle, docker_client: Any, tmp_path: Path
) -> None:
    from airdock.local.store import Store

    host = stack.settings.registry_host
    registry = EcrRegistry(host=host, account_id=None, region=None, fips=False, partition=None, custom=True)
    source = EcrTokenSource(stack.ecr())
    credentials = CachedCredentials(TokenCache(tmp_path / "cache"), host, lambda: source.fetch(registry))
    expired = Store(stack.settings.store_path).issue_token(0.2)
    time.sleep(0.5)
    stale = RegistryCredentials(host, "AWS", expired.password, time.time() + 3600)  # the cache believes it
    credentials.cache.get(credentials.key, lambda: stale)

    reporter = SilentReporter()
    result = publish(
        docker_client.api,
        stack.ecr(),
        credentials,
        resolve_build(make_context(tmp_path / "ctx", f"renewed {os.urandom(4).hex()}\n")),
        "push/renewed",
        ["v1"],
        registry=registry,
        options=RepositoryOptions(),
        reporter=reporter,
        use_git=False,
    )
    assert images(stack, "push/renewed") == {result.digest: ["v1"]}
    assert any("refused the cached token" in note for note in reporter.notes), reporter.notes
    renewed = credentials.cache.peek(credentials.key)
    assert renewed is not None and renewed.password != expired.password


def test_the_example_job_pushes_as_a_new_user_would_try_it(
    stack: StackHandle, home: Path, docker_client: Any
) -> None:
    """`airdock local up` (or `local base-image`) makes the offline base; the example's context needs
    nothing else, and the pushed job runs."""
    env = env_for(stack, home)
    base = subprocess.run(
        [*AIRDOCK, "local", "base-image"], capture_output=True, text=True, env=env, check=False, timeout=300
    )
    assert base.returncode == 0, base.stderr
    assert "base image airdock-local/busybox:latest ready" in base.stderr
    result = run_push(env, str(ROOT / "examples" / "scraper"), "--repo", "push/example", "--tag", "v1")
    assert result.returncode == 0, result.stderr
    ref = f"{stack.settings.registry_host}/push/example:v1"
    assert f"tag    {ref}" in result.stdout
    remove_local(docker_client, ref)
    docker_client.images.pull(ref, auth_config=stack.auth_config())
    output = docker_client.containers.run(ref, remove=True).decode()
    assert "scraper: done" in output
    assert output.strip().splitlines()[-1] == '{"pages": 3, "items": 42}'


def test_a_missing_offline_base_image_says_how_to_make_it(
    stack: StackHandle, home: Path, tmp_path: Path
) -> None:
    context = tmp_path / "ctx"
    context.mkdir()
    (context / "Dockerfile").write_text("FROM airdock-local/not-made-yet:latest\nCOPY Dockerfile /x\n")
    line = error_line(run_push(env_for(stack, home), str(context), "--repo", "push/nobase"))
    assert line.startswith("build failed at Step 1/2 : FROM airdock-local/not-made-yet:latest"), line
    assert line.endswith("made by `airdock local up` or `airdock local base-image`"), line
