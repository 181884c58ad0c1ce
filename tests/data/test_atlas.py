"""The atlas_hdf5 source: DeepCalo's ATLAS HDF5 layout, lazy batch reads, checks and errors."""

from __future__ import annotations

import pickle
import tracemalloc

import h5py
import numpy as np
import pytest
from torch.utils.data import DataLoader

from deepscope.config import load_config
from deepscope.data.arrays import ArraySet
from deepscope.data.atlas import AtlasHDF5Store
from deepscope.data.dataset import BatchDataset, BatchIndexSampler
from deepscope.data.prepare import prepare_data
from deepscope.errors import ConfigError, DataError

SIZES = {"train": 40, "val": 12, "test": 10}
LAYERS = (10, 0, 2)  # written out of order; read in increasing k: Lr0, Lr2, Lr10


def _make(n: int, rng: np.random.Generator) -> dict:
    counts = rng.integers(0, 6, size=n)
    counts[0] = 5
    return {
        "calo": {k: rng.normal(size=(n, 4, 5)).astype(np.float32) for k in LAYERS},
        "gate_calo": {k: rng.normal(size=(n, 4, 5)).astype(np.float32) for k in LAYERS},
        "small": {1: rng.normal(size=(n, 3, 3)).astype(np.float32)},
        "s_a": rng.normal(size=n).astype(np.float32),
        "s_b": rng.normal(size=n).astype(np.float64),
        "trk_x": [rng.normal(size=c).astype(np.float32) for c in counts],
        "trk_y": [rng.normal(size=c).astype(np.float32) + 5 for c in counts],
        "E": rng.uniform(10, 100, size=n).astype(np.float32),
        "Eacc": rng.uniform(10, 100, size=n).astype(np.float32),
        "w": rng.uniform(0.5, 2, size=n).astype(np.float32),
        "label": (np.arange(n) % 3).astype(np.int32),
    }


def _write(path, sets: dict) -> None:
    vlen = h5py.vlen_dtype(np.float32)
    with h5py.File(path, "w") as f:
        for name, d in sets.items():
            g = f.create_group(name)
            for img in ("calo", "gate_calo", "small"):
                for k, arr in d[img].items():
                    g.create_dataset(f"{img}_Lr{k}", data=arr, chunks=(8, *arr.shape[1:]))
            for key in ("s_a", "s_b", "E", "Eacc", "w", "label"):
                g.create_dataset(key, data=d[key])
            for key in ("trk_x", "trk_y"):
                ds = g.create_dataset(key, shape=(len(d[key]),), dtype=vlen)
                obj = np.empty(len(d[key]), dtype=object)
                obj[:] = d[key]
                ds[...] = obj


@pytest.fixture(scope="module")
def atlas(tmp_path_factory):
    rng = np.random.default_rng(0)
    sets = {name: _make(n, rng) for name, n in SIZES.items()}
    path = tmp_path_factory.mktemp("atlas") / "atlas.h5"
    _write(path, sets)
    return path, sets


def _cfg(path, loss="mse", units=(4, 1), **data):
    base = {"source": "atlas_hdf5", "path": str(path), "images": ["calo"], "scalars": ["s_b", "s_a"],
            "tracks": ["trk_x", "trk_y"], "target": "E"}
    base.update(data)
    return load_config({"data": base, "model": {"top": {"units": list(units)}}, "train": {"loss": loss}})


def _padded(tracks_x, tracks_y, t):
    out = np.zeros((len(tracks_x), t, 2), np.float32)
    for i, (x, y) in enumerate(zip(tracks_x, tracks_y)):
        k = min(len(x), t)
        out[i, :k, 0], out[i, :k, 1] = x[:k], y[:k]
    return out


def _all(store) -> dict:
    return store.read(np.arange(len(store)))


