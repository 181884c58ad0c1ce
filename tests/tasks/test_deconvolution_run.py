"""DeepFocus end to end: the example configs train on small simulated radio cubes from the CLI.

Deconvolution (configs/deepfocus_deconvolve.yaml): the final metrics put the prediction beside an
all-zeros sky and the best Wiener deconvolution; ``deepscope predict`` writes a FITS cube per input
with its header; a run trained on crops predicts whole cubes. Sources (configs/deepfocus_sources.yaml):
per-column metrics named by the catalogue's columns. Every run is small (2 epochs, a few cubes).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from deepscope.cli import main

pytestmark = pytest.mark.slow

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
# a smaller U-Net than the example's keeps each run at a few seconds on two CPU cores
SMALL_UNET = ["model.block_sizes=[4, 8]", "model.depths=[1, 1]"]


def _train(config: str, data: Path, runs: Path, *overrides: str) -> tuple[int, Path]:
    args = ["train", str(CONFIGS / config), "-o", f"data.path={data}", "-o", f"log.dir={runs}",
            "-o", "log.progress_bar=none", "-o", "log.tensorboard=false"]
    for item in overrides:
        args += ["-o", item]
    code = main(args)
    return code, runs / Path(config).stem


def _psnr_per_sample(pred: np.ndarray, target: np.ndarray) -> np.ndarray:
    """10 log10(range^2 / mse) per sample, range = the target's max - min (numpy reference)."""
    p = pred.reshape(len(pred), -1).astype(np.float64)
    t = target.reshape(len(target), -1).astype(np.float64)
    data_range = t.max(1) - t.min(1)
    return 10.0 * np.log10(data_range ** 2 / ((p - t) ** 2).mean(1))


def _test_ids(cubes: Path) -> list[str]:
    """The IDs of the test cubes in the order the reader stacks them (the CSV's)."""
    import pandas as pd

    ids = pd.read_csv(cubes / "Test" / "test_params.csv", dtype={"ID": str})["ID"]
    return list(dict.fromkeys(ids))


@pytest.fixture(scope="module")
def cubes(tmp_path_factory) -> Path:
    """Where the deconvolution runs simulate (once) and read their cubes."""
    return tmp_path_factory.mktemp("radio") / "cubes"


DECONVOLUTION = ("data.n_cubes={train: 4, val: 2, test: 2}", "train.epochs=2", *SMALL_UNET)


@pytest.fixture(scope="module")
def deconvolution_run(cubes, tmp_path_factory) -> Path:
    code, run = _train("deepfocus_deconvolve.yaml", cubes, tmp_path_factory.mktemp("runs"), *DECONVOLUTION)
    assert code == 0
    return run


# --- deconvolution --------------------------------------------------------------------------------------


def test_final_metrics_put_the_prediction_beside_the_baselines(deconvolution_run):
    final = json.loads((deconvolution_run / "final_metrics.json").read_text())
    for split in ("val", "test"):
        m = final[split]
        for key in ("loss", "psnr", "ssim", "psnr_zeros", "psnr_wiener", "psnr_dirty", "ssim_wiener",
                    "wiener_balance", "gain_over_zeros_db", "gain_over_wiener_db"):
            assert key in m and np.isfinite(m[key]), (split, key)
        # the best Wiener filter of a wide balance grid is never worse than predicting zeros
        assert m["psnr_wiener"] >= m["psnr_zeros"] - 1e-9, split
        assert m["gain_over_zeros_db"] == pytest.approx(m["psnr"] - m["psnr_zeros"])
        assert m["gain_over_wiener_db"] == pytest.approx(m["psnr"] - m["psnr_wiener"])


