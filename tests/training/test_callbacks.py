"""Atomic file writes used for every file of a run folder."""

from __future__ import annotations

import os
import stat

import pytest

from deepscope.training.callbacks import atomic_write, atomic_write_text


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_atomic_writes_get_the_permissions_open_would_give(tmp_path):
    """mkstemp alone gives 0600, which hides run folders from colleagues on a shared cluster."""
    atomic_write_text(tmp_path / "a.txt", "x")
    atomic_write(tmp_path / "b.bin", lambda f: f.write(b"y"))
    with open(tmp_path / "c.txt", "w") as f:  # the reference: a plain open()
        f.write("z")
    expected = stat.S_IMODE((tmp_path / "c.txt").stat().st_mode)
    assert expected == 0o666 & ~_umask()
    for name in ("a.txt", "b.bin"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == expected, name
    assert (tmp_path / "a.txt").read_text() == "x" and (tmp_path / "b.bin").read_bytes() == b"y"


def test_a_failed_write_keeps_the_previous_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "last.ckpt"
    atomic_write_text(target, "good")

    def broken(f):
        f.write(b"half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        atomic_write(target, broken)
    assert target.read_text() == "good"
    assert not list(tmp_path.glob(".*.tmp"))