def test_every_array_matches_the_file(atlas):
    path, sets = atlas
    prepared = prepare_data(_cfg(path, lazy=True, multiply_output_with="Eacc", sample_weights="w"))
    assert all(isinstance(s, AtlasHDF5Store) for s in prepared.stores.values())
    assert prepared.sizes() == SIZES
    for name, d in sets.items():
        batch = _all(prepared.stores[name])
        # layers stacked in increasing k, channels first (Lr10 after Lr2)
        np.testing.assert_array_equal(batch["images"]["calo"], np.stack([d["calo"][k] for k in (0, 2, 10)], 1))
        np.testing.assert_array_equal(batch["images"]["gate_calo"],
                                      np.stack([d["gate_calo"][k] for k in (0, 2, 10)], 1))
        assert list(batch["images"]) == ["calo", "gate_calo"]
        np.testing.assert_array_equal(batch["scalars"], np.stack([d["s_b"], d["s_a"]], 1).astype(np.float32))
        np.testing.assert_array_equal(batch["tracks"], _padded(d["trk_x"], d["trk_y"], 5))  # longest in the file
        np.testing.assert_array_equal(batch["targets"], d["E"])
        np.testing.assert_array_equal(batch["multiply_output_with"], d["Eacc"])
        np.testing.assert_array_equal(batch["sample_weights"], d["w"])
        assert batch["images"]["calo"].dtype == batch["tracks"].dtype == np.float32
    spec = prepared.spec
    assert spec.images["calo"].channels == 3 and spec.images["calo"].spatial == (4, 5)
    assert "gate_calo" in spec.images and spec.scalars == 2 and spec.tracks == (5, 2)
    assert spec.multiply_output_with and spec.sample_weights


def test_ratio_target_track_cut_gates_off_and_images_of_two_sizes(atlas):
    path, sets = atlas
    prepared = prepare_data(_cfg(path, images=["calo", "small"], gate_images=False, tracks=["trk_y"],
                                 max_tracks=2, target=["E", "Eacc"], lazy=True))
    d = sets["train"]
    batch = _all(prepared.stores["train"])
    assert list(batch["images"]) == ["calo", "small"]  # no gate image; different sizes are the model's business
    assert batch["images"]["small"].shape == (40, 1, 3, 3)
    np.testing.assert_allclose(batch["targets"], d["E"].astype(np.float64) / d["Eacc"], rtol=1e-7)
    want = _padded(d["trk_y"], d["trk_y"], 2)[..., :1]  # events with more than 2 tracks keep their first 2
    np.testing.assert_array_equal(batch["tracks"], want)
    assert prepared.spec.tracks == (2, 1)


def test_integer_labels_for_classification(atlas):
    path, _ = atlas
    prepared = prepare_data(_cfg(path, loss="cross_entropy", units=(4, 3), target="label", lazy=True))
    assert prepared.spec.target_kind == "label" and prepared.spec.n_classes == 3
    assert _all(prepared.stores["val"])["targets"].dtype == np.int64


def test_n_points_first_n_and_index_lists(atlas):
    path, sets = atlas
    prepared = prepare_data(_cfg(path, n_points={"train": 25, "val": [7, 1, 3], "test": None}, lazy=True))
    assert prepared.sizes() == {"train": 25, "val": 3, "test": 10}
    np.testing.assert_array_equal(_all(prepared.stores["train"])["targets"], sets["train"]["E"][:25])
    val = prepared.stores["val"]
    np.testing.assert_array_equal(val.file_rows(np.arange(3)), [1, 3, 7])  # used in increasing order
    batch = val.read(np.array([2, 0]))
    np.testing.assert_array_equal(batch["targets"], sets["val"]["E"][[7, 1]])
    np.testing.assert_array_equal(batch["tracks"], _padded(sets["val"]["trk_x"], sets["val"]["trk_y"], 5)[[7, 1]])
    with pytest.raises(DataError, match=r"n_points.train is 41 but group 'train' .* holds 40 events"):
        prepare_data(_cfg(path, n_points={"train": 41}))
    with pytest.raises(DataError, match=r"n_points.val: index 12 is outside the 12 events"):
        prepare_data(_cfg(path, n_points={"val": [0, 12]}))