def test_psnr_scores_match_a_numpy_reference(deconvolution_run, cubes):
    from astropy.io import fits

    final = json.loads((deconvolution_run / "final_metrics.json").read_text())["test"]
    saved = np.load(deconvolution_run / "predictions" / "test.npz")
    assert final["psnr"] == pytest.approx(_psnr_per_sample(saved["predictions"], saved["targets"]).mean(), rel=1e-6)
    clean = np.stack([fits.getdata(cubes / "Test" / f"clean_cube_{i}.fits") for i in _test_ids(cubes)])
    # targets in data units (standardized and mapped back: float32 round-off near zero)
    np.testing.assert_allclose(saved["targets"][:, 0], clean, rtol=1e-5, atol=1e-7)
    assert final["psnr_zeros"] == pytest.approx(_psnr_per_sample(np.zeros_like(clean), clean).mean(), rel=1e-6)


def test_deconvolution_run_writes_its_figure_and_whole_cube_predictions(deconvolution_run):
    assert (deconvolution_run / "figures" / "prediction_test.png").is_file()
    saved = np.load(deconvolution_run / "predictions" / "test.npz")
    assert saved["predictions"].shape == (2, 1, 16, 32, 32)
    assert saved["targets"].shape == (2, 1, 16, 32, 32)
    assert np.isfinite(saved["predictions"]).all()
    spec = json.loads((deconvolution_run / "input_spec.json").read_text())
    assert spec["images"]["cube"]["spatial"] == [16, 32, 32]
    assert spec["target_shape"] == [1, 16, 32, 32]


def test_predict_writes_a_fits_cube_per_input_with_its_header(deconvolution_run, cubes, tmp_path, capsys):
    from astropy.io import fits
    from astropy.wcs import WCS

    out = tmp_path / "clean"
    assert main(["predict", str(deconvolution_run), "--input", str(cubes / "Test"), "--output", str(out)]) == 0
    assert "wrote 2 file(s)" in capsys.readouterr().out
    inputs = sorted(p.name for p in (cubes / "Test").glob("dirty_cube_*.fits"))
    assert sorted(p.name for p in out.iterdir()) == inputs
    saved = np.load(deconvolution_run / "predictions" / "test.npz")
    for n, cube_id in enumerate(_test_ids(cubes)):
        name = f"dirty_cube_{cube_id}.fits"
        with fits.open(cubes / "Test" / name) as given, fits.open(out / name) as written:
            header, data = written[0].header, written[0].data
            assert data.shape == given[0].data.shape
            assert list(WCS(header).wcs.ctype) == list(WCS(given[0].header).wcs.ctype)
            for card in ("CRVAL1", "CRVAL2", "CRVAL3", "CDELT1", "CDELT3", "BMAJ"):
                assert header[card] == given[0].header[card], card
            clean_unit = fits.getheader(cubes / "Test" / name.replace("dirty", "clean"))["BUNIT"]
            assert given[0].header["BUNIT"] != clean_unit and header["BUNIT"] == clean_unit  # a sky, not Jy/beam
            assert header["DSRUN"] == str(deconvolution_run)
            assert header["DSSCALE"] == 1.0  # global standardization (the default), no per-cube scale
        # the file holds what the run predicted for that cube at the end of training
        np.testing.assert_allclose(data, saved["predictions"][n, 0], rtol=1e-4, atol=1e-7)


def test_predict_never_overwrites_a_file(deconvolution_run, cubes, tmp_path, capsys):
    out = tmp_path / "clean"
    args = ["predict", str(deconvolution_run), "--input", str(cubes / "Test"), "--output", str(out)]
    assert main(args) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    capsys.readouterr()
    assert main(args) == 2
    err = capsys.readouterr().err
    assert str(out / "dirty_cube_0.fits") in err
    assert "exists; predictions never overwrite a file" in err and "Traceback" not in err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_evaluate_a_deconvolution_run(deconvolution_run, capsys):
    assert main(["evaluate", str(deconvolution_run)]) == 0
    saved = json.loads((deconvolution_run / "evaluation" / "test_metrics.json").read_text())
    final = json.loads((deconvolution_run / "final_metrics.json").read_text())["test"]
    assert saved["samples"] == 2
    for key in ("loss", "psnr", "ssim"):
        assert saved[key] == pytest.approx(final[key], rel=1e-5), key
    assert "psnr" in capsys.readouterr().out


