"""The radio cube simulator (physics, headers, folders) and the radio_cubes source."""

from __future__ import annotations

import dataclasses
import json
import threading

import numpy as np
import pandas as pd
import pytest
from astropy.io import fits
from astropy.wcs import WCS

from deepscope.config import load_config
from deepscope.config.fits import RADIO_COLUMNS, RadioCubesData
from deepscope.data import fits as fits_source
from deepscope.data.simulators import radio
from deepscope.errors import ConfigError, DataError

SMALL = {"n_cubes": {"train": 2, "val": 1}, "cube_shape": [8, 16, 16]}


def _cfg(path, **keys):
    return RadioCubesData(source="radio_cubes", path=path, **{**SMALL, **keys})


def _opts(**keys):
    return radio.RadioOptions(**{"cube_shape": (8, 24, 24), **keys})


# --- the simulator's physics ---------------------------------------------------------------------------


def test_config_matches_the_simulator():
    assert RADIO_COLUMNS == radio.CATALOGUE_COLUMNS
    cfg = RadioCubesData(source="radio_cubes", path="x")
    assert radio.RadioOptions(**cfg.simulator_options()) == radio.RadioOptions()  # same defaults
    assert set(cfg.simulator_options()) <= {f.name for f in dataclasses.fields(radio.RadioOptions)}


def test_clean_cube_holds_the_catalogue_fluxes():
    opts = _opts(n_sources=(3, 3), continuum_range=(0.001, 0.003), noise_rms=0.0)
    cube = radio.simulate_cube(1, opts)
    assert len(cube.catalogue) == 3 and cube.clean.dtype == np.float32 and cube.clean.shape == (8, 24, 24)
    nu, nu0, dv = radio.channel_frequencies(opts), opts.ref_frequency_ghz * 1e9, radio.channel_width_kms(opts)
    expected = sum(s["flux"] / dv + s["continuum"] * ((nu / nu0) ** s["spectral_index"]).sum() for s in cube.catalogue)
    assert cube.clean.sum(dtype=np.float64) == pytest.approx(expected, rel=1e-5)
    one = radio.simulate_cube(2, _opts(n_sources=(1, 1), continuum_range=(0.0, 0.0), noise_rms=0.0))
    assert one.clean.sum(dtype=np.float64) * dv == pytest.approx(one.catalogue[0]["flux"], rel=1e-5)
    # the source is where the catalogue says: the centroid of its emission
    src, w = one.catalogue[0], one.clean.astype(np.float64) / one.clean.sum(dtype=np.float64)
    z, y, x = np.indices(one.clean.shape)
    np.testing.assert_allclose([(w * z).sum(), (w * y).sum(), (w * x).sum()], [src["z"], src["y"], src["x"]], atol=0.25)


def test_the_sky_is_sparse():
    cube = radio.simulate_cube(3, radio.RadioOptions())
    assert (np.abs(cube.clean) > 0.01 * np.abs(cube.clean).max()).mean() < 0.2


def test_dirty_cube_is_the_clean_cube_through_the_beam_plus_noise():
    opts = _opts(cube_shape=(16, 48, 48), noise_rms=0.01)
    cube = radio.simulate_cube(4, opts)
    residual = cube.dirty - radio.convolve_beam(cube.clean, opts.bmaj_pix, opts.bmin_pix, opts.bpa_deg)
    assert residual.std() == pytest.approx(0.01, rel=0.1)
    assert abs(residual.mean()) < 0.002
    # the noise is correlated like the beam: neighbouring pixels agree more than distant ones
    near = np.corrcoef(residual[:, :, :-1].ravel(), residual[:, :, 1:].ravel())[0, 1]
    far = np.corrcoef(residual[:, :, :-8].ravel(), residual[:, :, 8:].ravel())[0, 1]
    assert near > 0.5 and abs(far) < 0.1
    quiet = radio.simulate_cube(4, dataclasses.replace(opts, noise_rms=0.0))
    np.testing.assert_allclose(quiet.dirty, radio.convolve_beam(quiet.clean, 3.0, 2.0, 30.0), atol=1e-7)


