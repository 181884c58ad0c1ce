"""The Gaussian-random-field simulator (spectra, pairing, determinism, the file) and the grf_cubes source."""

from __future__ import annotations

import dataclasses
import json

import h5py
import numpy as np
import pytest

from deepscope.config import load_config
from deepscope.config.grf import GRFCubesData
from deepscope.data import grf_cubes
from deepscope.data.simulators import grf
from deepscope.errors import ConfigError, DataError

SMALL = grf.GRFOptions(size=32, slope=2.0, slope_difference=0.3)


def _config(path, **data):
    return load_config({"data": {"source": "grf_cubes", "path": str(path), "size": 16,
                                 "seeds": {"train": [0, 3], "test": [3, 5]}, **data},
                        "train": {"loss": "bce_with_logits"}})


def _full_grid_spectrum(cube):
    """Independent reference: |FFT|² / N³ on the full grid (np.fft.fftn) and |k| of each mode."""
    n = cube.shape[0]
    power = np.abs(np.fft.fftn(cube.astype(np.float64))) ** 2 / n ** 3
    f = np.fft.fftfreq(n) * n
    k = np.sqrt(f[:, None, None] ** 2 + f[None, :, None] ** 2 + f[None, None, :] ** 2)
    return k.ravel(), power.ravel()


# --- the simulator ---------------------------------------------------------------------------------------


def test_config_defaults_are_the_simulators():
    cfg = GRFCubesData(source="grf_cubes", path="x", seeds={"train": [0, 2]})
    assert grf.GRFOptions(**cfg.simulator_options()) == grf.GRFOptions()
    assert dict(grf.DEFAULT_CLASSES) == dict(cfg.classes)


def test_measured_spectrum_slopes_match_the_configured_ones():
    # the mean spectrum of 8 seeds, averaged in shells of the full FFT grid (not the simulator's half
    # grid) at the shells' mean |k|, fitted in log-log over k in [2, 20]
    opts = grf.GRFOptions(size=48, slope=1.5, slope_difference=0.5)
    sums: dict[int, np.ndarray] = {0: 0.0, 1: 0.0}
    for seed in range(8):
        for label, cube in grf.simulate_seed(seed, opts).items():
            k, power = _full_grid_spectrum(cube)
            shell = np.rint(k).astype(int)
            count = np.maximum(np.bincount(shell), 1)
            k_mean = np.bincount(shell, k) / count
            sums[label] = sums[label] + np.bincount(shell, power) / count
    keep = (k_mean >= 2) & (k_mean <= 20)
    for label, slope in ((0, 1.5), (1, 2.0)):
        fitted = -np.polyfit(np.log(k_mean[keep]), np.log(sums[label][keep]), 1)[0]
        assert fitted == pytest.approx(slope, abs=0.05), label
    # the simulator's own measurement agrees (the baselines use it)
    cube = grf.simulate_seed(0, opts)[0]
    k, p = grf.power_spectrum(cube)
    assert grf.fit_slope(k, p, (2, 12)) == pytest.approx(1.5, abs=0.2)


def test_paired_cubes_share_phases_and_differ_by_the_slope_filter():
    cubes = grf.simulate_seed(7, SMALL)
    a, b = (np.fft.fftn(cubes[label].astype(np.float64)) for label in (0, 1))
    k, _ = _full_grid_spectrum(cubes[0])
    modes = k > 0
    np.testing.assert_allclose(np.angle(b.ravel()[modes] / a.ravel()[modes]), 0.0, atol=1e-4)  # equal phases
    ratio = np.abs(b.ravel()[modes]) ** 2 / np.abs(a.ravel()[modes]) ** 2  # P1/P0 = c * k^-0.3 mode by mode
    fitted = -np.polyfit(np.log(k[modes]), np.log(ratio), 1)[0]
    assert fitted == pytest.approx(0.3, abs=1e-3)
    assert np.corrcoef(cubes[0].ravel(), cubes[1].ravel())[0, 1] > 0.9


def test_cubes_have_zero_mean_unit_variance_and_depend_on_the_seed_only():
    one, again = grf.simulate_seed(3, SMALL), grf.simulate_seed(3, SMALL)
    other = grf.simulate_seed(4, SMALL)
    shifted = grf.simulate_seed(3, dataclasses.replace(SMALL, simulation_seed=1))
    for label in (0, 1):
        cube = one[label]
        assert cube.dtype == np.float32 and cube.shape == (32, 32, 32)
        assert abs(float(cube.mean(dtype=np.float64))) < 1e-6
        np.testing.assert_array_equal(cube, again[label])  # deterministic per (simulation_seed, seed)
        for different in (other, shifted):
            assert abs(np.corrcoef(cube.ravel(), different[label].ravel())[0, 1]) < 0.2
    variances = [c.var(dtype=np.float64) for s in range(6) for c in grf.simulate_seed(s, SMALL).values()]
    assert np.mean(variances) == pytest.approx(1.0, abs=0.1)


def test_options_are_checked():
    with pytest.raises(ValueError, match="size"):
        grf.GRFOptions(size=2)
    with pytest.raises(ValueError, match="distinct labels"):
        grf.GRFOptions(classes={"a{seed}": 1, "b{seed}": 1})
    with pytest.raises(ValueError, match="seed"):
        grf.simulate_seed(-1, SMALL)


# --- the file ---------------------------------------------------------------------------------------------


