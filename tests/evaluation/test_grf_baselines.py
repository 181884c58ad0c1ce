"""The one-feature baselines of grf_cubes runs: fitted on the training split, scored on the run's samples."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from deepscope.config import load_config
from deepscope.data.grf_cubes import load_grf_cubes
from deepscope.evaluation.grf_baselines import FEATURES, grf_baselines


def _stores(tmp_path, slices):
    cfg = load_config({"data": {"source": "grf_cubes", "path": str(tmp_path / "g.h5"), "size": 16,
                                "slope_difference": 1.0, "seeds": {"train": [0, 12], "test": [12, 20]},
                                **({"slices": {"axes": [0]}} if slices else {})},
                       "train": {"loss": "bce_with_logits"}})
    stores = load_grf_cubes(cfg.data)
    return cfg, stores, {name: np.arange(len(s)) for name, s in stores.items()}


@pytest.mark.parametrize("slices", [True, False], ids=["slices", "whole_cubes"])
def test_baselines_on_the_test_seeds(tmp_path, slices):
    cfg, stores, indices = _stores(tmp_path, slices)
    targets = np.asarray(stores["test"].read(indices["test"])["targets"]).reshape(-1)
    result = {"index": indices["test"], "targets": targets, "predictions": targets}
    task = SimpleNamespace(is_classification=True)
    scores, lines = grf_baselines(cfg.data, task, stores, indices, "test", result)
    assert set(scores) == {f"{m}_{f}_baseline" for m in ("accuracy", "auc") for f in FEATURES}
    assert scores["auc_slope_baseline"] > 0.8 and scores["auc_small_scale_baseline"] > 0.8  # slopes 2 and 3
    assert all(0.0 <= v <= 1.0 for v in scores.values())
    assert lines and "model 1.000" in lines[0]


def test_no_baselines_without_one_label_per_sample_or_training_split(tmp_path):
    cfg, stores, indices = _stores(tmp_path, True)
    result = {"index": indices["test"], "targets": np.zeros((len(indices["test"]), 2)), "predictions": None}
    classify, regress = SimpleNamespace(is_classification=True), SimpleNamespace(is_classification=False)
    assert grf_baselines(cfg.data, classify, stores, indices, "test", result) == ({}, [])  # one-hot targets
    result["targets"] = np.zeros(len(indices["test"]))
    assert grf_baselines(cfg.data, regress, stores, indices, "test", result) == ({}, [])
    assert grf_baselines(cfg.data, classify, {"test": stores["test"]}, indices, "test", result) == ({}, [])
