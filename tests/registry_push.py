"""Test helpers: run the real Distribution registry and push synthetic images to it over HTTP.

No Docker engine is involved: blobs go up with the registry's monolithic upload (POST then PUT
with ``?digest=``) and manifests with a PUT, exactly as ``docker push`` does on the wire.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

REGISTRY_BINARY = Path("/usr/bin/docker-registry")

SCHEMA2_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
SCHEMA2_CONFIG = "application/vnd.docker.container.image.v1+json"
SCHEMA2_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"


def registry_available() -> bool:
    return REGISTRY_BINARY.exists() or shutil.which("docker-registry") is not None


needs_registry = pytest.mark.skipif(
    not registry_available(), reason="/usr/bin/docker-registry is not installed (`make test` installs it)"
)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def registry_config(root: Path, port: int) -> str:
    """The stack's registry configuration (filesystem storage, deletes on, relative URLs)."""
    return (
        "version: 0.1\n"
        "log:\n  level: warn\n  accesslog:\n    disabled: true\n"
        f"storage:\n  filesystem:\n    rootdirectory: {root}\n  delete:\n    enabled: true\n"
        f"http:\n  addr: 127.0.0.1:{port}\n  relativeurls: true\n"
    )


@contextmanager
def running_registry(root: Path, *, startup_timeout: float = 15.0) -> Iterator[str]:
    """Serve ``root`` with the real registry binary on a free port; yield its base URL."""
    root.mkdir(parents=True, exist_ok=True)
    port = free_port()
    config = root.parent / f"registry-{port}.yml"
    config.write_text(registry_config(root, port))
    binary = str(REGISTRY_BINARY) if REGISTRY_BINARY.exists() else "docker-registry"
    log = (root.parent / f"registry-{port}.log").open("wb")
    proc = subprocess.Popen([binary, "serve", str(config)], stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + startup_timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"docker-registry exited with {proc.returncode}; see {log.name}")
            try:
                if httpx.get(f"{base}/v2/", timeout=1.0, trust_env=False).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"docker-registry did not answer on {base} within {startup_timeout}s")
            time.sleep(0.05)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@dataclass(frozen=True)
class PushedImage:
    """What a push produced: the manifest's digest and bytes, and ECR's size for it."""

    digest: str
    manifest: bytes = field(repr=False)
    media_type: str
    size_bytes: int


def push_blob(client: httpx.Client, repo: str, data: bytes) -> str:
    """Upload one blob (monolithic: POST an upload, PUT the bytes with ``?digest=``)."""
    digest = sha256_digest(data)
    started = client.post(f"/v2/{repo}/blobs/uploads/")
    started.raise_for_status()
    location = started.headers["Location"]
    separator = "&" if "?" in location else "?"
    done = client.put(
        f"{location}{separator}digest={digest}",
        content=data,
        headers={"Content-Type": "application/octet-stream"},
    )
    done.raise_for_status()
    return digest


def put_manifest(client: httpx.Client, repo: str, reference: str, manifest: bytes, media_type: str) -> str:
    """PUT a manifest under a tag or a digest; return the digest the registry reports."""
    resp = client.put(
        f"/v2/{repo}/manifests/{reference}", content=manifest, headers={"Content-Type": media_type}
    )
    resp.raise_for_status()
    return str(resp.headers["Docker-Content-Digest"])


def push_image(
    base_url: str,
    repo: str,
    tag: str | None = "latest",
    *,
    layers: Sequence[bytes] = (b"layer-one",),
    config: bytes | None = None,
) -> PushedImage:
    """Push a schema2 image made of ``layers`` (arbitrary bytes) under ``tag``, or untagged if None.

    Vary ``layers`` or ``config`` to get a distinct digest.
    """
    config_bytes = (
        config
        if config is not None
        else json.dumps(
            {"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}},
            sort_keys=True,
        ).encode()
    )
    with httpx.Client(base_url=base_url, timeout=30.0, trust_env=False) as client:
        config_digest = push_blob(client, repo, config_bytes)
        layer_descs = [
            {"mediaType": SCHEMA2_LAYER, "size": len(data), "digest": push_blob(client, repo, data)}
            for data in layers
        ]
        manifest = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": SCHEMA2_MANIFEST,
                "config": {"mediaType": SCHEMA2_CONFIG, "size": len(config_bytes), "digest": config_digest},
                "layers": layer_descs,
            },
            indent=3,
        ).encode()
        digest = sha256_digest(manifest)
        reported = put_manifest(client, repo, tag or digest, manifest, SCHEMA2_MANIFEST)
    assert reported == digest, (reported, digest)
    size = len(config_bytes) + sum(len(data) for data in layers)
    return PushedImage(digest=digest, manifest=manifest, media_type=SCHEMA2_MANIFEST, size_bytes=size)


def push_index(
    base_url: str, repo: str, tag: str | None, children: Sequence[PushedImage], *, oci: bool = False
) -> PushedImage:
    """Push a manifest list (or OCI index) over already-pushed ``children`` of the same repo."""
    media_type = OCI_INDEX if oci else MANIFEST_LIST
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": media_type,
            "manifests": [
                {
                    "mediaType": child.media_type,
                    "size": len(child.manifest),
                    "digest": child.digest,
                    "platform": {"architecture": f"arch{i}", "os": "linux"},
                }
                for i, child in enumerate(children)
            ],
        }
    ).encode()
    digest = sha256_digest(manifest)
    with httpx.Client(base_url=base_url, timeout=30.0, trust_env=False) as client:
        reported = put_manifest(client, repo, tag or digest, manifest, media_type)
    assert reported == digest, (reported, digest)
    return PushedImage(digest=digest, manifest=manifest, media_type=media_type, size_bytes=len(manifest))
