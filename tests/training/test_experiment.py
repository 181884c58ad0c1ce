"""End to end: a config trains into a complete run folder; resume, versions, NaN guard, API data."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch

import deepscope
from deepscope.components import LOSSES
from deepscope.errors import ConfigError, DataError, TrainingDiverged
from tests.conftest import small_config

pytestmark = pytest.mark.slow


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_run_folder_is_complete(runs_dir):
    cfg = small_config(runs_dir, log={"dir": str(runs_dir), "progress_bar": "none", "tensorboard": True},
                       train={"epochs": 2, "batch_size": 32, "loss": "cross_entropy", "metrics": ["accuracy", "auc"],
                              "optimizer": "adam"})
    result = deepscope.train(cfg)
    run = result.run_dir
    assert run == runs_dir / "t"
    for rel in ["config.yaml", "checkpoints/best.ckpt", "checkpoints/last.ckpt", "metrics.csv",
                "model_summary.txt", "input_spec.json", "standardization.npz", "final_metrics.json",
                "predictions/val.npz", "predictions/test.npz", "figures/learning_curves.png",
                "figures/confusion_matrix_test.png", "figures/confusion_matrix_val.png"]:
        assert (run / rel).is_file(), rel
    assert list((run / "tensorboard").glob("events.out.tfevents.*"))
    rows = _rows(run / "metrics.csv")
    assert [int(r["epoch"]) for r in rows] == [0, 1]
    assert {"train_loss", "val_loss", "train_accuracy", "val_accuracy", "val_auc", "lr"} <= set(rows[0])
    # the resolved config round-trips and names the run
    assert deepscope.load_config(run / "config.yaml").name == "t"
    summary = (run / "model_summary.txt").read_text()
    assert "Total params" in summary and "Conv2d" in summary and "(B, 10)" in summary
    # predictions are consistent with the reported metrics
    test = np.load(run / "predictions" / "test.npz")
    assert test["probabilities"].shape == (len(test["index"]), 10)
    np.testing.assert_allclose(test["probabilities"].sum(1), 1.0, atol=1e-5)
    acc = float((test["predictions"] == test["targets"]).mean())
    assert acc == pytest.approx(result.metrics["test"]["accuracy"])
    # checkpoints load with weights_only=True
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["epoch"] == 1 and "deepscope" in ckpt


def test_rerun_resumes_from_last_checkpoint(runs_dir):
    cfg = small_config(runs_dir)
    deepscope.train(cfg)
    first = torch.load(runs_dir / "t" / "checkpoints" / "last.ckpt", weights_only=True)
    steps_per_epoch = first["global_step"]
    cfg["train"] = {**cfg["train"], "epochs": 3}
    result = deepscope.train(cfg)
    assert result.resumed
    last = torch.load(runs_dir / "t" / "checkpoints" / "last.ckpt", weights_only=True)
    assert last["global_step"] == 3 * steps_per_epoch  # continued, did not start over
    assert [int(r["epoch"]) for r in _rows(runs_dir / "t" / "metrics.csv")] == [0, 1, 2]
    assert deepscope.load_config(runs_dir / "t" / "config.yaml").train.epochs == 3


def test_changed_config_is_refused_with_a_diff_unless_new_version(runs_dir):
    cfg = small_config(runs_dir)
    deepscope.train(cfg)
    cfg["train"] = {**cfg["train"], "batch_size": 16}
    with pytest.raises(ConfigError) as err:
        deepscope.train(cfg)
    msg = str(err.value)
    assert "train.batch_size: 32 -> 16" in msg and "--new-version" in msg
    result = deepscope.train(cfg, new_version=True)
    assert result.run_dir == runs_dir / "t-2"
    assert deepscope.load_config(result.run_dir / "config.yaml").name == "t-2"
    # the original run is untouched
    assert deepscope.load_config(runs_dir / "t" / "config.yaml").train.batch_size == 32


def test_nan_loss_stops_and_keeps_last_good_checkpoint(runs_dir):
    calls = {"n": 0}

    def mse_then_nan(pred, target):
        if torch.is_grad_enabled():
            calls["n"] += 1
        loss = (pred - target) ** 2
        return loss * float("nan") if calls["n"] > 12 else loss

    if "mse_then_nan" not in LOSSES:
        LOSSES.register("mse_then_nan", output="values", task="regression")(mse_then_nan)
    rng = np.random.default_rng(0)
    data = {s: {"scalars": rng.normal(size=(n, 3)), "targets": rng.normal(size=n)}
            for s, n in (("train", 80), ("val", 20))}
    cfg = {"name": "nan", "log": {"dir": str(runs_dir), "progress_bar": "none", "tensorboard": False},
           "model": {"top": {"units": [8, 1]}},
           "train": {"epochs": 5, "batch_size": 10, "loss": "mse_then_nan", "optimizer": "sgd"}}
    with pytest.raises(TrainingDiverged) as err:
        deepscope.train(cfg, data=data)
    msg = str(err.value)
    assert "nan" in msg and "epoch 2" in msg and "last good checkpoint" in msg
    ckpt = torch.load(runs_dir / "nan" / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["epoch"] == 0 and ckpt["global_step"] == 8  # end of epoch 1, before the bad step
    assert all(torch.isfinite(v).all() for v in ckpt["state_dict"].values())


def test_in_memory_data_with_scalars_tracks_and_multiply(runs_dir, tiny_regression_data):
    data = tiny_regression_data
    for split in data.values():
        split["multiply_output_with"] = np.full(len(split["targets"]), 2.0, np.float32)
    cfg = {"name": "reg", "log": {"dir": str(runs_dir), "progress_bar": "none", "tensorboard": False},
           "model": {"cnn": {"n_init_filters": 4, "globalavgpool": True}, "scalar_net": {"units": [4]},
                     "track_net": {"phi_units": [4], "rho_units": [4]}, "top": {"units": [8, 1]}},
           "train": {"epochs": 2, "batch_size": 16, "loss": "mse", "metrics": ["mae", "r2"]}}
    result = deepscope.train(cfg, data=data)
    assert set(result.metrics) == {"val", "test"} and set(result.metrics["test"]) == {"loss", "mae", "r2"}
    assert (result.run_dir / "figures" / "regression_test.png").is_file()
    summary = (result.run_dir / "model_summary.txt").read_text()
    assert "scalar_net" in summary and "track_net" in summary and "tracks: (4, 2)" in summary


def test_bad_data_fails_before_anything_is_written(runs_dir):
    data = {"train": {"images": {"x": np.zeros((10, 8, 8, 1))}}, "val": {"images": {"x": np.zeros((4, 8, 8, 1))}}}
    cfg = {"name": "bad", "log": {"dir": str(runs_dir)}, "model": {"top": {"units": [1]}}}
    with pytest.raises(DataError, match="targets"):
        deepscope.train(cfg, data=data)
    assert not (runs_dir / "bad").exists()


def test_output_size_mismatch_names_top_units(runs_dir):
    cfg = small_config(runs_dir, model={"top": {"units": [16, 7]}})
    with pytest.raises(ConfigError, match=r"model\.top\.units.*10 classes"):
        deepscope.train(cfg)
    assert not (runs_dir / "t").exists()


def test_arrays_source_without_data_is_a_clear_error(runs_dir):
    with pytest.raises(DataError, match="deepscope.train\\(cfg, data=...\\)"):
        deepscope.train({"name": "x", "log": {"dir": str(runs_dir)}})


def test_layer_reg_constraints_hold_after_training(runs_dir, tiny_regression_data):
    cfg = {"name": "constrained", "log": {"dir": str(runs_dir), "progress_bar": "none", "tensorboard": False},
           "model": {"cnn": {"n_init_filters": 4, "globalavgpool": True},
                     "top": {"units": [8, 1], "activation": "relu",
                             "layer_reg": {"kernel_constraint": {"class_name": "max_norm", "config": {"max_value": 0.5}},
                                           "kernel_regularizer": "l2", "bias_constraint": "non_neg"}}},
           "train": {"epochs": 2, "batch_size": 16, "loss": "mse", "optimizer": {"class_name": "adam",
                                                                                 "config": {"lr": 0.05}}}}
    result = deepscope.train(cfg, data=tiny_regression_data)
    state = torch.load(result.run_dir / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    kernels = [v for k, v in state.items() if k.startswith("net.top") and k.endswith("weight") and v.ndim == 2]
    biases = [v for k, v in state.items() if k.startswith("net.top") and k.endswith("bias")]
    assert kernels and biases
    for w in kernels:  # every output unit's weight vector within the max norm (Keras' max_norm)
        assert float(w.norm(dim=1).max()) <= 0.5 + 1e-5
    for b in biases:
        assert float(b.min()) >= 0.0


@pytest.mark.parametrize("tensorboard", [True, False])
def test_step_loss_reaches_tensorboard_every_n_steps_and_is_skipped_without_a_reader(runs_dir, monkeypatch,
                                                                                       tensorboard):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from deepscope.training.system import SupervisedSystem

    calls: list[int] = []
    original = SupervisedSystem.log

    def counting_log(self, name, *args, **kwargs):
        if name == "train_loss_step":
            calls.append(int(self.global_step))
        return original(self, name, *args, **kwargs)

    monkeypatch.setattr(SupervisedSystem, "log", counting_log)
    cfg = small_config(runs_dir, log={"dir": str(runs_dir), "progress_bar": "none", "tensorboard": tensorboard,
                                      "figures": False, "predictions": False, "every_n_steps": 4},
                       train={"epochs": 2, "batch_size": 16, "loss": "cross_entropy", "optimizer": "adam"})
    result = deepscope.train(cfg)
    steps = int(torch.load(result.run_dir / "checkpoints" / "last.ckpt", weights_only=True)["global_step"])
    if not tensorboard:  # metrics.csv keeps one row per epoch: no one reads per-step values
        assert calls == []
        return
    # Lightning hands logged values to the loggers when (step + 1) % every_n_steps == 0
    assert calls == [s for s in range(steps) if (s + 1) % 4 == 0]
    events = EventAccumulator(str(next((result.run_dir / "tensorboard").rglob("events.out.tfevents.*"))))
    events.Reload()
    assert [e.step for e in events.Scalars("train_loss_step")] == calls
