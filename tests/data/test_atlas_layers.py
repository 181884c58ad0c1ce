"""The atlas_hdf5 source on ATLAS files as they are: one dataset per layer, layers of two granularities,
cell times beside them (``data.images`` as a mapping, ``data.gate_images`` as a mapping, ``data.gate_prefix``)."""

from __future__ import annotations

import json
import math
import pickle
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml

from deepscope.config import load_config
from deepscope.data.arrays import ArraySet
from deepscope.data.atlas import AtlasHDF5Store
from deepscope.data.prepare import prepare_data
from deepscope.errors import ConfigError, DataError

SIZES = {"train": 48, "val": 16, "test": 16}
COARSE, STRIPS = (7, 11), (56, 11)  # presampler / middle / back, and the strips
LAYER_SIZE = {0: COARSE, 1: STRIPS, 2: COARSE, 3: COARSE}
SCALARS = ("p_eta", "averageInteractionsPerCrossing", "p_f0Cluster")
TRACKS = ("tracks_pt", "tracks_eta", "tracks_phi")
MAPPING = {"em_coarse": ["em_barrel_Lr3", "em_barrel_Lr0", "em_barrel_Lr2"],  # an order of the user's choice
           "em_strips": ["em_barrel_Lr1"]}


def _make(n: int, rng: np.random.Generator) -> dict:
    counts = rng.integers(0, 5, size=n)
    counts[0] = 4
    d: dict = {}
    for k, size in LAYER_SIZE.items():
        d[f"em_barrel_Lr{k}"] = rng.gamma(2.0, 1.0, size=(n, *size)).astype(np.float32)
        d[f"time_em_barrel_Lr{k}"] = rng.normal(0.0, 2.0, size=(n, *size)).astype(np.float32)
    for k in (0, 1):  # a small stack of one size, for the list form
        d[f"hcal_Lr{k}"] = rng.normal(size=(n, *COARSE)).astype(np.float32)
        d[f"time_hcal_Lr{k}"] = rng.normal(size=(n, *COARSE)).astype(np.float32)
    for name in SCALARS:
        d[name] = rng.normal(size=n).astype(np.float32)
    for j, name in enumerate(TRACKS):
        d[name] = [rng.normal(size=c).astype(np.float32) + 10 * j for c in counts]
    d["p_truth_E"] = rng.uniform(10, 100, size=n).astype(np.float32)
    d["p_e"] = (d["p_truth_E"] * rng.uniform(0.9, 1.1, size=n)).astype(np.float32)
    return d


def _write(path, sets: dict) -> None:
    vlen = h5py.vlen_dtype(np.float32)
    with h5py.File(path, "w") as f:
        for set_name, d in sets.items():
            g = f.create_group(set_name)
            for name in reversed(sorted(d)):  # written out of order: the config decides the channel order
                value = d[name]
                if isinstance(value, list):
                    ds = g.create_dataset(name, shape=(len(value),), dtype=vlen)
                    obj = np.empty(len(value), dtype=object)
                    obj[:] = value
                    ds[...] = obj
                else:
                    g.create_dataset(name, data=value, chunks=(8, *value.shape[1:]))


@pytest.fixture(scope="module")
def atlas(tmp_path_factory):
    rng = np.random.default_rng(1)
    sets = {name: _make(n, rng) for name, n in SIZES.items()}
    path = tmp_path_factory.mktemp("atlas_layers") / "electrons.h5"
    _write(path, sets)
    return path, sets


def _data(path, **over) -> dict:
    data = {"source": "atlas_hdf5", "path": str(path), "images": MAPPING, "gate_prefix": "time_",
            "scalars": list(SCALARS), "tracks": list(TRACKS), "target": "p_truth_E", "multiply_output_with": "p_e"}
    data.update(over)
    return {key: value for key, value in data.items() if value is not None}


def _cfg(path, train=None, **over):
    return load_config({"data": _data(path, **over), "model": {"top": {"units": [4, 1]}},
                        "train": {"loss": "mse", **(train or {})}})


def _stack(d: dict, names: list[str]) -> np.ndarray:
    return np.stack([d[n] for n in names], axis=1)


