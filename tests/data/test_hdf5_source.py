"""The generic ``hdf5`` source: datasets mapped by name to images, scalars, tracks, targets and weights.

Every layout rule is checked against numpy on the arrays written with h5py, lazily (``lazy: true``,
an :class:`HDF5Store`) and in memory (``lazy: false``); bad files are one DataError naming the config
key and the file."""

from __future__ import annotations

import csv

import h5py
import numpy as np
import pytest

from deepscope.config import load_config
from deepscope.data.arrays import ArraySet
from deepscope.data.hdf5 import HDF5Store, describe_hdf5, load_hdf5, plan_hdf5
from deepscope.errors import ConfigError, DataError
from tests.conftest import small_config

N = 37


def _rng(seed=0):
    return np.random.default_rng(seed)


def _write(path, arrays, chunks=None, compression=None):
    """``arrays``: dataset path -> array; ``chunks``: rows per chunk for every dataset (None: contiguous)."""
    with h5py.File(path, "a") as f:
        for name, value in arrays.items():
            value = np.asarray(value)
            kwargs = {}
            if chunks is not None and value.ndim:
                kwargs = {"chunks": (min(chunks, len(value)), *value.shape[1:]), "compression": compression}
            f.create_dataset(name, data=value, **kwargs)
    return path


def _data(path, loss="mse", **data):
    return load_config({"data": {"source": "hdf5", "path": str(path), **data}, "train": {"loss": loss}}).data


def _both(cfg):
    """The lazy store and the in-memory set of one config."""
    lazy = load_hdf5(cfg.model_copy(update={"lazy": True}))
    memory = load_hdf5(cfg.model_copy(update={"lazy": False}))
    return lazy, memory


def _read_all(store, n):
    return store.read(np.arange(n))


def _assert_batches_equal(a, b):
    assert set(a) == set(b)
    for key in a:
        if isinstance(a[key], dict):
            _assert_batches_equal(a[key], b[key])
        else:
            assert a[key].dtype == b[key].dtype, key
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)


@pytest.fixture(params=[None, 8], ids=["contiguous", "chunked"])
def chunks(request):
    return request.param


# --- layout rules -------------------------------------------------------------------------------------


@pytest.mark.parametrize("lazy", [True, False])
def test_images_channels_last_first_and_added(tmp_path, chunks, lazy):
    rng = _rng()
    last = rng.normal(size=(N, 6, 5, 3)).astype(np.float32)
    first = rng.normal(size=(N, 2, 6, 5))
    plain = rng.integers(0, 100, size=(N, 6, 5)).astype(np.int16)
    y = rng.normal(size=N)
    path = _write(tmp_path / "d.h5", {"last": last, "first": first, "plain": plain, "y": y}, chunks, "gzip")
    s = load_hdf5(_data(path, images={"a": "last", "c": "plain"}, targets="y", lazy=lazy))
    b = _read_all(s, N)
    np.testing.assert_array_equal(b["images"]["a"], np.moveaxis(last, -1, 1))  # (N, C, H, W)
    np.testing.assert_array_equal(b["images"]["c"], plain[:, None].astype(np.float32))
    assert b["images"]["a"].dtype == b["images"]["c"].dtype == np.float32
    assert b["targets"].dtype == np.float32
    np.testing.assert_allclose(b["targets"], y.astype(np.float32))
    s = load_hdf5(_data(path, images={"b": "first"}, targets="y", channels="first", lazy=lazy))
    np.testing.assert_array_equal(_read_all(s, N)["images"]["b"], first.astype(np.float32))


@pytest.mark.parametrize("lazy", [True, False])
def test_a_list_of_datasets_stacks_channels(tmp_path, chunks, lazy):
    rng = _rng(1)
    e, h, t = (rng.normal(size=(N, 4, 7)).astype(np.float32) for _ in range(3))
    vols = [rng.normal(size=(N, 3, 4, 5)).astype(np.float32) for _ in range(2)]
    path = _write(tmp_path / "d.h5", {"ecal": e, "hcal": h, "time": t, "v/a": vols[0], "v/b": vols[1],
                                      "y": rng.normal(size=N)}, chunks)
    s = load_hdf5(_data(path, images={"calo": ["hcal", "ecal", "time"], "vol": ["v/a", "v/b"]}, targets="y",
                        lazy=lazy))
    b = _read_all(s, N)
    np.testing.assert_array_equal(b["images"]["calo"], np.stack([h, e, t], axis=1))  # in the listed order
    np.testing.assert_array_equal(b["images"]["vol"], np.stack(vols, axis=1))  # (N, 2, D, H, W)


