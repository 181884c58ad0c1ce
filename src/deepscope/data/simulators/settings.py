"""What the simulators share: the settings they store in the files they write, read back to tell whether an
existing file holds what the current settings would simulate (a file of other settings is refused, never
rewritten), and the atomic write of those files."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from deepscope.errors import DataError

__all__ = ["advice", "differences", "read_settings", "written_atomically"]


@contextmanager
def written_atomically(path: Path, key: str) -> Iterator[Path]:
    """A temporary file beside ``path`` to write in the block; it replaces ``path`` when the block ends, so a
    reader never sees a half-written file.

    Raises:
        DataError: the file cannot be written (names ``key``, the setting that gave ``path``).
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        yield tmp
        os.replace(tmp, path)
    except OSError as exc:
        raise DataError(f"{key}: cannot write '{path}' ({exc})") from None
    finally:
        with contextlib.suppress(OSError):  # e.g. its folder could not be made
            tmp.unlink(missing_ok=True)


def advice(key: str) -> str:
    """What to do about a file that is not the one wanted."""
    return f"delete it to simulate again, or point {key} at another file"


def read_settings(path: Path, attr: str, writer: str, key: str) -> dict[str, Any] | None:
    """The settings JSON in attribute ``attr`` of the HDF5 file ``path``; None when there is no file.

    Args:
        writer: who writes such files, for messages ("the registration demo").
        key: the config key that named the file.

    Raises:
        DataError: ``path`` is not HDF5, cannot be read, or lacks a readable ``attr``.
    """
    import h5py

    if not path.exists():
        return None
    if not path.is_file() or not h5py.is_hdf5(path):
        raise DataError(f"{key}: '{path}' is not an HDF5 file written by {writer}; {advice(key)}")
    try:
        with h5py.File(path, "r") as f:
            raw = f.attrs.get(attr)
    except OSError as exc:
        raise DataError(f"{key}: '{path}' cannot be read ({exc}); {advice(key)}") from None
    if raw is None:
        raise DataError(f"{key}: '{path}' was not written by {writer} (it has no '{attr}' attribute); {advice(key)}")
    try:
        found = json.loads(raw.decode() if isinstance(raw, bytes) else raw)
    except (UnicodeDecodeError, ValueError):
        found = None
    if not isinstance(found, dict):
        raise DataError(f"{key}: '{path}' has an unreadable '{attr}' attribute; {advice(key)}")
    return found


def differences(found: dict[str, Any], wanted: dict[str, Any]) -> list[str]:
    """``key stored (now wanted)`` for every setting that differs."""
    keys = sorted(set(found) | set(wanted))
    return [f"{k} {found.get(k, 'absent')} (now {wanted.get(k, 'absent')})" for k in keys
            if found.get(k) != wanted.get(k)]