def test_lazy_and_in_memory_give_identical_batches(atlas):
    path, _ = atlas
    over = dict(target=["E", "Eacc"], multiply_output_with="Eacc", n_points={"train": [0, 5, 6, 7, 30, 39]})
    lazy = prepare_data(_cfg(path, lazy=True, **over))
    eager = prepare_data(_cfg(path, lazy=False, **over))
    auto = prepare_data(_cfg(path, **over))  # a few KiB: in memory
    assert isinstance(eager.stores["train"], ArraySet) and isinstance(auto.stores["train"], ArraySet)
    for split in ("train", "val", "test"):
        for name, s in lazy.standardizer.stats.items():
            np.testing.assert_allclose(s[0], eager.standardizer.stats[name][0], rtol=1e-6)
        a = BatchDataset(lazy.stores[split], lazy.indices[split], lazy.standardizer)
        b = BatchDataset(eager.stores[split], eager.indices[split], eager.standardizer)
        positions = np.array([4, 0, 3, 1])
        x, y = a[positions], b[positions]
        for key in ("scalars", "tracks", "targets", "multiply_output_with", "index"):
            np.testing.assert_array_equal(x[key].numpy(), y[key].numpy())
        for name in x["images"]:
            np.testing.assert_array_equal(x["images"][name].numpy(), y["images"][name].numpy())


def test_each_worker_opens_its_own_file(atlas):
    path, sets = atlas
    prepared = prepare_data(_cfg(path, lazy=True))
    store = prepared.stores["train"]
    assert store._file is None  # prepare_data leaves no handle for forked workers to inherit
    store.read(np.arange(3))
    assert store._file is not None
    clone = pickle.loads(pickle.dumps(store))  # an open handle is never pickled
    assert clone._file is None
    np.testing.assert_array_equal(clone.read(np.arange(3))["targets"], sets["train"]["E"][:3])
    dataset = BatchDataset(store, prepared.indices["train"], prepared.standardizer)
    sampler = BatchIndexSampler(len(dataset), 8, shuffle=True, seed=3)
    batches = list(DataLoader(dataset, sampler=sampler, batch_size=None, num_workers=2))
    index = np.concatenate([b["index"].numpy() for b in batches])
    targets = np.concatenate([b["targets"].numpy() for b in batches])
    assert sorted(index.tolist()) == list(range(40))
    np.testing.assert_array_equal(targets, sets["train"]["E"][index])
    in_process = [dataset[p] for p in sampler]
    np.testing.assert_array_equal(np.concatenate([b["tracks"] for b in in_process]),
                                  np.concatenate([b["tracks"] for b in batches]))


def test_lazy_reads_only_the_batches(tmp_path):
    n, side = 8192, 32  # 32 MiB of images
    path = tmp_path / "big.h5"
    with h5py.File(path, "w") as f:
        g = f.create_group("train")
        g.create_dataset("img_Lr0", data=np.ones((n, side, side), np.float32), chunks=(256, side, side))
        g.create_dataset("E", data=np.arange(n, dtype=np.float32))
    cfg = load_config({"data": {"source": "atlas_hdf5", "path": str(path), "images": ["img"], "target": "E",
                                "sets": {"train": "train"}, "lazy": True},
                       "model": {"top": {"units": [4, 1]}}, "train": {"loss": "mse", "monitor": "train_loss"}})
    store = prepare_data(cfg).stores["train"]
    store.rows_read = 0
    rng = np.random.default_rng(0)
    tracemalloc.start()
    for _ in range(8):
        batch = store.read(np.sort(rng.choice(n, 64, replace=False)))
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert batch["images"]["img"].shape == (64, 1, side, side)
    assert store.rows_read <= 2 * 8 * 64  # image and target rows of the 8 batches, nothing more
    assert peak < 4 * 64 * side * side * 4 * 2  # a few batches' worth (1 MiB), not the 32 MiB file
    assert isinstance(store, AtlasHDF5Store)