@pytest.mark.parametrize("lazy", [True, False])
@pytest.mark.parametrize("channels", ["last", "first"])
def test_3d_volumes_with_a_channel_axis(tmp_path, chunks, lazy, channels):
    rng = _rng(2)
    vol = rng.normal(size=(N, 3, 4, 5, 2)).astype(np.float32)  # (N, D, H, W, C) or (N, C, D, H, W)
    path = _write(tmp_path / "d.h5", {"vol": vol, "y": rng.normal(size=N)}, chunks)
    s = load_hdf5(_data(path, images={"vol": "vol"}, targets="y", channels=channels, lazy=lazy))
    got = _read_all(s, N)["images"]["vol"]
    np.testing.assert_array_equal(got, np.moveaxis(vol, -1, 1) if channels == "last" else vol)


@pytest.mark.parametrize("lazy", [True, False])
def test_scalars_tracks_weights(tmp_path, chunks, lazy):
    rng = _rng(3)
    a, b2, c = rng.normal(size=N), rng.normal(size=(N, 2)), rng.integers(0, 5, size=(N, 1))
    tracks = rng.normal(size=(N, 6, 3)).astype(np.float32)
    pt, eta = rng.normal(size=(N, 6)), rng.normal(size=(N, 6))
    w = rng.uniform(size=N)
    path = _write(tmp_path / "d.h5", {"a": a, "b": b2, "c": c, "trk": tracks, "pt": pt, "eta": eta, "w": w,
                                      "w2": w[:, None], "img": rng.normal(size=(N, 3, 3)), "y": rng.normal(size=N)},
                  chunks)
    s = load_hdf5(_data(path, scalars=["b", "a", "c"], tracks="trk", weights="w", targets="y", lazy=lazy))
    batch = _read_all(s, N)
    assert "images" not in batch
    np.testing.assert_allclose(batch["scalars"], np.concatenate([b2, a[:, None], c], axis=1).astype(np.float32))
    assert batch["scalars"].dtype == np.float32 and batch["scalars"].shape == (N, 4)
    np.testing.assert_array_equal(batch["tracks"], tracks)
    np.testing.assert_allclose(batch["sample_weights"], w.astype(np.float32))
    assert batch["sample_weights"].shape == (N,) and batch["sample_weights"].dtype == np.float32
    s = load_hdf5(_data(path, images="img", tracks=["eta", "pt"], weights="w2", targets="y", lazy=lazy))
    batch = _read_all(s, N)
    np.testing.assert_allclose(batch["tracks"], np.stack([eta, pt], axis=-1).astype(np.float32))  # (N, T, F)
    np.testing.assert_allclose(batch["sample_weights"], w.astype(np.float32))
    assert set(batch["images"]) == {"images"}  # one image given as a dataset is named 'images'


