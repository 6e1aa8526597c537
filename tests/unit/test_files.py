"""airdock.files.write_atomically: one step, owner-only, nothing left behind on failure."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from airdock.files import write_atomically


def test_the_file_is_replaced_whole_and_readable_by_its_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    path.write_text("old")
    path.chmod(0o644)
    write_atomically(path, '{"new": true}')
    assert path.read_text() == '{"new": true}'
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json"], "no temporary file left"


def test_a_failed_write_raises_and_leaves_the_old_content_and_no_temporary_file(tmp_path: Path) -> None:
    path = tmp_path / "taken"
    path.mkdir()  # a directory where the file should go: os.replace fails
    (path / "inside").write_text("kept")
    with pytest.raises(IsADirectoryError):
        write_atomically(path, "new", prefix=".engine-api-")
    assert (path / "inside").read_text() == "kept"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken"], "the temporary file was removed"