def _padded(d: dict, t: int) -> np.ndarray:
    out = np.zeros((len(d[TRACKS[0]]), t, len(TRACKS)), np.float32)
    for j, name in enumerate(TRACKS):
        for i, tracks in enumerate(d[name]):
            out[i, :len(tracks[:t]), j] = tracks[:t]
    return out


def _all(store) -> dict:
    return store.read(np.arange(len(store)))


def _copy_with(tmp_path, atlas, edit):
    _, sets = atlas
    path = tmp_path / "edited.h5"
    _write(path, sets)
    with h5py.File(path, "a") as f:
        edit(f)
    return path


# --- what is read ----------------------------------------------------------------------------------------


def test_mapping_images_and_prefix_gates_match_the_file(atlas):
    path, sets = atlas
    prepared = prepare_data(_cfg(path, lazy=True))
    assert all(isinstance(s, AtlasHDF5Store) for s in prepared.stores.values())
    for name, d in sets.items():
        batch = _all(prepared.stores[name])
        images = batch["images"]
        assert list(images) == ["em_coarse", "gate_em_coarse", "em_strips", "gate_em_strips"]
        # channels in the order the mapping gives them, each gate dataset beside its channel
        np.testing.assert_array_equal(images["em_coarse"], _stack(d, MAPPING["em_coarse"]))
        np.testing.assert_array_equal(images["gate_em_coarse"], _stack(d, ["time_" + n for n in MAPPING["em_coarse"]]))
        np.testing.assert_array_equal(images["em_strips"], d["em_barrel_Lr1"][:, None])
        np.testing.assert_array_equal(images["gate_em_strips"], d["time_em_barrel_Lr1"][:, None])
        assert images["em_coarse"].shape == (SIZES[name], 3, *COARSE)
        assert images["em_strips"].shape == (SIZES[name], 1, *STRIPS)
        np.testing.assert_array_equal(batch["scalars"], _stack(d, list(SCALARS)))
        np.testing.assert_array_equal(batch["tracks"], _padded(d, 4))
        np.testing.assert_array_equal(batch["targets"], d["p_truth_E"])
        np.testing.assert_array_equal(batch["multiply_output_with"], d["p_e"])
    spec = prepared.spec
    assert {n: (s.channels, s.spatial) for n, s in spec.images.items()} == {
        "em_coarse": (3, COARSE), "gate_em_coarse": (3, COARSE), "em_strips": (1, STRIPS),
        "gate_em_strips": (1, STRIPS)}
    assert spec.scalars == 3 and spec.tracks == (4, 3) and spec.multiply_output_with


def test_gate_mapping_names_the_gates_of_the_images_it_lists(atlas):
    path, sets = atlas
    gates = {"em_coarse": ["time_em_barrel_Lr0", "time_em_barrel_Lr2", "time_em_barrel_Lr3"]}
    prepared = prepare_data(_cfg(path, gate_prefix=None, gate_images=gates, lazy=True))
    images = _all(prepared.stores["val"])["images"]
    assert list(images) == ["em_coarse", "gate_em_coarse", "em_strips"]  # em_strips is not in the mapping
    np.testing.assert_array_equal(images["gate_em_coarse"], _stack(sets["val"], gates["em_coarse"]))


def test_gate_rules_without_a_prefix(tmp_path, atlas):
    path, sets = atlas
    # gate_images: true without gate_prefix looks for 'gate_' + each dataset: the file has none, so no gates
    assert list(prepare_data(_cfg(path, gate_prefix=None)).spec.images) == ["em_coarse", "em_strips"]
    assert list(prepare_data(_cfg(path, gate_prefix=None, gate_images=False)).spec.images) == ["em_coarse",
                                                                                                 "em_strips"]

    def gate_strips(f):
        for name in SIZES:
            f[name].create_dataset("gate_em_barrel_Lr1", data=f[name]["time_em_barrel_Lr1"][...] * 2)

    edited = _copy_with(tmp_path, atlas, gate_strips)
    images = _all(prepare_data(_cfg(edited, gate_prefix=None)).stores["test"])["images"]
    assert list(images) == ["em_coarse", "em_strips", "gate_em_strips"]
    np.testing.assert_array_equal(images["gate_em_strips"], sets["test"]["time_em_barrel_Lr1"][:, None] * 2)


