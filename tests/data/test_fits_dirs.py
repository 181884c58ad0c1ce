"""The fits_dirs source: DeepFocus's Train/Validation/Test folders of FITS cubes with CSV catalogues."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from astropy.io import fits

from deepscope.config import load_config
from deepscope.config.fits import FitsDirsData
from deepscope.data.fits import (
    describe_fits_dirs,
    load_fits_dirs,
    plan_fits_dirs,
    read_cube,
    tile_starts,
)
from deepscope.data.fits_predict import predict_folder
from deepscope.errors import ConfigError, DataError

SHAPE = (4, 6, 8)  # (z, y, x)


def _header(shape):
    h = fits.Header()
    h["BUNIT"] = "Jy/beam"
    for i, (ctype, n) in enumerate(zip(("RA---SIN", "DEC--SIN", "FREQ"), shape[::-1]), start=1):
        h[f"CTYPE{i}"], h[f"CRPIX{i}"], h[f"CRVAL{i}"] = ctype, n / 2 + 1, (150.0, 2.0, 1e11)[i - 1]
        h[f"CDELT{i}"], h[f"CUNIT{i}"] = (-1e-5, 1e-5, 1e7)[i - 1], ("deg", "deg", "Hz")[i - 1]
    h["BMAJ"], h["BMIN"], h["BPA"] = 3e-5, 2e-5, 30.0
    return h


def _write(path, data, stokes=False):
    path.parent.mkdir(parents=True, exist_ok=True)
    data = np.asarray(data, np.float32)
    fits.PrimaryHDU(data[None] if stokes else data, _header(data.shape)).writeto(path)
    return data


def _cube(seed, shape=SHAPE):
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


def _folder(root, ids=("3", "7"), val_ids=("5",), test_ids=(), shape=SHAPE, rows=None, stokes=False):
    """Train/ (and Validation/, Test/) with dirty and clean cubes and one catalogue row per source.
    Returns {split: {id: (dirty, clean)}}."""
    cubes = {}
    for folder, csv, split, split_ids in (("Train", "train_params.csv", "train", ids),
                                          ("Validation", "valid_params.csv", "val", val_ids),
                                          ("Test", "test_params.csv", "test", test_ids)):
        if not split_ids:
            continue
        cubes[split] = {}
        table = []
        for n, i in enumerate(split_ids):
            dirty = _write(root / folder / f"dirty_cube_{i}.fits", _cube(100 + n + 10 * len(cubes), shape), stokes)
            clean = _write(root / folder / f"clean_cube_{i}.fits", _cube(200 + n + 10 * len(cubes), shape), stokes)
            cubes[split][i] = (dirty, clean)
            for k in range(2):  # two catalogued sources per cube
                table.append({"ID": i, "x": 1 + 3 * k, "y": 2 + k, "z": 1 + k, "flux": 0.5 + n + k,
                              "fwhm_x": 2.0 + k, "label": (n + k) % 3, "kind": n % 2})
        pd.DataFrame(rows if rows is not None and split == "train" else table).to_csv(root / folder / csv, index=False)
    return cubes


def _cfg(root, **keys):
    return FitsDirsData(source="fits_dirs", path=root, **keys)


# --- deconvolution ---------------------------------------------------------------------------------


def test_deconvolution_pairs_cubes_by_id_and_scales_each_cube(tmp_path):
    cubes = _folder(tmp_path, ids=("7", "a3"))
    sets = load_fits_dirs(_cfg(tmp_path, scaling="per_cube"))
    assert list(sets) == ["train", "val"]  # Test/ is absent: optional by default
    train = sets["train"]
    assert train.images["cube"].shape == (2, 1, *SHAPE) and train.images["cube"].dtype == np.float32
    assert train.targets.shape == (2, 1, *SHAPE) and train.targets.dtype == np.float32
    for n, cube_id in enumerate(("7", "a3")):  # the CSV's order; one sample per ID, however many rows
        dirty, clean = cubes["train"][cube_id]
        factor = np.abs(dirty).max()
        assert train.multiply_output_with[n] == pytest.approx(factor)
        np.testing.assert_allclose(train.images["cube"][n, 0], dirty / factor, rtol=1e-6)
        # the target stays in data units: the model's output is multiplied by the factor before the loss
        np.testing.assert_allclose(train.targets[n, 0], clean, rtol=1e-6)
        assert np.abs(train.images["cube"][n]).max() == pytest.approx(1.0)


def test_scaling_none_keeps_data_units_and_default_standardization(tmp_path):
    cubes = _folder(tmp_path)
    cfg = _cfg(tmp_path)
    assert cfg.scaling == "none"  # the default: deconvolution standardizes dirty and clean cubes globally
    assert cfg.standardize.images == "global" and cfg.standardize.targets
    assert _cfg(tmp_path, standardize={"images": "per_channel"}).standardize.targets is False  # given: kept
    assert _cfg(tmp_path, scaling="per_cube").standardize.images == "none"  # per_cube data are scaled already
    train = load_fits_dirs(cfg)["train"]
    assert train.multiply_output_with is None
    np.testing.assert_array_equal(train.images["cube"][0, 0], cubes["train"]["3"][0])


def test_stokes_axis_is_dropped(tmp_path):
    cubes = _folder(tmp_path, stokes=True)
    train = load_fits_dirs(_cfg(tmp_path, scaling="none"))["train"]
    assert train.images["cube"].shape == (2, 1, *SHAPE)
    np.testing.assert_array_equal(train.targets[1, 0], cubes["train"]["7"][1])


def test_slices_give_one_2d_sample_per_channel(tmp_path):
    cubes = _folder(tmp_path)
    train = load_fits_dirs(_cfg(tmp_path, slices=True, scaling="none"))["train"]
    assert train.images["cube"].shape == (2 * SHAPE[0], 1, *SHAPE[1:])
    np.testing.assert_array_equal(train.images["cube"][SHAPE[0] + 2, 0], cubes["train"]["7"][0][2])


def test_nan_pixels_are_zero_or_refused(tmp_path):
    _folder(tmp_path)
    path = tmp_path / "Train" / "dirty_cube_3.fits"
    data = read_cube(path)
    data[0, 1, :3] = np.nan
    path.unlink()
    _write(path, data)
    loaded = load_fits_dirs(_cfg(tmp_path, scaling="none"))["train"].images["cube"][0, 0]
    assert np.isfinite(loaded).all() and (loaded[0, 1, :3] == 0).all()
    with pytest.raises(DataError, match=r"dirty_cube_3\.fits': 3 NaN pixel\(s\)"):
        load_fits_dirs(_cfg(tmp_path, nan="error"))


def test_cubes_of_different_shapes_need_crop_and_are_tiled(tmp_path):
    cubes = _folder(tmp_path, ids=("1",), val_ids=())
    big = _write(tmp_path / "Train" / "dirty_cube_2.fits", _cube(5, (4, 10, 8)))
    _write(tmp_path / "Train" / "clean_cube_2.fits", _cube(6, (4, 10, 8)))
    pd.DataFrame({"ID": ["1", "2"]}).to_csv(tmp_path / "Train" / "train_params.csv", index=False)
    with pytest.raises(DataError, match=r"dirty_cube_1\.fits' has shape \(4, 6, 8\) but '.*dirty_cube_2\.fits' has "
                                        r"\(4, 10, 8\); set data.crop"):
        load_fits_dirs(_cfg(tmp_path))
    cfg = _cfg(tmp_path, crop=[4, 4, 8], scaling="none")
    train = load_fits_dirs(cfg)["train"]
    # cube 1: y 6 -> tiles at 0, 2; cube 2: y 10 -> tiles at 0, 4, 6
    assert tile_starts(6, 4) == [0, 2] and tile_starts(10, 4) == [0, 4, 6] and tile_starts(3, 4) == [0]
    assert train.images["cube"].shape == (5, 1, 4, 4, 8)
    np.testing.assert_array_equal(train.images["cube"][1, 0], cubes["train"]["1"][0][:, 2:6])
    np.testing.assert_array_equal(train.images["cube"][4, 0], big[:, 6:10])
    origins = [s.origin for s in plan_fits_dirs(cfg).splits["train"].samples]
    assert origins == [(0, 0, 0), (0, 2, 0), (0, 0, 0), (0, 4, 0), (0, 6, 0)]


# --- sources -----------------------------------------------------------------------------------------


def test_source_crops_equal_the_cube_and_are_zero_padded(tmp_path):
    cubes = _folder(tmp_path)
    cfg = _cfg(tmp_path, mode="sources", crop=[3, 3, 4], columns=["flux", "fwhm_x"])
    train = load_fits_dirs(cfg)["train"]
    assert train.images["cube"].shape == (4, 1, 3, 3, 4)
    assert train.targets.dtype == np.float32 and train.targets.shape == (4, 2)
    assert train.target_names == ("flux", "fwhm_x")
    np.testing.assert_array_equal(train.targets[:, 0], [0.5, 1.5, 1.5, 2.5])
    dirty = cubes["train"]["3"][0]
    # row 2: x=4, y=3, z=2 -> z 1..3, y 2..4, x 2..5: inside the cube
    np.testing.assert_array_equal(train.images["cube"][1, 0], dirty[1:4, 2:5, 2:6])
    # row 1: x=1, y=2, z=1 -> x -1..2: one column of zeros on the left
    crop = train.images["cube"][0, 0]
    assert (crop[:, :, 0] == 0).all()
    np.testing.assert_array_equal(crop[:, :, 1:], dirty[0:3, 1:4, 0:3])
    assert train.multiply_output_with is None


def test_2d_source_crops_come_from_the_source_channel(tmp_path):
    cubes = _folder(tmp_path)
    train = load_fits_dirs(_cfg(tmp_path, mode="sources", crop=[3, 3], columns=["flux"]))["train"]
    assert train.images["cube"].shape == (4, 1, 3, 3) and train.targets.shape == (4, 1)
    np.testing.assert_array_equal(train.images["cube"][1, 0], cubes["train"]["3"][0][2, 2:5, 3:6])


def test_one_integer_column_gives_labels(tmp_path):
    _folder(tmp_path)
    train = load_fits_dirs(_cfg(tmp_path, mode="sources", crop=[2, 2, 2], columns=["label"]))["train"]
    assert train.targets.dtype == np.int64 and train.targets.shape == (4,)
    np.testing.assert_array_equal(train.targets, [0, 1, 1, 2])
    values = load_fits_dirs(_cfg(tmp_path, mode="sources", crop=[2, 2, 2], columns=["label"], targets_as="values"))
    assert values["train"].targets.dtype == np.float32 and values["train"].targets.shape == (4, 1)


def test_positions_counting_from_one(tmp_path):
    cubes = _folder(tmp_path)
    train = load_fits_dirs(_cfg(tmp_path, mode="sources", crop=[1, 1, 1], columns=["flux"], position_origin=1,
                                scaling="none"))["train"]
    assert train.images["cube"][1, 0, 0, 0, 0] == cubes["train"]["3"][0][1, 2, 3]


# --- cubes -------------------------------------------------------------------------------------------


def test_cubes_mode_targets_per_cube(tmp_path):
    cubes = _folder(tmp_path)
    kinds = load_fits_dirs(_cfg(tmp_path, mode="cubes", columns=["kind"], scaling="none"))
    assert kinds["train"].targets.dtype == np.int64
    np.testing.assert_array_equal(kinds["train"].targets, [0, 1])
    np.testing.assert_array_equal(kinds["train"].images["cube"][1, 0], cubes["train"]["7"][0])
    total = load_fits_dirs(_cfg(tmp_path, mode="cubes", columns=["flux"], aggregate="sum", slices=True))["train"]
    assert total.images["cube"].shape == (2 * SHAPE[0], 1, *SHAPE[1:])
    np.testing.assert_allclose(total.targets[:, 0], [2.0] * SHAPE[0] + [4.0] * SHAPE[0])
    with pytest.raises(DataError, match=r"train_params\.csv': ID 3 has 2 rows that differ in column 'flux' "
                                        r"\(rows 1 and 2\); set data.aggregate"):
        load_fits_dirs(_cfg(tmp_path, mode="cubes", columns=["flux"]))


# --- describe ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("keys", [
    {},
    {"slices": True},
    {"mode": "sources", "crop": [3, 3, 3], "columns": ["flux", "fwhm_x"]},
    {"mode": "sources", "crop": [3, 3], "columns": ["label"]},
    {"mode": "cubes", "columns": ["kind"]},
])
def test_describe_gives_the_loaded_shapes(tmp_path, keys):
    _folder(tmp_path, test_ids=("9",))
    cfg = _cfg(tmp_path, **keys)
    loaded, described = load_fits_dirs(cfg), describe_fits_dirs(cfg, "regression").stand_in
    assert list(loaded) == list(described) == ["train", "val", "test"]
    for name, real in loaded.items():
        fake = described[name]
        assert fake.images["cube"].shape[1:] == real.images["cube"].shape[1:]
        assert fake.targets.shape[1:] == real.targets.shape[1:] and fake.targets.dtype == real.targets.dtype
        assert (fake.multiply_output_with is None) == (real.multiply_output_with is None)
        assert fake.target_names == real.target_names
        if real.targets.dtype == np.int64:
            assert (fake.targets.min(), fake.targets.max()) == (real.targets.min(), real.targets.max())


def test_describe_reads_no_pixels_and_skips_binary_dense_targets(tmp_path):
    _folder(tmp_path)
    path = tmp_path / "Train" / "dirty_cube_3.fits"
    path.unlink()
    _write(path, np.full(SHAPE, np.nan))
    cfg = _cfg(tmp_path, nan="error")
    assert describe_fits_dirs(cfg, "binary") is None
    assert describe_fits_dirs(cfg, "regression").stand_in["train"].images["cube"].shape[1:] == (1, *SHAPE)
    with pytest.raises(DataError, match="NaN"):
        load_fits_dirs(cfg)


# --- bad input -----------------------------------------------------------------------------------------


def _corrupt(root):
    (root / "Train" / "dirty_cube_7.fits").write_text("not a FITS file")


def _truncate(root):
    path = root / "Train" / "dirty_cube_7.fits"
    path.write_bytes(path.read_bytes()[:3000])


def _pair_shape(root):
    (root / "Train" / "clean_cube_7.fits").unlink()
    _write(root / "Train" / "clean_cube_7.fits", _cube(1, (4, 6, 6)))


def _flat(root):
    (root / "Train" / "dirty_cube_7.fits").unlink()
    fits.PrimaryHDU(np.zeros((6, 8), np.float32)).writeto(root / "Train" / "dirty_cube_7.fits")


def _csv(root, text):
    (root / "Train" / "train_params.csv").write_text(text)


BAD = {
    "no folder": (lambda r: (r / "Train").rename(r / "train"), {},
                  r"has no folder 'Train' for the train split; did you mean 'train'\?"),
    "no csv": (lambda r: (r / "Train" / "train_params.csv").rename(r / "Train" / "train_param.csv"), {},
               r"Train/train_params\.csv' not found: the train split's catalogue \(data.csv.train\); "
               r"did you mean 'train_param\.csv'\?"),
    "no id column": (lambda r: _csv(r, "id,x,y,z\n3,1,1,1\n"), {},
                     r"train_params\.csv': no column 'ID'; did you mean 'id'\? \(columns: id, x, y, z\)"),
    "no column": (lambda r: None, {"mode": "sources", "crop": [2, 2, 2], "columns": ["Flux"]},
                  r"train_params\.csv': no column 'Flux'; did you mean 'flux'\?"),
    "absent cube": (lambda r: _csv(r, "ID\n3\n4\n"), {},
                    r"train_params\.csv' row 2 \(line 3\): ID 4 names 'dirty_cube_4\.fits', which is not in"),
    "no target": (lambda r: (r / "Train" / "clean_cube_7.fits").unlink(), {},
                  r"dirty_cube_7\.fits' has no target cube 'clean_cube_7\.fits' in '.*Train' \(ID 7, "
                  r"'.*train_params\.csv' row 3 \(line 4\)\)"),
    "corrupt": (_corrupt, {}, r"dirty_cube_7\.fits': not a readable FITS file"),
    "truncated": (_truncate, {}, r"dirty_cube_7\.fits': truncated FITS file"),
    "pair shapes": (_pair_shape, {}, r"dirty_cube_7\.fits' has shape \(4, 6, 8\) but its target "
                                     r"'.*clean_cube_7\.fits' has \(4, 6, 6\)"),
    "not 3d": (_flat, {}, r"dirty_cube_7\.fits': holds data of shape \(6, 8\) .*expected a 3D cube"),
    "empty": (lambda r: _csv(r, "ID,x,y,z\n"), {}, r"train_params\.csv' holds no rows: the train split is empty"),
    "empty id": (lambda r: _csv(r, "ID,x\n3,1\n,2\n"), {}, r"train_params\.csv' row 2 \(line 3\): empty ID"),
    "outside": (lambda r: _csv(r, "ID,x,y,z,flux\n3,1,1,1,1\n7,8,1,1,1\n"),
                {"mode": "sources", "crop": [2, 2, 2], "columns": ["flux"]},
                r"train_params\.csv' row 2 \(line 3\): x = 8 is outside 'dirty_cube_7\.fits' \(8 pixels along x"),
    "not a number": (lambda r: _csv(r, "ID,x,y,z,flux\n3,1,1,1,1\n7,1,1,1,big\n"),
                     {"mode": "sources", "crop": [2, 2, 2], "columns": ["flux"]},
                     r"train_params\.csv' row 2 \(line 3\): column 'flux' holds 'big'; expected a number"),
    "labels": (lambda r: None, {"mode": "sources", "crop": [2, 2, 2], "columns": ["flux"], "targets_as": "labels"},
               r"train_params\.csv': column 'flux' holds 0\.5 .*class labels are integers"),
    "missing val": (lambda r: None, {"sets": {"train": "Train", "val": "Validation", "test": "Test"}},
                    r"has no folder 'Test' for the test split"),
}


@pytest.mark.parametrize("case", list(BAD), ids=list(BAD))
def test_bad_input_is_one_data_error_naming_the_file(tmp_path, case):
    spoil, keys, message = BAD[case]
    _folder(tmp_path)
    spoil(tmp_path)
    cfg = _cfg(tmp_path, **keys)
    with pytest.raises(DataError, match=message):
        load_fits_dirs(cfg)
    with pytest.raises(DataError, match=message):  # none of these checks needs pixels
        describe_fits_dirs(cfg, "regression")


def test_missing_data_path(tmp_path):
    with pytest.raises(DataError, match=r"data.path: '.*nowhere' not found"):
        load_fits_dirs(_cfg(tmp_path / "nowhere"))


# --- config --------------------------------------------------------------------------------------------


def _config(**data):
    return load_config({"data": {"source": "fits_dirs", "path": "/tmp/cubes", **data}, "train": {"loss": "mse"}})


@pytest.mark.parametrize("data, message", [
    ({"colums": ["flux"]}, r"data.colums: unknown key; did you mean 'columns'\?"),
    ({"mode": "source"}, r"data.mode: found 'source'; .*did you mean 'sources'\?"),
    ({"columns": ["flux"]}, r"data.columns is for data.mode sources and cubes"),
    ({"mode": "sources", "columns": ["flux"]}, r"data.mode sources needs data.crop"),
    ({"mode": "sources", "crop": [4, 4, 4]}, r"data.mode sources needs data.columns"),
    ({"mode": "cubes", "columns": ["kind"], "crop": [4, 4, 4]}, r"data.crop is for data.mode deconvolution and "
                                                                 r"sources"),
    ({"mode": "sources", "crop": [4, 4, 4], "columns": ["f"], "target": "t_{id}.fits"}, r"data.target is for data.mode "
                                                                                         r"deconvolution"),
    ({"crop": [4, 4]}, r"data.crop is \[4, 4\] but data.mode deconvolution takes \[z, y, x\]"),
    ({"crop": [4, 4, 4, 4]}, r"expected \[z, y, x\] \(a 3D crop\) or \[y, x\]"),
    ({"input": "dirty.fits"}, r"expected a file name with the field '\{id\}' once"),
    ({"input": "cubes/{id}.fits"}, r"without '/'"),
    ({"sets": {"train": "Train", "valid": "Validation"}}, r"unknown split 'valid'; did you mean 'val'\?"),
    ({"sets": {"val": "Validation"}}, r"needs 'train'"),
    ({"split": {"val": 0.2}}, r"remove data.split"),
    ({"mode": "cubes", "columns": ["a", "b"], "targets_as": "labels"}, r"labels needs exactly one column"),
    ({"mode": "sources", "crop": [2, 2], "columns": ["ID"]}, r"data.columns lists 'ID', the ID column"),
    ({"position_columns": ["x", "y"]}, r"expected three column names, in the order x, y, z"),
])
def test_config_errors(data, message):
    with pytest.raises(ConfigError, match=message):
        _config(**data)


def test_standardization_defaults_with_per_cube_scaling():
    assert _config(standardize={"scalars": False}, scaling="per_cube").data.standardize.images == "none"
    assert _config(standardize={"images": "global"}, scaling="per_cube").data.standardize.images == "global"
    assert _config(mode="sources", crop=[2, 2, 2], columns=["f"]).data.standardize.images == "per_channel"
    with pytest.raises(ConfigError, match=r"data.standardize.targets must be false with data.scaling per_cube"):
        _config(standardize={"targets": True}, scaling="per_cube")
    assert _config(standardize={"targets": True}, scaling="none").data.standardize.targets


@pytest.mark.parametrize("keys", [{}, {"mode": "sources", "crop": [3, 3], "columns": ["label"]}])
def test_prepare_data_takes_the_sets(tmp_path, keys):
    from deepscope.data.prepare import describe_data, prepare_data

    _folder(tmp_path)
    cfg = load_config({"data": {"source": "fits_dirs", "path": str(tmp_path), **keys},
                       "model": {"top": {"units": [3] if keys else [1]}},
                       "train": {"loss": "cross_entropy" if keys else "mse"}})
    prepared = prepare_data(cfg)
    assert prepared.sizes() == ({"train": 4, "val": 2} if keys else {"train": 2, "val": 1})
    assert describe_data(cfg) == prepared.spec
    if keys:
        assert prepared.spec.target_kind == "label" and prepared.spec.n_classes == 3
    else:
        assert prepared.spec.dense and not prepared.spec.multiply_output_with  # global scaling by default


def test_config_aliases_and_defaults():
    cfg = load_config({"data": {"source": "fits", "path": "cubes"}, "train": {"loss": "mse"}}).data
    assert cfg.source == "fits_dirs" and cfg.path.is_absolute()
    assert cfg.target_pattern == "clean_cube_{id}.fits" and cfg.scaling == "none"
    assert cfg.standardize.images == "global" and cfg.standardize.targets
    assert cfg.split_folders() == {"train": "Train", "val": "Validation", "test": "Test"}
    assert cfg.required_splits == ("train",)
    assert cfg.csv == {"train": "train_params.csv", "val": "valid_params.csv", "test": "test_params.csv"}
    custom = FitsDirsData(source="fits_dirs", path="x", csv={"val": "val.csv"}, sets={"train": "tr", "val": "va"})
    assert custom.csv["val"] == "val.csv" and custom.csv["train"] == "train_params.csv"
    assert custom.required_splits == ("train", "val")


# --- predictions -----------------------------------------------------------------------------------------


def _identity(x):
    return x.copy()


@pytest.mark.parametrize("stokes", [False, True])
def test_predict_folder_writes_fits_with_the_input_header(tmp_path, stokes):
    cubes = _folder(tmp_path / "data", stokes=stokes)
    calls = []

    def model(x):  # sees the scaled cube, returns it: the output then equals the input in data units
        calls.append(x.shape)
        assert np.abs(x).max() == pytest.approx(1.0)
        return x * 1.0

    out = tmp_path / "out"
    written = predict_folder(_cfg(tmp_path / "data", scaling="per_cube"), tmp_path / "data" / "Train", out, model,
                             {"run": "runs/demo", "checkpoint": "best.ckpt", "version": "0.1"})
    assert [p.name for p in written] == ["dirty_cube_3.fits", "dirty_cube_7.fits"]
    assert calls == [(1, 1, *SHAPE)] * 2
    with fits.open(written[0]) as hdul:
        header, data = hdul[0].header, hdul[0].data
    with fits.open(tmp_path / "data" / "Train" / "dirty_cube_3.fits") as hdul:
        original = hdul[0].header
    assert data.shape == ((1, *SHAPE) if stokes else SHAPE)
    np.testing.assert_allclose(data.reshape(SHAPE), cubes["train"]["3"][0], rtol=1e-6)
    for key in ("NAXIS", "BUNIT", "BMAJ", "BMIN", "BPA", *(f"{c}{i}" for c in ("CTYPE", "CRPIX", "CRVAL", "CDELT",
                                                                                 "CUNIT") for i in (1, 2, 3))):
        assert header[key] == original[key], key
    assert header["DSRUN"] == "runs/demo" and header["DSCKPT"] == "best.ckpt" and header["DSVERS"] == "0.1"
    assert header["DSDATE"] and header["DSSCALE"] == pytest.approx(np.abs(cubes["train"]["3"][0]).max())
    assert any("deepscope checkpoint: best.ckpt" in str(h) for h in header["HISTORY"])
    with pytest.raises(DataError, match=r"dirty_cube_3\.fits' exists; predictions never overwrite"):
        predict_folder(_cfg(tmp_path / "data", scaling="per_cube"), tmp_path / "data" / "Train", out, model, {})
    assert predict_folder(_cfg(tmp_path / "data", scaling="per_cube"), tmp_path / "data" / "Train", out, model, {}, overwrite=True)
    assert not list(out.glob(".*"))  # no temporary files left


def test_predict_folder_tiles_cubes_of_another_shape(tmp_path):
    cubes = _folder(tmp_path / "data")
    shapes = set()

    def model(x):
        shapes.add(x.shape[1:])
        return x * 1.0

    written = predict_folder(_cfg(tmp_path / "data", slices=True), tmp_path / "data" / "Train", tmp_path / "out",
                             model, {}, sample_shape=(4, 4))
    assert shapes == {(1, 4, 4)}
    np.testing.assert_allclose(fits.getdata(written[1]), cubes["train"]["7"][0], rtol=1e-6)


def test_predict_folder_without_matching_files(tmp_path):
    (tmp_path / "in").mkdir()
    with pytest.raises(DataError, match=r"in' holds no file named like 'dirty_cube_\{id\}\.fits'"):
        predict_folder(_cfg(tmp_path), tmp_path / "in", tmp_path / "out", _identity, {})


def test_predict_folder_sources_writes_the_catalogue(tmp_path):
    _folder(tmp_path / "data")
    cfg = _cfg(tmp_path / "data", mode="sources", crop=[1, 1, 1], columns=["flux", "size"], scaling="none")
    [path] = predict_folder(cfg, tmp_path / "data" / "Train", tmp_path / "out",
                            lambda x: np.stack([x[:, 0, 0, 0, 0], np.full(len(x), 7.0)], axis=1), {})
    assert path.name == "train_params.csv"
    table = pd.read_csv(path)
    truth = pd.read_csv(tmp_path / "data" / "Train" / "train_params.csv")
    assert list(table.columns) == ["ID", "x", "y", "z", "flux", "flux_true", "fwhm_x", "label", "kind", "size"]
    np.testing.assert_array_equal(table["flux_true"], truth["flux"])
    dirty = read_cube(tmp_path / "data" / "Train" / "dirty_cube_3.fits")
    assert table["flux"][1] == pytest.approx(dirty[2, 3, 4]) and (table["size"] == 7.0).all()


def test_predict_folder_cubes_writes_one_row_per_cube(tmp_path):
    _folder(tmp_path / "data")
    cfg = _cfg(tmp_path / "data", mode="cubes", columns=["kind"])
    [path] = predict_folder(cfg, tmp_path / "data" / "Train", tmp_path / "out",
                            lambda x: np.tile([[0.2, 0.8]], (len(x), 1)), {})
    table = pd.read_csv(path)
    assert path.name == "predictions.csv"
    assert list(table["ID"]) == [3, 7] and list(table["kind"]) == [1, 1]
    assert list(table.columns) == ["ID", "file", "kind", "kind_score0", "kind_score1"]
