"""The registry gateway against the real Distribution registry, served by uvicorn on loopback."""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from airdock.local.gateway import (
    MAX_MANIFEST_BYTES,
    MSG_EXPIRED,
    MSG_INVALID,
    AuthResult,
    RepoPath,
    check_authorization,
    create_gateway_app,
    parse_repo_path,
)
from airdock.local.settings import StackSettings
from airdock.local.store import Store, TokenState
from tests.registry_push import (
    SCHEMA2_CONFIG,
    SCHEMA2_LAYER,
    SCHEMA2_MANIFEST,
    free_port,
    needs_registry,
    push_blob,
    registry_available,
    running_registry,
    sha256_digest,
)

pytestmark = pytest.mark.timeout(120)


@dataclass
class Gateway:
    settings: StackSettings
    store: Store
    url: str
    password: str

    def client(self, password: str | None = None, user: str = "AWS") -> httpx.Client:
        return httpx.Client(
            base_url=self.url, auth=(user, password or self.password), timeout=60.0, trust_env=False
        )


def _serve(app: object, port: int) -> tuple[uvicorn.Server, threading.Thread]:
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, access_log=False)  # type: ignore[arg-type]
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="gateway-test", daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("gateway did not start")
        time.sleep(0.02)
    return server, thread


@contextmanager
def _served(app: object, port: int) -> Iterator[str]:
    server, thread = _serve(app, port)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    if not registry_available():
        pytest.skip("/usr/bin/docker-registry is not installed (`make test` installs it)")
    data_dir = tmp_path_factory.mktemp("gateway")
    probe = StackSettings(data_dir=data_dir, gateway_port=free_port(), api_port=free_port())
    with running_registry(probe.registry_root) as registry_url:
        settings = StackSettings(
            data_dir=data_dir,
            gateway_port=probe.gateway_port,
            api_port=probe.api_port,
            registry_port=int(registry_url.rsplit(":", 1)[1]),
        )
        store = Store(settings.store_path)
        server, thread = _serve(create_gateway_app(settings, store), settings.gateway_port)
        try:
            token = store.issue_token(3600)
            yield Gateway(settings, store, settings.gateway_url, token.password)
        finally:
            server.should_exit = True
            thread.join(timeout=15)
            store.close()
    assert not thread.is_alive()


def _errors(resp: httpx.Response) -> list[dict[str, object]]:
    assert resp.headers["content-type"].startswith("application/json")
    errors = resp.json()["errors"]
    assert isinstance(errors, list)
    return errors


def _config_blob(seed: str) -> bytes:
    return json.dumps({"architecture": "amd64", "os": "linux", "seed": seed}, sort_keys=True).encode()


def _manifest(config: bytes, layers: list[bytes]) -> bytes:
    return json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": SCHEMA2_MANIFEST,
            "config": {"mediaType": SCHEMA2_CONFIG, "size": len(config), "digest": sha256_digest(config)},
            "layers": [
                {"mediaType": SCHEMA2_LAYER, "size": len(layer), "digest": sha256_digest(layer)}
                for layer in layers
            ],
        }
    ).encode()


def _push_image(client: httpx.Client, repo: str, tag: str, seed: str) -> bytes:
    config, layer = _config_blob(seed), f"layer-{seed}".encode()
    push_blob(client, repo, config)
    push_blob(client, repo, layer)
    manifest = _manifest(config, [layer])
    resp = client.put(
        f"/v2/{repo}/manifests/{tag}", content=manifest, headers={"Content-Type": SCHEMA2_MANIFEST}
    )
    assert resp.status_code == 201, resp.text
    return manifest