# --- data checks -----------------------------------------------------------------------------------------


def _copy_with(tmp_path, atlas, edit):
    _, sets = atlas
    path = tmp_path / "edited.h5"
    _write(path, sets)
    with h5py.File(path, "a") as f:
        edit(f)
    return path


def test_nan_is_found_by_streaming_check(tmp_path, atlas):
    def put_nan(f):
        f["val/calo_Lr2"][7, 1, 1] = np.nan

    path = _copy_with(tmp_path, atlas, put_nan)
    with pytest.raises(DataError, match=r"data\['val'\]\['images/calo'\].*dataset 'val/calo_Lr2' holds NaN/inf"
                                        r".*first in event 7.*check_finite: false"):
        prepare_data(_cfg(path, lazy=True))
    prepare_data(_cfg(path, lazy=True, check_finite=False))


def test_zero_denominator_of_a_ratio_target_is_reported(tmp_path, atlas):
    def zero(f):
        f["train/Eacc"][3] = 0.0

    path = _copy_with(tmp_path, atlas, zero)
    with pytest.raises(DataError, match=r"the ratio 'train/E / train/Eacc' holds NaN/inf .*first in event 3"):
        prepare_data(_cfg(path, target=["E", "Eacc"], lazy=True))


# --- errors ------------------------------------------------------------------------------------------------


def test_missing_and_corrupt_files(tmp_path):
    with pytest.raises(DataError, match=r"data file '.*nope.h5' not found"):
        prepare_data(_cfg(tmp_path / "nope.h5"))
    bad = tmp_path / "bad.h5"
    bad.write_bytes(b"not an hdf5 file at all" * 40)
    with pytest.raises(DataError, match=r"data file '.*bad.h5' is not a readable HDF5 file"):
        prepare_data(_cfg(bad))


@pytest.mark.parametrize(
    ("over", "message"),
    [
        ({"sets": {"train": "trian"}}, r"no group 'trian' \(data.sets.train\); did you mean 'train'\?; "
                                       r"the file has groups: test, train, val"),
        ({"scalars": ["s_aa"]}, r"no dataset 'train/s_aa' \(data.scalars\); did you mean 's_a'\?; "
                               r"group 'train' has: E, Eacc, calo_Lr0"),
        ({"images": ["caol"]}, r"no datasets 'train/caol_Lr<k>' for image 'caol' \(data.images\); "
                               r"did you mean 'calo'\?; group 'train' has images: calo, gate_calo, small"),
        ({"target": "energy"}, r"no dataset 'train/energy' \(data.target\)"),
        ({"multiply_output_with": "E_acc"}, r"no dataset 'train/E_acc' \(data.multiply_output_with\); "
                                            r"did you mean 'Eacc'\?"),
        ({"tracks": ["trk_z"]}, r"no dataset 'train/trk_z' \(data.tracks\)"),
    ],
)
def test_names_missing_from_the_file(atlas, over, message):
    path, _ = atlas
    with pytest.raises(DataError, match=message):
        prepare_data(_cfg(path, **over))