@pytest.mark.parametrize("lazy", [True, False])
def test_targets_labels_columns_and_dense(tmp_path, chunks, lazy):
    rng = _rng(4)
    img = rng.normal(size=(N, 6, 5, 2)).astype(np.float32)
    plane = rng.normal(size=(N, 6, 5)).astype(np.float32)
    arrays = {"img": img, "plane": plane, "plane2": -plane, "labels": rng.integers(0, 4, size=N).astype(np.uint8),
              "mass": rng.normal(size=N), "pt": rng.normal(size=N).astype(np.float32), "k": rng.integers(0, 9, N),
              "mask": (img > 0).astype(np.float32), "seg": (plane > 0).astype(np.int32), "vec": rng.normal(size=(N, 3))}
    path = _write(tmp_path / "d.h5", arrays, chunks)

    def targets(target, images="img"):
        s = load_hdf5(_data(path, images=images, targets=target, lazy=lazy))
        return s, _read_all(s, N)["targets"]

    _, t = targets("labels")  # integer labels: int64
    assert t.dtype == np.int64
    np.testing.assert_array_equal(t, arrays["labels"])
    s, t = targets(["mass", "pt", "k"])  # columns, named after their datasets
    assert t.dtype == np.float32 and t.shape == (N, 3)
    np.testing.assert_allclose(t, np.stack([arrays["mass"], arrays["pt"], arrays["k"]], 1).astype(np.float32))
    assert s.target_names == ("mass", "pt", "k")
    s, t = targets("vec")  # one (N, K) dataset: values, no names
    assert t.dtype == np.float32 and s.target_names == ()
    np.testing.assert_allclose(t, arrays["vec"].astype(np.float32))
    _, t = targets("mask")  # dense, of the image's shape: channels first as the image
    np.testing.assert_array_equal(t, np.moveaxis(arrays["mask"], -1, 1))
    _, t = targets("seg", images={"p": "plane"})  # dense labels of an (N, H, W) image: a channel added
    assert t.dtype == np.int64
    np.testing.assert_array_equal(t, arrays["seg"][:, None])
    _, t = targets("seg", images={"p": ["plane", "plane2"]})
    np.testing.assert_array_equal(t, arrays["seg"][:, None])  # stacked channels: a channel added as well


def test_random_order_with_repeats_equals_the_reference(tmp_path):
    rng = _rng(5)
    img = rng.normal(size=(200, 4, 4, 1)).astype(np.float32)
    s_ = rng.normal(size=(200, 2)).astype(np.float32)
    y = rng.integers(0, 3, 200)
    path = _write(tmp_path / "d.h5", {"img": img, "s": s_, "y": y}, chunks=16, compression="gzip")
    store = load_hdf5(_data(path, images={"calo": "img"}, scalars=["s"], targets="y", lazy=True))
    assert isinstance(store, HDF5Store) and len(store) == 200 and store.chunk_rows == 16
    for _ in range(30):
        pos = rng.integers(0, 200, size=int(rng.integers(1, 64)))  # unsorted, with repeats
        b = store.read(pos)
        np.testing.assert_array_equal(b["images"]["calo"], np.moveaxis(img[pos], -1, 1))
        np.testing.assert_array_equal(b["scalars"], s_[pos])
        np.testing.assert_array_equal(b["targets"], y[pos])
        np.testing.assert_array_equal(store.read_targets(pos), y[pos])
    store.close()


def test_lazy_store_equals_the_in_memory_set(tmp_path):
    rng = _rng(6)
    arrays = {"img": rng.normal(size=(N, 5, 5, 2)), "e": rng.normal(size=(N, 5, 5)), "f": rng.normal(size=(N, 5, 5)),
              "s": rng.normal(size=(N, 3)),
              "trk": rng.normal(size=(N, 4, 2)), "y": rng.normal(size=N), "z": rng.normal(size=N),
              "w": rng.uniform(size=N)}
    path = _write(tmp_path / "d.h5", arrays, chunks=5, compression="gzip")
    cfg = _data(path, images={"a": "img", "b": ["f", "e"]}, scalars="s", tracks="trk", targets=["y", "z"],
                weights="w")
    lazy, memory = _both(cfg)
    assert isinstance(lazy, HDF5Store) and isinstance(memory, ArraySet)
    assert memory.target_names == lazy.target_names == ("y", "z")
    pos = np.array([36, 0, 5, 5, 17, 2])
    _assert_batches_equal(lazy.read(pos), memory.read(pos))
    _assert_batches_equal(lazy.load().read(np.arange(N)), memory.read(np.arange(N)))
    auto = load_hdf5(cfg)  # auto: a small file goes into memory
    assert isinstance(auto, ArraySet)
    _assert_batches_equal(auto.read(pos), memory.read(pos))


# --- splits: groups or one pool -------------------------------------------------------------------------


