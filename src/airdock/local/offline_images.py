"""Container images built offline, for the demo, the tests and the benchmarks.

No public image can be pulled here, so every image starts ``FROM scratch`` with Debian's static
busybox (package ``busybox-static``) copied in: a shell, coreutils and nothing else. The same
base is kept on the engine as ``airdock-local/busybox:latest`` (:func:`ensure_base_image`, made by
``airdock local up`` and ``airdock local base-image``), so a job's Dockerfile — the example's in
``examples/scraper`` — can start ``FROM airdock-local/busybox`` and its context needs nothing else.
"""

from __future__ import annotations

import io
import shutil
import tarfile
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from airdock.errors import PrerequisiteError

BUSYBOX_CANDIDATES = (Path("/bin/busybox"), Path("/usr/bin/busybox"))
BASE_IMAGE = "airdock-local/busybox:latest"

_DOCKERFILE = """\
FROM scratch
COPY busybox /bin/busybox
RUN ["/bin/busybox", "--install", "-s", "/bin"]
RUN mkdir -p -m 1777 /tmp
"""


def static_busybox() -> Path:
    """Path of a statically linked busybox; PrerequisiteError when there is none."""
    for path in BUSYBOX_CANDIDATES:
        if path.is_file() and _is_static_elf(path.read_bytes()[:4096]):
            return path
    raise PrerequisiteError(
        "no static busybox found: install Debian's busybox-static (apt-get install busybox-static)"
    )


def _is_static_elf(head: bytes) -> bool:
    # A dynamically linked ELF names its loader in the header: a cheap, sufficient test.
    return head.startswith(b"\x7fELF") and b"ld-linux" not in head


def ensure_base_image(client: Any) -> str:
    """Make ``airdock-local/busybox:latest`` on the engine unless it is there; return its image id."""
    import docker.errors

    try:
        return str(client.images.get(BASE_IMAGE).id)
    except docker.errors.ImageNotFound:
        return str(build_image(client, BASE_IMAGE, labels={"airdock.base": "busybox"}).id)


def build_image(
    client: Any,
    tag: str,
    *,
    context: Path | None = None,
    files: Mapping[str, bytes | str] | None = None,
    cmd: list[str] | None = None,
    labels: Mapping[str, str] | None = None,
) -> Any:
    """Build an image with the docker SDK's classic builder and return it (a ``docker.models.images.Image``).

    ``context`` is a directory with its own Dockerfile, built as it is (the base image
    ``airdock-local/busybox`` is made first, for Dockerfiles that start from it); without one, a
    Dockerfile is generated that copies in busybox and adds ``files`` (path in image → content)
    and ``cmd``.
    """
    if context is not None:
        ensure_base_image(client)
        image, _ = client.images.build(
            path=str(context), tag=tag, rm=True, forcerm=True, labels=dict(labels or {})
        )
        return image
    busybox = static_busybox()
    with tempfile.TemporaryDirectory(prefix="airdock-build-") as tmp:
        root = Path(tmp)
        lines = [_DOCKERFILE]
        for index, (target, content) in enumerate(sorted((files or {}).items())):
            source = root / f"file{index}"
            source.write_bytes(content.encode() if isinstance(content, str) else content)
            lines.append(f"COPY file{index} {target}\n")
        if cmd:
            lines.append("CMD [" + ", ".join(f'"{part}"' for part in cmd) + "]\n")
        (root / "Dockerfile").write_text("".join(lines))
        shutil.copy2(busybox, root / "busybox")
        image, _ = client.images.build(
            path=str(root), tag=tag, rm=True, forcerm=True, labels=dict(labels or {})
        )
        return image


def import_image(
    client: Any, tag: str, payload: Mapping[str, bytes] | None = None, *, pad_bytes: int = 0
) -> Any:
    """Make a one-layer image with ``docker import`` (no build, no container) and return it.

    The layer holds busybox, its applet links, the ``payload`` files and, when ``pad_bytes`` is
    set, a file of that many random bytes (incompressible, for transfer tests).
    """
    import os

    busybox = static_busybox()
    with tempfile.TemporaryDirectory(prefix="airdock-import-") as tmp:
        tar_path = Path(tmp) / "rootfs.tar"
        with tarfile.open(tar_path, "w") as tar:
            tar.add(busybox, arcname="bin/busybox")
            for applet in ("sh", "cat", "echo", "sleep", "ls", "true"):
                link = tarfile.TarInfo(f"bin/{applet}")
                link.type = tarfile.SYMTYPE
                link.linkname = "busybox"
                tar.addfile(link)
            for name, content in sorted((payload or {}).items()):
                info = tarfile.TarInfo(name.lstrip("/"))
                info.size = len(content)
                tar.addfile(info, io.BytesIO(content))
            if pad_bytes:
                pad = Path(tmp) / "pad"
                with pad.open("wb") as handle:
                    remaining = pad_bytes
                    while remaining:
                        chunk = min(remaining, 1 << 20)
                        handle.write(os.urandom(chunk))
                        remaining -= chunk
                tar.add(pad, arcname="pad.bin")
        repository, _, version = tag.rpartition(":") if ":" in tag.rsplit("/", 1)[-1] else (tag, "", "latest")
        client.api.import_image_from_file(str(tar_path), repository=repository, tag=version or "latest")
    return client.images.get(tag if ":" in tag.rsplit("/", 1)[-1] else f"{tag}:latest")
