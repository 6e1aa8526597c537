"""The registry gateway: ECR's auth and repository semantics in front of a Distribution registry.

A Docker engine talks to this app exactly as it talks to ``<acct>.dkr.ecr.<region>.amazonaws.com``:
HTTP Basic with user ``AWS`` and a password from GetAuthorizationToken, repositories that must be
created through the API first, and tags that cannot move in an ``IMMUTABLE`` repository. Whatever
passes is streamed to the loopback registry and back without buffering (blobs can be gigabytes);
only manifest PUTs are read whole, capped at ECR's 4 MiB manifest limit.

Errors use the Distribution JSON format with ECR's own codes and wording, so ``docker pull`` prints
the lines users know from ECR (``denied: Your authorization token has expired. ...``,
``name unknown: The repository with name ...``, ``tag invalid: The image tag ...``).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import enum
import hashlib
import json
import logging
import re
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Protocol

import anyio.to_thread
import httpx
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from airdock.local.api.rehearsal import Rehearsal
from airdock.local.iam_simulation import denial_message, registry_action
from airdock.local.settings import StackSettings
from airdock.local.store import Store, TokenState

log = logging.getLogger("airdock.local.gateway")

ECR_USER = "AWS"
API_VERSION_HEADER = "Docker-Distribution-API-Version"
API_VERSION = "registry/2.0"
MAX_MANIFEST_BYTES = 4 * 1024 * 1024  # ECR's manifest size limit

# Authentication failures as real ECR answers them: no credentials at all → 401 with a Basic
# challenge (so clients, the docker daemon included, send their login; body "Not Authorized" —
# real ECR sends that as bare text, here it is a Distribution error so clients parse it); an
# expired token → 403 DENIED "Your authorization token has expired. ..."; a malformed one (not
# Basic, not base64, not user AWS, or a password never issued) → 400 DENIED "Your authorization
# token is invalid.". The docker CLI shows the DENIED line either way, and airdock's reactive
# refresh keys on that wording, not on the status code.
STATUS_NO_CREDENTIALS = 401
STATUS_EXPIRED = 403
STATUS_INVALID = 400
MSG_NOT_AUTHORIZED = "Not Authorized"
MSG_EXPIRED = "Your authorization token has expired. Reauthenticate and try again."
MSG_INVALID = "Your authorization token is invalid."

_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
    }
)
# Request headers never forwarded upstream: credentials belong to the gateway, Host to httpx.
_DROP_REQUEST = _HOP_BY_HOP | {"authorization", "host"}
# Response headers the serving side (uvicorn) sets itself.
_DROP_RESPONSE = _HOP_BY_HOP | {"date", "server"}

_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]

# Repository-scoped Distribution routes. The name is greedy and anchored by the suffix, so
# ``team/app`` and ``.../blobs/uploads/<uuid>`` both resolve to the right repository.
_REPO_ROUTES: Sequence[re.Pattern[str]] = (
    re.compile(r"^/v2/(?P<name>.+)/manifests/(?P<reference>[^/]+)$"),
    re.compile(r"^/v2/(?P<name>.+)/blobs/uploads/?$"),
    re.compile(r"^/v2/(?P<name>.+)/blobs/uploads/[^/]+$"),
    re.compile(r"^/v2/(?P<name>.+)/blobs/[^/]+$"),
    re.compile(r"^/v2/(?P<name>.+)/tags/list$"),
)
_BLOB_DOWNLOAD = re.compile(r"^/v2/.+/blobs/sha256:[0-9a-f]{64}$")  # a layer or config, not an upload
_DIGEST = re.compile(r"^[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$")


class TagLookup(Protocol):
    """Where a tag points in the registry's storage (``airdock.local.registry.RegistryStorage``)."""

    def tag_digest(self, repo: str, tag: str) -> str | None: ...


class AuthResult(enum.Enum):
    OK = "ok"
    MISSING = "missing"
    EXPIRED = "expired"
    INVALID = "invalid"


def check_authorization(header: str | None, check_password: Callable[[str], TokenState]) -> AuthResult:
    """Classify an ``Authorization`` header the way ECR does; never raises.

    No header → MISSING; anything present that is not a valid ``AWS`` login — another scheme,
    bad base64, no password, another user, a password never issued — → INVALID (malformed).
    """
    if not header or not header.strip():
        return AuthResult.MISSING
    scheme, _, encoded = header.strip().partition(" ")
    if scheme.lower() != "basic" or not encoded.strip():
        return AuthResult.INVALID
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        return AuthResult.INVALID
    user, sep, password = decoded.partition(":")
    if not sep or not password:
        return AuthResult.INVALID
    state = check_password(password)
    if user != ECR_USER:
        # ECR tokens embed the user; a valid password under another user is not a valid login.
        return AuthResult.INVALID
    if state is TokenState.VALID:
        return AuthResult.OK
    if state is TokenState.EXPIRED:
        return AuthResult.EXPIRED
    return AuthResult.INVALID


