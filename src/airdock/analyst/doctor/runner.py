"""``airdock doctor``: is this machine ready to run private ECR images? One check, one verdict each.

Every check is a plain function over plain inputs — a docker client factory, a boto3 session, an
httpx client, a clock, the environment — and returns a :class:`CheckResult`. A failed check always
carries a fix a person can act on; a check that cannot run because an earlier one failed is failed
as *skipped*, with the reason, so the report never hides a check and never crashes.

The checks, in order (later ones use what earlier ones found):

1. ``docker engine``   — the engine answers; its version.
2. ``disk space``      — free space under the engine's data root is at least ``--min-free``.
3. ``aws credentials`` — boto3's credential chain resolves; whose they are (STS GetCallerIdentity).
4. ``ecr token``       — ECR GetAuthorizationToken works for the registry.
5. ``registry login``  — the registry accepts that token (``GET /v2/`` with Basic ``AWS:<token>``).
6. ``repository``, ``image tag`` — with ``--image``: the repository exists and the tag (or digest)
   resolves, asked of the registry itself (``HEAD /v2/<repo>/manifests/<ref>``), i.e. with the
   permissions a pull uses (``ecr:BatchGetImage``), not ``ecr:DescribeRepositories``.
7. ``airflow connection`` — the Airflow connection ``--aws-conn-id`` exists, when run inside an
   Airflow installation. A missing connection fails only when ``--aws-conn-id`` was given: without
   it EcrDockerOperator falls back to boto3's default credential chain, which checks 3–5 test.

No Airflow import at module level: the Airflow lookup imports it lazily, and only inside an Airflow
installation (``AIRFLOW_HOME`` set, or ``~/airflow/airflow.cfg`` present), because importing
Airflow elsewhere creates ``~/airflow``. The registry password is never put in a result.
"""

from __future__ import annotations

import importlib.util
import ipaddress
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from airdock.auth.credentials import RegistryCredentials
from airdock.auth.ecr import GET_TOKEN_ACTION, EcrTokenSource
from airdock.engine.client import describe_engine_error
from airdock.errors import AccessDeniedError, ConfigError, RegistryAuthError
from airdock.images import EcrRegistry, ImageRef, ecr_registry_at, ecr_registry_for, parse_registry_list

__all__ = [
    "CHECK_AIRFLOW",
    "CHECK_CREDENTIALS",
    "CHECK_DISK",
    "CHECK_ENGINE",
    "CHECK_LOGIN",
    "CHECK_REPOSITORY",
    "CHECK_TAG",
    "CHECK_TOKEN",
    "DEFAULT_AWS_CONN_ID",
    "DEFAULT_MIN_FREE",
    "CheckResult",
    "DoctorReport",
    "FreeSpaceThreshold",
    "TokenOutcome",
    "airflow_home",
    "check_airflow_connection",
    "check_credentials",
    "check_disk",
    "check_engine",
    "check_image",
    "check_registry_login",
    "check_token",
    "configured_registries",
    "mask_access_key",
    "registry_base_url",
    "resolve_registry",
]

CHECK_ENGINE = "docker engine"
CHECK_DISK = "disk space"
CHECK_CREDENTIALS = "aws credentials"
CHECK_TOKEN = "ecr token"  # noqa: S105 - a check name
CHECK_LOGIN = "registry login"
CHECK_REPOSITORY = "repository"
CHECK_TAG = "image tag"
CHECK_AIRFLOW = "airflow connection"

DEFAULT_AWS_CONN_ID = "aws_default"
DEFAULT_MIN_FREE = "2GB"
DEFAULT_MIN_FREE_BYTES = 2_000_000_000
REGISTRIES_ENV = "AIRFLOW__AIRDOCK__ECR_REGISTRIES"

