"""Writing a file so that readers see the old content or the new, never a part: a temporary file
beside it (created ``0600`` by ``mkstemp``), then ``os.replace``."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

__all__ = ["write_atomically"]


def write_atomically(path: Path, text: str, *, prefix: str = ".tmp-") -> None:
    """Replace ``path``'s content with ``text`` in one step; the file is ``0600`` (only its owner
    reads it). The temporary file is removed on any failure, which is raised."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=prefix)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
