"""The ``supervised`` task family: how a config picks it, its loss, its checks, its outputs and scores.

Numbers are checked against numpy references; messages against the fragments users read. The one
training run (multi-label) is marked slow.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
import yaml

import deepscope
from deepscope.cli import main
from deepscope.config import dump_yaml, load_config
from deepscope.data.spec import ImageSpec, InputSpec
from deepscope.errors import ConfigError, DataError
from deepscope.tasks import family_for, family_name
from deepscope.tasks.supervised import SupervisedFamily
from deepscope.training.task import Task

# --- specs built by hand -----------------------------------------------------------------------------


def _column_spec(k: int = 0, names: tuple[str, ...] = ()) -> InputSpec:
    """8x8 one-channel images; one value per sample (k=0) or (k,) values / labels per sample."""
    return InputSpec(images={"calo": ImageSpec(1, (8, 8))}, target_shape=(k,) if k else (), target_names=names)


def _dense_spec(spatial: tuple[int, ...] = (4, 8, 8)) -> InputSpec:
    """One-channel cubes with one-channel cube targets of the same size (deconvolution)."""
    return InputSpec(images={"cube": ImageSpec(1, spatial)}, target_shape=(1, *spatial))


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


# --- 1. which family a config trains -----------------------------------------------------------------


def test_a_config_without_task_is_supervised():
    cfg = load_config({})
    assert cfg.task is None
    assert family_name(cfg) == "supervised"
    assert isinstance(family_for(cfg), SupervisedFamily)


@pytest.mark.parametrize("loss", ["mse", "bce_with_logits", "cross_entropy", "ssim"])
def test_every_loss_with_a_task_is_claimed_by_supervised(loss):
    assert family_name(load_config({"model": {"top": {"units": [8, 3]}}, "train": {"loss": loss}})) == "supervised"


def test_task_named_explicitly():
    assert family_name(load_config({"task": "supervised"})) == "supervised"


def test_unknown_task_says_did_you_mean():
    with pytest.raises(ConfigError) as info:
        load_config({"task": "supervize"})
    message = str(info.value)
    assert "task: unknown task family 'supervize'" in message
    assert "did you mean 'supervised'" in message


def test_list_tasks_prints_supervised(capsys):
    assert main(["list", "tasks"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("tasks:\n")
    assert "  supervised  " in out
    assert "multi-label" in out


# --- 2. the weighted loss -----------------------------------------------------------------------------


def _random_pair(shape=(5, 3), seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=shape).astype(np.float32), rng.normal(size=shape).astype(np.float32)


@pytest.mark.parametrize("shape", [(5, 3), (4, 1, 3, 6, 6)], ids=["columns", "cubes"])
def test_weighted_loss_is_the_weighted_sum_per_sample(shape):
    cfg = load_config({"train": {"loss": [{"name": "l1", "weight": 2}, {"name": "mse", "weight": 0.5}]}})
    pred, target = _random_pair(shape)
    got = family_for(cfg).loss(cfg)(torch.from_numpy(pred), torch.from_numpy(target))
    diff = (pred - target).reshape(shape[0], -1).astype(np.float64)
    expected = 2.0 * np.abs(diff).mean(1) + 0.5 * (diff ** 2).mean(1)
    assert got.shape == (shape[0],)
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-5)


def test_weighted_loss_term_options_are_bound():
    cfg = load_config({"train": {"loss": [{"name": "mse", "weight": 1.0},
                                          {"name": "huber", "weight": 3.0, "config": {"delta": 0.5}}]}})
    pred, target = _random_pair((6, 4), seed=1)
    got = family_for(cfg).loss(cfg)(torch.from_numpy(pred), torch.from_numpy(target)).numpy()
    d = np.abs(pred - target).astype(np.float64)
    huber = np.where(d <= 0.5, 0.5 * d ** 2, 0.5 * (d - 0.25))  # delta (|d| - delta / 2)
    np.testing.assert_allclose(got, (d ** 2).mean(1) + 3.0 * huber.mean(1), rtol=1e-5)


def test_single_loss_is_that_loss_per_sample():
    cfg = load_config({"train": {"loss": "mse"}})
    pred, target = _random_pair((5, 3), seed=2)
    got = family_for(cfg).loss(cfg)(torch.from_numpy(pred), torch.from_numpy(target)).numpy()
    np.testing.assert_allclose(got, ((pred - target).astype(np.float64) ** 2).mean(1), rtol=1e-5)


def test_weighted_loss_label_names_the_terms():
    cfg = load_config({"train": {"loss": [{"name": "l1", "weight": 2}, {"name": "mse", "weight": 0.5}]}})
    assert cfg.train.loss_label == "2*mae + 0.5*mse"
    assert cfg.train.loss_name == "mae"
    assert [(c.class_name, w) for c, w in cfg.train.loss_terms] == [("mae", 2.0), ("mse", 0.5)]


def test_weighted_loss_of_mixed_families_is_refused():
    with pytest.raises(ConfigError) as info:
        load_config({"train": {"loss": [{"name": "l1"}, {"name": "bce"}]}})
    message = str(info.value)
    assert "loss: the terms of a weighted sum must expect the same output" in message
    assert "mae (regression on values), bce (binary on probs)" in message


def test_weighted_loss_term_with_an_unknown_option_names_its_index(tmp_path, capsys):
    raw = {"train": {"loss": [{"name": "l1"}, {"name": "huber", "config": {"deltaa": 0.5}}]}}
    cfg = load_config(raw)  # option names are the loss function's, checked when it is built
    with pytest.raises(ConfigError) as info:
        family_for(cfg).loss(cfg)
    assert "train.loss[1].config.deltaa: unknown option" in str(info.value)
    assert "did you mean 'delta'" in str(info.value)
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(raw))
    assert main(["validate", str(path)]) == 2  # and validate says so before any training
    err = capsys.readouterr().err
    assert "train.loss[1].config.deltaa" in err and "Traceback" not in err


def test_weighted_loss_survives_the_resolved_config_round_trip(tmp_path):
    cfg = load_config({"train": {"loss": [{"name": "l1", "weight": 2}, {"name": "mse", "weight": 0.5,
                                                                       "config": {}}]}})
    text = dump_yaml(cfg)
    assert yaml.safe_load(text)["train"]["loss"] == [{"name": "mae", "weight": 2.0, "config": {}},
                                                     {"name": "mse", "weight": 0.5, "config": {}}]
    path = tmp_path / "resolved.yaml"
    path.write_text(text)
    again = load_config(path)
    assert isinstance(again.train.loss, list)
    assert again.train.loss == cfg.train.loss
    assert again.train.loss_label == "2*mae + 0.5*mse"


# --- 3. multi-label: thresholds per label --------------------------------------------------------------


def test_predictions_threshold_each_label_with_its_own_threshold():
    thresholds = [0.3, 0.5, 0.7]
    task = Task("bce_with_logits", _column_spec(3), thresholds=thresholds)
    logits = np.array([[-0.5, 0.0, 0.9],      # p = 0.378, 0.5, 0.711: every label at or above
                       [-1.0, -0.1, 0.8],     # 0.269 < 0.3, 0.475 < 0.5, 0.690 < 0.7
                       [2.0, 3.0, -3.0],
                       [-0.9, 0.2, 0.85]], dtype=np.float32)
    out = task.predictions(logits)
    probs = _sigmoid(logits.astype(np.float64))
    np.testing.assert_allclose(out["probabilities"], probs, rtol=1e-6)
    np.testing.assert_array_equal(out["predictions"], (probs >= np.array(thresholds)).astype(np.int64))
    np.testing.assert_array_equal(out["predictions"][:2], [[1, 1, 1], [0, 0, 0]])
    assert out["predictions"].dtype == np.int64


def test_predictions_of_probabilities_threshold_them_directly():
    task = Task("bce", _column_spec(2), thresholds=[0.2, 0.9])
    probs = np.array([[0.25, 0.85], [0.1, 0.95]], dtype=np.float32)
    np.testing.assert_array_equal(task.predictions(probs)["predictions"], [[1, 0], [0, 1]])


def test_one_threshold_applies_to_every_label():
    task = Task("bce_with_logits", _column_spec(3), thresholds=0.8)
    logits = np.array([[1.0, 1.5, 2.0]], dtype=np.float32)  # p = 0.731, 0.818, 0.881
    np.testing.assert_array_equal(task.predictions(logits)["predictions"], [[0, 1, 1]])


def test_threshold_mapping_fills_unnamed_labels_with_one_half():
    cfg = load_config({"train": {"loss": "bce_with_logits", "thresholds": {"hits_top": 0.3}}})
    spec = _column_spec(3, names=("hits_top", "hits_side", "noise"))
    task = family_for(cfg).outputs(cfg, spec, SimpleNamespace(target_stats=None))
    assert task.thresholds == [0.3, 0.5, 0.5]


def test_thresholds_of_the_wrong_length_are_refused_by_the_data_check():
    cfg = load_config({"train": {"loss": "bce_with_logits", "thresholds": [0.3, 0.5]}})
    with pytest.raises(ConfigError) as info:
        family_for(cfg).check_data(cfg, _column_spec(3))
    assert str(info.value) == "train.thresholds has 2 entries but the targets have 3 labels (0, 1, 2)"


def test_thresholds_for_a_label_the_data_lacks_say_did_you_mean():
    cfg = load_config({"train": {"loss": "bce_with_logits", "thresholds": {"hits_tpo": 0.3}}})
    with pytest.raises(ConfigError) as info:
        family_for(cfg).check_data(cfg, _column_spec(2, names=("hits_top", "noise")))
    message = str(info.value)
    assert "train.thresholds: no label 'hits_tpo'" in message
    assert "did you mean 'hits_top'" in message and "(labels: hits_top, noise)" in message


def test_thresholds_of_the_wrong_length_fail_validate_for_data_that_describes_itself(tmp_path, capsys):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "d.npz", **{"images/calo": rng.normal(size=(20, 8, 8, 1)).astype(np.float32),
                                    "targets": (rng.random((20, 3)) > 0.5).astype(np.float32)})
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({
        "data": {"source": "npz", "path": str(tmp_path / "d.npz")},
        "model": {"cnn": {"n_init_filters": 4}, "top": {"units": [8, 3]}},
        "train": {"loss": "bce_with_logits", "thresholds": [0.3, 0.5]},
    }))
    assert main(["validate", str(path)]) == 2
    assert "train.thresholds has 2 entries but the targets have 3 labels" in capsys.readouterr().err


@pytest.mark.parametrize("loss, kind", [("mse", "regression"), ("cross_entropy", "multiclass")])
def test_thresholds_with_a_loss_that_has_no_threshold_are_refused(loss, kind):
    with pytest.raises(ConfigError) as info:
        load_config({"model": {"top": {"units": [8, 3]}}, "train": {"loss": loss, "thresholds": [0.3, 0.5]}})
    message = str(info.value)
    assert "train.thresholds applies to binary and multi-label outputs" in message
    assert f"train.loss '{loss}' is a {kind} loss: remove train.thresholds" in message


@pytest.mark.parametrize("value", [1.5, 0.0, [0.3, 1.0], {"a": -0.1}])
def test_thresholds_outside_zero_one_are_refused(value):
    with pytest.raises(ConfigError) as info:
        load_config({"train": {"loss": "bce_with_logits", "thresholds": value}})
    assert "a threshold is a probability in (0, 1)" in str(info.value)


def _multilabel_data(seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)

    def make(n):
        x = rng.normal(size=(n, 8, 8, 1)).astype(np.float32)  # channels last
        y = np.stack([x[:, :4].mean((1, 2, 3)) > 0, x[:, :, :4].mean((1, 2, 3)) > 0, x.mean((1, 2, 3)) > 0],
                     axis=1).astype(np.float32)  # (N, 3) float 0/1
        return {"images": {"calo": x}, "targets": y}

    return {"train": make(64), "val": make(16), "test": make(16)}


def _multilabel_config(runs, **train):
    return {
        "name": "multilabel", "log": {"dir": str(runs), "progress_bar": "none", "tensorboard": False},
        "model": {"cnn": {"n_init_filters": 4, "activation": "relu"}, "top": {"units": [8, 3], "activation": "relu"}},
        "train": {"epochs": 2, "batch_size": 16, "loss": "bce_with_logits", "optimizer": "adam",
                  "metrics": ["precision", "recall", "f1", "accuracy"], "thresholds": [0.3, 0.5, 0.7], **train},
    }


@pytest.fixture(scope="module")
def multilabel_run(tmp_path_factory):
    runs = tmp_path_factory.mktemp("multilabel") / "runs"
    return deepscope.train(_multilabel_config(runs), data=_multilabel_data())


def _f1_per_label(pred: np.ndarray, target: np.ndarray) -> np.ndarray:
    p, t = pred >= 0.5, target >= 0.5
    tp, fp, fn = (p & t).sum(0), (p & ~t).sum(0), (~p & t).sum(0)
    den = 2 * tp + fp + fn
    return np.where(den > 0, 2 * tp / np.maximum(den, 1), 0.0)


@pytest.mark.slow
def test_multilabel_run_logs_each_metric_per_label(multilabel_run):
    for split in ("val", "test"):
        metrics = multilabel_run.metrics[split]
        for name in ("precision", "recall", "f1"):
            per_label = [metrics[f"{name}_{k}"] for k in range(3)]
            assert metrics[name] == pytest.approx(np.mean(per_label))
        assert "accuracy" in metrics and "loss" in metrics
        assert not any(k.startswith("accuracy_") for k in metrics)


@pytest.mark.slow
def test_multilabel_run_thresholds_and_scores_its_predictions(multilabel_run):
    saved = np.load(multilabel_run.run_dir / "predictions" / "test.npz")
    probs, preds, targets = saved["probabilities"], saved["predictions"], saved["targets"]
    assert probs.shape == preds.shape == targets.shape == (16, 3)
    np.testing.assert_array_equal(preds, (probs >= np.array([0.3, 0.5, 0.7], dtype=probs.dtype)).astype(np.int64))
    f1 = _f1_per_label(preds, targets)
    test = multilabel_run.metrics["test"]
    np.testing.assert_allclose([test[f"f1_{k}"] for k in range(3)], f1, rtol=1e-12)


@pytest.mark.slow
def test_multilabel_thresholds_of_the_wrong_length_stop_training(tmp_path):
    runs = tmp_path / "runs"
    with pytest.raises(ConfigError) as info:
        deepscope.train(_multilabel_config(runs, thresholds=[0.3, 0.5]), data=_multilabel_data())
    assert "train.thresholds has 2 entries but the targets have 3 labels (0, 1, 2)" in str(info.value)
    assert not (runs / "multilabel" / "config.yaml").exists()  # refused before the run folder was filled


# --- 4. per-column metrics ------------------------------------------------------------------------------


def _two_columns(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    target = rng.uniform(1.0, 5.0, size=(40, 2))
    pred = target * rng.uniform(0.8, 1.2, size=(40, 2))  # about half within 10%
    return pred, target


def test_per_column_metrics_are_named_by_the_columns():
    pred, target = _two_columns()
    task = Task("mse", _column_spec(2, names=("flux", "fwhm_x")), ["mae_per_column", "within_10_percent"])
    scores = task.score({"predictions": pred}, target, None)
    mae = np.abs(pred - target).mean(0)
    within = (np.abs(pred - target) <= 0.1 * np.abs(target)).mean(0)
    assert set(scores) == {"mae_per_column", "mae_flux", "mae_fwhm_x", "within_10_percent",
                           "within_10_percent_flux", "within_10_percent_fwhm_x"}
    assert scores["mae_flux"] == pytest.approx(mae[0])
    assert scores["mae_fwhm_x"] == pytest.approx(mae[1])
    assert scores["mae_per_column"] == pytest.approx(mae.mean())
    assert scores["within_10_percent_flux"] == pytest.approx(within[0])
    assert scores["within_10_percent_fwhm_x"] == pytest.approx(within[1])
    assert scores["within_10_percent"] == pytest.approx(within.mean())
    assert 0.0 < within.min() and within.max() < 1.0  # the reference is not trivially 0 or 1


def test_per_column_metrics_are_weighted_by_the_sample_weights():
    pred, target = _two_columns(seed=1)
    weights = np.random.default_rng(2).uniform(0.1, 2.0, size=len(pred))
    task = Task("mse", _column_spec(2, names=("flux", "fwhm_x")), ["mae_per_column", "within_10_percent"])
    scores = task.score({"predictions": pred}, target, weights)
    mae = np.average(np.abs(pred - target), axis=0, weights=weights)
    within = np.average(np.abs(pred - target) <= 0.1 * np.abs(target), axis=0, weights=weights)
    assert [scores["mae_flux"], scores["mae_fwhm_x"]] == pytest.approx(list(mae))
    assert [scores["within_10_percent_flux"], scores["within_10_percent_fwhm_x"]] == pytest.approx(list(within))


def test_per_column_metrics_without_names_number_the_columns():
    pred, target = _two_columns()
    scores = Task("mse", _column_spec(2), ["mae_per_column"]).score({"predictions": pred}, target, None)
    assert set(scores) == {"mae_per_column", "mae_0", "mae_1"}
    assert scores["mae_1"] == pytest.approx(np.abs(pred - target).mean(0)[1])


# --- 5. dense targets and the checks against the data ---------------------------------------------------


def test_ssim_loss_needs_image_targets():
    cfg = load_config({"train": {"loss": "ssim", "metrics": ["mae"]}})
    with pytest.raises(ConfigError) as info:
        SupervisedFamily().check_data(cfg, _column_spec())
    assert str(info.value) == ("train.loss 'ssim' compares images but the targets have one value per sample: it "
                               "needs targets with the inputs' spatial size (C, *spatial)")


def test_ssim_term_of_a_weighted_sum_needs_image_targets():
    cfg = load_config({"train": {"loss": [{"name": "l1"}, {"name": "ssim", "weight": 0.5}], "metrics": ["mae"]}})
    with pytest.raises(ConfigError) as info:
        SupervisedFamily().check_data(cfg, _column_spec(3))
    assert "train.loss 'ssim' compares images but the targets have per-sample shape (3,)" in str(info.value)


def test_psnr_metric_needs_image_targets():
    cfg = load_config({"train": {"loss": "mse", "metrics": ["psnr", "mae"]}})
    with pytest.raises(ConfigError) as info:
        SupervisedFamily().check_data(cfg, _column_spec(3))
    assert str(info.value) == "train.metrics: psnr compare images but the targets have per-sample shape (3,)"


def test_image_loss_and_metrics_on_column_targets_are_listed_together():
    cfg = load_config({"train": {"loss": "ssim", "metrics": ["psnr", "ssim"]}})
    with pytest.raises(ConfigError) as info:
        SupervisedFamily().check_data(cfg, _column_spec())
    assert len(info.value.problems) == 2
    assert info.value.problems[0].startswith("train.loss 'ssim' compares images")
    assert info.value.problems[1] == ("train.metrics: psnr, ssim compare images but the targets have one value "
                                      "per sample")


def test_per_column_metrics_need_column_targets():
    cfg = load_config({"model": {"architecture": "unet", "dmode": "deconvolver"},
                       "train": {"loss": "mse", "metrics": ["psnr", "mae_per_column"]}})
    with pytest.raises(ConfigError) as info:
        SupervisedFamily().check_data(cfg, _dense_spec())
    assert "train.metrics: mae_per_column are per target column, but the targets are images of shape (1, 4, 8, 8)" \
        in str(info.value)


@pytest.mark.parametrize("spatial", [(8, 8), (4, 8, 8)], ids=["2d", "3d"])
def test_image_loss_and_metrics_fit_image_targets(spatial):
    cfg = load_config({"model": {"architecture": "unet", "dmode": "deconvolver"},
                       "train": {"loss": [{"name": "l1"}, {"name": "ssim"}], "metrics": ["psnr", "ssim", "mae"]}})
    SupervisedFamily().check_data(cfg, _dense_spec(spatial))  # no error


def test_classifier_with_a_regression_loss_is_refused_at_load():
    with pytest.raises(ConfigError) as info:
        load_config({"model": {"architecture": "unet", "dmode": "classifier"}, "train": {"loss": "mse"}})
    assert "model.dmode 'classifier' contradicts train.loss 'mse', a regression loss" in str(info.value)


def test_deconvolver_with_a_multiclass_loss_is_refused_at_load_and_reports_only_that():
    with pytest.raises(ConfigError) as info:
        load_config({"model": {"architecture": "unet", "dmode": "deconvolver"}, "train": {"loss": "cross_entropy"}})
    assert info.value.problems == [
        "model.dmode 'deconvolver' contradicts train.loss 'cross_entropy', a multi-class loss: image outputs take a "
        "regression loss, or a binary one (bce_with_logits) for 0/1 masks"]


def test_binary_masks_train_a_deconvolver_with_a_sigmoid_per_pixel(tmp_path):
    # segmentation: 0/1 masks of the inputs' size, bce_with_logits, a threshold per pixel
    rng = np.random.default_rng(0)
    images = rng.normal(size=(24, 1, 12, 12)).astype(np.float32)
    masks = (images > 0.5).astype(np.float32)
    data = {"train": {"images": {"x": images[:16]}, "targets": masks[:16]},
            "val": {"images": {"x": images[16:]}, "targets": masks[16:]}}
    cfg = {"name": "seg", "log": {"dir": str(tmp_path), "progress_bar": "none", "tensorboard": False, "figures": False},
           "data": {"source": "arrays", "channels": "first"},
           "model": {"architecture": "unet", "dmode": "deconvolver", "block_sizes": [4, 8], "depths": [1, 1]},
           "train": {"epochs": 1, "batch_size": 8, "loss": "bce_with_logits", "metrics": ["accuracy"],
                     "thresholds": 0.4}}
    result = deepscope.train(cfg, data=data)
    saved = np.load(result.run_dir / "predictions" / "val.npz")
    assert saved["probabilities"].shape == saved["predictions"].shape == (8, 1, 12, 12)
    np.testing.assert_array_equal(saved["predictions"], (saved["probabilities"] >= 0.4).astype(np.int64))


def test_ssim_loss_with_a_regressor_is_refused_at_load():
    with pytest.raises(ConfigError) as info:
        load_config({"model": {"architecture": "unet", "dmode": "regressor"}, "train": {"loss": "ssim"}})
    assert "train.loss 'ssim' compares images but model.dmode is 'regressor'" in str(info.value)


@pytest.mark.parametrize("raw, expected", [
    ({"model": {"architecture": "unet", "dmode": "deconvolver"}}, ["psnr", "ssim"]),
    ({"train": {"loss": [{"name": "l1"}, {"name": "ssim"}]}}, ["psnr", "ssim"]),
    ({"model": {"architecture": "unet", "dmode": "regressor"}}, []),
    ({"train": {"loss": "mse"}}, []),
    ({"model": {"top": {"units": [8, 3]}}, "train": {"loss": "cross_entropy"}}, []),
], ids=["deconvolver", "ssim_loss", "regressor", "mse", "cross_entropy"])
def test_default_metrics_are_filled_for_image_targets(raw, expected):
    assert load_config(raw).train.metrics == expected


def test_given_metrics_are_kept_for_a_deconvolver():
    cfg = load_config({"model": {"architecture": "unet", "dmode": "deconvolver"}, "train": {"metrics": ["mae"]}})
    assert cfg.train.metrics == ["mae"]


def test_default_metrics_can_be_monitored():
    cfg = load_config({"model": {"architecture": "unet", "dmode": "deconvolver"}, "train": {"monitor": "val_psnr"}})
    assert cfg.train.monitor == "val_psnr"


# --- 7. windows: the centre crop, the spec of crops, whole cubes through a net trained on crops ---------


def test_center_crop_takes_the_centre_window_of_images_and_image_targets():
    from deepscope.data.windows import CenterCrop

    rng = np.random.default_rng(0)
    images = rng.normal(size=(2, 1, 6, 9, 10)).astype(np.float32)
    targets = rng.normal(size=(2, 1, 6, 9, 10)).astype(np.float32)
    weights = np.ones(2, np.float32)
    out = CenterCrop([4, 5, 4])({"images": {"cube": images}, "targets": targets, "sample_weights": weights})
    # start = (n - c) // 2 per axis: 1, 2, 3
    np.testing.assert_array_equal(out["images"]["cube"], images[:, :, 1:5, 2:7, 3:7])
    np.testing.assert_array_equal(out["targets"], targets[:, :, 1:5, 2:7, 3:7])
    assert out["sample_weights"] is weights


def test_center_crop_pads_samples_smaller_than_the_crop_and_centres_them():
    from deepscope.data.windows import CenterCrop

    images = np.arange(2 * 1 * 3 * 10, dtype=np.float32).reshape(2, 1, 3, 10) + 1.0
    out = CenterCrop((6, 4))({"images": {"img": images}, "targets": np.zeros(2, np.float32)})["images"]["img"]
    expected = np.zeros((2, 1, 6, 4), np.float32)
    expected[:, :, 1:4, :] = images[:, :, :, 3:7]  # 3 rows padded (1 before, 2 after); columns 3:7 of 10
    np.testing.assert_array_equal(out, expected)


def test_center_crop_leaves_column_targets_alone():
    from deepscope.data.windows import CenterCrop

    targets = np.arange(6, dtype=np.float32).reshape(2, 3)
    out = CenterCrop((4, 4))({"images": {"img": np.zeros((2, 1, 8, 8), np.float32)}, "targets": targets})
    assert out["targets"] is targets
    assert out["images"]["img"].shape == (2, 1, 4, 4)


def test_cropped_spec_takes_the_crop_size_for_images_and_image_targets():
    from deepscope.data.windows import cropped_spec

    spec = cropped_spec(_dense_spec((16, 32, 32)), [8, 16, 16])
    assert spec.images["cube"].spatial == (8, 16, 16)
    assert spec.target_shape == (1, 8, 16, 16)
    assert spec.dense
    columns = cropped_spec(InputSpec(images={"cube": ImageSpec(1, (16, 32, 32))}, target_shape=(2,)), [8, 16, 16])
    assert columns.target_shape == (2,)
    assert cropped_spec(_dense_spec(), None) == _dense_spec()


def test_training_spec_of_a_crop_with_the_wrong_number_of_axes_names_the_key():
    from deepscope.data.prepare import training_spec

    cfg = load_config({"data": {"augment": {"crop": [8, 8]}}})
    with pytest.raises(ConfigError) as info:
        training_spec(cfg, _dense_spec((16, 32, 32)))
    assert str(info.value) == ("data.augment.crop [8, 8] has 2 entries but the images are 3D (16, 32, 32): give one "
                               "size per spatial axis")


def test_training_crop_of_a_fits_deconvolution_is_its_crop(tmp_path):
    from deepscope.data.prepare import training_crop, training_spec

    cfg = load_config({"data": {"source": "fits_dirs", "path": str(tmp_path), "crop": [8, 16, 16]},
                       "model": {"architecture": "unet", "dmode": "deconvolver"}})
    assert training_crop(cfg) == [8, 16, 16]
    assert training_spec(cfg, _dense_spec((16, 32, 32))).images["cube"].spatial == (8, 16, 16)
    both = load_config({"data": {"source": "fits_dirs", "path": str(tmp_path), "crop": [8, 16, 16],
                                 "augment": {"crop": [4, 8, 8]}}, "model": {"architecture": "unet"}})
    assert training_crop(both) == [4, 8, 8]  # data.augment.crop wins


def _small_unet(spatial_dims: int) -> torch.nn.Module:
    from deepscope.models.build import build_model

    cfg = load_config({"model": {"architecture": "unet", "dmode": "deconvolver", "block_sizes": [4, 8],
                                 "depths": [1, 1]}})
    crop = (8, 16, 16)[-spatial_dims:]
    torch.manual_seed(0)
    return build_model(cfg.model, _dense_spec(crop), "mse").eval()


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_forward_whole_predicts_whole_images_with_a_net_trained_on_crops(spatial_dims):
    from deepscope.evaluation.predict import forward_whole

    crop, whole = (8, 16, 16)[-spatial_dims:], (16, 32, 32)[-spatial_dims:]
    net = _small_unet(spatial_dims)
    x = torch.randn(2, 1, *whole)
    with torch.inference_mode():
        out = forward_whole(net, _dense_spec(crop), {"images": {"cube": x}})
        same_size = torch.randn(2, 1, *crop)
        direct = forward_whole(net, _dense_spec(crop), {"images": {"cube": same_size}})
        np.testing.assert_array_equal(direct.numpy(), net(images={"cube": same_size}).numpy())
    assert tuple(out.shape) == (2, 1, *whole)
    assert torch.isfinite(out).all()


def test_forward_whole_refuses_larger_images_for_column_outputs():
    from deepscope.evaluation.predict import forward_whole

    spec = InputSpec(images={"cube": ImageSpec(1, (8, 8))}, target_shape=(2,))
    with pytest.raises(DataError) as info:
        forward_whole(torch.nn.Identity(), spec, {"images": {"cube": torch.zeros(1, 1, 16, 16)}})
    assert "do not match the (8, 8) the model was trained on" in str(info.value)


def test_dense_outputs_keep_the_whole_cube_shape_for_a_net_trained_on_crops():
    from deepscope.data.windows import cropped_spec

    task = Task("mse", cropped_spec(_dense_spec((16, 32, 32)), [8, 16, 16]))
    out = torch.randn(2, 1, 16, 32, 32)
    shaped = task.shape_output(out, torch.full((2,), 2.0))
    assert tuple(shaped.shape) == (2, 1, 16, 32, 32)
    torch.testing.assert_close(shaped, out * 2.0)


def test_epoch_metrics_of_image_targets_equal_the_whole_split_scores(tmp_path):
    # image outputs are scored per sample during the epoch (not kept until it ends): the logged
    # val_<metric> of the last epoch equals the final scores of the same weights on the whole split
    import csv

    rng = np.random.default_rng(1)
    images = rng.normal(size=(20, 1, 10, 10)).astype(np.float32)
    targets = np.clip(images, 0, None) * 0.5
    targets[3] = 0.0  # an all-zero target: PSNR skips it, in both ways of scoring
    data = {"train": {"images": {"x": images[:12]}, "targets": targets[:12]},
            "val": {"images": {"x": images[12:]}, "targets": targets[12:]}}
    cfg = {"name": "dense", "log": {"dir": str(tmp_path), "progress_bar": "none", "tensorboard": False,
                                    "figures": False},
           "data": {"source": "arrays", "channels": "first"},
           "model": {"architecture": "unet", "dmode": "deconvolver", "block_sizes": [4, 8], "depths": [1, 1]},
           "train": {"epochs": 2, "batch_size": 3, "loss": "mse", "metrics": ["psnr", "ssim", "mae"],
                     "restore_best_weights": False}}
    result = deepscope.train(cfg, data=data)
    with (result.run_dir / "metrics.csv").open(newline="") as f:
        last = [r for r in csv.DictReader(f) if r.get("val_psnr")][-1]
    for name in ("psnr", "ssim", "mae", "loss"):
        assert float(last[f"val_{name}"]) == pytest.approx(result.metrics["val"][name], rel=1e-5), name