@dataclass(frozen=True)
class RepoPath:
    """A repository-scoped registry path: the repository and, for manifests, the reference."""

    name: str
    reference: str | None = None


def parse_repo_path(path: str) -> RepoPath | None:
    """Return the repository a ``/v2/...`` path addresses, or None for ``/v2/``, ``_catalog`` etc."""
    for pattern in _REPO_ROUTES:
        match = pattern.match(path)
        if match:
            groups = match.groupdict()
            return RepoPath(name=groups["name"], reference=groups.get("reference"))
    return None


def is_digest(reference: str) -> bool:
    return bool(_DIGEST.match(reference))


def error_body(code: str, message: str, detail: object = None) -> bytes:
    """A Distribution-format error document."""
    error: dict[str, object] = {"code": code, "message": message}
    if detail is not None:
        error["detail"] = detail
    return json.dumps({"errors": [error]}).encode()


def _error(status: int, code: str, message: str, detail: object = None, **headers: str) -> Response:
    return Response(
        error_body(code, message, detail),
        status_code=status,
        media_type="application/json; charset=utf-8",
        headers={API_VERSION_HEADER: API_VERSION, **headers},
    )


_MANIFEST_TYPES = (
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
)


class _ManifestTooLarge(Exception):
    pass


async def _read_capped(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _ManifestTooLarge
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _ManifestTooLarge
        chunks.append(chunk)
    return b"".join(chunks)


def create_gateway_app(
    settings: StackSettings,
    store: Store,
    tags: TagLookup | None = None,
    *,
    rehearsal: Rehearsal | None = None,
) -> Starlette:
    """The gateway ASGI app for ``settings``; it listens wherever it is served (``gateway_port``).

    ``tags`` tells where a tag currently points (for immutable repositories); by default the
    registry is asked over HTTP. ``rehearsal``: the faults armed on the stack's API (a blob delay).
    """
    upstream = settings.registry_url
    realm = f'Basic realm="{settings.gateway_url}/",service="ecr.amazonaws.com"'
    state: dict[str, httpx.AsyncClient] = {}

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        client = httpx.AsyncClient(
            timeout=httpx.Timeout(connect=5.0, read=600.0, write=600.0, pool=60.0),
            limits=httpx.Limits(max_connections=64, max_keepalive_connections=16),
            follow_redirects=False,
            trust_env=False,  # never send loopback traffic through an environment proxy
        )
        # Forward exactly what the client sent: no default Accept/Accept-Encoding/User-Agent.
        for name in ("accept", "accept-encoding", "user-agent"):
            client.headers.pop(name, None)
        state["client"] = client
        try:
            yield
        finally:
            state.pop("client", None)
            await client.aclose()

    def denied(result: AuthResult) -> Response:
        if result is AuthResult.EXPIRED:
            return _error(STATUS_EXPIRED, "DENIED", MSG_EXPIRED)
        if result is AuthResult.INVALID:
            return _error(STATUS_INVALID, "DENIED", MSG_INVALID)
        return _error(
            STATUS_NO_CREDENTIALS, "UNAUTHORIZED", MSG_NOT_AUTHORIZED, **{"WWW-Authenticate": realm}
        )

    def rewrite_location(value: str) -> str:
        if value.startswith(upstream):
            return settings.gateway_url + value[len(upstream) :]
        return value

    async def current_digest(client: httpx.AsyncClient, repo: str, tag: str) -> str | None:
        if tags is not None:
            return await anyio.to_thread.run_sync(tags.tag_digest, repo, tag)
        resp = await client.head(
            f"{upstream}/v2/{repo}/manifests/{tag}", headers={"Accept": ", ".join(_MANIFEST_TYPES)}
        )
        return resp.headers.get("Docker-Content-Digest") if resp.status_code == 200 else None

    async def handle(request: Request) -> Response:
        started = time.monotonic()
        path = request.url.path
        method = request.method

        def done(response: Response) -> Response:
            log.info("%s %s %d %.3fs", method, path, response.status_code, time.monotonic() - started)
            return response

        if path != "/v2" and not path.startswith("/v2/"):
            return done(_error(404, "NOT_FOUND", "not found", {"path": path}))

        auth = check_authorization(request.headers.get("authorization"), store.check_password)
        if auth is not AuthResult.OK:
            return done(denied(auth))

        target = parse_repo_path(path)
        repository = store.get_repository(target.name) if target is not None else None
        if target is not None and repository is None:
            return done(
                _error(
                    404,
                    "NAME_UNKNOWN",
                    f"The repository with name '{target.name}' does not exist in the registry "
                    f"with id '{settings.account_id}'",
                )
            )

        action = registry_action(method, path) if target is not None else None
        if target is not None and action in settings.denied_actions:
            message = denial_message(settings.account_id, settings.region, action, target.name)
            return done(_error(403, "DENIED", message))

        client = state.get("client")
        if client is None:
            return done(_error(503, "UNAVAILABLE", "gateway is not started"))
        if rehearsal is not None and method == "GET" and _BLOB_DOWNLOAD.match(path):
            held = rehearsal.blob_delay()
            if held:
                await asyncio.sleep(held)  # a rehearsed slow registry (see airdock.local.api.rehearsal)

        headers = [(k, v) for k, v in request.headers.items() if k.lower() not in _DROP_REQUEST]
        content: bytes | AsyncIterator[bytes] | None = None
        reference = target.reference if target is not None else None
        try:
            if method == "PUT" and target is not None and reference is not None:
                manifest = await _read_capped(request, MAX_MANIFEST_BYTES)
                pushed = "sha256:" + hashlib.sha256(manifest).hexdigest()
                if (
                    repository is not None
                    and repository.tag_mutability == "IMMUTABLE"
                    and not is_digest(reference)
                    and (current := await current_digest(client, target.name, reference)) is not None
                    and current != pushed
                ):
                    return done(
                        _error(
                            400,
                            "TAG_INVALID",
                            f"The image tag '{reference}' already exists in the "
                            f"'{target.name}' repository and cannot be overwritten because "
                            "the repository is immutable.",
                        )
                    )
                content = manifest
                headers = [(k, v) for k, v in headers if k.lower() != "content-length"]
            elif "content-length" in request.headers or "transfer-encoding" in request.headers:
                content = request.stream()
        except _ManifestTooLarge:
            return done(
                _error(
                    400,
                    "MANIFEST_INVALID",
                    "manifest invalid",
                    f"manifest is larger than the {MAX_MANIFEST_BYTES}-byte limit",
                )
            )
        except ClientDisconnect:
            return done(Response(status_code=400))
        except httpx.TransportError as exc:
            return done(_unavailable(exc))

        raw_path = request.scope.get("raw_path") or path.encode()
        url = upstream + raw_path.decode("latin-1")
        query = request.scope.get("query_string", b"")
        if query:
            url += "?" + query.decode("latin-1")

        upstream_request = client.build_request(method, url, headers=headers, content=content)
        try:
            upstream_response = await client.send(upstream_request, stream=True)
        except ClientDisconnect:
            return done(Response(status_code=400))
        except httpx.TransportError as exc:
            return done(_unavailable(exc))

        response_headers: list[tuple[bytes, bytes]] = []
        has_api_version = False
        for key, value in upstream_response.headers.multi_items():
            lower = key.lower()
            if lower in _DROP_RESPONSE:
                continue
            if lower == "location":
                value = rewrite_location(value)
            if lower == API_VERSION_HEADER.lower():
                has_api_version = True
            response_headers.append((lower.encode("latin-1"), value.encode("latin-1")))
        if not has_api_version:
            response_headers.append((API_VERSION_HEADER.lower().encode(), API_VERSION.encode()))

        return _ProxyResponse(upstream_response, response_headers, f"{method} {path}", started)

    async def http_error(request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        code = "UNSUPPORTED" if status == 405 else "UNKNOWN"
        message = "unsupported method" if status == 405 else "unknown error"
        if status == 500:
            log.error("%s %s failed: %s", request.method, request.url.path, type(exc).__name__)
        return _error(status, code, message)

    return Starlette(
        routes=[Route("/{path:path}", handle, methods=_METHODS)],
        lifespan=lifespan,
        exception_handlers={HTTPException: http_error, Exception: http_error},
    )


class _ProxyResponse(StreamingResponse):
    """Streams an upstream response as is; always closes it and logs one line, even on disconnect."""

    def __init__(
        self, upstream: httpx.Response, headers: list[tuple[bytes, bytes]], what: str, started: float
    ) -> None:
        self._upstream = upstream
        self._what = what
        self._started = started
        self._sent = 0
        super().__init__(self._relay(), status_code=upstream.status_code)
        self.raw_headers = headers

    async def _relay(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._upstream.aiter_raw():
                self._sent += len(chunk)
                yield chunk
        except httpx.TransportError as exc:
            # Too late for an error status: stop short so the client sees a truncated body.
            log.warning(
                "%s: registry stream broke after %dB (%s)", self._what, self._sent, type(exc).__name__
            )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self._upstream.aclose()
            elapsed = time.monotonic() - self._started
            log.info("%s %d %dB %.3fs", self._what, self.status_code, self._sent, elapsed)


def _unavailable(exc: httpx.TransportError) -> Response:
    log.warning("registry unreachable: %s", type(exc).__name__)
    return _error(503, "UNAVAILABLE", "the local registry is unavailable; run `airdock local up`")