_MANIFEST_TYPES = (
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
)
# Hosts of AWS's own API endpoints, to tell "AWS itself" from a stand-in or a private endpoint.
_AWS_API_SUFFIXES = (
    ".amazonaws.com",
    ".amazonaws.com.cn",
    ".api.aws",
    ".on.aws",
    ".c2s.ic.gov",
    ".sc2s.sgov.gov",
)
_REJECTED_CREDENTIALS = {
    "InvalidClientTokenId",
    "SignatureDoesNotMatch",
    "ExpiredToken",
    "ExpiredTokenException",
    "UnrecognizedClientException",
    "InvalidAccessKeyId",
}
FIX_ENGINE = "start the Docker daemon or set DOCKER_HOST to the socket of one that runs"
FIX_CREDENTIALS = (
    "set AWS credentials (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE) "
    "or give the worker an IAM role"
)


@dataclass(frozen=True)
class CheckResult:
    """One check's verdict. Every failed check carries a ``fix``; ``skipped`` means it could not run."""

    name: str
    ok: bool
    detail: str
    fix: str | None = None
    skipped: bool = False

    def __post_init__(self) -> None:
        if not self.ok and not self.fix:
            raise ValueError(f"failed check {self.name!r} has no fix")


def passed(name: str, detail: str) -> CheckResult:
    return CheckResult(name, True, detail)


def failed(name: str, detail: str, fix: str) -> CheckResult:
    return CheckResult(name, False, detail, fix)


def skipped(name: str, reason: str, fix: str) -> CheckResult:
    """A check that could not run because an earlier one failed: counted as failed."""
    return CheckResult(name, False, f"skipped: {reason}", fix, skipped=True)


@dataclass(frozen=True)
class DoctorReport:
    """All checks in order; ``ok`` only when every one passed."""

    checks: tuple[CheckResult, ...]
    registry: str | None = None
    image: str | None = None

    @property
    def ok(self) -> bool:
        return all(check.ok for check in self.checks)

    @property
    def failed_names(self) -> list[str]:
        return [check.name for check in self.checks if not check.ok]

    @property
    def exit_code(self) -> int:
        return 0 if self.ok else 1

    def summary(self) -> str:
        if self.ok:
            return f"all {len(self.checks)} checks passed"
        names = self.failed_names
        return f"{len(names)} of {len(self.checks)} checks failed: {', '.join(names)}"

    def lines(self) -> list[str]:
        """The report as text: ``✓ name: detail`` / ``✗ name: detail`` + ``    fix: ...``; the summary."""
        out: list[str] = []
        for check in self.checks:
            out.append(f"{'✓' if check.ok else '✗'} {check.name}: {check.detail}")
            if check.fix and not check.ok:
                out.append(f"    fix: {check.fix}")
        out.append(self.summary())
        return out

    def to_json(self) -> str:
        return json.dumps(
            {
                "ok": self.ok,
                "registry": self.registry,
                "image": self.image,
                "checks": [asdict(check) for check in self.checks],
                "failed": self.failed_names,
                "summary": self.summary(),
            },
            indent=2,
        )


# ---------------------------------------------------------------------------------------------
# Pure helpers


def mask_access_key(key: str) -> str:
    """An access key id shown as its first and last 4 characters (``AKIA…MPLE``); short ones not at all."""
    if len(key) < 12:
        return "…" if not key else "****"
    return f"{key[:4]}…{key[-4:]}"