def test_stack_names_take_a_gate_prefix_too(atlas):
    path, sets = atlas
    prepared = prepare_data(_cfg(path, images=["hcal"], lazy=True))
    images = _all(prepared.stores["train"])["images"]
    np.testing.assert_array_equal(images["hcal"], _stack(sets["train"], ["hcal_Lr0", "hcal_Lr1"]))
    np.testing.assert_array_equal(images["gate_hcal"], _stack(sets["train"], ["time_hcal_Lr0", "time_hcal_Lr1"]))


def test_in_memory_n_points_ratio_and_worker_pickling(atlas):
    path, sets = atlas
    over = dict(target=["p_truth_E", "p_e"], n_points={"train": [40, 3, 7], "val": 5})
    lazy = prepare_data(_cfg(path, lazy=True, **over))
    eager = prepare_data(_cfg(path, lazy=False, **over))
    assert isinstance(eager.stores["train"], ArraySet) and eager.sizes() == {"train": 3, "val": 5, "test": 16}
    store = lazy.stores["train"]
    clone = pickle.loads(pickle.dumps(store))  # what a DataLoader worker gets: no open handle
    assert clone._file is None
    for b in (_all(store), _all(clone), eager.stores["train"].read(np.arange(3))):
        np.testing.assert_array_equal(b["images"]["em_coarse"], _stack(sets["train"], MAPPING["em_coarse"])[[3, 7, 40]])
        np.testing.assert_array_equal(b["images"]["gate_em_strips"],
                                      sets["train"]["time_em_barrel_Lr1"][[3, 7, 40], None])
        d = sets["train"]
        np.testing.assert_allclose(b["targets"], (d["p_truth_E"] / d["p_e"])[[3, 7, 40]], rtol=1e-6)
    clone.close()
    store.close()


def test_nan_in_a_mapped_dataset_is_named(tmp_path, atlas):
    def put_nan(f):
        f["val/em_barrel_Lr2"][5, 3, 4] = np.nan

    path = _copy_with(tmp_path, atlas, put_nan)
    with pytest.raises(DataError, match=r"data\['val'\]\['images/em_coarse'\].*dataset 'val/em_barrel_Lr2' holds "
                                        r"NaN/inf.*first in event 5.*check_finite: false"):
        prepare_data(_cfg(path, lazy=True))