@pytest.mark.parametrize("bmaj, bmin, bpa", [(3.0, 2.0, 30.0), (5.0, 2.5, -60.0), (2.5, 2.5, 0.0)])
def test_beam_kernel_second_moments_match_its_fwhm_and_angle(bmaj, bmin, bpa):
    k = radio.beam_kernel(bmaj, bmin, bpa)
    assert k.max() == 1.0 and k.shape[0] % 2 == 1
    y, x = np.mgrid[: k.shape[0], : k.shape[1]] - k.shape[0] // 2
    w = k / k.sum()
    cov = np.array([[(w * x * x).sum(), (w * x * y).sum()], [(w * x * y).sum(), (w * y * y).sum()]])
    values, vectors = np.linalg.eigh(cov)
    fwhm = np.sqrt(values) * radio.FWHM_PER_SIGMA
    np.testing.assert_allclose(fwhm, [bmin, bmaj], rtol=0.01)
    if bmaj > bmin:  # the major axis points east of north: north = +y, east = -x
        major = vectors[:, 1]
        want = np.array([-np.sin(np.radians(bpa)), np.cos(np.radians(bpa))])
        assert abs(major @ want) == pytest.approx(1.0, abs=1e-6)


def test_simulation_is_deterministic_from_the_seed():
    opts = _opts()
    a, b, c = radio.simulate_cube(7, opts), radio.simulate_cube(7, opts), radio.simulate_cube(8, opts)
    np.testing.assert_array_equal(a.dirty, b.dirty)
    np.testing.assert_array_equal(a.clean, b.clean)
    assert a.catalogue == b.catalogue and a.catalogue != c.catalogue


# --- files and headers ---------------------------------------------------------------------------------


def test_folder_files_headers_and_catalogue(tmp_path):
    opts = _opts(noise_rms=0.0)
    radio.write_radio_folder(tmp_path, {"train": 2, "test": 1}, 5, opts)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["Test", "Train"]
    table = pd.read_csv(tmp_path / "Train" / "train_params.csv")
    assert list(table.columns) == ["ID", "x", "y", "z", *radio.CATALOGUE_COLUMNS]
    assert set(table["ID"]) == {0, 1}
    with fits.open(tmp_path / "Train" / "dirty_cube_1.fits") as hdul:
        dirty, dh = hdul[0].data, hdul[0].header
    with fits.open(tmp_path / "Train" / "clean_cube_1.fits") as hdul:
        clean, ch = hdul[0].data, hdul[0].header
    assert dh["BUNIT"] == "Jy/beam" and ch["BUNIT"] == "Jy/pixel" and "BMAJ" not in ch
    # the beam in the header, in degrees, is the one the clean cube was convolved with
    pixel = abs(dh["CDELT2"])
    assert dh["BMAJ"] / pixel == pytest.approx(opts.bmaj_pix) and dh["BMIN"] / pixel == pytest.approx(opts.bmin_pix)
    np.testing.assert_allclose(dirty, radio.convolve_beam(clean, dh["BMAJ"] / pixel, dh["BMIN"] / pixel, dh["BPA"]),
                               atol=1e-6)
    wcs = WCS(dh)
    assert wcs.naxis == 3 and wcs.has_celestial and wcs.wcs.ctype[2] == "FREQ"
    assert list(wcs.wcs.ctype) == ["RA---SIN", "DEC--SIN", "FREQ"]
    freq = wcs.spectral.pixel_to_world(np.arange(8)).to_value("Hz")
    np.testing.assert_allclose(freq, radio.channel_frequencies(opts))
    assert -dh["CDELT1"] == pytest.approx(dh["CDELT2"]) and dh["CDELT2"] == pytest.approx(opts.pixel_arcsec / 3600)
    # the catalogue's positions are pixels of this cube
    row = table[table["ID"] == 1].iloc[0]
    ra_dec = wcs.celestial.pixel_to_world(row["x"], row["y"])
    assert ra_dec.ra.deg == pytest.approx(opts.ra_deg, abs=0.01)


