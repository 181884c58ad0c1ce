"""ArraySet.from_mapping: layout conversion (channels last -> first) and the DataError messages."""

from __future__ import annotations

import numpy as np
import pytest

from deepscope.data.arrays import ArraySet, split_sets
from deepscope.errors import DataError


def _raw(n=4, **extra):
    rng = np.random.default_rng(1)
    raw = {
        "images": {"calo": rng.normal(size=(n, 5, 6, 3)).astype(np.float32)},
        "scalars": rng.normal(size=(n, 2)),
        "tracks": rng.normal(size=(n, 3, 4)),
        "targets": rng.normal(size=n),
    }
    raw.update(extra)
    return raw


def test_channels_last_moves_values_to_channels_first():
    raw = _raw()
    x = raw["images"]["calo"]
    s = ArraySet.from_mapping(raw, "data")
    img = s.images["calo"]
    assert img.shape == (4, 3, 5, 6)
    assert img.dtype == np.float32 and img.flags["C_CONTIGUOUS"]
    # element by element: out[n, c, h, w] == in[n, h, w, c]
    for n, h, w, c in [(0, 0, 0, 0), (1, 4, 5, 2), (3, 2, 1, 1), (2, 0, 5, 2)]:
        assert img[n, c, h, w] == x[n, h, w, c]
    np.testing.assert_array_equal(img, np.transpose(x, (0, 3, 1, 2)))


def test_three_dim_images_channels_last():
    x = np.arange(2 * 3 * 4 * 5 * 2, dtype=np.float64).reshape(2, 3, 4, 5, 2)  # (N, D, H, W, C)
    s = ArraySet.from_mapping({"images": {"cube": x}, "targets": np.zeros(2)}, "data")
    out = s.images["cube"]
    assert out.shape == (2, 2, 3, 4, 5)
    assert out[1, 1, 2, 3, 4] == x[1, 2, 3, 4, 1]
    np.testing.assert_array_equal(out, np.transpose(x, (0, 4, 1, 2, 3)).astype(np.float32))


def test_nhw_images_get_one_channel():
    x = np.random.default_rng(0).normal(size=(3, 4, 5))
    s = ArraySet.from_mapping({"images": {"a": x}, "targets": np.zeros(3)}, "data")
    assert s.images["a"].shape == (3, 1, 4, 5)
    np.testing.assert_allclose(s.images["a"][:, 0], x.astype(np.float32))


def test_channels_first_is_kept():
    x = np.random.default_rng(0).normal(size=(3, 2, 4, 5))
    s = ArraySet.from_mapping({"images": {"a": x}, "targets": np.zeros(3)}, "data", channels="first")
    np.testing.assert_array_equal(s.images["a"], x.astype(np.float32))


def test_unnamed_image_array_and_1d_scalars_and_column_weights():
    x = np.zeros((3, 4, 4, 1))
    s = ArraySet.from_mapping({"images": x, "scalars": np.arange(3.0), "targets": np.zeros(3),
                               "sample_weights": np.ones((3, 1))}, "data")
    assert list(s.images) == ["images"]
    assert s.scalars.shape == (3, 1)
    np.testing.assert_array_equal(s.scalars[:, 0], [0.0, 1.0, 2.0])
    assert s.sample_weights.shape == (3,)


def test_integer_targets_stay_integer_and_floats_become_float32():
    s = ArraySet.from_mapping({"scalars": np.zeros((3, 1)), "targets": np.array([0, 2, 1])}, "data")
    assert np.issubdtype(s.targets.dtype, np.integer)
    s = ArraySet.from_mapping({"scalars": np.zeros((3, 1)), "targets": np.array([0.5, 2, 1], dtype=np.float64)}, "d")
    assert s.targets.dtype == np.float32


def test_read_and_take_index_every_array():
    raw = _raw(n=6)
    s = ArraySet.from_mapping(raw, "data")
    idx = np.array([4, 1, 5])
    batch = s.read(idx)
    np.testing.assert_array_equal(batch["images"]["calo"], np.transpose(raw["images"]["calo"][idx], (0, 3, 1, 2)))
    np.testing.assert_allclose(batch["scalars"], raw["scalars"][idx].astype(np.float32))
    np.testing.assert_allclose(batch["targets"], raw["targets"][idx].astype(np.float32))
    sub = s.take(idx)
    assert len(sub) == 3 and len(s) == 6
    np.testing.assert_array_equal(sub.tracks, s.tracks[idx])


# --- errors -------------------------------------------------------------------------------------