# --- bad files -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("over", "message"),
    [
        ({"images": {"em_coarse": ["em_barrel_Lr0", "em_barel_Lr2"]}},
         r"no dataset 'train/em_barel_Lr2' \(data.images.em_coarse\); did you mean 'em_barrel_Lr2'\?; "
         r"group 'train' has: averageInteractionsPerCrossing, em_barrel_Lr0"),
        ({"images": {"em": ["em_barrel_Lr0", "em_barrel_Lr1"]}},
         r"dataset 'train/em_barrel_Lr1' \(data.images.em\): found size \(56, 11\) but 'train/em_barrel_Lr0' has "
         r"\(7, 11\); the datasets of one image need the same size"),
        ({"images": ["em_barrel"], "gate_prefix": None},  # the stack rule on layers of two sizes
         r"dataset 'train/em_barrel_Lr1' \(data.images\): found layer shape \(56, 11\) but 'train/em_barrel_Lr0' "
         r"has \(7, 11\); .* a mapping data.images: \{name: \[dataset, ...\]\}"),
        ({"gate_prefix": None, "gate_images": {"em_strips": ["time_em_barrel_Lr0"]}},
         r"gate image 'gate_em_strips' \(data.gate_images.em_strips: 'train/time_em_barrel_Lr0'\) has 1 channel\(s\) "
         r"of size \(7, 11\) but image 'em_strips' \(data.images.em_strips: 'train/em_barrel_Lr1'\) has 1 of size "
         r"\(56, 11\); a gate image matches its image's channels and size"),
        ({"images": ["hcal"], "gate_prefix": None, "gate_images": {"hcal": ["time_hcal_Lr0"]}},
         r"gate image 'gate_hcal' \(data.gate_images.hcal: 'train/time_hcal_Lr0'\) has 1 channel\(s\) of size "
         r"\(7, 11\) but image 'hcal' \(data.images: 'train/hcal_Lr0', 'train/hcal_Lr1'\) has 2"),
        ({"gate_prefix": None, "gate_images": {"em_strips": ["time_em_barrel_Lr7"]}},
         r"no dataset 'train/time_em_barrel_Lr7' \(data.gate_images.em_strips\); did you mean 'time_em_barrel_Lr"),
        ({"gate_prefix": "time"},
         r"data.gate_prefix is 'time' but group 'train' has no gate datasets for any image \(looked for "
         r"'train/timeem_barrel_Lr3', …\); did you mean 'time_em_barrel_Lr3'\?"),
    ],
)
def test_bad_names_and_sizes(atlas, over, message):
    path, _ = atlas
    with pytest.raises(DataError, match=message) as err:
        prepare_data(_cfg(path, **over))
    assert str(path) in str(err.value)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda f: f["train"].__delitem__("time_em_barrel_Lr2"),
         r"image 'em_coarse' has gate dataset\(s\) 'train/time_em_barrel_Lr3', 'train/time_em_barrel_Lr0' "
         r"\(data.gate_prefix 'time_' \+ its datasets\) but not 'train/time_em_barrel_Lr2'; a gate image needs one "
         r"dataset per channel"),
        (lambda f: (f["val"].__delitem__("time_em_barrel_Lr1"),
                    f["val"].create_dataset("time_em_barrel_Lr1", data=np.zeros((16, *COARSE), np.float32))),
         r"gate image 'gate_em_strips' \(data.gate_prefix: 'val/time_em_barrel_Lr1'\) has 1 channel\(s\) of size "
         r"\(7, 11\) but image 'em_strips' .* of size \(56, 11\)"),
        (lambda f: f["test"].__delitem__("time_em_barrel_Lr1"),
         r"group 'train' has gate image 'gate_em_strips' \('train/time_em_barrel_Lr1'\) but group 'test' does not; "
         r"every set needs the same images"),
    ],
)
def test_gates_that_do_not_fit(tmp_path, atlas, edit, message):
    path = _copy_with(tmp_path, atlas, edit)
    with pytest.raises(DataError, match=message) as err:
        prepare_data(_cfg(path))
    assert str(path) in str(err.value)


# --- config -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("over", "message"),
    [
        ({"gate_prefix": None, "gate_images": {"em_corse": ["a", "b", "c"]}},
         r"data.gate_images.em_corse: 'em_corse' is not an image in data.images; did you mean 'em_coarse'\? "
         r"\(images: em_coarse, em_strips\)"),
        ({"gate_prefix": None, "gate_images": {"em_coarse": ["a", "b"]}},
         r"data.gate_images.em_coarse lists 2 dataset\(s\) but data.images.em_coarse has 3 channel\(s\)"),
        ({"gate_images": False}, r"data.gate_prefix is 'time_' but data.gate_images is false"),
        ({"gate_images": {"em_strips": ["t"]}}, r"data.gate_prefix is 'time_' and data.gate_images is a mapping"),
        ({"gate_prefix": ""}, r"data.gate_prefix: found an empty prefix"),
        ({"gate_prefix": None, "gate_images": {}}, r"data.gate_images: found an empty mapping; use false"),
        ({"gate_prefix": None, "gate_images": "sometimes"},
         r"data.gate_images: found 'sometimes'; expected true, false or a mapping"),
        ({"images": {"em": []}}, r"data.images: 'em': found an empty list"),
        ({"images": {"em": ["a", "a"]}}, r"data.images: 'em': dataset 'a' is listed twice"),
        ({"images": {"em": "em_barrel_Lr0"}}, r"data.images: 'em': found 'em_barrel_Lr0'; expected a list of dataset"),
        ({"images": {"gate_em": ["a"]}}, r"'gate_em': names starting with 'gate_' are the gate images' names"),
        ({"images": 3}, r"data.images: found 3; expected a list of image names .* or a mapping"),
        ({"images": ["hcal", "gate_hcal"], "gate_prefix": None, "gate_images": {"hcal": ["t0", "t1"]}},
         r"data.gate_images.hcal: data.images already lists 'gate_hcal'"),
        ({"images": [], "gate_prefix": "time_"}, r"data.gate_prefix is 'time_' but data.images is empty"),
    ],
)
def test_config_errors(over, message):
    with pytest.raises(ConfigError, match=message):
        _cfg("x.h5", **over)