def _split_file(path, sizes=(("train", 30), ("val", 10), ("test", 8))):
    rng = _rng(7)
    ref = {}
    for group, n in sizes:
        ref[group] = {"img": rng.normal(size=(n, 4, 4)).astype(np.float32), "y": rng.normal(size=n).astype(np.float32)}
        _write(path, {f"{group}/img": ref[group]["img"], f"{group}/y": ref[group]["y"]}, chunks=4)
    return ref


@pytest.mark.parametrize("lazy", [True, False])
def test_sets_are_groups(tmp_path, lazy):
    path = tmp_path / "d.h5"
    ref = _split_file(path)
    sets = load_hdf5(_data(path, sets={"train": "train", "val": "/val/", "test": "test"}, images={"x": "img"},
                           targets="y", lazy=lazy))
    assert list(sets) == ["train", "val", "test"]
    for name, store in sets.items():
        assert isinstance(store, HDF5Store if lazy else ArraySet)
        n = len(ref[name]["y"])
        b = store.read(np.arange(n))
        np.testing.assert_array_equal(b["images"]["x"][:, 0], ref[name]["img"])
        np.testing.assert_array_equal(b["targets"], ref[name]["y"])
    plans, _ = plan_hdf5(_data(path, sets={"train": "train", "val": "val"}, images={"x": "img"}, targets="y"))
    assert {k: (p.group, p.n) for k, p in plans.items()} == {"train": ("train", 30), "val": ("val", 10)}


@pytest.mark.parametrize("lazy", [True, False])
def test_one_pool_split_by_data_split(tmp_path, lazy):
    from deepscope.data.prepare import prepare_data

    rng = _rng(8)
    img, y = rng.normal(size=(50, 4, 4)).astype(np.float32), rng.normal(size=50).astype(np.float32)
    path = _write(tmp_path / "d.h5", {"img": img, "y": y}, chunks=8)
    cfg = load_config({"data": {"source": "hdf5", "path": str(path), "images": {"x": "img"}, "targets": "y",
                                "lazy": lazy, "split": {"train": "0:30", "val": "30:42", "test": "42:50"},
                                "standardize": {"images": "none"}},
                       "train": {"loss": "mse"}})
    loaded = load_hdf5(cfg.data)
    assert isinstance(loaded, HDF5Store if lazy else ArraySet) and len(loaded) == 50
    prepared = prepare_data(cfg)
    assert prepared.sizes() == {"train": 30, "val": 12, "test": 8}
    assert prepared.stores["train"] is prepared.stores["val"] is prepared.stores["test"]  # one pool
    for name, (lo, hi) in {"train": (0, 30), "val": (30, 42), "test": (42, 50)}.items():
        np.testing.assert_array_equal(prepared.indices[name], np.arange(lo, hi))
        b = prepared.stores[name].read(prepared.indices[name])
        np.testing.assert_array_equal(b["images"]["x"][:, 0], img[lo:hi])
        np.testing.assert_array_equal(b["targets"], y[lo:hi])


def test_describe_gives_the_loaded_shapes_and_reads_one_sample(tmp_path):
    path = tmp_path / "d.h5"
    _split_file(path)
    cfg = _data(path, sets={"train": "train", "val": "val"}, images={"x": "img"}, targets="y")
    described = describe_hdf5(cfg, "regression").stand_in
    loaded = load_hdf5(cfg)
    assert set(described) == set(loaded) == {"train", "val"}
    for name in loaded:
        assert described[name].images["x"].shape[1:] == loaded[name].images["x"].shape[1:] == (1, 4, 4)
        assert len(described[name]) == 1
    pool = tmp_path / "pool.h5"
    _write(pool, {"img": np.zeros((9, 3, 3, 2)), "y": np.zeros(9)})
    description = describe_hdf5(_data(pool, images="img", targets="y"), "regression")
    assert description.pool_size == 9 and description.stand_in.images["images"].shape == (1, 2, 3, 3)


# --- bad files: one DataError naming the key and the file ---------------------------------------------------


def _good(path):
    rng = _rng(9)
    return _write(path, {"img": rng.normal(size=(20, 4, 4)), "s": rng.normal(size=20), "y": rng.normal(size=20),
                         "grp/y": np.zeros(20)})


