"""The calorimeter demo source: simulated electrons in memory, or written once to ATLAS HDF5 and read lazily."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

import deepscope
from deepscope.config import load_config
from deepscope.config.data import CALORIMETER_IMAGES, CALORIMETER_SCALARS, CALORIMETER_TRACKS
from deepscope.data.arrays import ArraySet
from deepscope.data.atlas import AtlasHDF5Store
from deepscope.data.prepare import prepare_data
from deepscope.data.simulators import calorimeter as sim
from deepscope.data.simulators import simulate_splits
from deepscope.errors import ConfigError, DataError

FAST = {"accordion_calibration": 1.1}  # skips the 20 000-event calibration run
SIZES = {"n_train": 60, "n_val": 20, "n_test": 16}


def _cfg(**data):
    base = {"source": "calorimeter", **SIZES, "simulation_seed": 4, "options": dict(FAST)}
    base.update(data)
    return load_config({"data": base, "model": {"top": {"units": [4, 1]}}, "train": {"loss": "mse"}})


def _everything(store):
    return store.read(np.arange(len(store)))


def _assert_same(a, b):
    assert a.keys() == b.keys()
    for key in a:
        if key == "images":
            assert list(a["images"]) == list(b["images"])
            for name in a["images"]:
                np.testing.assert_array_equal(a["images"][name], b["images"][name])
        else:
            np.testing.assert_array_equal(a[key], b[key])


def test_config_names_are_the_simulators():
    assert CALORIMETER_SCALARS == sim.SCALAR_NAMES
    assert CALORIMETER_TRACKS == sim.TRACK_NAMES
    assert CALORIMETER_IMAGES == (sim.COARSE_IMAGE, sim.FINE_IMAGE)


def test_hdf5_route_gives_the_in_memory_arrays_and_writes_once(tmp_path):
    path = tmp_path / "cache" / "calo.h5"
    memory = prepare_data(_cfg())
    lazy = prepare_data(_cfg(hdf5_path=str(path)))
    assert all(isinstance(s, ArraySet) for s in memory.stores.values())
    assert all(isinstance(s, AtlasHDF5Store) for s in lazy.stores.values())
    assert lazy.sizes() == memory.sizes() == {"train": 60, "val": 20, "test": 16}
    assert lazy.spec == memory.spec
    for split in memory.stores:
        _assert_same(_everything(memory.stores[split]), _everything(lazy.stores[split]))
    # the same events as the simulator's own splits, in DeepCalo's layout
    direct = simulate_splits(60, 20, 16, seed=4, **FAST)
    np.testing.assert_array_equal(_everything(lazy.stores["val"])["targets"], direct["val"]["targets"])
    np.testing.assert_array_equal(_everything(lazy.stores["test"])["images"]["em_coarse"],
                                  np.moveaxis(direct["test"]["images"]["em_coarse"], -1, 1))
    assert sorted(p.name for p in path.parent.iterdir()) == ["calo.h5"]  # written atomically, no temp file left
    stamp = path.stat().st_mtime_ns
    again = prepare_data(_cfg(hdf5_path=str(path)))
    assert path.stat().st_mtime_ns == stamp  # reused, not rewritten
    np.testing.assert_array_equal(_everything(again.stores["train"])["scalars"],
                                  _everything(memory.stores["train"])["scalars"])


def test_choice_of_inputs_and_targets(tmp_path):
    for hdf5 in (None, str(tmp_path / "calo.h5")):
        prepared = prepare_data(_cfg(images=["em_coarse"], gate_images=False, scalars=[], tracks=[],
                                     multiply_output_with=False, target="correction", hdf5_path=hdf5))
        spec = prepared.spec
        assert list(spec.images) == ["em_coarse"] and spec.images["em_coarse"].channels == 3
        assert spec.scalars is None and spec.tracks is None and not spec.multiply_output_with
        batch = _everything(prepared.stores["train"])
        direct = simulate_splits(60, 20, 16, seed=4, **FAST)["train"]
        np.testing.assert_allclose(batch["targets"], direct["targets"] / direct["multiply_output_with"], rtol=1e-6)
    prepared = prepare_data(_cfg(scalars=["p_e", "p_eta"], tracks=["charge"], n_test=0))
    assert prepared.sizes() == {"train": 60, "val": 20}
    batch = _everything(prepared.stores["train"])
    np.testing.assert_array_equal(batch["scalars"][:, 0], batch["multiply_output_with"])
    assert set(np.unique(batch["tracks"])) <= {-1.0, 0.0, 1.0} and prepared.spec.tracks == (8, 1)
    assert set(prepared.spec.images) == {"em_coarse", "gate_em_coarse", "em_fine", "gate_em_fine"}


def test_a_file_from_other_settings_is_refused(tmp_path):
    path = tmp_path / "calo.h5"
    prepare_data(_cfg(hdf5_path=str(path)))
    with pytest.raises(DataError, match=r"holds events simulated with other settings.*delete it to simulate again"):
        prepare_data(_cfg(hdf5_path=str(path), simulation_seed=5))
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f.create_group("train")
    with pytest.raises(DataError, match=r"was not written by the calorimeter source"):
        prepare_data(_cfg(hdf5_path=str(other)))


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"images": ["em_corse"]}, r"data.images.*unknown image 'em_corse'; did you mean 'em_coarse'"),
        ({"tracks": ["pt"]}, r"unknown track feature 'pt'"),
        ({"target": "correction"}, r"already relative to E_acc: set data.multiply_output_with: false"),
        ({"images": [], "scalars": [], "tracks": []}, r"no inputs"),
        ({"options": {"eta_mx": 1.0}}, r"unknown simulator option 'eta_mx'; did you mean 'eta_max'"),
        ({"options": {"energy_range": [1, 2]}}, r"give energy_range as data.energy_range"),
        ({"energy_range": [5, 1]}, r"expected 0 < low < high"),
        ({"split": {"val": 0.1}}, r"data.split: .*set n_train, n_val and n_test instead"),
    ],
)
def test_config_errors(data, message):
    with pytest.raises(ConfigError, match=message):
        _cfg(**data)


def test_bad_option_value_is_a_config_error():
    with pytest.raises(ConfigError, match=r"data.options: the simulator refuses them"):
        prepare_data(_cfg(options={**FAST, "n_eta": 2}))


def test_trains_end_to_end_from_the_hdf5_file(tmp_path):
    cfg = {
        "name": "calo", "log": {"dir": str(tmp_path / "runs"), "progress_bar": "none", "tensorboard": False},
        "data": {"source": "calorimeter", "n_train": 64, "n_val": 32, "n_test": 32, "options": FAST,
                 "hdf5_path": str(tmp_path / "calo.h5")},
        "model": {"cnn": {"n_init_filters": 4}, "top": {"units": [8, 1]},
                  "upsampling": {"use": True, "wanted_size": [32, 8]}},
        "train": {"epochs": 1, "batch_size": 32, "loss": "mse", "metrics": ["mae"]},
    }
    result = deepscope.train(cfg)
    assert set(result.metrics) == {"val", "test"}
    assert np.isfinite(result.metrics["test"]["loss"])
    preds = np.load(result.run_dir / "predictions" / "test.npz")
    assert preds["predictions"].shape[0] == 32
    resolved = load_config(result.run_dir / "config.yaml")
    assert resolved.data.hdf5_path == tmp_path / "calo.h5"
