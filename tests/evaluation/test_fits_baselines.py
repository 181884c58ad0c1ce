"""Baselines of source-parameter regression: the training mean and a linear fit on the crop's sum."""

from __future__ import annotations

import numpy as np
import pytest

from deepscope.data.arrays import ArraySet
from deepscope.evaluation.fits_baselines import parameter_baselines


def _set(rng: np.random.Generator, n: int) -> ArraySet:
    images = rng.uniform(0, 1, (n, 1, 4, 6, 6)).astype(np.float32)
    total = images.reshape(n, -1).sum(1)
    targets = np.c_[2.0 * total + 1.0, np.full(n, 3.0)].astype(np.float32)  # flux linear in the sum; constant size
    return ArraySet(images={"cube": images}, targets=targets, target_names=("flux", "fwhm_x"))


def test_linear_fit_on_the_crop_sum_and_the_training_mean_against_numpy():
    rng = np.random.default_rng(0)
    train, test = _set(rng, 40), _set(rng, 10)
    result = {"index": np.arange(10), "targets": test.targets, "predictions": test.targets}
    scores = parameter_baselines(train, np.arange(40), test, result, ["flux", "fwhm_x"])
    # the flux is exactly linear in the summed crop: the one-feature fit is exact
    assert scores["within_10_percent_flux_sum_baseline"] == 1.0
    assert scores["mae_flux_sum_baseline"] == pytest.approx(0.0, abs=1e-3)
    mean = train.targets[:, 0].astype(np.float64).mean()
    flux = test.targets[:, 0].astype(np.float64)
    assert scores["mae_flux_mean_baseline"] == pytest.approx(np.mean(np.abs(mean - flux)), rel=1e-6)
    assert scores["within_10_percent_flux_mean_baseline"] == pytest.approx(np.mean(np.abs(mean - flux) <= 0.1 * flux))
    assert scores["within_10_percent_fwhm_x_mean_baseline"] == 1.0  # a constant column: the mean is right