def test_stokes_axis_is_written_and_read(tmp_path):
    cfg = _cfg(tmp_path / "cubes", stokes_axis=True)
    sets = fits_source.load_radio_cubes(cfg)
    with fits.open(tmp_path / "cubes" / "Train" / "dirty_cube_0.fits") as hdul:
        assert hdul[0].data.shape == (1, 8, 16, 16) and WCS(hdul[0].header).naxis == 4
    assert sets["train"].images["cube"].shape == (2, 1, 8, 16, 16)


def test_the_same_files_from_the_same_settings(tmp_path):
    for name in ("a", "b"):
        radio.write_radio_folder(tmp_path / name, {"train": 2}, 3, _opts())
    for file in ("dirty_cube_1.fits", "clean_cube_0.fits", "train_params.csv"):
        assert (tmp_path / "a" / "Train" / file).read_bytes() == (tmp_path / "b" / "Train" / file).read_bytes()
    radio.write_radio_folder(tmp_path / "c", {"train": 3, "val": 1}, 3, _opts())  # more cubes: the first unchanged
    assert (tmp_path / "a" / "Train" / "dirty_cube_1.fits").read_bytes() == \
        (tmp_path / "c" / "Train" / "dirty_cube_1.fits").read_bytes()


# --- the folder is written once ------------------------------------------------------------------------


def test_folder_is_written_once_and_refused_with_other_settings(tmp_path):
    path = tmp_path / "cubes"
    first = fits_source.load_radio_cubes(_cfg(path))
    stamp = (path / "Train" / "dirty_cube_0.fits").stat().st_mtime_ns
    again = fits_source.load_radio_cubes(_cfg(path))
    assert (path / "Train" / "dirty_cube_0.fits").stat().st_mtime_ns == stamp
    np.testing.assert_array_equal(first["train"].images["cube"], again["train"].images["cube"])
    assert json.loads((path / radio.SETTINGS_FILE).read_text())["simulation_seed"] == 0
    # reading keys (mode, crop, columns) do not change the files
    sources = fits_source.load_radio_cubes(_cfg(path, mode="sources", crop=[3, 5, 5], columns=["flux", "pa"]))
    assert sources["train"].targets.shape[1] == 2
    with pytest.raises(DataError, match=r"holds cubes simulated with other settings \(options.noise_rms 0.001 "
                                        r"\(now 0.5\)\); delete the folder"):
        fits_source.load_radio_cubes(_cfg(path, noise_rms=0.5))
    with pytest.raises(DataError, match="other settings"):
        fits_source.describe_radio_cubes(_cfg(path, simulation_seed=3), "regression")
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary folders left


def test_folder_with_other_content_is_refused(tmp_path):
    (tmp_path / "cubes").mkdir()
    fits_source.load_radio_cubes(_cfg(tmp_path / "cubes"))  # an empty folder is filled
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(DataError, match=r"'.*mine' holds other files .*point data.path at a new or empty folder"):
        fits_source.load_radio_cubes(_cfg(tmp_path / "mine"))
    (tmp_path / "file").write_text("x")
    with pytest.raises(DataError, match="is a file"):
        fits_source.load_radio_cubes(_cfg(tmp_path / "file"))
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"


def test_two_processes_at_once_keep_one_folder(tmp_path, monkeypatch):
    path = tmp_path / "cubes"
    write = radio.write_radio_folder
    calls = []

    def racing(folder, *args, **kwargs):
        write(folder, *args, **kwargs)
        calls.append(folder)
        if len(calls) == 1:  # the other process finishes first, while this one is still writing
            radio.ensure_radio_folder(path, *args, **kwargs)

    monkeypatch.setattr(radio, "write_radio_folder", racing)
    opts = _opts()
    assert radio.ensure_radio_folder(path, {"train": 1}, 0, opts) == path
    assert len(calls) == 2 and not calls[0].exists() and not calls[1].exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cubes"]
    monkeypatch.undo()
    threads = [threading.Thread(target=radio.ensure_radio_folder, args=(tmp_path / "t", {"train": 1}, 0, opts))
               for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cubes", "t"]


# --- the source ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("keys", [
    {},
    {"slices": True},
    {"mode": "sources", "crop": [4, 6, 6], "columns": ["flux", "fwhm_x"]},
    {"mode": "cubes", "columns": ["flux"], "aggregate": "sum"},
])
def test_describe_from_the_config_matches_the_loaded_sets(tmp_path, keys):
    cfg = _cfg(tmp_path / "cubes", **keys)
    described = fits_source.describe_radio_cubes(cfg, "regression").stand_in
    assert not (tmp_path / "cubes").exists()  # described without simulating
    loaded = fits_source.load_radio_cubes(cfg)
    assert list(described) == list(loaded) == ["train", "val"]
    for name, real in loaded.items():
        fake = described[name]
        assert fake.images["cube"].shape[1:] == real.images["cube"].shape[1:]
        assert fake.targets.shape[1:] == real.targets.shape[1:] and fake.targets.dtype == real.targets.dtype
        assert (fake.multiply_output_with is None) == (real.multiply_output_with is None)
    assert fits_source.describe_radio_cubes(cfg, "regression").stand_in["train"].targets.shape[1:] == \
        loaded["train"].targets.shape[1:]  # now from the folder


