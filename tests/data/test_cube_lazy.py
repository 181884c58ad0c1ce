"""Lazy ``cube_hdf5`` (``lazy: true``, :class:`CubeStore`): the same samples as the in-memory set, read
slice by slice as asked, and standardization statistics streamed in bounded chunks."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from deepscope.config import load_config
from deepscope.data import standardize
from deepscope.data.arrays import ArraySet
from deepscope.data.cube_hdf5 import CubeStore, load_cube_hdf5
from deepscope.data.standardize import Standardizer

SHAPE = (6, 5, 4)  # (D, H, W): every axis its own length, so a wrong axis cannot pass
CLASSES = {"gr_seed{seed:04d}": 1, "newton_seed{seed:04d}": 0}


def _cube(seed, label, shape=SHAPE):
    return np.random.default_rng(100 * seed + label).normal(1.0 + label, 2.0, size=shape).astype(np.float32)


def _file(path, seeds=range(5), shape=SHAPE, chunks=None):
    with h5py.File(path, "w") as f:
        for seed in seeds:
            for pattern, label in CLASSES.items():
                f.create_dataset(pattern.format(seed=seed), data=_cube(seed, label, shape), chunks=chunks)
    return path


def _config(path, **data):
    return load_config({"data": {"source": "cube_hdf5", "path": str(path), "classes": CLASSES,
                                 "seeds": {"train": [0, 3], "val": [3, 5]}, **data},
                        "train": {"loss": "bce_with_logits"}}).data


def _both(path, **data):
    lazy = load_cube_hdf5(_config(path, lazy=True, **data))
    memory = load_cube_hdf5(_config(path, lazy=False, **data))
    assert set(lazy) == set(memory) == {"train", "val"}
    for name in lazy:
        assert isinstance(lazy[name], CubeStore) and isinstance(memory[name], ArraySet)
    return lazy, memory


def _equal(lazy, memory, positions):
    a, b = lazy.read(positions), memory.read(positions)
    assert a["images"]["cube"].dtype == b["images"]["cube"].dtype == np.float32
    np.testing.assert_array_equal(a["images"]["cube"], b["images"]["cube"])
    assert a["targets"].dtype == np.int64
    np.testing.assert_array_equal(a["targets"], b["targets"])


DATA = [
    {},
    {"slices": {"axes": [0]}},
    {"slices": {"axes": [2]}},
    {"slices": {"axes": [1, 2]}, "amplitude": {0: 2.5}},
    {"slices": {"axes": [2, 1]}},
    {"amplitude": {1: 0.5, 0: 3.0}},
]


@pytest.mark.parametrize("data", DATA, ids=["whole", "axis0", "axis2", "axes12-amp", "axes21", "whole-amp"])
def test_lazy_reads_equal_the_in_memory_set(tmp_path, data):
    if data.get("slices", {}).get("axes") in ([1, 2], [2, 1]):
        shape = (6, 5, 5)  # slices along H and W have one shape (D, other)
    else:
        shape = SHAPE
    lazy, memory = _both(_file(tmp_path / "c.h5", shape=shape, chunks=(2, *shape[1:])), **data)
    rng = np.random.default_rng(0)
    for name in lazy:
        n = len(memory[name])
        assert len(lazy[name]) == n
        _equal(lazy[name], memory[name], np.arange(n))
        for _ in range(10):
            _equal(lazy[name], memory[name], rng.integers(0, n, size=int(rng.integers(1, 2 * n))))  # any order
        _equal(lazy[name], memory[name], np.array([n - 1, 0, n - 1]))
        loaded = lazy[name].load()
        np.testing.assert_array_equal(loaded.images["cube"], memory[name].images["cube"])
        np.testing.assert_array_equal(loaded.targets, memory[name].targets)


def test_lazy_whole_cubes_against_numpy(tmp_path):
    lazy = load_cube_hdf5(_config(_file(tmp_path / "c.h5"), lazy=True, amplitude={0: 2.0}))["val"]
    cubes = [_cube(seed, label) * (2.0 if label == 0 else 1.0) for seed in (3, 4) for label in (1, 0)]
    batch = lazy.read(np.array([2, 0, 3]))
    np.testing.assert_allclose(batch["images"]["cube"][:, 0], np.stack([cubes[2], cubes[0], cubes[3]]), rtol=1e-6)
    np.testing.assert_array_equal(batch["targets"], [1, 1, 0])


def test_stored_channels_are_kept(tmp_path):
    path = tmp_path / "c.h5"
    rng = np.random.default_rng(1)
    cubes = {}
    with h5py.File(path, "w") as f:
        for seed in range(5):
            for pattern, label in CLASSES.items():
                cubes[seed, label] = rng.normal(size=(2, *SHAPE)).astype(np.float32)  # (C, D, H, W)
                f[pattern.format(seed=seed)] = cubes[seed, label]
    for data in ({}, {"slices": {"axes": [0]}}):
        lazy, memory = _both(path, **data)
        _equal(lazy["train"], memory["train"], np.arange(len(memory["train"]))[::-1])
    lazy = load_cube_hdf5(_config(path, lazy=True, slices={"axes": [0]}))["train"]
    # sample 6 + 3 is slice 3 along D of the train split's second cube (seed 0, class 0)
    np.testing.assert_array_equal(lazy.read(np.array([SHAPE[0] + 3]))["images"]["cube"][0], cubes[0, 0][:, 3])


def test_read_targets_reads_no_cube(tmp_path, monkeypatch):
    store = load_cube_hdf5(_config(_file(tmp_path / "c.h5"), lazy=True, slices={"axes": [0]}))["train"]
    monkeypatch.setattr(h5py.Dataset, "__getitem__", lambda *a: pytest.fail("read cube data"))
    labels = store.read_targets(np.array([0, 5, 6, 35, 6]))
    np.testing.assert_array_equal(labels, [1, 1, 0, 0, 0])  # 6 slices per cube; cubes by seed, then class
    assert labels.dtype == np.int64 and store.rows_read == 0


def test_rows_read_counts_the_slices_asked(tmp_path):
    path = _file(tmp_path / "c.h5", shape=(4, 4, 4))
    store = load_cube_hdf5(_config(path, lazy=True, slices={"axes": [0, 2]}))["train"]
    per = 4 + 4  # slices along D, then along W
    assert len(store) == 6 * per
    for positions in ([0], [0, 1, 2], [5, 6, 7], [0, 2, 9, per, per + 3, 3 * per + 7], [4, 4, 4, 1]):
        store.rows_read = 0
        store.read(np.array(positions))
        assert store.rows_read == len(set(positions)), positions
    whole = load_cube_hdf5(_config(path, lazy=True))["train"]
    whole.read(np.array([0, 3, 3, 5]))
    assert whole.rows_read == 3  # whole cubes: one read each


# --- standardization streamed over the lazy store -----------------------------------------------------------


def _numpy_global(seeds, shape, amplitude=None):
    cubes = [_cube(s, label, shape) * np.float32((amplitude or {}).get(label, 1.0)) for s in seeds for label in (1, 0)]
    x = np.stack(cubes).astype(np.float64)
    return x.mean(), x.std()


@pytest.mark.parametrize("slices", [None, {"axes": [0]}, {"axes": [0, 1, 2]}])
def test_standardizer_fit_streams_the_global_stats(tmp_path, monkeypatch, slices):
    shape = (4, 4, 4)  # slices along every axis need one plane shape
    path = _file(tmp_path / "c.h5", shape=shape)
    cfg = _config(path, lazy=True, standardized_on_disk=False, slices=slices, amplitude={0: 1.5})
    assert cfg.standardize.images == "global"
    store = load_cube_hdf5(cfg)["train"]
    sample_bytes = int(np.prod(store.plan.sample_shape)) * 4 + 8  # the images and the int64 label
    monkeypatch.setattr(standardize, "_CHUNK_BYTES", 5 * sample_bytes)  # at most 5 samples per read
    sizes = []

    def read(positions):
        sizes.append(len(positions))
        return store.read(positions)

    fitted = Standardizer.fit(read, np.arange(len(store)), cfg.standardize, standardize_targets=False)
    mean, std = fitted.stats["images/cube"]
    ref_mean, ref_std = _numpy_global(range(3), shape, amplitude={0: 1.5})
    np.testing.assert_allclose(mean, ref_mean, rtol=1e-5)
    np.testing.assert_allclose(std, ref_std, rtol=1e-5)
    assert max(sizes) <= 5 and sum(sizes[1:]) == len(store)  # the first read is one probe sample
    memory = load_cube_hdf5(_config(path, lazy=False, standardized_on_disk=False, slices=slices,
                                    amplitude={0: 1.5}))["train"]
    in_memory = Standardizer.fit(memory.read, np.arange(len(memory)), cfg.standardize, standardize_targets=False)
    np.testing.assert_allclose(in_memory.stats["images/cube"][0], mean, rtol=1e-6)
    np.testing.assert_allclose(in_memory.stats["images/cube"][1], std, rtol=1e-6)


def test_big_cubes_are_read_at_most_64_mib_at_a_time(tmp_path):
    path = tmp_path / "big.h5"
    shape = (128, 128, 128)  # 8 MiB a cube as float32; left unwritten (HDF5 gives the fill value)
    with h5py.File(path, "w") as f:
        for seed in range(5):
            for pattern in CLASSES:
                f.create_dataset(pattern.format(seed=seed), shape=shape, dtype="f4", fillvalue=0.5)
    cfg = _config(path, lazy=True, standardized_on_disk=False, seeds={"train": [0, 5]})
    store = load_cube_hdf5(cfg)["train"]
    assert store.chunk_samples() == 7  # 64 MiB // (8 MiB + 8 bytes)
    sizes = []

    def read(positions):
        sizes.append(len(positions))
        return store.read(positions)

    fitted = Standardizer.fit(read, np.arange(len(store)), cfg.standardize, standardize_targets=False)
    assert sizes == [1, 7, 3]
    mean, std = fitted.stats["images/cube"]
    assert mean == pytest.approx(0.5) and std == 1.0  # constant data passes through unscaled
    assert [len(p) for p, _ in store.chunks()] == [7, 3]


@pytest.mark.slow
def test_train_lazy_cubes_stores_the_numpy_standardization(tmp_path):
    import deepscope

    shape = (4, 64, 64)
    path = _file(tmp_path / "c.h5", seeds=range(3), shape=shape)
    result = deepscope.train({
        "name": "lazy_cubes",
        "data": {"source": "cube_hdf5", "path": str(path), "classes": CLASSES, "slices": {"axes": [0]},
                 "seeds": {"train": [0, 2], "val": [2, 3]}, "lazy": True, "standardized_on_disk": False},
        "model": {"architecture": "raccoon", "layer_param": 2},
        "train": {"epochs": 1, "loss": "bce_with_logits", "batch_size": 8},
        "log": {"dir": str(tmp_path / "runs"), "progress_bar": "none", "figures": False, "tensorboard": False},
    })
    assert result.epochs == 1 and np.isfinite(result.metrics["val"]["loss"])
    saved = Standardizer.load(result.run_dir / "standardization.npz")
    cubes = np.stack([_cube(s, label, shape) for s in range(2) for label in (1, 0)]).astype(np.float64)
    mean, std = saved.stats["images/cube"]
    np.testing.assert_allclose(mean, cubes.mean(), rtol=1e-5)
    np.testing.assert_allclose(std, cubes.std(), rtol=1e-5)