# -- pure parts ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/v2/", None),
        ("/v2/_catalog", None),
        ("/v2/app/manifests/latest", RepoPath("app", "latest")),
        ("/v2/team/app/manifests/sha256:abc", RepoPath("team/app", "sha256:abc")),
        ("/v2/team/app/blobs/uploads/", RepoPath("team/app")),
        ("/v2/team/app/blobs/uploads", RepoPath("team/app")),
        ("/v2/a/b/c/blobs/uploads/0d1e-uuid", RepoPath("a/b/c")),
        ("/v2/team/app/blobs/sha256:abc", RepoPath("team/app")),
        ("/v2/team/app/tags/list", RepoPath("team/app")),
    ],
)
def test_parse_repo_path(path: str, expected: RepoPath | None) -> None:
    assert parse_repo_path(path) == expected


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.mark.parametrize(
    ("header", "state", "expected"),
    [
        (None, TokenState.VALID, AuthResult.MISSING),
        ("", TokenState.VALID, AuthResult.MISSING),
        ("Bearer abc", TokenState.VALID, AuthResult.INVALID),
        ("Basic", TokenState.VALID, AuthResult.INVALID),
        ("Basic !!!not-base64", TokenState.VALID, AuthResult.INVALID),
        ("Basic " + base64.b64encode(b"no-colon").decode(), TokenState.VALID, AuthResult.INVALID),
        (_basic("AWS", "pw"), TokenState.VALID, AuthResult.OK),
        (_basic("AWS", "pw"), TokenState.EXPIRED, AuthResult.EXPIRED),
        (_basic("AWS", "pw"), TokenState.UNKNOWN, AuthResult.INVALID),
        (_basic("bob", "pw"), TokenState.VALID, AuthResult.INVALID),
    ],
)
def test_check_authorization(header: str | None, state: TokenState, expected: AuthResult) -> None:
    assert check_authorization(header, lambda _password: state) is expected


# -- authentication --------------------------------------------------------------------------


@needs_registry
def test_no_credentials_get_a_basic_challenge(gateway: Gateway) -> None:
    for path in ("/v2/", "/v2/nothing/here/manifests/latest"):
        resp = httpx.get(gateway.url + path, trust_env=False)
        assert resp.status_code == 401
        challenge = resp.headers["WWW-Authenticate"]
        assert challenge == f'Basic realm="{gateway.settings.gateway_url}/",service="ecr.amazonaws.com"'
        assert gateway.settings.registry_host in challenge
        assert resp.headers["Docker-Distribution-API-Version"] == "registry/2.0"
        assert _errors(resp) == [{"code": "UNAUTHORIZED", "message": "Not Authorized"}]


@needs_registry
@pytest.mark.parametrize(
    "header", ["Basic %%%garbled", "Bearer x", "Basic " + base64.b64encode(b"AWS").decode()]
)
def test_malformed_credentials_are_a_400_like_ecr(gateway: Gateway, header: str) -> None:
    for path in ("/v2/", "/v2/nothing/here/manifests/latest"):
        resp = httpx.get(gateway.url + path, headers={"Authorization": header}, trust_env=False)
        assert resp.status_code == 400
        assert "WWW-Authenticate" not in resp.headers
        assert _errors(resp) == [{"code": "DENIED", "message": MSG_INVALID}]


@needs_registry
def test_valid_password_opens_v2(gateway: Gateway) -> None:
    with gateway.client() as client:
        resp = client.get("/v2/")
    assert resp.status_code == 200
    assert resp.headers["Docker-Distribution-API-Version"] == "registry/2.0"


@needs_registry
def test_wrong_user_is_an_invalid_token(gateway: Gateway) -> None:
    with gateway.client(user="admin") as client:
        resp = client.get("/v2/")
    assert resp.status_code == 400
    assert _errors(resp) == [{"code": "DENIED", "message": MSG_INVALID}]


@needs_registry
def test_unknown_password_is_an_invalid_token(gateway: Gateway) -> None:
    with gateway.client(password="not-a-token-we-issued") as client:
        resp = client.get("/v2/")
    assert resp.status_code == 400
    assert _errors(resp) == [{"code": "DENIED", "message": MSG_INVALID}]


@needs_registry
def test_expired_password_is_a_403_with_ecr_wording(gateway: Gateway) -> None:
    short = gateway.store.issue_token(0.5)
    with gateway.client(password=short.password) as client:
        assert client.get("/v2/").status_code == 200
        time.sleep(0.7)
        resp = client.get("/v2/")
    assert resp.status_code == 403
    assert "WWW-Authenticate" not in resp.headers
    assert _errors(resp) == [{"code": "DENIED", "message": MSG_EXPIRED}]
    assert MSG_EXPIRED == "Your authorization token has expired. Reauthenticate and try again."


@needs_registry
def test_paths_outside_v2_are_json_404s(gateway: Gateway) -> None:
    resp = httpx.get(gateway.url + "/metrics", trust_env=False)
    assert resp.status_code == 404
    assert _errors(resp)[0]["code"] == "NOT_FOUND"


# -- repositories ----------------------------------------------------------------------------


