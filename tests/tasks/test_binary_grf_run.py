"""A binary run end to end on the grf_cubes source: PENGUIN learns the GR/Newtonian slope difference on
held-out seeds, the run leaves a confusion matrix and a ROC curve whose AUC is scikit-learn's, and the
final metrics hold the one-feature baselines."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from deepscope.evaluation import plots
from deepscope.training.experiment import Experiment

pytestmark = pytest.mark.slow


def test_penguin_learns_on_held_out_seeds_and_leaves_a_roc_curve(tmp_path, monkeypatch):
    legends: dict[str, list[str]] = {}
    save = plots._save

    def keep(fig, out):
        legend = fig.axes[0].get_legend() if fig.axes else None
        if legend is not None:
            legends[out.name] = [t.get_text() for t in legend.get_texts()]
        return save(fig, out)

    monkeypatch.setattr(plots, "_save", keep)
    cfg = {"name": "grf", "data": {"source": "grf_cubes", "path": str(tmp_path / "grf.h5"), "slope_difference": 0.3,
                                   "seeds": {"train": [0, 6], "val": [6, 8], "test": [8, 11]}, "slices": {"axes": [0]}},
           "model": {"architecture": "penguin", "layer_param": 4, "dropout": 0.1},
           "train": {"epochs": 8, "batch_size": 64, "loss": "bce_with_logits", "metrics": ["accuracy", "auc"],
                     "optimizer": {"class_name": "adam", "config": {"beta_1": 0.5}},
                     "lr_schedule": {"name": "step", "range": [0.0002, 0.002], "step_size_factor": 6}},
           "log": {"dir": str(tmp_path / "runs"), "progress_bar": "none", "figures": True}}
    result = Experiment(cfg).train()
    test = result.metrics["test"]
    # test seeds 8..10 were never trained on: well above chance (0.5); the AUC does not depend on how well
    # BatchNorm's running statistics have caught up, the accuracy at 0.5 does (docs/grf-simulator.md)
    assert test["auc"] > 0.7
    assert test["auc_variance_baseline"] < 0.7  # the classes have one variance in expectation
    assert {f"{m}_{f}_baseline" for m in ("accuracy", "auc") for f in ("slope", "variance", "small_scale")} <= set(test)
    figures = result.run_dir / "figures"
    for split in ("val", "test"):
        assert (figures / f"roc_{split}.png").stat().st_size > 10_000
        assert (figures / f"confusion_matrix_{split}.png").is_file()
        saved = np.load(result.run_dir / "predictions" / f"{split}.npz")
        auc = roc_auc_score(saved["targets"], saved["probabilities"])
        assert legends[f"roc_{split}.png"] == [f"model (AUC {auc:.3f})", "chance (AUC 0.500)"]
        assert json.loads((result.run_dir / "final_metrics.json").read_text())[split]["auc"] == pytest.approx(auc)