BAD_FILES = [
    # (datasets added to a good file, data config overrides, the message's facts)
    ({}, {"images": {"calo": "imgs"}},
     ["data.images.calo: no dataset 'imgs' in the file's root of", "did you mean 'img'?", "it holds 4 dataset(s)"]),
    ({}, {"targets": "grp"}, ["data.targets: 'grp' in the file's root of", "is a group, not a dataset"]),
    ({}, {"sets": {"train": "trian"}}, ["data.sets.train: group 'trian' is not in '"]),
    ({"train/img": np.zeros((5, 4, 4)), "train/y": np.zeros(5)}, {"sets": {"train": "train", "val": "valid"}},
     ["data.sets.val: group 'valid' is not in '"]),
    ({}, {"sets": {"train": "img"}}, ["data.sets.train: group 'img' is a dataset, not a group, in '"]),
    ({"short": np.zeros(19)}, {"scalars": ["s", "short"]},
     ["data.scalars: dataset '/short' of", "has 19 samples but '/img' has 20", "same N"]),
    ({"names": np.array([b"a"] * 20)}, {"targets": "names"}, ["data.targets: dataset '/names' of", "expected numbers"]),
    ({"flat": np.zeros(20)}, {"images": {"calo": "flat"}},
     ["data.images.calo: dataset '/flat' of", "has shape (20,); expected (N, H, W)"]),
    ({"six": np.zeros((20, 1, 2, 3, 4, 5))}, {"images": {"calo": "six"}},
     ["data.images.calo", "shape (20, 1, 2, 3, 4, 5)"]),
    ({"flat": np.zeros(20)}, {"images": {"calo": ["img", "flat"]}},
     ["data.images.calo: dataset '/flat' of", "a list of datasets stacks one channel each"]),
    ({"big": np.zeros((20, 5, 4))}, {"images": {"calo": ["img", "big"]}},
     ["data.images.calo: dataset '/big' of", "per-sample shape (5, 4) but '/img' has (4, 4)"]),
    ({"cube": np.zeros((20, 2, 2))}, {"scalars": ["cube"]},
     ["data.scalars: dataset '/cube' of", "expected (N,) or (N, S)"]),
    ({}, {"tracks": "s"}, ["data.tracks: dataset '/s' of", "expected (N, T, F) zero-padded tracks"]),
    ({"cols": np.zeros((20, 2))}, {"targets": ["y", "cols"]},
     ["data.targets: dataset '/cols' of", "stacks (N,) datasets"]),
    ({"w": np.zeros((20, 2))}, {"weights": "w"}, ["data.weights: dataset '/w' of", "expected (N,)"]),
    ({"e/img": np.zeros((0, 4, 4)), "e/y": np.zeros(0)}, {"sets": {"train": "e"}},
     ["data.sets.train: the datasets of", "hold no samples"]),
]


@pytest.mark.parametrize("extra, overrides, facts", BAD_FILES, ids=[str(i) for i in range(len(BAD_FILES))])
@pytest.mark.parametrize("read", ["load", "describe"])
def test_bad_file_is_one_data_error_naming_key_and_file(tmp_path, extra, overrides, facts, read):
    path = _good(tmp_path / "d.h5")
    _write(path, extra)
    cfg = _data(path, **{"images": {"calo": "img"}, "targets": "y", **overrides})
    with pytest.raises(DataError) as info:
        load_hdf5(cfg) if read == "load" else describe_hdf5(cfg, "regression")
    message = str(info.value)
    assert f"'{path}'" in message, message
    for fact in facts:
        assert fact in message, f"{fact!r} not in {message!r}"


def test_missing_and_non_hdf5_files(tmp_path):
    with pytest.raises(DataError, match=r"^data.path: '.*nowhere.h5' not found$"):
        load_hdf5(_data(tmp_path / "nowhere.h5", images="img", targets="y"))
    text = tmp_path / "notes.h5"
    text.write_text("x" * 1000)
    with pytest.raises(DataError, match=r"^data.path: '.*notes.h5' is not an HDF5 file"):
        load_hdf5(_data(text, images="img", targets="y"))
    with pytest.raises(DataError, match=r"is a folder"):
        describe_hdf5(_data(tmp_path, images="img", targets="y"), "regression")


