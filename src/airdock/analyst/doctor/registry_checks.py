"""The registry's checks: it accepts the token, and (with ``--image``) the repository and tag exist.

Asked of the registry itself with the token (``GET /v2/``, ``HEAD /v2/<repo>/manifests/<ref>``),
i.e. with the permissions a pull uses, not ``ecr:DescribeRepositories``.
"""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from airdock.analyst.doctor.report import CheckResult, failed, one_line, passed, skipped
from airdock.images import ImageRef

if TYPE_CHECKING:
    from airdock.analyst.doctor.aws_checks import TokenOutcome

__all__ = [
    "CHECK_LOGIN",
    "CHECK_REPOSITORY",
    "CHECK_TAG",
    "check_image",
    "check_registry_login",
    "is_loopback",
    "registry_base_url",
]

CHECK_LOGIN = "registry login"
CHECK_REPOSITORY = "repository"
CHECK_TAG = "image tag"
_MANIFEST_TYPES = (
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
)


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


def _registry_error(response: Any) -> tuple[str, str]:
    """(code, message) of a registry error body (``{"errors": [{"code", "message"}]}``)."""
    try:
        first = (response.json().get("errors") or [{}])[0]
        return str(first.get("code") or ""), one_line(str(first.get("message") or ""))
    except Exception:  # not ECR's JSON error body: a proxy's page, or nothing (HEAD)
        return "", one_line(str(getattr(response, "text", "") or ""))


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
            f"{url} unreachable: {one_line(exc) or type(exc).__name__}",
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
        reason = f"{url} unreachable: {one_line(exc) or type(exc).__name__}"
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
