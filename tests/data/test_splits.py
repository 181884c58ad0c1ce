"""split_indices: seeded fractions, explicit index lists and 'start:stop' ranges."""

from __future__ import annotations

import numpy as np
import pytest

from deepscope.config.data import SplitConfig
from deepscope.data.splits import split_indices
from deepscope.errors import DataError


def _union(parts):
    return np.sort(np.concatenate(list(parts.values())))


@pytest.mark.parametrize("n,val,test,sizes", [(100, 0.15, 0.15, (70, 15, 15)),
                                              (40, 0.25, 0.1, (26, 10, 4)),
                                              (1000, 0.2, 0.0, (800, 200, 0))])
def test_fraction_sizes_cover_all_without_overlap(n, val, test, sizes):
    parts = split_indices(n, SplitConfig(val=val, test=test), seed=3)
    got = tuple(len(parts.get(k, [])) for k in ("train", "val", "test"))
    assert got == sizes
    assert "test" not in parts if sizes[2] == 0 else True
    np.testing.assert_array_equal(_union(parts), np.arange(n))  # no overlap, nothing lost
    for idx in parts.values():
        assert np.all(np.diff(idx) > 0)  # sorted and unique


def test_explicit_train_fraction_leaves_rest_out():
    parts = split_indices(100, SplitConfig(train=0.5, val=0.2, test=0.1), seed=0)
    assert [len(parts[k]) for k in ("train", "val", "test")] == [50, 20, 10]
    assert len(np.unique(_union(parts))) == 80


def test_fractions_are_deterministic_by_seed():
    cfg = SplitConfig(val=0.2, test=0.2)
    a, b = split_indices(200, cfg, seed=7), split_indices(200, cfg, seed=7)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    c = split_indices(200, cfg, seed=8)
    assert not np.array_equal(a["val"], c["val"])


def test_shuffle_is_a_real_permutation():
    parts = split_indices(200, SplitConfig(val=0.2, test=0.2), seed=0)
    assert not np.array_equal(parts["train"], np.arange(120))  # not just the first samples


def test_no_shuffle_takes_contiguous_blocks():
    parts = split_indices(10, SplitConfig(val=0.2, test=0.3, shuffle=False), seed=0)
    np.testing.assert_array_equal(parts["train"], np.arange(5))
    np.testing.assert_array_equal(parts["val"], [5, 6])
    np.testing.assert_array_equal(parts["test"], [7, 8, 9])


def test_explicit_index_lists():
    parts = split_indices(10, SplitConfig(train=[9, 0, 2, 3], val=[4, 1], test=[8]), seed=0)
    np.testing.assert_array_equal(parts["train"], [0, 2, 3, 9])
    np.testing.assert_array_equal(parts["val"], [1, 4])
    np.testing.assert_array_equal(parts["test"], [8])


def test_explicit_ranges():
    parts = split_indices(100, SplitConfig(train="0:60", val="60:80", test="80:"), seed=0)
    np.testing.assert_array_equal(parts["train"], np.arange(60))
    np.testing.assert_array_equal(parts["val"], np.arange(60, 80))
    np.testing.assert_array_equal(parts["test"], np.arange(80, 100))
    parts = split_indices(100, SplitConfig(train=":50", val="50:70", test=None), seed=0)
    np.testing.assert_array_equal(parts["train"], np.arange(50))
    assert "test" not in parts


def test_explicit_ranges_ignore_the_seed():
    cfg = SplitConfig(train="0:6", val="6:8", test="8:10")
    a, b = split_indices(10, cfg, seed=0), split_indices(10, cfg, seed=99)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])


def test_out_of_range_index_names_the_part():
    with pytest.raises(DataError) as info:
        split_indices(10, SplitConfig(train=[0, 1], val=[2, 10], test=None), seed=0)
    msg = str(info.value)
    assert "data.split.val" in msg and "10" in msg


@pytest.mark.parametrize("rng_", ["0:11", "10:"])
def test_out_of_range_range_names_the_part(rng_):
    with pytest.raises(DataError, match="data.split.train"):
        split_indices(10, SplitConfig(train=rng_, val=None, test=None), seed=0)


def test_overlapping_explicit_parts():
    with pytest.raises(DataError) as info:
        split_indices(10, SplitConfig(train="0:6", val=[5, 6], test=None), seed=0)
    msg = str(info.value)
    assert "sample 5" in msg and "'train'" in msg and "'val'" in msg
    with pytest.raises(DataError, match="'val' and 'test'"):
        split_indices(10, SplitConfig(train="0:4", val="4:7", test="6:"), seed=0)


def test_no_training_samples_left():
    with pytest.raises(DataError, match="no training samples"):
        split_indices(2, SplitConfig(val=0.5, test=0.49), seed=0)
