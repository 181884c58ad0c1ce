"""The cube_hdf5 source: RACCOON/PENGUIN's HDF5 file of cubes, one dataset per seed and class."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from deepscope.config import load_config
from deepscope.data.cube_hdf5 import describe_cube_hdf5, load_cube_hdf5, plan_cube_hdf5
from deepscope.errors import ConfigError, DataError

SHAPE = (8, 8, 8)  # (D, H, W)
CLASSES = {"gr_seed{seed:04d}": 1, "newton_seed{seed:04d}": 0}


def _cube(seed, label, shape=SHAPE):
    return np.random.default_rng(10 * seed + label).normal(size=shape).astype(np.float32)


def _file(path, seeds=range(6), shape=SHAPE, skip=(), extra=None):
    """One dataset per seed and class (the keys in ``skip`` left out) and ``extra`` datasets."""
    with h5py.File(path, "w") as f:
        for seed in seeds:
            for pattern, label in CLASSES.items():
                key = pattern.format(seed=seed)
                if key not in skip:
                    f[key] = _cube(seed, label, shape)
        for key, value in (extra or {}).items():
            f[key] = value
    return path


def _config(path, loss="bce_with_logits", **data):
    return load_config({"data": {"source": "cube_hdf5", "path": str(path),
                                 "seeds": {"train": [0, 4], "test": [4, 6]}, **data},
                        "train": {"loss": loss}})


def _reference(seeds, shape=SHAPE, amplitude=None):
    """Whole cubes (N, 1, D, H, W) by seed, then class, and their labels."""
    cubes, labels = [], []
    for seed in seeds:
        for label in CLASSES.values():
            cubes.append(_cube(seed, label, shape) * np.float32((amplitude or {}).get(label, 1.0)))
            labels.append(label)
    return np.stack(cubes)[:, None], np.asarray(labels)


def test_whole_cubes_in_seed_then_class_order(tmp_path):
    sets = load_cube_hdf5(_config(_file(tmp_path / "c.h5")).data)
    assert set(sets) == {"train", "test"}
    for name, seeds in (("train", range(0, 4)), ("test", range(4, 6))):
        cubes, labels = _reference(seeds)
        s = sets[name]
        assert s.images["cube"].dtype == np.float32 and s.images["cube"].shape == (2 * len(seeds), 1, *SHAPE)
        assert s.targets.dtype == np.int64
        np.testing.assert_array_equal(s.targets, labels)
        np.testing.assert_array_equal(s.images["cube"], cubes)
        assert s.target_names == ()


def test_4d_cubes_keep_their_channels_and_groups_hold_one_dataset(tmp_path):
    path = tmp_path / "c.h5"
    with h5py.File(path, "w") as f:
        for seed in range(2):
            f[f"gr_seed{seed:04d}"] = np.full((2, 4, 4, 4), seed, np.float32)
            f.create_group(f"newton_seed{seed:04d}")["cube"] = np.full((2, 4, 4, 4), -seed, np.float64)
    sets = load_cube_hdf5(load_config({"data": {"source": "cube_hdf5", "path": str(path),
                                                "seeds": {"train": [0, 2]}}}).data)
    assert sets["train"].images["cube"].shape == (4, 2, 4, 4, 4)
    np.testing.assert_array_equal(sets["train"].images["cube"][:, 0, 0, 0, 0], [0, 0, 1, -1])


@pytest.mark.parametrize("axes", [[0], [2], [0, 1, 2], [2, 0]])
def test_slices_along_axes(tmp_path, axes):
    sets = load_cube_hdf5(_config(_file(tmp_path / "c.h5"), slices={"axes": axes}).data)
    train = sets["train"]
    assert train.images["cube"].shape == (4 * 2 * 8 * len(axes), 1, 8, 8)  # seeds x classes x slices
    cubes, labels = _reference(range(4))
    expected = np.concatenate([np.concatenate([np.moveaxis(c[0], a, 0)[:, None] for a in axes]) for c in cubes])
    np.testing.assert_array_equal(train.images["cube"], expected)
    np.testing.assert_array_equal(train.targets, np.repeat(labels, 8 * len(axes)))


def test_slices_of_non_cubic_cubes(tmp_path):
    path = _file(tmp_path / "c.h5", shape=(4, 6, 6))
    sets = load_cube_hdf5(_config(path, slices={"axes": [0]}).data)
    assert sets["test"].images["cube"].shape == (2 * 2 * 4, 1, 6, 6)
    with pytest.raises(DataError, match=r"slices of shape \(6, 6\) along axis 0 but \(4, 6\) along axis 1"):
        load_cube_hdf5(_config(path, slices={"axes": [0, 1]}).data)


def test_amplitude_multiplies_one_class(tmp_path):
    sets = load_cube_hdf5(_config(_file(tmp_path / "c.h5"), amplitude={0: 1.5}).data)
    cubes, labels = _reference(range(4), amplitude={0: 1.5})
    np.testing.assert_allclose(sets["train"].images["cube"], cubes, rtol=1e-6)
    plain, _ = _reference(range(4))
    np.testing.assert_array_equal(sets["train"].images["cube"][labels == 1], plain[labels == 1])


def test_keys_matching_no_pattern_are_ignored(tmp_path):
    path = _file(tmp_path / "c.h5", extra={"meta_mean": np.zeros(3), "notes": np.zeros((2, 2))})
    assert len(load_cube_hdf5(_config(path).data)["train"]) == 8


def test_standardization_defaults():
    assert _config("x.h5").data.standardize.images == "none"
    assert _config("x.h5", standardized_on_disk=False).data.standardize.images == "global"
    assert _config("x.h5", standardize={"images": "per_channel"}).data.standardize.images == "per_channel"
    assert _config("x.h5", standardize={"targets": False}).data.standardize.images == "none"


def test_config_defaults_and_aliases():
    cfg = load_config({"data": {"source": "penguin_hdf5", "path": "d.h5", "seeds": {"train": [0, 3], "val": None}},
                       "train": {"loss": "bce_with_logits"}}).data
    assert cfg.source == "cube_hdf5" and cfg.path.is_absolute()
    assert cfg.classes == CLASSES and cfg.amplitude == {0: 1.0} and cfg.slices is None
    assert cfg.seeds == {"train": [0, 3]} and cfg.split_seeds() == {"train": range(0, 3)}
    assert cfg.channels == "first"


@pytest.mark.parametrize("data, message", [
    ({"seed": {"train": [0, 2]}}, r"data.seed: unknown key; did you mean 'seeds'\?"),
    ({"seeds": {"train": [0, 4], "test": [3, 6]}}, r"data.seeds: train \[0, 4\) and test \[3, 6\) overlap"),
    ({"seeds": {"test": [3, 6]}}, r"data.seeds: needs 'train'"),
    ({"seeds": {"train": [4, 4]}}, r"'train': found \[4, 4\]; expected \[start, stop\) with 0 <= start < stop"),
    ({"seeds": {"train": [-1, 4]}}, r"0 <= start < stop"),
    ({"seeds": {"train": [0, 1, 2]}}, r"expected \[start, stop\)"),
    ({"seeds": {"train": [0, 4], "valid": [4, 5]}}, r"unknown split 'valid'; did you mean 'val'\?"),
    ({"classes": {"gr_seed": 1}}, r"data.classes: 'gr_seed': found 'gr_seed' \(fields: none\); expected a key "
                                  r"with the field '\{seed\}' exactly once"),
    ({"classes": {"gr_{seed}_{seed}": 1}}, r"field '\{seed\}' exactly once"),
    ({"classes": {"gr_{run}": 1}}, r"fields: \{run\}"),
    ({"classes": {"gr_{seed:q}": 1}}, r"':q' is not a format spec for an integer seed"),
    ({"classes": {"gr_{seed!r}": 1}}, r"not a conversion"),
    ({"classes": {"gr_{seed}": -1}}, r"found label -1"),
    ({"classes": {}}, r"data.classes: found an empty mapping"),
    ({"slices": {"axes": [3]}}, r"data.slices.axes: found axis 3; cube axes are 0, 1, 2"),
    ({"slices": {"axes": [0, 0]}}, r"an axis is listed twice"),
    ({"slices": {"axes": []}}, r"found an empty list"),
    ({"slices": {"axis": [0]}}, r"data.slices.axis: unknown key; did you mean 'axes'\?"),
    ({"amplitude": {0: 0.0}}, r"data.amplitude: label 0: found 0.0; expected a finite factor > 0"),
    ({"amplitude": {2: 1.5}}, r"data.amplitude has label 2 but no pattern of data.classes has it"),
    ({"split": {"val": 0.2}}, r"remove data.split"),
])
def test_config_errors(data, message):
    with pytest.raises(ConfigError, match=message):
        load_config({"data": {"source": "cube_hdf5", "path": "d.h5", "seeds": {"train": [0, 4]}, **data}})


@pytest.mark.parametrize("slices", [None, {"axes": [0, 1]}])
def test_describe_gives_the_loaded_shapes(tmp_path, slices):
    cfg = _config(_file(tmp_path / "c.h5"), slices=slices).data
    loaded, described = load_cube_hdf5(cfg), describe_cube_hdf5(cfg, "binary").stand_in
    assert set(loaded) == set(described)
    for name in loaded:
        assert described[name].images["cube"].shape[1:] == loaded[name].images["cube"].shape[1:]
        assert sorted(set(described[name].targets)) == sorted(set(loaded[name].targets)) == [0, 1]


def test_plan_reads_no_cube_data(tmp_path, monkeypatch):
    cfg = _config(_file(tmp_path / "c.h5")).data
    monkeypatch.setattr(h5py.Dataset, "__getitem__", lambda *a: pytest.fail("read cube data"))
    plan = plan_cube_hdf5(cfg)
    assert plan.cube_shape == (1, *SHAPE) and [c.key for c in plan.splits["test"]] == [
        "gr_seed0004", "newton_seed0004", "gr_seed0005", "newton_seed0005"]
    describe_cube_hdf5(cfg, "binary")


def test_prepare_data_and_describe_data_agree(tmp_path):
    from deepscope.data.prepare import describe_data, prepare_data

    path = _file(tmp_path / "c.h5")
    cfg = load_config({"data": {"source": "cube_hdf5", "path": str(path), "slices": {"axes": [0]},
                                "seeds": {"train": [0, 3], "val": [3, 5], "test": [5, 6]}},
                       "model": {"architecture": "raccoon", "layer_param": 2},
                       "train": {"loss": "bce_with_logits"}})
    prepared = prepare_data(cfg)
    assert prepared.sizes() == {"train": 3 * 2 * 8, "val": 2 * 2 * 8, "test": 1 * 2 * 8}
    assert describe_data(cfg) == prepared.spec
    assert prepared.spec.images["cube"].channels == 1 and prepared.spec.images["cube"].spatial == (8, 8)


def test_train_raccoon_on_slices(tmp_path):
    import deepscope

    path = _file(tmp_path / "c.h5", seeds=range(3), shape=(4, 64, 64))
    result = deepscope.train({
        "name": "raccoon_slices",
        "data": {"source": "cube_hdf5", "path": str(path), "slices": {"axes": [0]},
                 "seeds": {"train": [0, 2], "val": [2, 3]}},
        "model": {"architecture": "raccoon", "layer_param": 2},
        "train": {"epochs": 1, "loss": "bce_with_logits", "batch_size": 8},
        "log": {"dir": str(tmp_path / "runs"), "progress_bar": "none", "figures": False, "tensorboard": False},
    })
    assert result.epochs == 1 and result.checkpoint is not None
    assert np.isfinite(result.metrics["val"]["loss"])


# --- bad input -------------------------------------------------------------------------------------


def _not_hdf5(path):
    path.write_text("not an HDF5 file")
    return path, path.name


def _missing_key(path):
    return _file(path, skip=("gr_seed0002",)), "gr_seed0002"


def _shapes_differ(path):
    _file(path, skip=("newton_seed0003",), extra={"newton_seed0003": np.zeros((8, 8, 9))})
    return path, "'newton_seed0003' has shape (8, 8, 9) but 'gr_seed0000' has (8, 8, 8)"


def _no_key_matches(path):
    with h5py.File(path, "w") as f:
        for seed in range(6):
            f[f"GR_seed{seed:04d}"] = np.zeros(SHAPE)
    return path, "did you mean 'GR_seed0000'?"


def _not_numeric(path):
    return _file(path, skip=("gr_seed0001",), extra={"gr_seed0001": np.array([b"a", b"b"])}), "gr_seed0001"


def _not_a_cube(path):
    return _file(path, skip=("gr_seed0001",), extra={"gr_seed0001": np.zeros((8, 8))}), \
        "'gr_seed0001' has shape (8, 8); expected a cube (D, H, W) or (C, D, H, W)"


def _group_of_two(path):
    _file(path, skip=("gr_seed0001",))
    with h5py.File(path, "a") as f:
        group = f.create_group("gr_seed0001")
        group["a"], group["b"] = np.zeros(SHAPE), np.zeros(SHAPE)
    return path, "'gr_seed0001' is a group of 2 member(s)"


@pytest.mark.parametrize("case", [_not_hdf5, _missing_key, _shapes_differ, _no_key_matches, _not_numeric,
                                  _not_a_cube, _group_of_two])
@pytest.mark.parametrize("read", [load_cube_hdf5, lambda cfg: describe_cube_hdf5(cfg, "binary")],
                         ids=["load", "describe"])
def test_bad_input_is_one_data_error_naming_file_and_key(tmp_path, case, read):
    path, fact = case(tmp_path / "c.h5")
    with pytest.raises(DataError) as info:
        read(_config(path).data)
    message = str(info.value)
    assert str(path) in message and fact in message, message


def test_bad_input_messages(tmp_path):
    with pytest.raises(DataError, match=r"data.path: '.*nowhere.h5' not found"):
        load_cube_hdf5(_config(tmp_path / "nowhere.h5").data)
    with pytest.raises(DataError, match=r"no dataset 'gr_seed0002' for seed 2 of data.seeds.train \(class 1, "
                                        r"pattern 'gr_seed\{seed:04d\}'\)"):
        load_cube_hdf5(_config(_missing_key(tmp_path / "a.h5")[0]).data)
    _no_key_matches(tmp_path / "b.h5")
    with pytest.raises(DataError, match=r"no dataset matches the key patterns of data.classes \('gr_seed\{seed:04d\}', "
                                        r"'newton_seed\{seed:04d\}'\), e.g. 'gr_seed0000'; the file holds 6 "
                                        r"dataset\(s\): 'GR_seed0000', .*, \.\.\.; did you mean 'GR_seed0000'\?"):
        load_cube_hdf5(_config(tmp_path / "b.h5").data)
    with pytest.raises(DataError, match=r"the patterns 'gr_\{seed\}' and 'gr_\{seed:d\}' of data.classes both name "
                                        r"'gr_0'"):
        path = _file(tmp_path / "c.h5", extra={"gr_0": np.zeros(SHAPE)})
        load_cube_hdf5(_config(path, classes={"gr_{seed}": 1, "gr_{seed:d}": 0}).data)
