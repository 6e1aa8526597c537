"""The pure parts of `airdock push`: input checks, the tag plan, progress, one-line errors.

The flow itself (engine, registry, ECR API) is tested in tests/integration/test_push.py.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker.errors
import pytest

from airdock.analyst.build import (
    BuildSpec,
    GitState,
    build_image,
    check_tag,
    git_state,
    parse_build_args,
    plan_tags,
    resolve_build,
)
from airdock.analyst.push import PushProgress, push_failure
from airdock.analyst.reporter import SilentReporter
from airdock.analyst.repository import check_repository_name
from airdock.errors import AccessDeniedError, BuildError, ConfigError, PublishError

IMAGE_ID = "sha256:2c4363ac46342a9d1cc733cbe3ec6bd257d39e5f4adc2966725b3780896ed5c3"
COMMIT = "3f2a9c1e0b7d5e6f708192a3b4c5d6e7f8091a2b"
HOST = "123456789012.dkr.ecr.eu-west-1.amazonaws.com"


# -- repository names and tags -------------------------------------------------------------------
@pytest.mark.parametrize("name", ["ab", "team/app", "a.b_c-d/e1/f2", "x" * 256])
def test_valid_repository_names(name: str) -> None:
    assert check_repository_name(name) == name


@pytest.mark.parametrize(
    "name",
    ["a", "x" * 257, "team//app", "/team", "team/", "-app", "app-", "a..b", "a b", "tëam", "team/app:v1"],
)
def test_invalid_repository_names(name: str) -> None:
    with pytest.raises(ConfigError, match=r"^invalid repository name .*: ECR repository names are 2 to 256"):
        check_repository_name(name)


def test_uppercase_repository_name_suggests_the_lowercase_one() -> None:
    with pytest.raises(ConfigError) as caught:
        check_repository_name("Team/App")
    assert str(caught.value) == (
        "invalid repository name 'Team/App': ECR repository names are 2 to 256 characters: lowercase "
        "letters and digits in '/'-separated parts, joined inside a part by single '.', '_' or '-'; "
        "did you mean 'team/app'?"
    )


@pytest.mark.parametrize("tag", ["v1", "V1.2.3", "_x", "a" * 128, "3f2a9c1e0b7d-dirty-2c4363ac4634"])
def test_valid_tags(tag: str) -> None:
    assert check_tag(tag) == tag


@pytest.mark.parametrize("tag", ["", ".v1", "-v1", "a" * 129, "v 1", "v:1", "v/1"])
def test_invalid_tags(tag: str) -> None:
    with pytest.raises(ConfigError, match=r"^invalid tag .*: up to 128 letters"):
        check_tag(tag)


# -- build args and the build context ------------------------------------------------------------
def test_build_args() -> None:
    env = {"FROM_ENV": "yes"}
    assert parse_build_args(["A=1", "B=", "C=x=y", "FROM_ENV"], env) == {
        "A": "1",
        "B": "",
        "C": "x=y",
        "FROM_ENV": "yes",
    }
    assert parse_build_args(["A=1", "A=2"], {}) == {"A": "2"}


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("=1", "invalid --build-arg '=1': write NAME=VALUE, NAME being letters, digits and '_'"),
        ("a b=1", "invalid --build-arg 'a b=1': write NAME=VALUE, NAME being letters, digits and '_'"),
        (
            "UNSET",
            "invalid --build-arg 'UNSET': it has no '=VALUE' and UNSET is not set in the environment; "
            "write NAME=VALUE",
        ),
    ],
)
def test_bad_build_args(value: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_build_args([value], {})
    assert str(caught.value) == message


def test_resolve_build(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    context = tmp_path / "ctx"
    context.mkdir()
    with pytest.raises(BuildError, match=r"^no Dockerfile in the build context .*--dockerfile PATH$"):
        resolve_build(context)
    (context / "Dockerfile").write_text("FROM scratch\n")
    spec = resolve_build(context, build_args={"A": "1"}, platform="linux/amd64")
    assert spec == BuildSpec(context.resolve(), context.resolve() / "Dockerfile", {"A": "1"}, "linux/amd64")

    # --dockerfile is relative to the current directory, as with `docker build -f`.
    (tmp_path / "other.Dockerfile").write_text("FROM scratch\n")
    monkeypatch.chdir(tmp_path)
    assert resolve_build(context, Path("other.Dockerfile")).dockerfile == tmp_path / "other.Dockerfile"
    with pytest.raises(BuildError, match=r"^Dockerfile 'nope' not found \(looked at "):
        resolve_build(context, Path("nope"))


def test_resolve_build_refuses_missing_and_non_directory_contexts(tmp_path: Path) -> None:
    with pytest.raises(BuildError) as caught:
        resolve_build(tmp_path / "missing")
    assert str(caught.value) == (
        f"build context '{tmp_path / 'missing'}' does not exist: give the directory that holds the "
        "Dockerfile and the files it copies"
    )
    (tmp_path / "file").write_text("x")
    with pytest.raises(BuildError, match=r"is not a directory: give the directory that holds the Dockerfile"):
        resolve_build(tmp_path / "file")


# -- the tag plan --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("given", "git", "expected"),
    [
        (["v1"], None, ("v1",)),
        ([], None, ("build-2c4363ac4634",)),
        ([], GitState(COMMIT, dirty=False), ("3f2a9c1e0b7d",)),
        (["v1", "prod"], GitState(COMMIT, dirty=False), ("v1", "prod", "3f2a9c1e0b7d")),
        ([], GitState(COMMIT, dirty=True), ("3f2a9c1e0b7d-dirty-2c4363ac4634",)),
        (["v1"], GitState(COMMIT, dirty=True), ("v1", "3f2a9c1e0b7d-dirty-2c4363ac4634")),
        (["v1", "v1", "3f2a9c1e0b7d"], GitState(COMMIT, dirty=False), ("v1", "3f2a9c1e0b7d")),
    ],
)
def test_plan_tags(given: list[str], git: GitState | None, expected: tuple[str, ...]) -> None:
    tags = plan_tags(given, git, IMAGE_ID)
    assert tags == expected
    for tag in tags:
        check_tag(tag)


# -- git -----------------------------------------------------------------------------------------
def _git(cwd: Path, *args: str) -> None:
    subprocess.run(
        [
            "git",
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@example.com",
            "-c",
            "init.defaultBranch=main",
            *args,
        ],
        cwd=cwd,
        check=True,
        capture_output=True,
        env={"GIT_CONFIG_GLOBAL": "/dev/null", "GIT_CONFIG_NOSYSTEM": "1", "PATH": "/usr/bin:/bin"},
    )


def test_git_state(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    context = repo / "job"
    context.mkdir(parents=True)
    (context / "Dockerfile").write_text("FROM scratch\n")
    spec = resolve_build(context)
    assert git_state(spec) is None, "not a git checkout"

    _git(repo, "init", "-q")
    reporter = SilentReporter()
    assert git_state(spec, reporter) is None
    assert reporter.notes == ["the context's git repository has no commit yet: no commit tag"]

    _git(repo, "add", ".")
    _git(repo, "commit", "-qm", "first")
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, check=True
    ).stdout.strip()
    assert git_state(spec) == GitState(head, dirty=False)

    (repo / "elsewhere.txt").write_text("outside the context: does not reach the image\n")
    assert git_state(spec) == GitState(head, dirty=False)
    (context / "new.txt").write_text("untracked, inside the context\n")
    assert git_state(spec) == GitState(head, dirty=True)
    (context / "new.txt").unlink()
    (context / "Dockerfile").write_text("FROM scratch\nLABEL x=y\n")
    assert git_state(spec) == GitState(head, dirty=True)


def test_a_dockerfile_outside_the_context_counts_for_dirtiness(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    (repo / "ctx").mkdir(parents=True)
    (repo / "docker").mkdir()
    (repo / "docker" / "Dockerfile").write_text("FROM scratch\n")
    (repo / "ctx" / "a.txt").write_text("a\n")
    _git(repo, "init", "-q")
    _git(repo, "add", ".")
    _git(repo, "commit", "-qm", "first")
    spec = resolve_build(repo / "ctx", repo / "docker" / "Dockerfile")
    state = git_state(spec)
    assert state is not None and not state.dirty
    (repo / "docker" / "Dockerfile").write_text("FROM scratch\nLABEL changed=1\n")
    state = git_state(spec)
    assert state is not None and state.dirty


# -- build errors --------------------------------------------------------------------------------
class FakeBuildApi:
    def __init__(self, events: list[dict[str, Any]], error: Exception | None = None) -> None:
        self.events = events
        self.error = error
        self.kwargs: dict[str, Any] = {}

    def build(self, **kwargs: Any) -> Iterator[dict[str, Any]]:
        self.kwargs = kwargs
        if self.error is not None:
            raise self.error
        yield from self.events


def _spec(tmp_path: Path) -> BuildSpec:
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    return resolve_build(tmp_path, build_args={"A": "1"})


def test_build_reports_steps_and_returns_the_image_id(tmp_path: Path) -> None:
    api = FakeBuildApi(
        [
            {"stream": "Step 1/2 : FROM scratch"},
            {"stream": "\n"},
            {"stream": " ---> \n"},
            {"stream": "Step 2/2 : COPY hello.txt /hello.txt"},
            {"aux": {"ID": IMAGE_ID}},
            {"stream": "Successfully built 2c4363ac4634\n"},
        ]
    )
    reporter = SilentReporter()
    assert build_image(api, _spec(tmp_path), reporter) == IMAGE_ID
    assert reporter.steps == ["Step 1/2 : FROM scratch", "Step 2/2 : COPY hello.txt /hello.txt"]
    assert api.kwargs["buildargs"] == {"A": "1"}
    assert api.kwargs["forcerm"] is True


def test_a_failing_step_is_named_in_one_line(tmp_path: Path) -> None:
    message = 'failed to create shim task: OCI runtime create failed:\nexec: "/nonexistent": no such file'
    api = FakeBuildApi(
        [
            {"stream": 'Step 3/4 : RUN ["/nonexistent"]'},
            {"stream": " ---> Running in c6de171d7a60\n"},
            {"errorDetail": {"message": message}, "error": message},
        ]
    )
    spec = _spec(tmp_path)
    with pytest.raises(BuildError) as caught:
        build_image(api, spec, SilentReporter())
    assert str(caught.value) == (
        f'build failed at Step 3/4 : RUN ["/nonexistent"] (Dockerfile {spec.dockerfile}): failed to create '
        'shim task: OCI runtime create failed: exec: "/nonexistent": no such file'
    )


def test_a_dockerfile_parse_error_is_one_line(tmp_path: Path) -> None:
    error = docker.errors.APIError(
        "400 Client Error", explanation="dockerfile parse error line 1: unknown instruction: FROMM"
    )
    spec = _spec(tmp_path)
    with pytest.raises(BuildError) as caught:
        build_image(FakeBuildApi([], error), spec, SilentReporter())
    assert str(caught.value) == (
        f"Dockerfile {spec.dockerfile} is invalid: dockerfile parse error line 1: unknown instruction: FROMM"
    )


# -- push progress and errors --------------------------------------------------------------------
def test_push_progress_summarises_layers() -> None:
    progress = PushProgress()
    for event in [
        {"status": "The push refers to repository [127.0.0.1:5780/team/app]"},
        {"status": "Preparing", "progressDetail": {}, "id": "aaa"},
        {"status": "Preparing", "progressDetail": {}, "id": "bbb"},
        {"status": "Layer already exists", "progressDetail": {}, "id": "bbb"},
        {"status": "Pushing", "progressDetail": {"current": 1000, "total": 3000}, "id": "aaa"},
        {"status": "Pushing", "progressDetail": {"current": 3100, "total": 3000}, "id": "aaa"},
    ]:
        progress.feed(event)
    assert (progress.bytes_done, progress.bytes_total) == (3000, 3000)
    assert (progress.layers_done, len(progress.layers)) == (1, 2)
    progress.feed({"status": "Pushed", "progressDetail": {}, "id": "aaa"})
    progress.feed({"progressDetail": {}, "aux": {"Tag": "v1", "Digest": "sha256:" + "b" * 64, "Size": 524}})
    assert progress.layers_done == 2 and progress.layers_uploaded == 1
    assert progress.digest == "sha256:" + "b" * 64


@pytest.mark.parametrize(
    ("daemon_says", "kind", "expected"),
    [
        (
            "denied: User: arn:aws:sts::123456789012:assumed-role/ci/x is not authorized to perform: "
            "ecr:InitiateLayerUpload on resource: arn:aws:ecr:eu-west-1:123456789012:repository/team/app "
            "because no identity-based policy allows the ecr:InitiateLayerUpload action",
            AccessDeniedError,
            f"access denied pushing {HOST}/team/app:v1: your AWS identity lacks ecr:InitiateLayerUpload on "
            "repository 'team/app'; add it to its IAM policy (see `airdock iam-policy pusher`)",
        ),
        (
            "tag invalid: The image tag 'v1' already exists in the 'team/app' repository and cannot be "
            "overwritten because the repository is immutable.",
            PublishError,
            "tag 'v1' already exists in repository 'team/app' for another image and the repository's tags "
            "are immutable: push under a new --tag, or delete that image first",
        ),
        (
            "name unknown: The repository with name 'team/app' does not exist in the registry with id "
            "'123456789012'",
            PublishError,
            f"repository 'team/app' does not exist in registry {HOST}: create it (your AWS identity needs "
            "ecr:CreateRepository for `airdock push` to do it) and push again",
        ),
        (
            "denied: Your authorization token has expired. Reauthenticate and try again.",
            PublishError,
            f"registry {HOST} refused the credentials for {HOST}/team/app:v1: denied: Your authorization "
            "token has expired. Reauthenticate and try again.",
        ),
        (
            f'Get "https://{HOST}/v2/": dial tcp: lookup {HOST}: no such host',
            PublishError,
            f"registry {HOST} unreachable while pushing {HOST}/team/app:v1: "
            f'Get "https://{HOST}/v2/": dial tcp: lookup {HOST}: no such host',
        ),
        ("blob upload unknown", PublishError, f"push of {HOST}/team/app:v1 failed: blob upload unknown"),
    ],
)  # fmt: skip
def test_push_failures(daemon_says: str, kind: type[Exception], expected: str) -> None:
    error = push_failure(HOST, "team/app", "v1", daemon_says, [])
    assert type(error) is kind
    assert str(error) == expected
    assert "\n" not in str(error)


def test_push_failures_carry_the_action_and_say_what_was_pushed() -> None:
    error = push_failure(
        HOST, "team/app", "abc", "denied: x is not authorized to perform: ecr:PutImage on resource: y", ["v1"]
    )
    assert isinstance(error, AccessDeniedError) and error.action == "ecr:PutImage"
    assert str(error).endswith("(see `airdock iam-policy pusher`) (already pushed: v1)")
    error = push_failure(HOST, "team/app", "abc", "tag invalid: ... immutable.", ["v1", "v2"])
    assert str(error).endswith("delete that image first (already pushed: v1, v2)")


# -- the command line ----------------------------------------------------------------------------
def test_help_has_examples_and_the_flags() -> None:
    from tests.conftest import airdock

    text = airdock("push", "--help").stdout
    for flag in ("--repo", "--tag", "--dockerfile", "--build-arg", "--platform", "--registry", "--region",
                 "--profile", "--scan-on-push", "--mutable-tags", "--json"):  # fmt: skip
        assert flag in text, flag
    assert "Examples:" in text
    assert "airdock push ./scraper --repo team/scraper --tag v1.4" in text
    assert "push" in airdock("--help").stdout


def test_no_engine_is_one_line(tmp_path: Path) -> None:
    from tests.conftest import airdock, make_env

    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    env = make_env(DOCKER_HOST=f"unix://{tmp_path}/no.sock", XDG_CACHE_HOME=str(tmp_path / "cache"))
    result = airdock("push", str(tmp_path), "--repo", "team/app", env=env, check=False)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("airdock: error: cannot reach the Docker engine ("), lines
    assert lines[0].endswith("); start it or point DOCKER_HOST at it")


def test_bad_input_is_refused_before_anything_runs(tmp_path: Path) -> None:
    from tests.conftest import airdock, make_env

    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    env = make_env(DOCKER_HOST=f"unix://{tmp_path}/no.sock")  # would fail later, if it got that far
    for args, message in [
        (["--tag", "-bad"], "invalid tag '-bad': up to 128 letters"),
        (["--build-arg", "=x"], "invalid --build-arg '=x'"),
        (["--registry", "https://example.com"], "invalid --registry 'https://example.com': write only host"),
    ]:
        result = airdock("push", str(tmp_path), "--repo", "team/app", *args, env=env, check=False)
        assert result.returncode == 1
        assert result.stderr.startswith(f"airdock: error: {message}"), result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
