"""``softmax_multi_hot``: multi-label classification with one softmax over the labels (Mahajan et al.
2018). The loss against a numpy reference, the probabilities and thresholds ``Task`` derives from it,
the config and data checks, and one short training run on an ``npz`` file.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import yaml
from scipy.special import log_softmax, softmax

import deepscope
from deepscope.cli import main
from deepscope.components import LOSSES
from deepscope.config import load_config
from deepscope.data.spec import ImageSpec, InputSpec
from deepscope.errors import ConfigError
from deepscope.tasks import family_for
from deepscope.training.task import Task, softmax_default_threshold

RNG = np.random.default_rng(0)


def _reference(z: np.ndarray, y: np.ndarray) -> np.ndarray:
    """-sum_j (y_j / sum_k y_k) log softmax(z)_j, 0 for an all-zero target."""
    total = y.sum(-1, keepdims=True)
    share = np.divide(y, total, out=np.zeros_like(y), where=total > 0)
    return -(share * log_softmax(z, axis=-1)).sum(-1)


def _spec(k: int = 0, names: tuple[str, ...] = ()) -> InputSpec:
    """8x8 one-channel images; one value per sample (k=0) or k label columns."""
    return InputSpec(images={"calo": ImageSpec(1, (8, 8))}, target_shape=(k,) if k else (), target_names=names)


# --- the loss ---------------------------------------------------------------------------------------


def test_registered_with_softmax_logits_output_and_binary_task():
    assert LOSSES.canonical("softmax_multilabel") == "softmax_multi_hot"
    assert LOSSES.entry("softmax_multi_hot").meta == {"output": "softmax_logits", "task": "binary"}


def test_matches_the_numpy_reference_including_an_all_zero_target():
    z = RNG.normal(scale=3.0, size=(7, 5))
    y = (RNG.random((7, 5)) > 0.5).astype(np.float64)
    y[0] = 0.0  # no label
    y[1] = [1, 0, 0, 0, 0]  # one label: plain softmax cross entropy
    y[2] = 1.0  # every label
    out = LOSSES.get("softmax_multi_hot")(torch.tensor(z), torch.tensor(y))
    assert out.shape == (7,)
    np.testing.assert_allclose(out.numpy(), _reference(z, y), rtol=1e-12, atol=1e-15)
    assert out[0] == 0.0
    assert float(out[1]) == pytest.approx(-log_softmax(z[1])[0], rel=1e-12)


def test_soft_and_integer_targets_are_normalised_the_same_way():
    z = RNG.normal(size=(4, 3))
    soft = RNG.random((4, 3))
    fn = LOSSES.get("softmax_multi_hot")
    np.testing.assert_allclose(fn(torch.tensor(z), torch.tensor(soft)).numpy(), _reference(z, soft), rtol=1e-12)
    hot = np.array([[1, 1, 0], [0, 0, 1], [0, 0, 0], [1, 1, 1]])
    np.testing.assert_allclose(fn(torch.tensor(z), torch.tensor(hot)).numpy(), _reference(z, hot.astype(float)),
                               rtol=1e-12)


def test_gradient_is_finite_for_large_logits_and_zero_for_an_all_zero_target():
    z = torch.tensor(RNG.normal(scale=500.0, size=(4, 6)), requires_grad=True)
    y = torch.tensor([[1, 0, 1, 0, 0, 0], [0, 0, 0, 0, 0, 0], [1, 1, 1, 1, 1, 1], [0, 0, 0, 0, 0, 1]],
                     dtype=torch.float64)
    out = LOSSES.get("softmax_multi_hot")(z, y)
    assert torch.isfinite(out).all()
    out.sum().backward()
    assert torch.isfinite(z.grad).all()
    assert (z.grad[1] == 0).all()
    # d/dz of the loss is softmax(z) - y / sum(y)
    expected = softmax(z.detach().numpy()[0]) - y.numpy()[0] / 2
    np.testing.assert_allclose(z.grad[0].numpy(), expected, atol=1e-12)


# --- probabilities and thresholds -------------------------------------------------------------------


def test_task_probabilities_are_a_softmax_over_the_labels():
    task = Task("softmax_multi_hot", _spec(4), thresholds=[0.1, 0.2, 0.3, 0.4])
    logits = RNG.normal(size=(6, 4)).astype(np.float32)
    out = task.predictions(logits)
    np.testing.assert_allclose(out["probabilities"], softmax(logits.astype(np.float64), axis=-1), rtol=1e-5)
    np.testing.assert_allclose(out["probabilities"].sum(-1), 1.0, rtol=1e-6)
    expected = (out["probabilities"] >= np.array([0.1, 0.2, 0.3, 0.4], dtype=np.float32)).astype(np.int64)
    np.testing.assert_array_equal(out["predictions"], expected)
    assert out["predictions"].dtype == np.int64


def test_predictions_at_one_threshold():
    task = Task("softmax_multi_hot", _spec(3), thresholds=0.3)
    logits = np.log(np.array([[0.45, 0.45, 0.10], [0.8, 0.15, 0.05], [0.2, 0.35, 0.45]]))
    np.testing.assert_array_equal(task.predictions(logits)["predictions"], [[1, 1, 0], [1, 0, 0], [0, 1, 1]])


def test_the_default_threshold_is_one_over_twice_the_number_of_labels():
    assert softmax_default_threshold(22) == pytest.approx(1 / 44)
    task = Task("softmax_multi_hot", _spec(5))  # train.thresholds left at 0.5
    assert task.thresholds == pytest.approx(0.1)
    # a perfect fit of a sample with m labels (1/m each) is called right for every m, all labels included
    for m in range(1, 6):
        probs = np.r_[np.full(m, 1.0 / m), np.full(5 - m, 1e-4)]
        preds = task.predictions(np.log(probs)[None])["predictions"][0]
        np.testing.assert_array_equal(preds, np.r_[np.ones(m), np.zeros(5 - m)])
    # the sigmoid losses keep 0.5
    assert Task("bce_with_logits", _spec(5)).thresholds == 0.5


@pytest.mark.parametrize("thresholds, expected", [(0.5, 1 / 8), ("auto", 1 / 8), (0.3, 0.3),
                                                  ([0.5, 0.5, 0.5, 0.5], [0.5] * 4),
                                                  ({"a": 0.2, "b": 0.3, "c": 0.4, "d": 0.5}, [0.2, 0.3, 0.4, 0.5])])
def test_thresholds_from_the_config(thresholds, expected):
    cfg = load_config({"train": {"loss": "softmax_multi_hot", "thresholds": thresholds}})
    spec = _spec(4, names=("a", "b", "c", "d"))
    family_for(cfg).check_data(cfg, spec)
    task = family_for(cfg).outputs(cfg, spec, type("S", (), {"target_stats": None})())
    assert task.thresholds == pytest.approx(expected)


# --- checks -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("k, found", [(0, "one value per sample"), (1, "per-sample shape (1,)")])
def test_a_single_label_target_is_refused_naming_train_loss(k, found):
    cfg = load_config({"train": {"loss": "softmax_multilabel"}})
    with pytest.raises(ConfigError) as info:
        family_for(cfg).check_data(cfg, _spec(k))
    assert str(info.value) == (
        "train.loss 'softmax_multi_hot' spreads one softmax over the labels and needs multi-hot targets (N, K) "
        f"with K >= 2 labels; found {found}: for one yes/no per sample use bce_with_logits")


def test_a_threshold_mapping_must_name_every_label():
    cfg = load_config({"train": {"loss": "softmax_multi_hot", "thresholds": {"a": 0.2}}})
    with pytest.raises(ConfigError) as info:
        family_for(cfg).check_data(cfg, _spec(3, names=("a", "b", "c")))
    message = str(info.value)
    assert "train.thresholds: with train.loss 'softmax_multi_hot' a mapping must name every label" in message
    assert "missing: b, c" in message


@pytest.mark.parametrize("act", ["softmax", "sigmoid"])
def test_a_final_activation_is_refused(act):
    with pytest.raises(ConfigError) as info:
        load_config({"model": {"top": {"units": [8, 3], "final_activation": act}},
                     "train": {"loss": "softmax_multi_hot"}})
    assert (f"model.top.final_activation '{act}' contradicts train.loss 'softmax_multi_hot', which expects logits "
            "and applies the softmax over the labels itself: set final_activation: null") in str(info.value)


def test_validate_refuses_single_label_npz_targets(tmp_path, capsys):
    np.savez(tmp_path / "d.npz", **{"images/calo": RNG.normal(size=(20, 8, 8, 1)).astype(np.float32),
                                    "targets": (RNG.random(20) > 0.5).astype(np.float32)})
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({
        "data": {"source": "npz", "path": str(tmp_path / "d.npz")},
        "model": {"cnn": {"n_init_filters": 4}, "top": {"units": [8, 1]}},
        "train": {"loss": "softmax_multi_hot"},
    }))
    assert main(["validate", str(path)]) == 2
    assert "train.loss 'softmax_multi_hot' spreads one softmax over the labels" in capsys.readouterr().err


# --- a short run ------------------------------------------------------------------------------------


def _write_multi_hot_npz(path, k: int = 4) -> None:
    """Label j is on where quadrant j of an 8x8 image has a positive mean; some samples have none."""
    rng = np.random.default_rng(1)
    arrays = {}
    for split, n in (("train", 96), ("val", 48), ("test", 32)):
        x = rng.normal(size=(n, 8, 8, 1)).astype(np.float32)  # channels last
        quadrants = [x[:, :4, :4], x[:, :4, 4:], x[:, 4:, :4], x[:, 4:, 4:]][:k]
        y = np.stack([q.mean((1, 2, 3)) > 0.1 for q in quadrants], axis=1).astype(np.float32)  # (N, K)
        arrays[f"{split}/images/calo"], arrays[f"{split}/targets"] = x, y
    np.savez(path, **arrays)


@pytest.mark.slow
def test_a_run_with_auto_thresholds_writes_scores_and_thresholds(tmp_path):
    _write_multi_hot_npz(tmp_path / "d.npz")
    cfg = {"name": "softmax_ml", "data": {"source": "npz", "path": str(tmp_path / "d.npz")},
           "log": {"dir": str(tmp_path / "runs"), "progress_bar": "none", "tensorboard": False, "figures": False},
           "model": {"cnn": {"n_init_filters": 4}, "top": {"units": [8, 4]}},
           "train": {"epochs": 2, "batch_size": 32, "loss": "softmax_multi_hot", "optimizer": "adam",
                     "thresholds": "auto", "metrics": ["f1", "exact_match", "hamming_loss"]}}
    result = deepscope.train(cfg)
    final = json.loads((result.run_dir / "final_metrics.json").read_text())
    for split in ("val", "test"):
        assert {"loss", "f1", "exact_match", "hamming_loss", "f1_0", "f1_3"} <= set(final[split])
        assert np.isfinite(final[split]["loss"])
    record = json.loads((result.run_dir / "thresholds.json").read_text())
    assert len(record["thresholds"]) == 4 and record["chosen_on"] == "val"
    test = np.load(result.run_dir / "predictions" / "test.npz")
    np.testing.assert_allclose(test["probabilities"].sum(-1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(test["predictions"], test["probabilities"] >= np.asarray(record["thresholds"]))