@needs_registry
def test_unknown_repository_is_name_unknown_with_account_id(gateway: Gateway) -> None:
    expected = [
        {
            "code": "NAME_UNKNOWN",
            "message": "The repository with name 'team/ghost' does not exist in the registry with id "
            f"'{gateway.settings.account_id}'",
        }
    ]
    with gateway.client() as client:
        started = client.post("/v2/team/ghost/blobs/uploads/")
        fetched = client.get("/v2/team/ghost/manifests/latest")
        listed = client.get("/v2/team/ghost/tags/list")
    for resp in (started, fetched, listed):
        assert resp.status_code == 404
        assert _errors(resp) == expected


@needs_registry
def test_push_and_pull_through_the_gateway(gateway: Gateway, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="airdock.local.gateway")
    repo = "team/app"
    gateway.store.create_repository(repo)
    layer = os.urandom(300_000)
    layer_digest = sha256_digest(layer)
    config = _config_blob("push")
    with gateway.client() as client:
        started = client.post(f"/v2/{repo}/blobs/uploads/")
        assert started.status_code == 202, started.text
        location = started.headers["Location"]
        assert location.startswith(f"/v2/{repo}/blobs/uploads/")
        assert started.headers["Docker-Upload-UUID"]
        # Two chunked PATCHes (Content-Range/Length forwarded), then the closing PUT.
        for offset in (0, 100_000):
            part = layer[offset : offset + 100_000]
            patched = client.patch(
                location,
                content=part,
                headers={
                    "Content-Type": "application/octet-stream",
                    "Content-Range": f"{offset}-{offset + len(part) - 1}",
                },
            )
            assert patched.status_code == 202, patched.text
            assert patched.headers["Range"] == f"0-{offset + len(part) - 1}"
            location = patched.headers["Location"]
        sep = "&" if "?" in location else "?"
        finished = client.put(f"{location}{sep}digest={layer_digest}", content=layer[200_000:])
        assert finished.status_code == 201, finished.text
        assert finished.headers["Docker-Content-Digest"] == layer_digest
        push_blob(client, repo, config)

        manifest = _manifest(config, [layer])
        put = client.put(
            f"/v2/{repo}/manifests/v1", content=manifest, headers={"Content-Type": SCHEMA2_MANIFEST}
        )
        assert put.status_code == 201, put.text
        assert put.headers["Docker-Content-Digest"] == sha256_digest(manifest)

        head = client.head(f"/v2/{repo}/blobs/{layer_digest}")
        assert head.status_code == 200
        assert head.headers["Content-Length"] == str(len(layer))
        assert head.headers["Docker-Content-Digest"] == layer_digest
        got = client.get(f"/v2/{repo}/blobs/{layer_digest}")
        assert got.content == layer
        pulled = client.get(f"/v2/{repo}/manifests/v1", headers={"Accept": SCHEMA2_MANIFEST})
        assert pulled.status_code == 200
        assert pulled.headers["Docker-Content-Digest"] == sha256_digest(manifest)
        assert pulled.content == manifest
        assert client.get(f"/v2/{repo}/tags/list").json() == {"name": repo, "tags": ["v1"]}
        missing = client.get(f"/v2/{repo}/manifests/nope")
        assert missing.status_code == 404
        assert _errors(missing)[0]["code"] == "MANIFEST_UNKNOWN"

    lines = [r.getMessage() for r in caplog.records if r.name == "airdock.local.gateway"]
    assert any(line.startswith(f"PUT /v2/{repo}/manifests/v1 201") for line in lines), lines
    assert all(gateway.password not in line for line in lines)


