"""Atomic writes: the final file appears whole, with the mode a plain open() would give."""

from __future__ import annotations

import os
import stat

import pytest

from vbmkit.io.atomic import atomic_path, write_text


def test_written_file_has_umask_mode_not_0600(tmp_path):
    old = os.umask(0o022)
    try:
        path = write_text(tmp_path / "a.csv", "x\n")
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert path.read_text() == "x\n"


def test_failure_leaves_neither_target_nor_temporary(tmp_path):
    with pytest.raises(RuntimeError), atomic_path(tmp_path / "b.nii.gz") as tmp:
        tmp.write_bytes(b"half")
        assert tmp.name.endswith(".nii.gz")
        raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []
