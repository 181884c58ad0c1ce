"""train.thresholds: auto: per-label thresholds of the best validation F1, against a brute-force search,
kept in the run and used by evaluate; exact-match ratio and Hamming loss against their definitions."""

from __future__ import annotations

import json

import numpy as np
import pytest

from deepscope.evaluation.thresholds import best_f1_thresholds
from deepscope.metrics import exact_match, hamming_loss


def _f1(p, t, threshold):
    called = p >= threshold
    tp, fp, fn = (called & t).sum(), (called & ~t).sum(), (~called & t).sum()
    return 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0


@pytest.mark.parametrize("seed", range(6))
def test_chosen_thresholds_reach_the_best_f1_of_a_brute_force_search(seed):
    rng = np.random.default_rng(seed)
    t = rng.random((200, 3)) < [0.1, 0.4, 0.7]
    p = np.clip(t * rng.uniform(0.2, 1, t.shape) + rng.uniform(0, 0.6, t.shape), 0, 1).round(2)  # ties
    chosen = best_f1_thresholds(p, t)
    for k in range(3):
        best = max(_f1(p[:, k], t[:, k], c) for c in np.unique(p[:, k]))
        assert _f1(p[:, k], t[:, k], chosen[k]) == pytest.approx(best)
        assert 0 < chosen[k] < 1


def test_one_output_and_a_label_that_never_occurs():
    assert best_f1_thresholds(np.array([0.9, 0.8, 0.3]), np.array([1, 1, 0])) == [pytest.approx(0.55)]
    assert best_f1_thresholds(np.array([[0.9], [0.2]]), np.array([[0], [0]])) == [0.5]


def test_exact_match_and_hamming_loss_against_their_definitions():
    pred = np.array([[1, 0, 1], [0, 0, 1], [1, 1, 1], [0, 0, 0]])
    target = np.array([[1, 0, 1], [0, 1, 1], [0, 0, 0], [0, 0, 0]])
    assert exact_match(pred, target) == 0.5
    assert hamming_loss(pred, target) == pytest.approx((0 + 1 + 3 + 0) / 12)
    w = np.array([1.0, 0.0, 0.0, 1.0])
    assert exact_match(pred, target, w) == 1.0 and hamming_loss(pred, target, w) == 0.0
    labels = np.array([2, 0, 1])
    assert exact_match(np.array([2, 1, 1]), labels) == pytest.approx(2 / 3)
    assert hamming_loss(np.array([2, 1, 1]), labels) == pytest.approx(1 / 3)


@pytest.mark.slow
def test_auto_thresholds_are_chosen_on_val_stored_and_used_by_evaluate(tmp_path):
    import deepscope
    from deepscope.evaluation.thresholds import best_f1_thresholds as choose

    rng = np.random.default_rng(0)

    def make(n):
        x = rng.normal(size=(n, 6, 6, 1)).astype(np.float32)
        s = x.reshape(n, -1)
        y = np.stack([s[:, :6].mean(1) > 0.3, s[:, 6:12].mean(1) > -0.2, s[:, 12:].mean(1) > 0.0], 1)
        return {"images": {"v": x}, "targets": y.astype(np.float32)}

    data = {"train": make(512), "val": make(256), "test": make(256)}
    cfg = {"name": "ml", "log": {"dir": str(tmp_path), "progress_bar": "none", "tensorboard": False,
                                 "figures": False},
           "model": {"cnn": {"n_init_filters": 4}, "top": {"units": [16, 3]}},
           "train": {"epochs": 3, "batch_size": 32, "loss": "bce_with_logits", "thresholds": "auto",
                     "metrics": ["f1", "exact_match", "hamming_loss"]}}
    result = deepscope.train(cfg, data=data)
    record = json.loads((result.run_dir / "thresholds.json").read_text())
    val = np.load(result.run_dir / "predictions" / "val.npz")
    assert record["thresholds"] == pytest.approx(choose(val["probabilities"], val["targets"]))
    assert record["chosen_on"] == "val"
    test = np.load(result.run_dir / "predictions" / "test.npz")
    np.testing.assert_array_equal(test["predictions"], test["probabilities"] >= np.asarray(record["thresholds"]))
    again = deepscope.evaluate(result.run_dir, "test", data=data)
    assert again["f1"] == pytest.approx(result.metrics["test"]["f1"])
    assert again["exact_match"] == pytest.approx(result.metrics["test"]["exact_match"])