@needs_registry
def test_big_blob_streams_through_with_flat_memory(gateway: Gateway) -> None:
    psutil = pytest.importorskip("psutil")
    repo = "team/big"
    gateway.store.create_repository(repo)
    chunk, count = 64 * 1024, 768  # 48 MiB, generated and hashed on the fly
    seed = os.urandom(chunk)
    hasher = hashlib.sha256()
    for i in range(count):
        hasher.update(seed[i:] + seed[:i])
    digest = "sha256:" + hasher.hexdigest()

    proc = psutil.Process()
    peak: list[int] = []

    # RSS is sampled in the transfer loops themselves (no sampler thread: a new thread's malloc
    # arena would add megabytes of noise); a buffering gateway shows up as ~blob-sized growth.
    def body() -> Iterator[bytes]:
        for i in range(count):
            if i % 16 == 0:
                peak.append(proc.memory_info().rss)
            yield seed[i:] + seed[:i]

    with gateway.client() as client:
        started = client.post(f"/v2/{repo}/blobs/uploads/")
        location = started.headers["Location"]
        sep = "&" if "?" in location else "?"
        baseline = proc.memory_info().rss  # client, connections and the app are warm by now
        done = client.put(
            f"{location}{sep}digest={digest}",
            content=body(),
            headers={"Content-Length": str(chunk * count), "Content-Type": "application/octet-stream"},
        )
        peak.append(proc.memory_info().rss)
        assert done.status_code == 201, done.text
        head = client.head(f"/v2/{repo}/blobs/{digest}")
        assert head.headers["Content-Length"] == str(chunk * count)
        received, size = hashlib.sha256(), 0
        with client.stream("GET", f"/v2/{repo}/blobs/{digest}") as resp:
            assert resp.status_code == 200
            for n, part in enumerate(resp.iter_raw()):
                if n % 16 == 0:
                    peak.append(proc.memory_info().rss)
                received.update(part)
                size += len(part)
        peak.append(proc.memory_info().rss)
    assert size == chunk * count
    assert "sha256:" + received.hexdigest() == digest
    growth = max(peak) - baseline
    # ~10 MiB of allocator high-water is normal; buffering the blob costs at least its size.
    assert growth < 20 * 1024 * 1024, f"RSS grew by {growth} bytes moving a {chunk * count}-byte blob"


@needs_registry
def test_chunked_transfer_upload(gateway: Gateway) -> None:
    repo = "chunky"
    gateway.store.create_repository(repo)
    data = os.urandom(200_000)
    with gateway.client() as client:
        location = client.post(f"/v2/{repo}/blobs/uploads/").headers["Location"]
        # A generator without Content-Length goes out with Transfer-Encoding: chunked.
        patched = client.patch(location, content=iter([data[:70_000], data[70_000:]]))
        assert patched.status_code == 202, patched.text
        location = patched.headers["Location"]
        sep = "&" if "?" in location else "?"
        done = client.put(f"{location}{sep}digest={sha256_digest(data)}")
        assert done.status_code == 201, done.text
        assert client.get(f"/v2/{repo}/blobs/{sha256_digest(data)}").content == data


# -- immutability and manifests --------------------------------------------------------------


@needs_registry
def test_immutable_tag_cannot_move_but_same_digest_is_accepted(gateway: Gateway) -> None:
    repo = "team/frozen"
    gateway.store.create_repository(repo, tag_mutability="IMMUTABLE")
    with gateway.client() as client:
        first = _push_image(client, repo, "v1", "first")
        again = client.put(
            f"/v2/{repo}/manifests/v1", content=first, headers={"Content-Type": SCHEMA2_MANIFEST}
        )
        assert again.status_code == 201, again.text

        other = _push_image(client, repo, "v2", "second")
        moved = client.put(
            f"/v2/{repo}/manifests/v1", content=other, headers={"Content-Type": SCHEMA2_MANIFEST}
        )
        assert moved.status_code == 400
        assert _errors(moved) == [
            {
                "code": "TAG_INVALID",
                "message": f"The image tag 'v1' already exists in the '{repo}' repository and cannot be "
                "overwritten because the repository is immutable.",
            }
        ]
        by_digest = client.put(
            f"/v2/{repo}/manifests/{sha256_digest(other)}",
            content=other,
            headers={"Content-Type": SCHEMA2_MANIFEST},
        )
        assert by_digest.status_code == 201
        still = client.get(f"/v2/{repo}/manifests/v1", headers={"Accept": SCHEMA2_MANIFEST})
        assert still.headers["Docker-Content-Digest"] == sha256_digest(first)


@needs_registry
def test_mutable_tag_moves(gateway: Gateway) -> None:
    repo = "team/mutable"
    gateway.store.create_repository(repo)
    with gateway.client() as client:
        _push_image(client, repo, "v1", "m1")
        second = _push_image(client, repo, "v1", "m2")
        got = client.get(f"/v2/{repo}/manifests/v1", headers={"Accept": SCHEMA2_MANIFEST})
        assert got.headers["Docker-Content-Digest"] == sha256_digest(second)


@needs_registry
def test_oversized_manifest_is_rejected(gateway: Gateway) -> None:
    repo = "team/huge"
    gateway.store.create_repository(repo)
    with gateway.client() as client:
        resp = client.put(
            f"/v2/{repo}/manifests/v1",
            content=b" " * (MAX_MANIFEST_BYTES + 1),
            headers={"Content-Type": SCHEMA2_MANIFEST},
        )
    assert resp.status_code == 400
    assert _errors(resp)[0]["code"] == "MANIFEST_INVALID"