def _error(raw, where="data['train']", **kw) -> str:
    with pytest.raises(DataError) as info:
        ArraySet.from_mapping(raw, where, **kw)
    return str(info.value)


def test_missing_targets():
    raw = _raw()
    del raw["targets"]
    msg = _error(raw)
    assert "data['train']" in msg and "'targets'" in msg and "missing" in msg
    # prediction inputs need no targets
    assert ArraySet.from_mapping(raw, "x", require_targets=False).targets is None


def test_mismatched_lengths_name_both_keys():
    raw = _raw(n=4)
    raw["scalars"] = np.zeros((5, 2))
    msg = _error(raw)
    assert "'scalars' has 5 samples" in msg and "'images/calo' has 4" in msg


def test_mismatched_lengths_between_two_images():
    raw = _raw(n=4)
    raw["images"]["ecal"] = np.zeros((3, 5, 6, 1))
    msg = _error(raw)
    assert "images/ecal" in msg and "3" in msg


@pytest.mark.parametrize("shape", [(4, 5), (4,), (4, 2, 3, 4, 5, 1)])
def test_images_with_wrong_ndim(shape):
    msg = _error({"images": {"calo": np.zeros(shape)}, "targets": np.zeros(4)})
    assert "['images']['calo']" in msg and str(shape) in msg


def test_scalars_with_wrong_ndim():
    msg = _error({"scalars": np.zeros((4, 2, 2)), "targets": np.zeros(4)})
    assert "['scalars']" in msg and "(N, S)" in msg


@pytest.mark.parametrize("shape", [(4, 3), (4, 3, 2, 1)])
def test_tracks_with_wrong_ndim(shape):
    msg = _error({"tracks": np.zeros(shape), "targets": np.zeros(4)})
    assert "['tracks']" in msg and "(N, T, F)" in msg


def test_sample_weights_with_wrong_shape():
    msg = _error(_raw(sample_weights=np.ones((4, 2))))
    assert "['sample_weights']" in msg


def test_scalar_target_rejected():
    msg = _error({"scalars": np.zeros((4, 2)), "targets": np.float64(3.0)})
    assert "['targets']" in msg


def test_nan_in_inputs_is_named_by_check_finite():
    raw = _raw()
    raw["scalars"][2, 1] = np.nan
    s = ArraySet.from_mapping(raw, "data['train']")  # construction does not scan values
    with pytest.raises(DataError) as info:
        s.check_finite("data['train']")
    msg = str(info.value)
    assert "data['train']['scalars']" in msg and "sample 2" in msg and "1 NaN/inf" in msg


def test_inf_in_images_is_named():
    raw = _raw()
    raw["images"]["calo"][3, 0, 0, 0] = np.inf
    s = ArraySet.from_mapping(raw, "data")
    with pytest.raises(DataError, match=r"images/calo.*sample 3"):
        s.check_finite("data")


def test_finite_data_passes_check():
    ArraySet.from_mapping(_raw(), "data").check_finite("data")


def test_unknown_key_with_did_you_mean():
    raw = _raw()
    raw["target"] = raw.pop("targets")
    msg = _error(raw)
    assert "unknown key 'target'" in msg and "did you mean 'targets'" in msg


def test_no_inputs():
    msg = _error({"targets": np.zeros(3)})
    assert "no inputs" in msg and "data['train']" in msg
    msg = _error({"images": {}, "scalars": None, "targets": np.zeros(3)})
    assert "no inputs" in msg


def test_non_numeric_dtype_names_the_key():
    msg = _error({"scalars": np.array([["a", "b"], ["c", "d"]]), "targets": np.zeros(2)})
    assert "['scalars']" in msg and "expected numbers" in msg
    msg = _error({"images": {"calo": np.zeros((2, 3, 3))}, "targets": np.array(["x", "y"])})
    assert "['targets']" in msg


def test_ragged_lists_are_a_data_error():
    msg = _error({"tracks": [[[1.0, 2.0]], [[1.0, 2.0], [3.0, 4.0]]], "targets": np.zeros(2)})
    assert "['tracks']" in msg


def test_not_a_mapping():
    msg = _error([1, 2, 3])
    assert "expected a dict" in msg


def test_empty_set():
    msg = _error({"scalars": np.zeros((0, 2)), "targets": np.zeros(0)})
    assert "no samples" in msg


def test_split_sets_detects_split_dicts():
    assert split_sets({"train": {}, "val": {}})
    assert not split_sets({"images": {}, "targets": []})