def test_splits_need_the_same_shapes(tmp_path):
    path = _write(tmp_path / "d.h5", {"a/img": np.zeros((5, 4, 4)), "a/y": np.zeros(5),
                                      "b/img": np.zeros((5, 4, 3)), "b/y": np.zeros(5)})
    with pytest.raises(DataError, match=r"dataset '/b/img' \(val\) has per-sample shape \(4, 3\) but '/a/img' "
                                        r"\(train\) has \(4, 4\)"):
        load_hdf5(_data(path, sets={"train": "a", "val": "b"}, images="img", targets="y"))


def test_check_finite_names_the_dataset_and_sample(tmp_path):
    rng = _rng(10)
    img, s = rng.normal(size=(40, 4, 4)), rng.normal(size=(40, 2))
    img[29, 1, 1] = np.nan
    s[12, 1] = np.inf
    path = _write(tmp_path / "d.h5", {"g/img": img, "g/s": s, "g/y": rng.normal(size=40)}, chunks=8)
    store = load_hdf5(_data(path, sets={"train": "g"}, images={"calo": "img"}, targets="y", lazy=True))["train"]
    with pytest.raises(DataError) as info:
        store.check_finite("data['train']")
    assert str(info.value).startswith(f"data['train']['images/calo']: '{path}', dataset 'g/img', sample 29 holds "
                                      "NaN/inf")
    store = load_hdf5(_data(path, sets={"train": "g"}, scalars=["s"], targets="y", lazy=True))["train"]
    with pytest.raises(DataError, match=r"\['scalars'\]: .*dataset 'g/s', sample 12 holds NaN/inf"):
        store.check_finite("data")
    store.close()


@pytest.mark.parametrize("lazy", [True, False])
def test_training_data_with_nan_is_refused_before_training(tmp_path, lazy):
    from deepscope.data.prepare import prepare_data

    rng = _rng(12)
    img = rng.normal(size=(30, 4, 4))
    img[17, 0, 3] = np.nan
    path = _write(tmp_path / "d.h5", {"tr/img": img, "tr/y": rng.normal(size=30), "va/img": rng.normal(size=(9, 4, 4)),
                                      "va/y": rng.normal(size=9)}, chunks=8)
    cfg = load_config({"data": {"source": "hdf5", "path": str(path), "sets": {"train": "tr", "val": "va"},
                                "images": {"calo": "img"}, "targets": "y", "lazy": lazy}, "train": {"loss": "mse"}})
    with pytest.raises(DataError) as info:
        prepare_data(cfg)
    message = str(info.value)
    assert message.startswith("data['train']['images/calo']") and "sample 17" in message, message
    if lazy:
        assert "dataset 'tr/img'" in message and str(path) in message
    cfg = cfg.model_copy(update={"data": cfg.data.model_copy(update={"check_finite": False})})
    assert prepare_data(cfg).sizes() == {"train": 30, "val": 9}


# --- config errors ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("data, message", [
    ({"image": "img"}, r"data.image: unknown key; did you mean 'images'\?"),
    ({"sets": {"train": "a"}, "split": {"val": 0.2}}, r"data.sets names the groups of the splits; remove data.split"),
    ({"images": {}, "targets": "y"}, r"data.images, data.scalars and data.tracks are all empty"),
    ({"sets": {"trian": "a"}}, r"data.sets: unknown split 'trian'; did you mean 'train'\?"),
    ({"sets": {"val": "a"}}, r"data.sets: needs 'train'"),
    ({"scalars": ["a", "a"]}, r"data.scalars: .*dataset 'a' is listed twice"),
    ({"images": {"a": []}}, r"data.images: .*found an empty list"),
    ({"shuffle": "chunk"}, r"data.shuffle: found 'chunk'; expected 'samples' or 'chunks'; did you mean 'chunks'\?"),
    ({"chunk_cache_mb": 0}, r"data.chunk_cache_mb: found 0"),
    ({"targets": ""}, r"data.targets: .*expected a dataset path"),
])
def test_config_errors(data, message):
    base = {"source": "hdf5", "path": "d.h5", "images": "img", "targets": "y"}
    with pytest.raises(ConfigError, match=message):
        load_config({"data": {**base, **data}, "train": {"loss": "mse"}})