class _FixedTags:
    """A TagLookup that claims every tag already points at ``digest``."""

    def __init__(self, digest: str) -> None:
        self.digest = digest
        self.calls: list[tuple[str, str]] = []

    def tag_digest(self, repo: str, tag: str) -> str | None:
        self.calls.append((repo, tag))
        return self.digest


@needs_registry
def test_injected_tag_lookup_decides_immutability(gateway: Gateway) -> None:
    repo = "team/looked-up"
    gateway.store.create_repository(repo, tag_mutability="IMMUTABLE")
    lookup = _FixedTags("sha256:" + "0" * 64)
    app = create_gateway_app(gateway.settings, gateway.store, lookup)
    auth = {"Authorization": _basic("AWS", gateway.password)}
    manifest = _manifest(_config_blob("x"), [])
    with _served(app, free_port()) as url:
        resp = httpx.put(f"{url}/v2/{repo}/manifests/v9", content=manifest, headers=auth, trust_env=False)
    assert resp.status_code == 400
    assert _errors(resp)[0]["code"] == "TAG_INVALID"
    assert lookup.calls == [(repo, "v9")]


# -- upstream failures -----------------------------------------------------------------------


def test_registry_down_is_503(tmp_path: Path) -> None:
    settings = StackSettings(
        data_dir=tmp_path, gateway_port=free_port(), api_port=free_port(), registry_port=free_port()
    )
    store = Store(settings.store_path)
    store.create_repository("app")
    password = store.issue_token(60).password
    auth = {"Authorization": _basic("AWS", password)}
    try:
        with _served(create_gateway_app(settings, store), settings.gateway_port) as url:
            for method, path in (
                ("GET", "/v2/"),
                ("GET", "/v2/app/manifests/latest"),
                ("POST", "/v2/app/blobs/uploads/"),
            ):
                resp = httpx.request(method, url + path, headers=auth, trust_env=False)
                assert resp.status_code == 503
                assert resp.headers["Docker-Distribution-API-Version"] == "registry/2.0"
                errors = _errors(resp)
                assert errors[0]["code"] == "UNAVAILABLE"
                assert "\n" not in str(errors[0]["message"])
                assert "Traceback" not in resp.text
    finally:
        store.close()


def test_forwarded_headers_and_absolute_location(tmp_path: Path) -> None:
    """Against a fake registry that echoes what it got and answers with an absolute Location."""
    settings = StackSettings(
        data_dir=tmp_path, gateway_port=free_port(), api_port=free_port(), registry_port=free_port()
    )

    async def echo(request: Request) -> JSONResponse:
        body = await request.body()
        return JSONResponse(
            {"headers": dict(request.headers), "size": len(body), "query": request.url.query},
            status_code=202,
            headers={"Location": f"{settings.registry_url}/v2/app/blobs/uploads/u1?_state=s", "Range": "0-9"},
        )

    fake = Starlette(routes=[Route("/{path:path}", echo, methods=["GET", "POST", "PATCH", "PUT"])])
    store = Store(settings.store_path)
    store.create_repository("app")
    password = store.issue_token(60).password
    try:
        with (
            _served(fake, settings.registry_port),
            _served(create_gateway_app(settings, store), settings.gateway_port) as url,
        ):
            resp = httpx.patch(
                f"{url}/v2/app/blobs/uploads/u1?_state=abc&x=1",
                content=b"0123456789",
                headers={
                    "Authorization": _basic("AWS", password),
                    "Connection": "keep-alive",
                    "X-Custom": "yes",
                },
                trust_env=False,
            )
    finally:
        store.close()
    assert resp.status_code == 202
    assert resp.headers["Location"] == f"{settings.gateway_url}/v2/app/blobs/uploads/u1?_state=s"
    assert resp.headers["Range"] == "0-9"
    assert resp.headers["Docker-Distribution-API-Version"] == "registry/2.0"
    seen = resp.json()
    assert seen["size"] == 10
    assert seen["query"] == "_state=abc&x=1"
    assert seen["headers"]["content-length"] == "10"
    assert seen["headers"]["x-custom"] == "yes"
    assert "authorization" not in seen["headers"]
    assert seen["headers"]["host"] == f"127.0.0.1:{settings.registry_port}"
    assert "transfer-encoding" not in seen["headers"]