def test_list_form_is_unchanged_in_the_config():
    cfg = _cfg("x.h5", images=["hcal"], gate_prefix=None)
    assert cfg.data.images == ["hcal"] and cfg.data.gate_images is True and cfg.data.gate_prefix is None
    assert cfg.data.image_datasets() == {"hcal": None}
    assert _cfg("x.h5").data.image_datasets() == MAPPING


# --- the simulator's file under ATLAS names ----------------------------------------------------------------


def test_simulated_electrons_under_atlas_names(tmp_path):
    from deepscope.data.simulators import simulate_electrons, write_atlas_hdf5

    sim = simulate_electrons(20, seed=2, accordion_calibration=1.0)
    path = write_atlas_hdf5(tmp_path / "sim.h5", {"train": sim}, layer_stem="em_barrel", gate_prefix="time_")
    with h5py.File(path, "r") as f:
        g = f["train"]
        assert not [k for k in g if k.startswith(("em_coarse", "em_fine", "gate_"))]
        for j, k in enumerate((0, 2, 3)):  # em_coarse holds [Lr0, Lr2, Lr3], channels last
            np.testing.assert_array_equal(g[f"em_barrel_Lr{k}"][...], sim["images"]["em_coarse"][..., j])
            np.testing.assert_array_equal(g[f"time_em_barrel_Lr{k}"][...], sim["images"]["gate_em_coarse"][..., j])
        np.testing.assert_array_equal(g["em_barrel_Lr1"][...], sim["images"]["em_fine"][..., 0])
        np.testing.assert_array_equal(g["time_em_barrel_Lr1"][...], sim["images"]["gate_em_fine"][..., 0])
        layout = json.loads(f.attrs["deepscope_layout"])
        assert layout["gate_images"]["gate_em_fine"]["datasets"] == ["time_em_barrel_Lr1"]
    cfg = _cfg(path, images={"em_coarse": ["em_barrel_Lr0", "em_barrel_Lr2", "em_barrel_Lr3"],
                             "em_strips": ["em_barrel_Lr1"]}, scalars=["p_eta"], tracks=["tracks_p"],
               sets={"train": "train"}, train={"monitor": "train_loss"})
    images = _all(prepare_data(cfg).stores["train"])["images"]
    np.testing.assert_array_equal(images["gate_em_coarse"], np.moveaxis(sim["images"]["gate_em_coarse"], -1, 1))
    with pytest.raises(ValueError, match="would write dataset 'em_barrel_Lr0' a second time"):
        write_atlas_hdf5(tmp_path / "clash.h5", {"train": sim}, layer_stem="em_barrel",
                         image_layers={"em_fine": ["Lr0"]})


# --- the combined model from the command line ---------------------------------------------------------------


def _cli_config(tmp_path, path, **model) -> dict:
    return {
        "name": "layers", "seed": 0,
        "log": {"dir": str(tmp_path / "runs"), "progress_bar": "none", "tensorboard": False, "figures": False},
        "data": _data(path, max_tracks=4, n_points={"train": 40}),
        "model": {
            "upsampling": {"use": True, "wanted_size": list(STRIPS)},
            "gate_net": {"units": [4], "activation": "relu", "final_activation": "pgauss_f",
                         "final_activation_init": [5.0], "merge_method": "concatenate"},
            "cnn": {"block_depths": [1, 1], "n_init_filters": 4, "init_kernel_size": 3, "downsampling": "maxpool",
                    "activation": "relu"},
            "scalar_net": {"units": [8], "activation": "relu", "connect_to": ["top", "FiLM_gen"]},
            "track_net": {"phi_units": [8], "rho_units": [8], "activation": "relu", "connect_to": ["top", "FiLM_gen"]},
            "FiLM_gen": {"use": True, "units": [8], "activation": "relu"},
            "top": {"units": [8, 1], "activation": "relu"},
            **model,
        },
        "train": {"epochs": 2, "batch_size": 16, "loss": "mape", "metrics": ["mae"], "optimizer": "adam"},
    }


