"""Shared fixtures: tiny data in the data contract's layout, and a temporary runs folder."""

from __future__ import annotations

import logging
import os

import numpy as np
import pytest

os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture(autouse=True)
def _restore_deepscope_logger():
    """``cli.main()`` installs its own handler on the 'deepscope' logger; every test gets it back as it was."""
    logger = logging.getLogger("deepscope")
    saved = (logger.handlers[:], logger.level, logger.propagate)
    yield
    logger.handlers[:], logger.level, logger.propagate = saved


@pytest.fixture
def runs_dir(tmp_path):
    """A fresh log.dir for runs."""
    return tmp_path / "runs"


@pytest.fixture
def tiny_regression_data():
    """Split DeepCalo-layout data: 8x8 one-channel images (channels last), 3 scalars, tracks, targets."""
    rng = np.random.default_rng(0)

    def make(n):
        images = rng.normal(size=(n, 8, 8, 1)).astype(np.float32)
        scalars = rng.normal(size=(n, 3)).astype(np.float32)
        tracks = rng.normal(size=(n, 4, 2)).astype(np.float32)
        tracks[:, 2:] = 0.0  # padded
        targets = images.sum((1, 2, 3)) + scalars[:, 0]
        return {"images": {"calo": images}, "scalars": scalars, "tracks": tracks, "targets": targets}

    return {"train": make(64), "val": make(16), "test": make(16)}


def small_config(runs_dir, **sections):
    """A config dict that trains in a second; sections override parts of it."""
    cfg = {
        "name": "t",
        "log": {"dir": str(runs_dir), "progress_bar": "none", "tensorboard": False},
        "data": {"source": "sklearn_digits", "n_samples": 300},
        "model": {"cnn": {"n_init_filters": 4, "activation": "relu"}, "top": {"units": [16, 10], "activation": "relu"}},
        "train": {"epochs": 1, "batch_size": 32, "loss": "cross_entropy", "metrics": ["accuracy"], "optimizer": "adam"},
    }
    for key, value in sections.items():
        if isinstance(value, dict) and isinstance(cfg.get(key), dict):
            cfg[key] = {**cfg[key], **value}
        else:
            cfg[key] = value
    return cfg
