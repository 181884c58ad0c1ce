"""Data sources: npz files (flat and split), in-memory arrays, scikit-learn digits."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import load_digits

from deepscope.config.data import ArraysData, DigitsData, NpzData
from deepscope.data.arrays import ArraySet
from deepscope.data.sources import load_arrays, load_npz, load_sklearn_digits, read_npz_set
from deepscope.errors import DataError


def _arrays(n, seed=0):
    rng = np.random.default_rng(seed)
    return {
        "images/calo": rng.normal(size=(n, 4, 5, 2)).astype(np.float32),
        "scalars": rng.normal(size=(n, 3)).astype(np.float32),
        "tracks": rng.normal(size=(n, 6, 2)).astype(np.float32),
        "targets": rng.normal(size=n).astype(np.float32),
        "sample_weights": rng.uniform(size=n).astype(np.float32),
    }


def _check_same(s: ArraySet, arrays):
    np.testing.assert_array_equal(s.images["calo"], np.transpose(arrays["images/calo"], (0, 3, 1, 2)))
    np.testing.assert_array_equal(s.scalars, arrays["scalars"])
    np.testing.assert_array_equal(s.tracks, arrays["tracks"])
    np.testing.assert_array_equal(s.targets, arrays["targets"])
    np.testing.assert_array_equal(s.sample_weights, arrays["sample_weights"])


def test_flat_npz_round_trip(tmp_path):
    arrays = _arrays(7)
    path = tmp_path / "d.npz"
    np.savez(path, **arrays)
    s = read_npz_set(path, "last")
    assert isinstance(s, ArraySet) and len(s) == 7
    _check_same(s, arrays)


def test_compressed_npz_through_the_source(tmp_path):
    arrays = _arrays(5)
    path = tmp_path / "d.npz"
    np.savez_compressed(path, **arrays)
    s = load_npz(NpzData(source="npz", path=path))
    _check_same(s, arrays)


def test_split_npz_round_trip(tmp_path):
    parts = {"train": _arrays(8, 1), "val": _arrays(3, 2), "test": _arrays(4, 3)}
    flat = {f"{split}/{k}": v for split, arrays in parts.items() for k, v in arrays.items()}
    path = tmp_path / "split.npz"
    np.savez(path, **flat)
    loaded = read_npz_set(path, "last")
    assert isinstance(loaded, dict) and sorted(loaded) == ["test", "train", "val"]
    for split, arrays in parts.items():
        assert len(loaded[split]) == len(arrays["targets"])
        _check_same(loaded[split], arrays)


def test_npz_channels_first(tmp_path):
    x = np.random.default_rng(0).normal(size=(3, 2, 4, 4)).astype(np.float32)
    path = tmp_path / "d.npz"
    np.savez(path, **{"images/a": x, "targets": np.zeros(3)})
    s = read_npz_set(path, "first")
    np.testing.assert_array_equal(s.images["a"], x)


def test_npz_without_targets_for_prediction(tmp_path):
    path = tmp_path / "d.npz"
    np.savez(path, scalars=np.zeros((3, 2)))
    with pytest.raises(DataError, match="targets"):
        read_npz_set(path, "last")
    assert read_npz_set(path, "last", require_targets=False).targets is None


def test_missing_npz_names_the_path(tmp_path):
    path = tmp_path / "nope.npz"
    with pytest.raises(DataError) as info:
        read_npz_set(path, "last")
    assert str(path) in str(info.value) and "not found" in str(info.value)


@pytest.mark.parametrize("content", [b"this is not an npz file at all" * 10,
                                     b"PK\x03\x04" + bytes(range(256)) * 4,
                                     b""])
def test_corrupt_npz_names_the_path(tmp_path, content):
    path = tmp_path / "bad.npz"
    path.write_bytes(content)
    with pytest.raises(DataError) as info:
        read_npz_set(path, "last")
    assert str(path) in str(info.value)


def test_npz_with_wrong_layout_names_the_file(tmp_path):
    path = tmp_path / "d.npz"
    np.savez(path, **{"imgs/calo": np.zeros((3, 4, 4, 1)), "targets": np.zeros(3)})
    with pytest.raises(DataError) as info:
        read_npz_set(path, "last")
    assert str(path) in str(info.value) and "'imgs'" in str(info.value)


def test_npz_split_with_unknown_set_name(tmp_path):
    path = tmp_path / "d.npz"
    np.savez(path, **{"train/scalars": np.zeros((3, 1)), "train/targets": np.zeros(3),
                      "vall/scalars": np.zeros((3, 1)), "vall/targets": np.zeros(3)})
    with pytest.raises(DataError, match="did you mean 'val'"):
        read_npz_set(path, "last")


def test_split_without_train(tmp_path):
    with pytest.raises(DataError, match="no 'train'"):
        load_arrays(ArraysData(), {"val": {"scalars": np.zeros((2, 1)), "targets": np.zeros(2)}})


def test_arrays_source_needs_data():
    with pytest.raises(DataError, match="data="):
        load_arrays(ArraysData(), None)


def test_arrays_source_reads_deepcalo_layout():
    x = np.random.default_rng(0).normal(size=(4, 3, 3, 2))
    s = load_arrays(ArraysData(), {"images": {"calo": x}, "targets": np.arange(4.0)})
    np.testing.assert_allclose(s.images["calo"], np.moveaxis(x, -1, 1).astype(np.float32))


def test_sklearn_digits_labels():
    ref = load_digits()
    s = load_sklearn_digits(DigitsData(source="sklearn_digits", n_samples=100))
    assert list(s.images) == ["digits"]
    assert s.images["digits"].shape == (100, 1, 8, 8) and s.images["digits"].dtype == np.float32
    np.testing.assert_array_equal(s.images["digits"][:, 0], ref.images[:100])
    assert np.issubdtype(s.targets.dtype, np.integer) and s.targets.shape == (100,)
    np.testing.assert_array_equal(s.targets, ref.target[:100])
    assert s.images["digits"].min() >= 0 and s.images["digits"].max() <= 16


def test_sklearn_digits_one_hot_and_all_samples():
    ref = load_digits()
    s = load_sklearn_digits(DigitsData(source="sklearn_digits", one_hot=True))
    assert len(s) == len(ref.target) == 1797
    assert s.targets.shape == (1797, 10) and s.targets.dtype == np.float32
    np.testing.assert_array_equal(s.targets.sum(1), np.ones(1797))
    np.testing.assert_array_equal(s.targets.argmax(1), ref.target)