def test_file_layout_and_settings(tmp_path):
    path = grf.ensure_grf_file(tmp_path / "sub" / "c.h5", grf.GRFOptions(size=16), 3)
    with h5py.File(path, "r") as f:
        assert sorted(f) == [f"{c}_seed{s:04d}" for c in ("gr", "newton") for s in range(3)]
        ds = f["gr_seed0002"]
        assert ds.dtype == np.float32 and ds.shape == (16, 16, 16) and ds.chunks == (1, 16, 16)
        settings = json.loads(f.attrs[grf.SETTINGS_ATTR])
        np.testing.assert_array_equal(ds[()], grf.simulate_seed(2, grf.GRFOptions(size=16))[1])
    assert settings == {"format": 1, "size": 16, "slope": 2.0, "slope_difference": 0.1, "simulation_seed": 0,
                        "classes": {"gr_seed{seed:04d}": 1, "newton_seed{seed:04d}": 0}, "n_seeds": 3}
    assert [p.name for p in path.parent.iterdir()] == ["c.h5"]  # no temporary file left


def test_existing_file_is_kept_or_refused(tmp_path):
    path = grf.ensure_grf_file(tmp_path / "c.h5", grf.GRFOptions(size=16), 3)
    stamp = path.stat().st_mtime_ns
    assert grf.ensure_grf_file(path, grf.GRFOptions(size=16), 2) == path  # fewer seeds: the file serves
    assert path.stat().st_mtime_ns == stamp
    with pytest.raises(DataError, match=r"data.path: '.*c.h5' holds cubes simulated with other settings "
                                        r"\(slope 2.0 \(now 2.5\)\); delete it .* point data.path"):
        grf.ensure_grf_file(path, grf.GRFOptions(size=16, slope=2.5), 3)
    with pytest.raises(DataError, match="holds seeds 0..2 but seeds up to 4 are needed; delete it"):
        grf.ensure_grf_file(path, grf.GRFOptions(size=16), 5)
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f["gr_seed0000"] = np.zeros((4, 4, 4))
    with pytest.raises(DataError, match="was not written by the Gaussian-random-field simulator"):
        grf.ensure_grf_file(other, grf.GRFOptions(size=16), 1)
    (tmp_path / "text.h5").write_text("not hdf5")
    with pytest.raises(DataError, match="OUTPUT: .*text.h5' is not an HDF5 file"):
        grf.ensure_grf_file(tmp_path / "text.h5", grf.GRFOptions(size=16), 1, key="OUTPUT")
    assert path.stat().st_mtime_ns == stamp


# --- the source -------------------------------------------------------------------------------------------


def test_source_writes_once_and_reads_as_cube_hdf5(tmp_path):
    cfg = _config(tmp_path / "g.h5", slices={"axes": [0]})
    assert cfg.data.n_seeds == 5
    desc = grf_cubes.describe_grf_cubes(cfg.data, "binary")  # from the settings: nothing written
    assert not (tmp_path / "g.h5").exists()
    assert next(iter(desc.stand_in["train"].images.values())).shape[1:] == (1, 16, 16)
    sets = grf_cubes.load_grf_cubes(cfg.data)
    assert (tmp_path / "g.h5").is_file() and set(sets) == {"train", "test"}
    train = sets["train"].read(np.arange(len(sets["train"])))
    assert len(sets["train"]) == 3 * 2 * 16 and train["images"]["cube"].shape == (96, 1, 16, 16)
    cubes = grf.simulate_seed(0, grf_cubes.grf_options(cfg.data))
    np.testing.assert_array_equal(train["images"]["cube"][:16, 0], cubes[1])  # seed 0, gr (label 1) first
    np.testing.assert_array_equal(np.asarray(train["targets"]).reshape(-1)[:32], [1] * 16 + [0] * 16)
    desc = grf_cubes.describe_grf_cubes(cfg.data, "binary")  # from the file now
    assert next(iter(desc.stand_in["test"].images.values())).shape[1:] == (1, 16, 16)
    with pytest.raises(DataError, match="other settings"):
        grf_cubes.describe_grf_cubes(_config(tmp_path / "g.h5", slope=3.0).data, "binary")


def test_whole_cubes_are_described_from_the_settings(tmp_path):
    desc = grf_cubes.describe_grf_cubes(_config(tmp_path / "g.h5").data, "binary")
    assert next(iter(desc.stand_in["train"].images.values())).shape == (2, 1, 16, 16, 16)


@pytest.mark.parametrize("data, message", [
    ({"size": 2}, "data.size"),
    ({"size": 1024}, "data.size"),
    ({"slope": float("inf")}, "data.slope"),
    ({"slope_difference": float("nan")}, "data.slope_difference"),
    ({"simulation_seed": -1}, "data.simulation_seed"),
    ({"classes": {"gr_{seed}": 1, "newton_{seed}": 1}}, "share label 1"),
    ({"sizes": 8}, "did you mean 'size'"),
])
def test_bad_settings_name_their_key(tmp_path, data, message):
    with pytest.raises(ConfigError, match=message):
        _config(tmp_path / "g.h5", **data)


def test_alias_and_cube_hdf5_keys(tmp_path):
    cfg = load_config({"data": {"source": "grf", "path": str(tmp_path / "g.h5"), "seeds": {"train": [0, 2]},
                                "amplitude": {0: 1.5}, "standardized_on_disk": False}})
    assert cfg.data.source == "grf_cubes" and cfg.data.standardize.images == "global"
    assert cfg.data.amplitude == {0: 1.5}