def test_deconvolution_sets_scale_each_pair_by_the_dirty_peak(tmp_path):
    cfg = _cfg(tmp_path / "cubes", scaling="per_cube")
    train = fits_source.load_radio_cubes(cfg)["train"]
    dirty = fits_source.read_cube(tmp_path / "cubes" / "Train" / "dirty_cube_1.fits")
    clean = fits_source.read_cube(tmp_path / "cubes" / "Train" / "clean_cube_1.fits")
    factor = np.abs(dirty).max()
    assert train.multiply_output_with[1] == pytest.approx(factor)
    np.testing.assert_allclose(train.images["cube"][1, 0] * train.multiply_output_with[1], dirty, rtol=1e-5, atol=1e-9)
    np.testing.assert_allclose(train.targets[1, 0], clean, rtol=1e-6)  # targets in data units


def _config(**data):
    return load_config({"data": {"source": "radio", "path": "/tmp/radio", **data}, "train": {"loss": "mse"}})


@pytest.mark.parametrize("data, message", [
    ({"n_sources": [0, 2]}, r"expected \[low, high\] with 1 <= low <= high"),
    ({"beam": {"bmaj_pix": 2.0, "bmin_pix": 3.0}}, r"bmin_pix 3 is larger than bmaj_pix 2"),
    ({"beam": {"bmaj": 2.0}}, r"data.beam.bmaj: unknown key; did you mean 'bmaj_pix'\?"),
    ({"n_cubes": {"train": 0}}, r"needs 'train' >= 1"),
    ({"n_cubes": {"train": 2, "valid": 1}}, r"unknown split 'valid'; did you mean 'val'\?"),
    ({"mode": "sources", "crop": [3, 3, 3], "columns": ["fluxx"]}, r"no column 'fluxx'; did you mean 'flux'\?"),
    ({"mode": "cubes", "columns": ["flux"]}, r"set data.aggregate"),
    ({"flux_range": [2.0, 1.0]}, r"low <= high"),
    ({"cube_shape": [2, 16, 16]}, r"at least 4 pixels"),
    ({"sets": {"train": "Train"}}, r"data.sets names the splits train but data.n_cubes simulates train, val, test"),
    ({"noise_rm": 0.1}, r"did you mean 'noise_rms'\?"),
])
def test_config_errors(data, message):
    with pytest.raises(ConfigError, match=message):
        _config(**data)


def test_config_alias_and_layout(tmp_path):
    cfg = _config(n_cubes={"train": 1}, input="obs_{id}.fits", target="sky_{id}.fits", id_column="cube",
                  position_origin=1, cube_shape=[4, 8, 8]).data
    assert cfg.source == "radio_cubes"
    cfg = cfg.model_copy(update={"path": tmp_path / "c"})
    sets = fits_source.load_radio_cubes(cfg)
    assert sorted(p.name for p in (tmp_path / "c" / "Train").iterdir())[0] == "obs_0.fits"
    table = pd.read_csv(tmp_path / "c" / "Train" / "train_params.csv")
    assert list(table.columns[:4]) == ["cube", "x", "y", "z"] and table["x"].min() >= 1
    assert sets["train"].images["cube"].shape == (1, 1, 4, 8, 8)
