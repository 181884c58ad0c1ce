"""The simulators' files are written whole or not at all, and a file that cannot be written is one error
naming the setting (``written_atomically``, shared by the GRF, registration and tracker simulators)."""

from __future__ import annotations

import numpy as np
import pytest

from deepscope.data.simulators.registration import write_registration_hdf5
from deepscope.data.simulators.settings import written_atomically
from deepscope.errors import DataError


def test_the_file_appears_only_when_the_block_ends(tmp_path):
    path = tmp_path / "sub" / "cubes.h5"
    with written_atomically(path, "data.path") as tmp:
        tmp.write_bytes(b"half")
        assert not path.exists() and tmp.parent == path.parent
    assert path.read_bytes() == b"half"
    assert [p.name for p in path.parent.iterdir()] == ["cubes.h5"]  # no temporary file left


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "cubes.h5"
    path.write_bytes(b"old")
    with pytest.raises(DataError, match=r"data.path: cannot write '.*cubes.h5'"):
        with written_atomically(path, "data.path") as tmp:
            tmp.write_bytes(b"new, half written")
            raise OSError(28, "No space left on device")
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["cubes.h5"]


def test_a_folder_that_is_a_file_is_one_data_error(tmp_path):
    blocker = tmp_path / "data"
    blocker.write_text("not a folder")
    with pytest.raises(DataError, match=r"data.path: cannot write '.*data/pairs.h5'"):
        write_registration_hdf5(blocker / "pairs.h5", np.zeros((2, 8, 8), np.uint8), None, None, np.zeros(2),
                                np.zeros(2), np.zeros(2), key="data.path")