def test_missing_optional_set_says_how_to_drop_it(tmp_path, atlas):
    path = _copy_with(tmp_path, atlas, lambda f: f.__delitem__("test"))
    with pytest.raises(DataError, match=r"no group 'test' \(data.sets.test\).*leave test out of data.sets"):
        prepare_data(_cfg(path))
    prepared = prepare_data(_cfg(path, sets={"train": "train", "val": "val"}))
    assert prepared.sizes() == {"train": 40, "val": 12}


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda f: (f["train"].__delitem__("s_a"), f["train"].create_dataset("s_a", data=np.zeros(39))),
         r"'train/s_a' has 39 events but 'train/calo_Lr0' has 40; every dataset of a set needs the same number"),
        (lambda f: (f["train"].__delitem__("s_a"), f["train"].create_dataset("s_a", data=np.zeros((40, 3)))),
         r"dataset 'train/s_a' \(data.scalars\): found shape \(40, 3\); expected \(N,\)"),
        (lambda f: (f["val"].__delitem__("calo_Lr2"), f["val"].create_dataset("calo_Lr2", data=np.zeros((12, 4)))),
         r"dataset 'val/calo_Lr2' \(data.images\): found shape \(12, 4\); an image layer is \(N, H, W\)"),
        (lambda f: (f["val"].__delitem__("calo_Lr2"), f["val"].create_dataset("calo_Lr2", data=np.zeros((12, 4, 4)))),
         r"'val/calo_Lr2' \(data.images\): found layer shape \(4, 4\) but 'val/calo_Lr0' has \(4, 5\)"),
        (lambda f: f["train"].__delitem__("gate_calo_Lr10"),
         r"gate image 'train/gate_calo' has layers \[0, 2\] .* but image 'calo' has layers \[0, 2, 10\]"),
        (lambda f: (f["train"].__delitem__("trk_x"), f["train"].create_dataset("trk_x", data=np.zeros(40))),
         r"'train/trk_x' \(data.tracks\): found shape \(40,\) of float64; a track feature is a ragged"),
        (lambda f: f["test"].create_dataset("E2", data=np.array([b"x"] * 10)),
         None),
    ],
)
def test_malformed_files(tmp_path, atlas, edit, message):
    path = _copy_with(tmp_path, atlas, edit)
    if message is None:  # an unused odd dataset is fine
        prepare_data(_cfg(path))
        return
    with pytest.raises(DataError, match=message) as err:
        prepare_data(_cfg(path))
    assert str(path) in str(err.value)


def test_ragged_features_must_have_the_same_tracks(tmp_path, atlas):
    def shorten(f):
        ds = f["train/trk_y"]
        ds[0] = np.zeros(2, np.float32)

    path = _copy_with(tmp_path, atlas, shorten)
    with pytest.raises(DataError, match=r"event 0 has 2 tracks in 'trk_y' but 5 in 'trk_x'"):
        prepare_data(_cfg(path, lazy=True))


# --- config ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"split": {"val": 0.2}}, r"data.split: .*comes split into train/val/test; remove data.split"),
        ({"images": [], "scalars": [], "tracks": []}, r"no inputs"),
        ({"sets": {"val": "val"}}, r"data.sets: .*needs 'train'"),
        ({"sets": {"valid": "val", "train": "train"}}, r"unknown split 'valid'; did you mean 'val'"),
        ({"n_points": {"test": 5}, "sets": {"train": "train"}}, r"n_points.test is given but data.sets has no 'test'"),
        ({"n_points": {"train": [1, 1]}}, r"repeats indices"),
        ({"n_points": {"train": 0}}, r"at least 1"),
        ({"target": ["E"]}, r"data.target: .*\[numerator, denominator\]"),
        ({"scalars": ["s_a", "s_a"]}, r"'s_a' is listed twice"),
        ({"lazy": "sometimes"}, r"data.lazy"),
    ],
)
def test_config_errors(data, message):
    with pytest.raises(ConfigError, match=message):
        _cfg("x.h5", **data)


def test_config_resolves_path_and_n_points(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = _cfg("data/atlas.h5", n_points={"train": 1e3, "val": [3, 1]}, sets={"train": "tr", "val": "va", "test": None})
    assert cfg.data.path == tmp_path / "data" / "atlas.h5"
    assert cfg.data.n_points == {"train": 1000, "val": [3, 1]}
    assert cfg.data.sets == {"train": "tr", "val": "va"}
    assert cfg.data.channels == "last"
    assert load_config({"data": {"source": "atlas", "path": "a.h5", "scalars": ["a"], "target": "t"}}).data.source \
        == "atlas_hdf5"