def _hostname(host: str) -> str:
    """``host`` without its port (``[::1]:5000`` → ``::1``)."""
    if host.startswith("["):
        return host[1:].partition("]")[0]
    name, _, port = host.rpartition(":")
    return name if name and port.isdigit() and ":" not in name else host


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and 127.0.0.0/8 / ::1 hosts (with or without a port)."""
    name = _hostname(host).lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def registry_base_url(host: str, proxy_endpoint: str | None = None) -> str:
    """``scheme://host`` for the registry's HTTP API.

    The scheme of ``proxy_endpoint`` (GetAuthorizationToken's reply) when it names this host;
    else http for loopback hosts (the engine treats them as insecure registries), https otherwise.
    """
    if proxy_endpoint:
        parsed = urlparse(proxy_endpoint if "://" in proxy_endpoint else f"https://{proxy_endpoint}")
        if parsed.scheme in ("http", "https") and parsed.netloc.lower() == host.lower():
            return f"{parsed.scheme}://{host}"
    return f"{'http' if is_loopback(host) else 'https'}://{host}"


def _is_aws_endpoint(url: str | None) -> bool:
    host = (urlparse(url).hostname or "") if url else ""
    return host.endswith(_AWS_API_SUFFIXES)


def _one_line(exc: BaseException | str, limit: int = 300) -> str:
    text = " ".join(str(exc).split()) or (type(exc).__name__ if isinstance(exc, BaseException) else "")
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass(frozen=True)
class FreeSpaceThreshold:
    """The least free space under the engine's data root: bytes (``2GB``) or a percentage (``10%``)."""

    min_bytes: int | None = None
    min_percent: float | None = None

    @classmethod
    def parse(cls, text: str) -> FreeSpaceThreshold:
        value = text.strip()
        if value.endswith("%"):
            try:
                percent = float(value[:-1])
            except ValueError:
                percent = -1.0
            if not 0.0 <= percent <= 100.0:
                raise ConfigError(f"invalid --min-free {text!r}: use a size (2GB) or a percentage (10%)")
            return cls(min_percent=percent)
        from airdock.hygiene.units import parse_size

        try:
            return cls(min_bytes=parse_size(value))
        except ConfigError:
            raise ConfigError(
                f"invalid --min-free {text!r}: use a size (2GB) or a percentage (10%)"
            ) from None

    def describe(self) -> str:
        from airdock.hygiene.units import format_bytes

        if self.min_percent is not None:
            return f"{self.min_percent:g}%"
        return format_bytes(self.min_bytes or 0)

    def enough(self, free: int, total: int) -> bool:
        if self.min_percent is not None:
            return total > 0 and free * 100 >= self.min_percent * total
        return free >= (self.min_bytes or 0)


# ---------------------------------------------------------------------------------------------
# Registry selection


def airflow_home(environ: Mapping[str, str]) -> Path | None:
    """The Airflow installation this process is in: ``$AIRFLOW_HOME``, or ``~/airflow`` with a config."""
    configured = environ.get("AIRFLOW_HOME")
    if configured:
        return Path(configured).expanduser()
    default = Path(environ.get("HOME") or Path.home()) / "airflow"
    return default if (default / "airflow.cfg").is_file() else None


def _airflow_importable() -> bool:
    return importlib.util.find_spec("airflow") is not None


def configured_registries(environ: Mapping[str, str]) -> tuple[str, ...]:
    """``[airdock] ecr_registries``: from the environment variable, else Airflow's config when inside an
    Airflow installation (importing Airflow only then), else none."""
    if REGISTRIES_ENV in environ:
        return parse_registry_list(environ[REGISTRIES_ENV])
    if airflow_home(environ) is None or not _airflow_importable():
        return ()
    from airflow.configuration import conf

    return parse_registry_list(conf.get("airdock", "ecr_registries", fallback=None))


def resolve_registry(
    image: ImageRef | None, registry: str | None, configured: tuple[str, ...]
) -> EcrRegistry | None:
    """The registry to check: the image's, else ``--registry``, else None (the caller's default).

    An image must live in an ECR registry: a standard ECR host, a configured one, or the host
    given with ``--registry``. A host given with ``--registry`` alone is taken as ECR (the user says so).
    """
    host = None
    if registry is not None:
        hosts = parse_registry_list(registry)
        if len(hosts) != 1:
            raise ConfigError(f"invalid --registry {registry!r}: give one host or host:port")
        host = hosts[0]
    if image is not None:
        if host is not None and host != image.registry:
            raise ConfigError(
                f"--registry {host} differs from the registry of --image ({image.registry}): give one of them"
            )
        found = ecr_registry_for(image, (*configured, *((host,) if host else ())))
        if found is None:
            raise ConfigError(
                f"image {image} is not in an Amazon ECR registry ({image.registry}); if that host is an ECR "
                f"endpoint under another name, list it in [airdock] ecr_registries ({REGISTRIES_ENV})"
            )
        return found
    if host is None:
        return None
    return ecr_registry_at(host)


# ---------------------------------------------------------------------------------------------
# The checks


def check_engine(client_factory: Callable[[], Any], where: str) -> tuple[CheckResult, Any | None]:
    """The engine answers: its version, and the client for the checks that need it (None when down)."""
    try:
        client = client_factory()
        version = client.version()
    except Exception as exc:  # any failure to talk to the engine is this check's verdict
        return failed(CHECK_ENGINE, f"no answer at {where}: {describe_engine_error(exc)}", FIX_ENGINE), None
    detail = f"Docker {version.get('Version', '?')} (API {version.get('ApiVersion', '?')}) at {where}"
    return passed(CHECK_ENGINE, detail), client


def check_disk(client: Any | None, threshold: FreeSpaceThreshold) -> CheckResult:
    """Free space on the filesystem under the engine's data root is at least ``threshold``."""
    from airdock.hygiene.inventory import read_disk
    from airdock.hygiene.units import format_bytes

    if client is None:
        return skipped(CHECK_DISK, "the Docker engine does not answer", FIX_ENGINE)
    try:
        root = str((client.info() or {}).get("DockerRootDir") or "?")
        disk = read_disk(client)
    except Exception as exc:
        return failed(CHECK_DISK, f"could not read the engine's data root: {_one_line(exc)}", FIX_ENGINE)
    if disk is None:
        return passed(CHECK_DISK, f"not measured: the data root {root} is not on this machine")
    free, total = disk.total_bytes - disk.used_bytes, disk.total_bytes
    percent = free * 100 / total if total else 0.0
    detail = (
        f"{format_bytes(free)} free of {format_bytes(total)} ({percent:.0f}%) under {root} "
        f"(minimum {threshold.describe()})"
    )
    if threshold.enough(free, total):
        return passed(CHECK_DISK, detail)
    return failed(
        CHECK_DISK,
        detail,
        "run `airdock gc` (try `airdock gc --dry-run` first) or free space on that filesystem",
    )


def check_credentials(
    session: Any, sts_factory: Callable[[], Any] | None, ecr_endpoint: str | None
) -> CheckResult:
    """boto3's credential chain resolves, and whose credentials they are (STS GetCallerIdentity).

    An unreachable STS leaves the identity unknown but does not fail the check: the credentials
    resolved, and the token check tells whether ECR takes them. STS refusing them fails it,
    unless ECR is served elsewhere (a stand-in or private endpoint) while STS is AWS's own: such
    credentials are meant for that endpoint, not for AWS.
    """
    from botocore.exceptions import (
        BotoCoreError,
        ClientError,
        ConnectTimeoutError,
        EndpointConnectionError,
        ReadTimeoutError,
    )

    try:
        credentials = session.get_credentials()
        frozen = credentials.get_frozen_credentials() if credentials is not None else None
    except (BotoCoreError, ClientError) as exc:
        return failed(CHECK_CREDENTIALS, f"could not resolve them: {_one_line(exc)}", FIX_CREDENTIALS)
    if frozen is None or not frozen.access_key:
        return failed(
            CHECK_CREDENTIALS,
            "none found (environment, shared credentials/config files, container or instance role)",
            FIX_CREDENTIALS,
        )
    source = (
        f"access key {mask_access_key(frozen.access_key)} from {getattr(credentials, 'method', None) or '?'}"
    )
    if sts_factory is None:
        return passed(CHECK_CREDENTIALS, f"{source} (identity not asked)")
    sts_endpoint: str | None = None
    try:
        sts = sts_factory()
        sts_endpoint = str(sts.meta.endpoint_url)
        if _is_aws_endpoint(sts_endpoint) and ecr_endpoint is not None and not _is_aws_endpoint(ecr_endpoint):
            # ECR is a stand-in (the local stack) or a private endpoint: AWS's own STS would not
            # know these credentials, and it may not even be reachable from here. Don't ask it.
            return passed(
                CHECK_CREDENTIALS,
                f"{source} (identity not asked: ECR is served at {ecr_endpoint}; "
                "set AWS_ENDPOINT_URL_STS to ask an STS there)",
            )
        arn = str(sts.get_caller_identity()["Arn"])
    except ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code", ""))
        if code in _REJECTED_CREDENTIALS:
            if _is_aws_endpoint(sts_endpoint) and not _is_aws_endpoint(ecr_endpoint):
                return passed(
                    CHECK_CREDENTIALS,
                    f"{source} (identity unknown: AWS STS refused them ({code}); "
                    f"ECR is served by {ecr_endpoint})",
                )
            return failed(
                CHECK_CREDENTIALS,
                f"{source}: AWS STS refused them ({code})",
                "refresh or replace the AWS credentials (expired session, deleted or mistyped key)",
            )
        return passed(CHECK_CREDENTIALS, f"{source} (identity unknown: STS answered {code or 'an error'})")
    except (EndpointConnectionError, ConnectTimeoutError, ReadTimeoutError):
        where = f" at {sts_endpoint}" if sts_endpoint else ""
        return passed(CHECK_CREDENTIALS, f"{source} (identity unknown: STS unreachable{where})")
    except BotoCoreError as exc:
        return passed(CHECK_CREDENTIALS, f"{source} (identity unknown: {_one_line(exc, 160)})")
    return passed(CHECK_CREDENTIALS, f"{source}: {arn}")


@dataclass(frozen=True)
class TokenOutcome:
    """What the token check learnt: the credentials (None on failure) and the registry's URL."""

    result: CheckResult
    credentials: RegistryCredentials | None = field(default=None, repr=False)
    base_url: str | None = None


class _RecordingClient:
    """An ECR client that keeps GetAuthorizationToken's reply, for its ``proxyEndpoint``."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.reply: dict[str, Any] | None = None

    def get_authorization_token(self, **kwargs: Any) -> Any:
        self.reply = self._client.get_authorization_token(**kwargs)
        return self.reply


def token_fix(exc: RegistryAuthError, endpoint: str | None) -> str:
    """The fix for a failed GetAuthorizationToken, from the kind of failure EcrTokenSource reports."""
    text = str(exc)
    if isinstance(exc, AccessDeniedError):
        return (
            f'allow {exc.action or GET_TOKEN_ACTION} on resource "*" in the IAM policy of this AWS identity'
        )
    if "no AWS credentials" in text:
        return FIX_CREDENTIALS
    if "no AWS region" in text:
        return "set AWS_DEFAULT_REGION (or pass --region), or name an ECR host that carries its region"
    if "unreachable" in text:
        return (
            f"check the network path to the ECR API at {endpoint or 'its endpoint'} "
            "(AWS_ENDPOINT_URL_ECR, proxy, VPC endpoint)"
        )
    if "rejected the credentials" in text:
        return "refresh or replace the AWS credentials (expired session, deleted or mistyped key)"
    return "check the ECR API's answer above; retry, or check the AWS service health"


def check_token(
    ecr_factory: Callable[[], Any], registry: EcrRegistry | None, clock: Callable[[], float] = time.time
) -> TokenOutcome:
    """ECR GetAuthorizationToken works for ``registry`` (None: the caller's default registry).

    Always calls the API (no token cache): the question is whether the call works now.
    """
    from botocore.exceptions import BotoCoreError, NoRegionError

    label = registry.host if registry is not None else "the default registry"
    try:
        client = ecr_factory()
    except NoRegionError:
        return TokenOutcome(
            failed(
                CHECK_TOKEN,
                f"no AWS region for {label}",
                "set AWS_DEFAULT_REGION (or pass --region), or name an ECR host that carries its region",
            )
        )
    except BotoCoreError as exc:
        return TokenOutcome(failed(CHECK_TOKEN, f"no ECR client: {_one_line(exc)}", FIX_CREDENTIALS))
    endpoint = str(getattr(getattr(client, "meta", None), "endpoint_url", "") or "") or None
    recording = _RecordingClient(client)
    try:
        credentials = EcrTokenSource(recording).fetch(registry)
    except RegistryAuthError as exc:
        return TokenOutcome(
            failed(CHECK_TOKEN, f"GetAuthorizationToken failed: {exc}", token_fix(exc, endpoint))
        )
    proxy = None
    if recording.reply:
        proxy = str(recording.reply["authorizationData"][0].get("proxyEndpoint") or "") or None
    from airdock.hygiene.units import format_age

    left = format_age(credentials.seconds_left(clock()))
    via = f" from {endpoint}" if endpoint else ""
    return TokenOutcome(
        passed(
            CHECK_TOKEN, f"GetAuthorizationToken gave a token for {credentials.registry}{via}, valid {left}"
        ),
        credentials,
        registry_base_url(credentials.registry, proxy),
    )


def _registry_error(response: Any) -> tuple[str, str]:
    """(code, message) of a registry error body (``{"errors": [{"code", "message"}]}``)."""
    try:
        first = (response.json().get("errors") or [{}])[0]
        return str(first.get("code") or ""), _one_line(str(first.get("message") or ""))
    except Exception:  # not ECR's JSON error body: a proxy's page, or nothing (HEAD)
        return "", _one_line(str(getattr(response, "text", "") or ""))


def check_registry_login(http: Any, token: TokenOutcome) -> CheckResult:
    """The registry accepts the token: ``GET /v2/`` with Basic auth answers 200."""
    import httpx

    if token.credentials is None or token.base_url is None:
        return skipped(CHECK_LOGIN, "no token (the ecr token check failed)", "fix the ecr token check first")
    url = f"{token.base_url}/v2/"
    host = token.credentials.registry
    try:
        response = http.get(url, auth=(token.credentials.username, token.credentials.password))
    except httpx.HTTPError as exc:
        return failed(
            CHECK_LOGIN,
            f"{url} unreachable: {_one_line(exc) or type(exc).__name__}",
            f"check the network path to {host} (DNS, proxy, security group, VPC endpoint)",
        )
    if response.status_code == 200:
        return passed(CHECK_LOGIN, f"{url} accepted the token (HTTP 200)")
    code, message = _registry_error(response)
    said = f"{code}: {message}" if code or message else "no details"
    if response.status_code == 401:
        return failed(
            CHECK_LOGIN,
            f"{url} refused the token (HTTP 401, {said})",
            f"make sure {host} is the registry of the account the token is for "
            "(pass --registry or --region), and the machine's clock is right",
        )
    return failed(
        CHECK_LOGIN,
        f"{url} answered HTTP {response.status_code} ({said})",
        f"check that {host} is a registry (a proxy or load balancer in between?) and retry",
    )


def check_image(http: Any, token: TokenOutcome, ref: ImageRef) -> tuple[CheckResult, CheckResult]:
    """The repository exists and the tag (or digest) resolves, asked of the registry with the token."""
    import httpx

    repo, reference = ref.repository, ref.digest or ref.tag or "latest"
    kind = "digest" if ref.digest else "tag"
    not_checked = f"skipped: repository {repo!r} not found"
    if token.credentials is None or token.base_url is None:
        reason = "no token (the ecr token check failed)"
        fix = "fix the ecr token check first"
        return skipped(CHECK_REPOSITORY, reason, fix), skipped(CHECK_TAG, reason, fix)
    host = token.credentials.registry
    url = f"{token.base_url}/v2/{repo}/manifests/{reference}"
    auth = (token.credentials.username, token.credentials.password)
    headers = {"Accept": ", ".join(_MANIFEST_TYPES)}
    try:
        # HEAD first: it does not count as a pull; only an error needs the body, so GET then.
        response = http.head(url, auth=auth, headers=headers)
        if response.status_code != 200:
            response = http.get(url, auth=auth, headers=headers)
    except httpx.HTTPError as exc:
        reason = f"{url} unreachable: {_one_line(exc) or type(exc).__name__}"
        fix = f"check the network path to {host} (DNS, proxy, security group, VPC endpoint)"
        return failed(CHECK_REPOSITORY, reason, fix), skipped(CHECK_TAG, "registry unreachable", fix)
    status = response.status_code
    if status == 200:
        digest = response.headers.get("Docker-Content-Digest") or "?"
        return (
            passed(CHECK_REPOSITORY, f"{repo!r} exists in {host}"),
            passed(CHECK_TAG, f"{kind} {reference} of {repo!r} resolves to {digest}"),
        )
    code, message = _registry_error(response)
    if status == 404 and code == "NAME_UNKNOWN":
        fix = (
            f"create the repository: `aws ecr create-repository --repository-name {repo}` (or `airdock push` "
            "the image to it), or fix the image name"
        )
        return (
            failed(CHECK_REPOSITORY, f"{repo!r} does not exist in {host} ({message or code})", fix),
            CheckResult(CHECK_TAG, False, not_checked, fix, skipped=True),
        )
    if status == 404:
        return (
            passed(CHECK_REPOSITORY, f"{repo!r} exists in {host}"),
            failed(
                CHECK_TAG,
                f"{kind} {reference} not found in {repo!r} ({code or 'HTTP 404'}: {message or 'not found'})",
                f"push the {kind}: `docker push {ref}` (or `airdock push`), or fix the image reference",
            ),
        )
    if status == 403:
        fix = f"allow ecr:BatchGetImage on repository {repo!r} in the IAM policy of this AWS identity"
        return (
            failed(CHECK_REPOSITORY, f"access denied to {repo!r} in {host} ({message or code})", fix),
            skipped(CHECK_TAG, "access to the repository denied", fix),
        )
    said = f"{code}: {message}" if code or message else "no details"
    fix = f"retry; if it persists, check {host} and the network path to it"
    return (
        failed(CHECK_REPOSITORY, f"{url} answered HTTP {status} ({said})", fix),
        skipped(CHECK_TAG, f"the registry answered HTTP {status}", fix),
    )


def _airflow_lookup(conn_id: str) -> str | None:
    """The connection's type via Airflow (env vars, secrets backends, metadata DB); None when missing."""
    from airflow.models.connection import Connection

    try:
        connection = Connection.get_connection_from_secrets(conn_id)
    except Exception as exc:
        if type(exc).__name__ == "AirflowNotFoundException":
            return None
        raise
    return str(connection.conn_type or "?")


def check_airflow_connection(
    conn_id: str,
    explicit: bool,
    environ: Mapping[str, str],
    lookup: Callable[[str], str | None] | None = None,
    importable: Callable[[], bool] = _airflow_importable,
) -> CheckResult:
    """The Airflow connection ``conn_id`` exists, when run inside an Airflow installation.

    Missing fails only when ``explicit`` (``--aws-conn-id`` given): otherwise EcrDockerOperator
    uses boto3's default credential chain, which the AWS checks above already tested.
    ``AIRFLOW_CONN_<ID>`` variables count, even outside an installation.
    """
    home = airflow_home(environ)
    variable = f"AIRFLOW_CONN_{conn_id.upper()}"
    create = (
        f"create it: `airflow connections add {conn_id} --conn-type aws` (or set {variable}), "
        "or leave --aws-conn-id out to use the default credential chain"
    )
    default_chain = "EcrDockerOperator uses the default credential chain"
    if home is None or not importable():
        if environ.get(variable):
            return passed(CHECK_AIRFLOW, f"{conn_id!r} is set in {variable}")
        why = (
            "Airflow is not installed"
            if not importable()
            else "not inside an Airflow installation (AIRFLOW_HOME unset)"
        )
        if explicit:
            return failed(
                CHECK_AIRFLOW,
                f"{conn_id!r} not checked: {why}",
                f"run doctor where Airflow runs (set AIRFLOW_HOME), or set {variable}",
            )
        return passed(CHECK_AIRFLOW, f"not checked: {why}")
    try:
        conn_type = (lookup or _airflow_lookup)(conn_id)
    except Exception as exc:
        detail = f"could not look up {conn_id!r} in the Airflow at {home}: {_one_line(exc, 200)}"
        if explicit:
            return failed(
                CHECK_AIRFLOW,
                detail,
                f"check [database] sql_alchemy_conn and run `airflow db migrate`, or set {variable}",
            )
        return passed(CHECK_AIRFLOW, f"{detail}; {default_chain}")
    if conn_type is not None:
        return passed(CHECK_AIRFLOW, f"{conn_id!r} exists (conn_type {conn_type}) in the Airflow at {home}")
    if explicit:
        return failed(CHECK_AIRFLOW, f"{conn_id!r} does not exist in the Airflow at {home}", create)
    return passed(CHECK_AIRFLOW, f"{conn_id!r} not set in the Airflow at {home}: {default_chain}")


# ---------------------------------------------------------------------------------------------
# All checks together


@dataclass(frozen=True)
class DoctorOptions:
    """What ``airdock doctor`` was asked; ``aws_conn_id`` None means the default, not given explicitly."""

    image: str | None = None
    registry: str | None = None
    region: str | None = None
    aws_conn_id: str | None = None
    min_free: FreeSpaceThreshold = FreeSpaceThreshold(min_bytes=DEFAULT_MIN_FREE_BYTES)
    ask_identity: bool = True


def run_doctor(
    options: DoctorOptions,
    *,
    docker_factory: Callable[[], Any],
    session: Any,
    http: Any,
    environ: Mapping[str, str],
    clock: Callable[[], float] = time.time,
    airflow_lookup: Callable[[str], str | None] | None = None,
) -> DoctorReport:
    """Run every check; raise ConfigError only for bad input (before any check runs).

    ``session`` is a boto3 Session (credentials, profile, region), ``http`` an ``httpx.Client``
    with a short timeout, ``docker_factory`` returns a docker client (may raise when the engine is down).
    """
    from airdock.auth.session import ECR_CLIENT_CONFIG
    from airdock.images import parse_image_ref

    ref = parse_image_ref(options.image) if options.image is not None else None
    registry = resolve_registry(ref, options.registry, configured_registries(environ))
    region = (registry.region if registry is not None else None) or options.region

    def ecr_factory() -> Any:
        return session.client("ecr", region_name=region, config=ECR_CLIENT_CONFIG)

    def sts_factory() -> Any:
        from botocore.config import Config

        config = Config(connect_timeout=3, read_timeout=5, retries={"max_attempts": 1})
        return session.client("sts", region_name=region or session.region_name or "us-east-1", config=config)

    ecr_endpoint: str | None = None
    try:
        ecr_endpoint = str(ecr_factory().meta.endpoint_url)
    except Exception:  # the token check reports why there is no client
        ecr_endpoint = None

    where = environ.get("DOCKER_HOST") or "the default socket (unix:///var/run/docker.sock)"
    engine, client = check_engine(docker_factory, where)
    checks: list[CheckResult] = [engine, check_disk(client, options.min_free)]
    checks.append(check_credentials(session, sts_factory if options.ask_identity else None, ecr_endpoint))
    token = check_token(ecr_factory, registry, clock)
    checks += [token.result, check_registry_login(http, token)]
    if ref is not None:
        checks += check_image(http, token, ref)
    checks.append(
        check_airflow_connection(
            options.aws_conn_id or DEFAULT_AWS_CONN_ID,
            options.aws_conn_id is not None,
            environ,
            lookup=airflow_lookup,
        )
    )
    host = (
        registry.host if registry is not None else (token.credentials.registry if token.credentials else None)
    )
    return DoctorReport(tuple(checks), registry=host, image=str(ref) if ref is not None else None)
