"""`airdock doctor`'s pure parts: formatting, masking, scheme choice, verdicts and exit codes.

The checks take their clients as arguments, so fakes here stand in for boto3 (raising botocore's
real exceptions) and httpx's MockTransport for the registry; the real engine, stack and CLI are
exercised in tests/integration/test_doctor.py.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError, NoRegionError

from airdock.airflow.doctor import airflow_home, check_airflow_connection
from airdock.analyst.doctor import report as doctor
from airdock.analyst.doctor.aws_checks import (
    CHECK_CREDENTIALS,
    CHECK_TOKEN,
    FIX_CREDENTIALS,
    TokenOutcome,
    check_credentials,
    check_token,
    mask_access_key,
)
from airdock.analyst.doctor.engine_checks import (
    CHECK_DISK,
    CHECK_ENGINE,
    FreeSpaceThreshold,
    check_disk,
    check_engine,
)
from airdock.analyst.doctor.registry_checks import (
    CHECK_LOGIN,
    CHECK_REPOSITORY,
    CHECK_TAG,
    check_image,
    check_registry_login,
    registry_base_url,
)
from airdock.analyst.doctor.report import CheckResult, DoctorReport
from airdock.analyst.doctor.runner import REGISTRIES_ENV, configured_registries, resolve_registry
from airdock.errors import ConfigError
from airdock.images import parse_image_ref

SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
PASSWORD = "registry-password-never-shown"
HOST = "127.0.0.1:5780"
ECR_HOST = "123456789012.dkr.ecr.eu-west-1.amazonaws.com"


# ---------------------------------------------------------------------------------------------
# Masking, scheme, threshold


@pytest.mark.parametrize(
    ("key", "shown"),
    [
        ("AKIAIOSFODNN7EXAMPLE", "AKIA…MPLE"),
        ("AKIDAIRDOCKLOCAL", "AKID…OCAL"),
        ("ASIA1234567890ABCDEF", "ASIA…CDEF"),
        ("SHORTKEY", "****"),
        ("", "…"),
    ],
)
def test_access_key_id_shows_only_first_and_last_four(key: str, shown: str) -> None:
    assert mask_access_key(key) == shown
    if len(key) >= 12:
        assert key[4:-4] not in mask_access_key(key)


@pytest.mark.parametrize(
    ("host", "proxy", "url"),
    [
        ("127.0.0.1:5780", None, "http://127.0.0.1:5780"),
        ("127.9.9.9", None, "http://127.9.9.9"),
        ("localhost:5000", None, "http://localhost:5000"),
        ("[::1]:5000", None, "http://[::1]:5000"),
        (ECR_HOST, None, f"https://{ECR_HOST}"),
        ("registry.internal:5000", None, "https://registry.internal:5000"),
        ("10.0.0.1:5000", None, "https://10.0.0.1:5000"),
        # the proxyEndpoint's scheme wins when it names the same host
        ("registry.internal:5000", "http://registry.internal:5000", "http://registry.internal:5000"),
        ("127.0.0.1:5780", "https://127.0.0.1:5780", "https://127.0.0.1:5780"),
        (ECR_HOST, f"https://{ECR_HOST}", f"https://{ECR_HOST}"),
        # ...and is ignored when it names another host (a VPC endpoint's custom name)
        ("ecr.vpce.internal", f"http://{ECR_HOST}", "https://ecr.vpce.internal"),
    ],
)
def test_registry_scheme(host: str, proxy: str | None, url: str) -> None:
    assert registry_base_url(host, proxy) == url


def test_min_free_accepts_sizes_and_percentages() -> None:
    assert FreeSpaceThreshold.parse("2GB") == FreeSpaceThreshold(min_bytes=2_000_000_000)
    assert FreeSpaceThreshold.parse("512MiB").min_bytes == 512 * 1024**2
    assert FreeSpaceThreshold.parse(" 10% ") == FreeSpaceThreshold(min_percent=10.0)
    assert FreeSpaceThreshold.parse("2GB").describe() == "2 GB"
    assert FreeSpaceThreshold.parse("12.5%").describe() == "12.5%"
    for bad in ("lots", "150%", "-1%", "%", ""):
        with pytest.raises(ConfigError, match="invalid --min-free"):
            FreeSpaceThreshold.parse(bad)


def test_min_free_verdicts() -> None:
    gb = 1_000_000_000
    assert FreeSpaceThreshold(min_bytes=2 * gb).enough(2 * gb, 100 * gb)
    assert not FreeSpaceThreshold(min_bytes=2 * gb).enough(2 * gb - 1, 100 * gb)
    assert FreeSpaceThreshold(min_percent=10).enough(10 * gb, 100 * gb)
    assert not FreeSpaceThreshold(min_percent=10).enough(10 * gb - 1, 100 * gb)
    assert not FreeSpaceThreshold(min_percent=10).enough(0, 0)


# ---------------------------------------------------------------------------------------------
# Report: lines, summary, JSON, exit code


def test_a_failed_check_must_carry_a_fix() -> None:
    with pytest.raises(ValueError, match="no fix"):
        CheckResult("x", False, "broken")
    assert CheckResult("x", True, "fine").fix is None


def test_report_of_passing_checks_exits_zero() -> None:
    report = DoctorReport((doctor.passed(CHECK_ENGINE, "Docker 20.10"), doctor.passed(CHECK_DISK, "plenty")))
    assert report.ok
    assert report.exit_code == 0
    assert report.lines() == [
        "✓ docker engine: Docker 20.10",
        "✓ disk space: plenty",
        "all 2 checks passed",
    ]


def test_report_names_every_failed_check_with_its_fix() -> None:
    report = DoctorReport(
        (
            doctor.failed(CHECK_ENGINE, "no answer", "start the Docker daemon"),
            doctor.passed(CHECK_CREDENTIALS, "access key AKIA…MPLE from env"),
            doctor.skipped(CHECK_LOGIN, "no token", "fix the ecr token check first"),
        )
    )
    assert not report.ok
    assert report.exit_code == 1
    assert report.failed_names == [CHECK_ENGINE, CHECK_LOGIN]
    assert report.lines() == [
        "✗ docker engine: no answer",
        "    fix: start the Docker daemon",
        "✓ aws credentials: access key AKIA…MPLE from env",
        "✗ registry login: skipped: no token",
        "    fix: fix the ecr token check first",
        "2 of 3 checks failed: docker engine, registry login",
    ]
    data = json.loads(report.to_json())
    assert data["ok"] is False
    assert data["failed"] == [CHECK_ENGINE, CHECK_LOGIN]
    assert data["checks"][2] == {
        "name": CHECK_LOGIN,
        "ok": False,
        "detail": "skipped: no token",
        "fix": "fix the ecr token check first",
        "skipped": True,
    }


# ---------------------------------------------------------------------------------------------
# Engine and disk


def test_engine_down_is_a_failed_check_with_a_fix() -> None:
    def factory() -> Any:
        raise ConnectionError("('Connection aborted.', FileNotFoundError(2, 'No such file or directory'))")

    result, client = check_engine(factory, "unix:///nowhere.sock")
    assert client is None
    assert not result.ok
    assert result.detail == "no answer at unix:///nowhere.sock: no socket there"
    assert result.fix is not None and "DOCKER_HOST" in result.fix
    disk = check_disk(None, FreeSpaceThreshold(min_bytes=1))
    assert not disk.ok and disk.skipped


def test_engine_version_is_reported() -> None:
    client = SimpleNamespace(version=lambda: {"Version": "20.10.24", "ApiVersion": "1.41"})
    result, got = check_engine(lambda: client, "unix:///d.sock")
    assert result.ok and got is client
    assert result.detail == "Docker 20.10.24 (API 1.41) at unix:///d.sock"


def test_disk_check_measures_the_data_root(tmp_path: Path) -> None:
    client = SimpleNamespace(info=lambda: {"DockerRootDir": str(tmp_path)})
    ok = check_disk(client, FreeSpaceThreshold(min_bytes=1))
    assert ok.ok and str(tmp_path) in ok.detail and "minimum 1 B" in ok.detail
    full = check_disk(client, FreeSpaceThreshold(min_percent=100.0))
    assert not full.ok
    assert full.fix is not None and "airdock gc" in full.fix


def test_disk_of_a_remote_engine_is_not_measured() -> None:
    client = SimpleNamespace(info=lambda: {"DockerRootDir": "/no/such/dir/on/this/machine"})
    result = check_disk(client, FreeSpaceThreshold(min_bytes=1))
    assert result.ok and "not on this machine" in result.detail


# ---------------------------------------------------------------------------------------------
# AWS credentials


class FakeSession:
    def __init__(self, credentials: Credentials | None) -> None:
        self._credentials = credentials

    def get_credentials(self) -> Credentials | None:
        return self._credentials


def sts(endpoint: str, answer: Callable[[], dict[str, Any]]) -> Callable[[], Any]:
    client = SimpleNamespace(meta=SimpleNamespace(endpoint_url=endpoint), get_caller_identity=answer)
    return lambda: client


def env_credentials() -> Credentials:
    return Credentials("AKIAIOSFODNN7EXAMPLE", SECRET, method="env")


def raise_(exc: Exception) -> Callable[..., Any]:
    def call(*args: Any, **kwargs: Any) -> Any:
        raise exc

    return call


def client_error(code: str, message: str = "", operation: str = "GetCallerIdentity") -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": message}}, operation)


def test_no_credentials_fail_with_the_fix() -> None:
    result = check_credentials(FakeSession(None), None, None)
    assert not result.ok
    assert result.fix == FIX_CREDENTIALS
    assert "IAM role" in result.fix


def test_identity_is_the_callers_arn() -> None:
    arn = "arn:aws:iam::123456789012:user/analyst"
    result = check_credentials(
        FakeSession(env_credentials()),
        sts("https://sts.eu-west-1.amazonaws.com", lambda: {"Arn": arn}),
        "https://api.ecr.eu-west-1.amazonaws.com",
    )
    assert result.ok
    assert result.detail == f"access key AKIA…MPLE from env: {arn}"


def test_unreachable_sts_leaves_the_identity_unknown_but_passes() -> None:
    down = raise_(EndpointConnectionError(endpoint_url="https://sts.us-east-1.amazonaws.com/"))
    result = check_credentials(
        FakeSession(env_credentials()), sts("https://sts.us-east-1.amazonaws.com", down), None
    )
    assert result.ok
    assert result.detail == (
        "access key AKIA…MPLE from env (identity unknown: STS unreachable at https://sts.us-east-1.amazonaws.com)"
    )
    assert SECRET not in result.detail and "IOSFODNN7EXA" not in result.detail


def test_sts_refusing_the_credentials_fails_unless_ecr_is_served_elsewhere() -> None:
    refused = raise_(client_error("InvalidClientTokenId", "The security token included is invalid."))
    factory = sts("https://sts.us-east-1.amazonaws.com", refused)
    against_aws = check_credentials(
        FakeSession(env_credentials()), factory, "https://api.ecr.us-east-1.amazonaws.com"
    )
    assert not against_aws.ok
    assert against_aws.fix is not None and "refresh or replace" in against_aws.fix
    # the local stack (or another stand-in) serves ECR: AWS's own STS is not even asked
    asked: list[str] = []

    def must_not_call(**_: Any) -> Any:
        asked.append("sts")
        raise AssertionError("AWS STS must not be asked when ECR is served elsewhere")

    stand_in = check_credentials(
        FakeSession(env_credentials()),
        sts("https://sts.us-east-1.amazonaws.com", must_not_call),
        "http://127.0.0.1:5781",
    )
    assert stand_in.ok
    assert asked == []
    assert "identity not asked: ECR is served at http://127.0.0.1:5781" in stand_in.detail


# ---------------------------------------------------------------------------------------------
# GetAuthorizationToken


def ecr_client(
    get_token: Callable[..., Any], endpoint: str = "https://api.ecr.eu-west-1.amazonaws.com"
) -> Any:
    return SimpleNamespace(meta=SimpleNamespace(endpoint_url=endpoint), get_authorization_token=get_token)


def token_reply(proxy: str) -> Callable[..., dict[str, Any]]:
    token = base64.b64encode(f"AWS:{PASSWORD}".encode()).decode()
    expires = datetime.now(UTC) + timedelta(hours=12)

    def call(**kwargs: Any) -> dict[str, Any]:
        return {
            "authorizationData": [{"authorizationToken": token, "expiresAt": expires, "proxyEndpoint": proxy}]
        }

    return call


@pytest.mark.parametrize(
    ("error", "fix_part"),
    [
        (NoCredentialsError(), "give the worker an IAM role"),
        (
            client_error(
                "AccessDeniedException",
                "User: arn:aws:iam::1:user/x is not authorized to perform: ecr:GetAuthorizationToken",
                "GetAuthorizationToken",
            ),
            'allow ecr:GetAuthorizationToken on resource "*"',
        ),
        (
            EndpointConnectionError(endpoint_url="http://127.0.0.1:9/"),
            "check the network path to the ECR API",
        ),
        (client_error("UnrecognizedClientException", "bad", "GetAuthorizationToken"), "refresh or replace"),
        (client_error("ThrottlingException", "slow down", "GetAuthorizationToken"), "retry"),
    ],
)
def test_token_failures_name_their_fix(error: Exception, fix_part: str) -> None:
    outcome = check_token(lambda: ecr_client(raise_(error)), None)
    assert outcome.credentials is None
    assert not outcome.result.ok
    assert outcome.result.name == CHECK_TOKEN
    assert outcome.result.fix is not None and fix_part in outcome.result.fix


def test_no_region_is_a_failed_token_check() -> None:
    outcome = check_token(raise_(NoRegionError()), None)
    assert not outcome.result.ok
    assert outcome.result.fix is not None and "AWS_DEFAULT_REGION" in outcome.result.fix


def test_token_for_the_default_registry_uses_the_proxy_endpoint() -> None:
    outcome = check_token(
        lambda: ecr_client(token_reply("http://127.0.0.1:5780"), "http://127.0.0.1:5781"), None
    )
    assert outcome.result.ok
    assert outcome.base_url == "http://127.0.0.1:5780"
    assert outcome.credentials is not None and outcome.credentials.registry == HOST
    assert "127.0.0.1:5780 from http://127.0.0.1:5781, valid 11h" in outcome.result.detail
    assert PASSWORD not in repr(outcome) and PASSWORD not in outcome.result.detail


# ---------------------------------------------------------------------------------------------
# The registry: login, repository, tag


def token_outcome(host: str = HOST) -> TokenOutcome:
    outcome = check_token(lambda: ecr_client(token_reply(f"http://{host}")), None)
    assert outcome.credentials is not None
    return outcome


def registry(handler: Callable[[httpx.Request], httpx.Response]) -> httpx.Client:
    return httpx.Client(transport=httpx.MockTransport(handler))


def ecr_error(status: int, code: str, message: str) -> httpx.Response:
    return httpx.Response(status, json={"errors": [{"code": code, "message": message}]})


def test_registry_login_sends_basic_auth_and_passes_on_200() -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("authorization", ""))
        return httpx.Response(200, json={})

    result = check_registry_login(registry(handler), token_outcome())
    assert result.ok and result.detail == "http://127.0.0.1:5780/v2/ accepted the token (HTTP 200)"
    assert seen == ["Basic " + base64.b64encode(f"AWS:{PASSWORD}".encode()).decode()]


def test_registry_refusing_the_token_fails_without_showing_it() -> None:
    refused = registry(
        lambda request: ecr_error(401, "DENIED", "Your authorization token has expired. Reauthenticate")
    )
    result = check_registry_login(refused, token_outcome())
    assert not result.ok
    assert "HTTP 401" in result.detail and "has expired" in result.detail
    assert PASSWORD not in result.detail and PASSWORD not in (result.fix or "")


def test_unreachable_registry_names_the_network_path() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused")

    result = check_registry_login(registry(handler), token_outcome())
    assert not result.ok
    assert result.fix is not None and "network path to 127.0.0.1:5780" in result.fix


def test_registry_checks_are_skipped_without_a_token() -> None:
    no_token = TokenOutcome(doctor.failed(CHECK_TOKEN, "failed", "fix it"))
    client = registry(lambda request: pytest.fail("no request without a token"))
    login = check_registry_login(client, no_token)
    repository, tag = check_image(client, no_token, parse_image_ref(f"{HOST}/team/app:v1"))
    for result in (login, repository, tag):
        assert not result.ok and result.skipped and result.fix


def test_image_that_resolves() -> None:
    digest = "sha256:" + "a" * 64
    methods: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        methods.append(request.method)
        assert request.url.path == "/v2/team/app/manifests/v1"
        assert "application/vnd.oci.image.index.v1+json" in request.headers["accept"]
        return httpx.Response(200, headers={"Docker-Content-Digest": digest})

    repository, tag = check_image(registry(handler), token_outcome(), parse_image_ref(f"{HOST}/team/app:v1"))
    assert methods == ["HEAD"]  # a HEAD does not count as a pull
    assert repository.ok and tag.ok
    assert tag.detail == f"tag v1 of 'team/app' resolves to {digest}"


def test_missing_repository() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "HEAD":
            return httpx.Response(404)
        return ecr_error(404, "NAME_UNKNOWN", "The repository with name 'no/such' does not exist")

    repository, tag = check_image(registry(handler), token_outcome(), parse_image_ref(f"{HOST}/no/such:v1"))
    assert (repository.name, repository.ok, tag.ok, tag.skipped) == (CHECK_REPOSITORY, False, False, True)
    assert repository.fix is not None and "--repository-name no/such" in repository.fix


def test_missing_tag() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "HEAD":
            return httpx.Response(404)
        return ecr_error(404, "MANIFEST_UNKNOWN", "manifest unknown")

    repository, tag = check_image(registry(handler), token_outcome(), parse_image_ref(f"{HOST}/team/app:v9"))
    assert repository.ok
    assert (tag.name, tag.ok, tag.skipped) == (CHECK_TAG, False, False)
    assert "tag v9 not found" in tag.detail
    assert tag.fix is not None and "push the tag" in tag.fix


def test_denied_repository_names_the_iam_action() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return ecr_error(403, "DENIED", "not authorized to perform: ecr:BatchGetImage")

    repository, tag = check_image(registry(handler), token_outcome(), parse_image_ref(f"{HOST}/team/app:v1"))
    assert not repository.ok and tag.skipped
    assert repository.fix is not None and "ecr:BatchGetImage" in repository.fix


def test_digest_reference_is_checked_by_digest() -> None:
    digest = "sha256:" + "b" * 64

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.path == f"/v2/team/app/manifests/{digest}"
        return httpx.Response(200, headers={"Docker-Content-Digest": digest})

    _, tag = check_image(registry(handler), token_outcome(), parse_image_ref(f"{HOST}/team/app@{digest}"))
    assert tag.ok and tag.detail.startswith("digest ")


# ---------------------------------------------------------------------------------------------
# Which registry


def test_registry_from_the_image_ecr_host_or_configured_host() -> None:
    ecr = resolve_registry(parse_image_ref(f"{ECR_HOST}/team/app:1"), None, ())
    assert ecr is not None and (ecr.account_id, ecr.region) == ("123456789012", "eu-west-1")
    local = resolve_registry(parse_image_ref(f"{HOST}/team/app:1"), None, (HOST,))
    assert local is not None and local.custom and local.host == HOST
    with pytest.raises(ConfigError, match=r"not in an Amazon ECR registry .*ecr_registries"):
        resolve_registry(parse_image_ref("docker.io/library/busybox"), None, ())


def test_registry_flag() -> None:
    assert resolve_registry(None, None, ()) is None
    given = resolve_registry(None, "Registry.Internal:5000", ())
    assert given is not None and given.host == "registry.internal:5000" and given.custom
    ecr = resolve_registry(None, ECR_HOST, ())
    assert ecr is not None and ecr.region == "eu-west-1"
    with pytest.raises(ConfigError, match="differs from the registry of --image"):
        resolve_registry(parse_image_ref(f"{ECR_HOST}/team/app:1"), HOST, ())
    with pytest.raises(ConfigError, match="scheme"):
        resolve_registry(None, "https://x.example", ())


def test_configured_registries_come_from_the_environment_without_airflow(tmp_path: Path) -> None:
    environ = {"HOME": str(tmp_path), REGISTRIES_ENV: f"{HOST}, other:5000"}
    assert configured_registries(environ) == (HOST, "other:5000")
    assert configured_registries({"HOME": str(tmp_path)}) == ()


# ---------------------------------------------------------------------------------------------
# The Airflow connection


def never(conn_id: str) -> str | None:
    raise AssertionError("Airflow must not be asked outside an Airflow installation")


def test_outside_airflow_the_connection_is_not_checked(tmp_path: Path) -> None:
    environ = {"HOME": str(tmp_path)}
    implicit = check_airflow_connection("aws_default", False, environ, lookup=never)
    assert implicit.ok and "not checked" in implicit.detail
    explicit = check_airflow_connection("aws_ecr", True, environ, lookup=never)
    assert not explicit.ok and explicit.fix is not None and "AIRFLOW_CONN_AWS_ECR" in explicit.fix
    from_env = check_airflow_connection(
        "aws_ecr", True, {**environ, "AIRFLOW_CONN_AWS_ECR": '{"conn_type": "aws"}'}, lookup=never
    )
    assert from_env.ok and "AIRFLOW_CONN_AWS_ECR" in from_env.detail


def test_airflow_not_installed(tmp_path: Path) -> None:
    environ = {"HOME": str(tmp_path), "AIRFLOW_HOME": str(tmp_path)}
    result = check_airflow_connection("aws_default", False, environ, lookup=never, importable=lambda: False)
    assert result.ok and "Airflow is not installed" in result.detail


def test_inside_airflow_a_missing_connection_fails_only_when_named(tmp_path: Path) -> None:
    environ = {"HOME": str(tmp_path), "AIRFLOW_HOME": str(tmp_path)}
    implicit = check_airflow_connection("aws_default", False, environ, lookup=lambda c: None)
    assert implicit.ok and "default credential chain" in implicit.detail
    explicit = check_airflow_connection("missing_conn", True, environ, lookup=lambda c: None)
    assert not explicit.ok
    assert explicit.fix is not None and "airflow connections add missing_conn --conn-type aws" in explicit.fix
    found = check_airflow_connection("aws_default", True, environ, lookup=lambda c: "aws")
    assert found.ok and "conn_type aws" in found.detail


def test_inside_airflow_a_broken_lookup_fails_only_when_named(tmp_path: Path) -> None:
    environ = {"HOME": str(tmp_path), "AIRFLOW_HOME": str(tmp_path)}
    broken = raise_(RuntimeError("no such table: connection"))
    assert check_airflow_connection("aws_default", False, environ, lookup=broken).ok
    explicit = check_airflow_connection("aws_ecr", True, environ, lookup=broken)
    assert not explicit.ok and "no such table" in explicit.detail
    assert explicit.fix is not None and "airflow db migrate" in explicit.fix


def test_a_home_airflow_with_a_config_counts_as_an_installation(tmp_path: Path) -> None:
    assert airflow_home({"HOME": str(tmp_path)}) is None
    (tmp_path / "airflow").mkdir()
    (tmp_path / "airflow" / "airflow.cfg").write_text("[core]\n")
    assert airflow_home({"HOME": str(tmp_path)}) == tmp_path / "airflow"
    assert airflow_home({"HOME": str(tmp_path), "AIRFLOW_HOME": "/srv/af"}) == Path("/srv/af")


def test_the_airflow_check_is_a_plugin_registered_by_the_airflow_layer() -> None:
    """The analyst's doctor imports no Airflow: the Airflow layer registers its check and its
    registries through the ``airdock.doctor`` entry point."""
    from airdock.analyst.doctor.runner import DoctorPlugin, load_plugins

    plugins = {plugin.name: plugin for plugin in load_plugins()}
    assert "airflow" in plugins, "pip install -e . registers the entry point"
    assert plugins["airflow"].checks is not None
    known = DoctorPlugin("test", registries=lambda environ: ("vpce.example:443",))
    assert configured_registries({}, [known]) == ("vpce.example:443",)
    assert configured_registries({REGISTRIES_ENV: HOST}, [known]) == (HOST,), "the variable wins"