def test_config_defaults_and_alias():
    cfg = _data("d.h5", source="h5", images="img", scalars="s", targets="y")
    assert cfg.source == "hdf5" and cfg.path.is_absolute()
    assert cfg.images == {"images": "img"} and cfg.scalars == ["s"] and cfg.sets is None
    assert cfg.lazy == "auto" and cfg.shuffle == "samples" and cfg.chunk_cache_mb is None
    assert cfg.input_datasets() == ["img", "s", "y"]


# --- the command line and training --------------------------------------------------------------------------


def _regression_config(path, runs_dir, **data):
    cfg = small_config(runs_dir, model={"cnn": {"n_init_filters": 4, "activation": "relu"},
                                        "top": {"units": [8, 1], "activation": "relu"}},
                       train={"epochs": 2, "batch_size": 16, "loss": "mse", "metrics": ["mae"], "optimizer": "adam"})
    cfg["log"] = {**cfg["log"], "figures": False}
    cfg["data"] = {"source": "hdf5", "path": str(path), "images": {"calo": "img"}, "scalars": ["s"], "targets": "y",
                   **data}
    return cfg


def test_validate_checks_the_file(tmp_path, capsys):
    import yaml

    from deepscope.cli import main

    path = _good(tmp_path / "d.h5")
    good = tmp_path / "good.yaml"
    good.write_text(yaml.safe_dump(_regression_config(path, tmp_path / "runs", split={"val": 0.2, "test": 0.2})))
    assert main(["validate", str(good)]) == 0
    out, err = capsys.readouterr()
    assert out.startswith("OK: ") and err == ""
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(_regression_config(path, tmp_path / "runs", scalars=["ss"])))
    assert main(["validate", str(bad)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("error: data.scalars: no dataset 'ss'") and "did you mean 's'?" in err and str(path) in err
    assert not (tmp_path / "runs").exists()


def test_validate_checks_the_file_for_a_classification_loss(tmp_path, capsys):
    import yaml

    from deepscope.cli import main

    path = _write(tmp_path / "d.h5", {"img": np.zeros((20, 4, 4)), "label": np.arange(20) % 3})
    cfg = _regression_config(path, tmp_path / "runs", images={"calo": "imgs"}, scalars=[], targets="label")
    cfg["model"]["top"]["units"] = [8, 3]
    cfg["train"] = {**cfg["train"], "loss": "cross_entropy", "metrics": ["accuracy"]}
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(cfg))
    assert main(["validate", str(bad)]) == 2
    assert "data.images.calo: no dataset 'imgs'" in capsys.readouterr().err


@pytest.mark.slow
def test_train_from_a_lazy_file_with_persistent_workers(tmp_path):
    import deepscope

    rng = _rng(11)
    arrays = {}
    for group, n in (("train", 96), ("val", 32)):
        img, s = rng.normal(size=(n, 8, 8, 1)).astype(np.float32), rng.normal(size=(n, 2)).astype(np.float32)
        arrays.update({f"{group}/img": img, f"{group}/s": s, f"{group}/y": img.sum((1, 2, 3)) + s[:, 0]})
    path = _write(tmp_path / "d.h5", arrays, chunks=16, compression="gzip")
    runs = tmp_path / "runs"
    result = deepscope.train(_regression_config(path, runs, sets={"train": "train", "val": "val"}, lazy=True,
                                                num_workers=2, shuffle="chunks"))
    assert result.epochs == 2 and result.run_dir == runs / "t"
    with open(result.run_dir / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in rows] == [0, 1]
    assert all(np.isfinite(float(r["val_loss"])) for r in rows)
    assert np.isfinite(result.metrics["val"]["loss"])
    for rel in ("standardization.npz", "final_metrics.json", "checkpoints/last.ckpt", "predictions/val.npz"):
        assert (result.run_dir / rel).is_file(), rel
    pred = np.load(result.run_dir / "predictions" / "val.npz")
    assert sorted(pred["index"].tolist()) == list(range(32))  # every validation sample scored once