# --- training on crops ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def crop_run(cubes, tmp_path_factory) -> tuple[Path, BaseException | None]:
    """A deconvolution run trained on [8, 16, 16] windows of the [16, 32, 32] cubes; the error that
    stopped it, if any (so that what was written before it can still be checked)."""
    runs = tmp_path_factory.mktemp("crop_runs")
    try:
        code, run = _train("deepfocus_deconvolve.yaml", cubes, runs, *DECONVOLUTION, "data.augment.crop=[8, 16, 16]")
    except Exception as exc:  # noqa: BLE001 - handed to the test that checks the end of the run
        return runs / "deepfocus_deconvolve", exc
    assert code == 0
    return run, None


def test_crop_run_trains_on_windows_of_the_crop_size(crop_run):
    run, _ = crop_run
    spec = json.loads((run / "input_spec.json").read_text())
    assert spec["images"]["cube"]["spatial"] == [8, 16, 16]
    assert spec["target_shape"] == [1, 8, 16, 16]
    rows = (run / "metrics.csv").read_text().splitlines()
    assert len(rows) == 3  # a header and one row per epoch: both epochs trained on the windows


def test_crop_run_predicts_whole_cubes_with_a_sliding_window(crop_run):
    run, error = crop_run
    if error is not None:
        raise error
    saved = np.load(run / "predictions" / "test.npz")
    assert saved["predictions"].shape == (2, 1, 16, 32, 32)
    assert np.isfinite(saved["predictions"]).all()
    final = json.loads((run / "final_metrics.json").read_text())["test"]
    assert final["psnr"] == pytest.approx(_psnr_per_sample(saved["predictions"], saved["targets"]).mean(), rel=1e-6)


# --- sources: per-column regression ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def sources_run(tmp_path_factory) -> tuple[Path, Path]:
    tmp = tmp_path_factory.mktemp("sources")
    data = tmp / "cubes"
    code, run = _train("deepfocus_sources.yaml", data, tmp / "runs", "data.n_cubes={train: 16, val: 4, test: 6}",
                       "train.epochs=2")
    assert code == 0
    return run, data


def test_sources_run_scores_each_catalogue_column(sources_run):
    run, _ = sources_run
    final = json.loads((run / "final_metrics.json").read_text())
    saved = np.load(run / "predictions" / "test.npz")
    pred, target = saved["predictions"], saved["targets"]
    assert pred.shape == target.shape and pred.shape[1] == 2  # columns flux, fwhm_x
    test = final["test"]
    for j, column in enumerate(("flux", "fwhm_x")):
        assert test[f"mae_{column}"] == pytest.approx(np.abs(pred[:, j] - target[:, j]).mean(), rel=1e-5)
        within = (np.abs(pred[:, j] - target[:, j]) <= 0.1 * np.abs(target[:, j])).mean()
        assert test[f"within_10_percent_{column}"] == pytest.approx(within)
    assert test["within_10_percent"] == pytest.approx((test["within_10_percent_flux"] +
                                                       test["within_10_percent_fwhm_x"]) / 2)
    assert "within_10_percent_flux" in final["val"] and "mae_flux" in final["val"]
    assert (run / "figures" / "parameters_test.png").is_file()


def test_sources_run_predicts_a_catalogue(sources_run, tmp_path):
    import pandas as pd

    run, data = sources_run
    out = tmp_path / "predicted"
    assert main(["predict", str(run), "--input", str(data / "Test"), "--output", str(out)]) == 0
    table = pd.read_csv(out / "test_params.csv")
    given = pd.read_csv(data / "Test" / "test_params.csv")
    assert len(table) == len(given)
    np.testing.assert_allclose(table["flux_true"], given["flux"], rtol=1e-6)
    assert np.isfinite(table["flux"]).all() and np.isfinite(table["fwhm_x"]).all()
    saved = np.load(run / "predictions" / "test.npz")  # the same rows, predicted at the end of training
    np.testing.assert_allclose(table[["flux", "fwhm_x"]].to_numpy(), saved["predictions"], rtol=1e-4, atol=1e-6)