def _deepscope(*args: str, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "deepscope", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=600)


@pytest.mark.slow
def test_combined_model_trains_from_the_cli(tmp_path, atlas):
    path, _ = atlas
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump(_cli_config(tmp_path, path)))
    result = _deepscope("train", str(cfg), "-o", "train.epochs=2", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    run = tmp_path / "runs" / "layers"
    for name in ("config.yaml", "input_spec.json", "final_metrics.json", "metrics.csv", "model_summary.txt",
                 "standardization.npz", "checkpoints/last.ckpt"):
        assert (run / name).is_file(), name
    spec = json.loads((run / "input_spec.json").read_text())["images"]
    assert spec["em_coarse"] == {"channels": 3, "spatial": list(COARSE)}
    assert spec["gate_em_strips"] == {"channels": 1, "spatial": list(STRIPS)}
    summary = (run / "model_summary.txt").read_text()
    assert "gate_net" in summary and "upsampling" in summary and "FiLM_gen" in summary and "track_net" in summary
    final = json.loads((run / "final_metrics.json").read_text())
    values = [v for split in ("val", "test") for v in final[split].values() if isinstance(v, (int, float))]
    assert values and all(math.isfinite(v) for v in values)
    stored = yaml.safe_load((run / "config.yaml").read_text())["data"]
    assert stored["images"] == MAPPING and stored["gate_prefix"] == "time_"
    evaluated = _deepscope("evaluate", str(run), cwd=tmp_path)  # the stored config reads the file again
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    saved = json.loads((run / "evaluation" / "test_metrics.json").read_text())
    assert saved["samples"] == SIZES["test"] and saved["mae"] == pytest.approx(final["test"]["mae"], rel=1e-4)


@pytest.mark.slow
def test_images_of_two_sizes_without_upsampling_exit_2_before_the_run_folder(tmp_path, atlas):
    path, _ = atlas
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump(_cli_config(tmp_path, path, upsampling={"use": False})))
    result = _deepscope("train", str(cfg), cwd=tmp_path)
    assert result.returncode == 2
    assert "model.upsampling: the images differ in size ('em_coarse': 7x11, 'em_strips': 56x11)" in result.stderr
    assert "set model.upsampling.use: true with a common wanted_size" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "runs" / "layers").exists()
    checked = _deepscope("validate", str(cfg), cwd=tmp_path)  # the same verdict, from the file's metadata
    assert (checked.returncode, checked.stderr) == (2, result.stderr)


def test_validate_builds_the_model_for_the_files_shapes(atlas):
    from deepscope import preflight
    from deepscope.data.prepare import describe_data, prepare_data
    from deepscope.errors import ConfigError

    path, _ = atlas
    cfg = load_config(_cli_config(Path(path).parent, path))
    assert describe_data(cfg) == prepare_data(cfg).spec  # shapes, channels, gates, scalars, track features
    preflight.check(cfg)
    bad = load_config(_cli_config(Path(path).parent, path, upsampling={"use": False}))
    with pytest.raises(ConfigError, match="the images differ in size"):
        preflight.check(bad)
    missing = load_config({**_cli_config(Path(path).parent, path), "data": _data(path, images={"em": ["em_barrel_Lr9"]})})
    with pytest.raises(DataError, match="em_barrel_Lr9"):
        preflight.check(missing)
    labels = load_config({**_cli_config(Path(path).parent, path), "train": {"loss": "cross_entropy", "metrics": []},
                          "model": {"top": {"units": [4, 3]}}})
    assert describe_data(labels) is None  # classes come from every target: left to train
