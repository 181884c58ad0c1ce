"""The toy ATLAS calorimeter simulator: layout, determinism, physics sanity, HDF5 writer, event display."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

from deepscope.data.arrays import ArraySet
from deepscope.data.simulators import (
    baseline_resolutions,
    plot_event_display,
    simulate_electrons,
    simulate_splits,
    unpad_tracks,
    write_atlas_hdf5,
)

N = 2000


@pytest.fixture(scope="module")
def sample():
    return simulate_electrons(N, seed=11)


def test_shapes_and_dtypes(sample):
    assert set(sample) == {"images", "scalars", "tracks", "targets", "multiply_output_with"}
    imgs = sample["images"]
    assert imgs["em_coarse"].shape == (N, 8, 8, 3)
    assert imgs["em_fine"].shape == (N, 32, 8, 1)
    for arr in (*imgs.values(), sample["scalars"], sample["tracks"], sample["targets"], sample["multiply_output_with"]):
        assert arr.dtype == np.float32
        assert np.isfinite(arr).all()
    info = sample.info
    assert sample["scalars"].shape == (N, len(info["scalar_names"]))
    assert sample["tracks"].shape == (N, 8, len(info["track_names"]))
    assert info["image_layers"]["em_coarse"] == ["Lr0", "Lr2", "Lr3"]
    assert info["image_layers"]["em_fine"] == ["Lr1"]
    assert sample["targets"].shape == sample["multiply_output_with"].shape == (N,)
    assert (sample["multiply_output_with"] > 0).all()
    # E_acc is also the p_e scalar; targets are the true energies within the configured range
    p_e = sample["scalars"][:, info["scalar_names"].index("p_e")]
    np.testing.assert_array_equal(p_e, sample["multiply_output_with"])
    assert sample["targets"].min() >= 10.0 and sample["targets"].max() <= 250.0


def test_gate_images_match_partners(sample):
    imgs = sample["images"]
    for name in ("em_coarse", "em_fine"):
        gate = imgs[f"gate_{name}"]
        assert gate.shape == imgs[name].shape
        assert np.abs(gate).max() <= 50.0
    # the electron's core cell (middle layer, seed cell) is in time; noise-only cells are spread out
    gate = imgs["gate_em_coarse"][..., 1]
    assert np.median(np.abs(gate[:, 4, 4])) < 1.0
    assert np.median(np.abs(gate[:, 0, 0])) > 10.0


def test_passes_the_data_contract(sample):
    s = ArraySet.from_mapping(sample, "sim")
    assert s.images["em_coarse"].shape == (N, 3, 8, 8)
    assert s.images["gate_em_fine"].shape == (N, 1, 32, 8)


def test_deterministic_by_seed():
    a, b, c = simulate_electrons(200, seed=5), simulate_electrons(200, seed=5), simulate_electrons(200, seed=6)
    for key in ("scalars", "tracks", "targets", "multiply_output_with"):
        np.testing.assert_array_equal(a[key], b[key])
    np.testing.assert_array_equal(a["images"]["em_fine"], b["images"]["em_fine"])
    np.testing.assert_array_equal(a["images"]["gate_em_coarse"], b["images"]["gate_em_coarse"])
    assert not np.array_equal(a["targets"], c["targets"])


def test_splits_are_independent():
    splits = simulate_splits(100, 50, 30, seed=2)
    assert {k: len(v["targets"]) for k, v in splits.items()} == {"train": 100, "val": 50, "test": 30}
    assert not np.array_equal(splits["train"]["targets"][:30], splits["test"]["targets"])
    again = simulate_splits(100, 50, 30, seed=2)
    np.testing.assert_array_equal(splits["val"]["scalars"], again["val"]["scalars"])


def test_energy_sanity(sample):
    t = sample.info["truth"]
    e = t["E_true"]
    assert (t["E_signal_images"] <= e * (1 + 1e-9)).all()
    # energy bookkeeping: everything deposited plus what leaked is the true energy
    total = t["E_upstream"] + t["E_presampler_true"] + t["E_layers_true"][:, 1:].sum(axis=1) + t["E_leak_back"]
    np.testing.assert_allclose(total, e, rtol=1e-9)
    r = sample["multiply_output_with"] / sample["targets"]
    assert abs(np.median(r) - 1.0) < 0.02
    # the layers hold the shower: the middle layer carries the most energy
    layers = t["E_layers_true"]
    assert (np.median(layers, axis=0).argmax()) == 2


def test_accordion_bias_depends_on_eta(sample):
    r = sample["multiply_output_with"] / sample["targets"]
    aeta = np.abs(sample.info["truth"]["eta"])
    assert abs(np.median(r[aeta > 1.8]) - np.median(r[aeta < 0.6])) > 0.02


def test_tracks_zero_padded(sample):
    tracks, n = sample["tracks"], sample.info["n_tracks"]
    slots = np.arange(tracks.shape[1])[None, :]
    real = np.any(tracks != 0, axis=2)
    np.testing.assert_array_equal(real, slots < n[:, None])
    charge = tracks[..., sample.info["track_names"].index("charge")]
    assert set(np.unique(charge[real])) == {-1.0, 1.0}
    assert (tracks[..., 0][real] > 0).all()
    assert (n == 0).any() and (n >= 2).any()  # events without a track and with pile-up tracks
    assert not sample.info["truth"]["has_electron_track"].all()


def test_hdf5_layout_and_roundtrip(tmp_path):
    splits = simulate_splits(1500, 200, 100, seed=4)
    path = write_atlas_hdf5(tmp_path / "calo.h5", splits)
    with h5py.File(path, "r") as f:
        layout = json.loads(f.attrs["deepscope_layout"])
        assert layout["targets"] == ["p_truth_E", "p_e"]
        assert layout["images"]["em_coarse"]["layers"] == ["Lr0", "Lr2", "Lr3"]
        for set_name, data in splits.items():
            n = len(data["targets"])
            g = f[set_name]
            assert g.attrs["n_events"] == n
            assert g["em_coarse_Lr0"].shape == g["em_coarse_Lr3"].shape == (n, 8, 8)
            assert g["em_fine_Lr1"].shape == (n, 32, 8)
            assert g["gate_em_fine_Lr1"].shape == (n, 32, 8)
            assert g["em_coarse_Lr2"].chunks[0] == min(1024, n)
            stacked = np.stack([g[f"em_coarse_{k}"][...] for k in ("Lr0", "Lr2", "Lr3")], axis=-1)
            np.testing.assert_array_equal(stacked, data["images"]["em_coarse"])
            np.testing.assert_array_equal(g["gate_em_coarse_Lr2"][...], data["images"]["gate_em_coarse"][..., 1])
            for j, name in enumerate(data.info["scalar_names"]):
                assert g[name].shape == (n,)
                np.testing.assert_array_equal(g[name][...], data["scalars"][:, j])
            np.testing.assert_array_equal(g["p_truth_E"][...], data["targets"])
            np.testing.assert_array_equal(g["p_e"][...], data["multiply_output_with"])
            unpadded = unpad_tracks(data["tracks"], data.info["n_tracks"])
            for j, feat in enumerate(data.info["track_names"]):
                ds = g[f"tracks_{feat}"]
                assert ds.shape == (n,) and h5py.check_vlen_dtype(ds.dtype) == np.dtype("float32")
                stored = ds[...]
                for i in range(n):
                    np.testing.assert_array_equal(stored[i], unpadded[i][:, j])


def test_unknown_option_and_list_options():
    with pytest.raises(TypeError, match="unknown simulator option"):
        simulate_electrons(10, seed=0, n_etaa=7)
    s = simulate_electrons(50, seed=0, cluster_size=[3, 5], accordion_calibration=1.1)
    assert s.info["cluster_size"] == (3, 5)
    assert s.info["accordion_calibration"] == 1.1


def test_event_display(sample, tmp_path):
    path = plot_event_display(sample, 0, tmp_path / "event.png", dpi=40)
    assert path.exists() and path.stat().st_size > 5_000


def test_images_beat_the_accordion():
    res = baseline_resolutions(n=8000, seed=1)
    assert res["oracle_linear"] * 1.2 < res["accordion"]
    assert res["image_sum_linear"] < res["accordion"]


def test_hdf5_writer_with_equal_track_counts(tmp_path):
    # one event (or every event with the same number of tracks) must not be stacked into 2-D
    one = simulate_electrons(1, seed=3, accordion_calibration=1.0)
    path = write_atlas_hdf5(tmp_path / "one.h5", {"train": one})
    with h5py.File(path, "r") as f:
        names = [k for k in f["train"] if k.startswith("tracks_")]
        assert names and all(f["train"][k].shape == (1,) for k in names)
