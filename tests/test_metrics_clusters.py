"""hit_efficiency and hit_purity (clustering: 0/1 images of one track's hits) against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from deepscope import metrics as M
from deepscope.components import METRICS


def _images(*cells_per_sample, shape=(2, 3)):
    """(N, 1, H, W) 0/1 images; each sample marks the flat cell indices it is given."""
    out = np.zeros((len(cells_per_sample), 1, *shape), dtype=np.float32)
    for i, cells in enumerate(cells_per_sample):
        out[i, 0].reshape(-1)[list(cells)] = 1.0
    return out


# sample 0: 3 true hits, 2 of them predicted plus 1 wrong  -> efficiency 2/3, purity 2/3
# sample 1: 2 true hits, 1 predicted, nothing wrong        -> efficiency 1/2, purity 1
# sample 2: no true hit, 1 predicted                       -> efficiency skipped, purity 0
# sample 3: 1 true hit, nothing predicted                  -> efficiency 0, purity skipped
TARGET = _images({0, 1, 2}, {3, 4}, set(), {5})
PRED = _images({0, 1, 5}, {3}, {2}, set())


def test_hit_efficiency_averages_per_sample_fractions_over_samples_with_a_track():
    assert M.hit_efficiency(PRED, TARGET) == pytest.approx((2 / 3 + 1 / 2 + 0) / 3)  # 7/18


def test_hit_purity_averages_per_sample_fractions_over_samples_with_a_prediction():
    assert M.hit_purity(PRED, TARGET) == pytest.approx((2 / 3 + 1 + 0) / 3)  # 5/9


def test_sample_weights_weigh_the_per_sample_fractions():
    w = np.array([1.0, 2.0, 3.0, 4.0])
    # efficiency: samples 0, 1, 3 (weights 1, 2, 4); purity: samples 0, 1, 2 (weights 1, 2, 3)
    assert M.hit_efficiency(PRED, TARGET, w) == pytest.approx((1 * 2 / 3 + 2 * 1 / 2 + 4 * 0) / 7)  # 5/21
    assert M.hit_purity(PRED, TARGET, w) == pytest.approx((1 * 2 / 3 + 2 * 1 + 3 * 0) / 6)  # 4/9


def test_a_zero_weight_leaves_the_sample_out():
    w = np.array([1.0, 0.0, 1.0, 1.0])
    assert M.hit_efficiency(PRED, TARGET, w) == pytest.approx((2 / 3 + 0) / 2)
    assert M.hit_purity(PRED, TARGET, w) == pytest.approx((2 / 3 + 0) / 2)


def test_a_perfect_prediction_scores_one():
    assert M.hit_efficiency(TARGET, TARGET) == 1.0
    assert M.hit_purity(TARGET, TARGET) == 1.0


def test_nan_when_no_sample_is_left():
    empty = _images(set(), set())
    some = _images({0}, {1, 2})
    assert math.isnan(M.hit_efficiency(some, empty))  # no sample has a track
    assert M.hit_purity(some, empty) == 0.0
    assert math.isnan(M.hit_purity(empty, some))  # no sample has a prediction
    assert M.hit_efficiency(empty, some) == 0.0
    # the only samples that count have weight 0
    assert math.isnan(M.hit_efficiency(PRED[[2, 3]], TARGET[[2, 3]], np.array([1.0, 0.0])))
    assert math.isnan(M.hit_purity(PRED[[2, 3]], TARGET[[2, 3]], np.array([0.0, 1.0])))


@pytest.mark.parametrize(("name", "alias", "function"), [("hit_efficiency", "efficiency", M.hit_efficiency),
                                                         ("hit_purity", "purity", M.hit_purity)])
def test_registered_under_their_names_and_aliases(name, alias, function):
    assert METRICS.get(name) is function
    assert METRICS.get(alias) is function
    entry = METRICS.entry(name)
    assert entry.meta.get("dense") is True and entry.meta.get("input") == "classes"
    assert METRICS.get(name)(PRED, TARGET) == function(PRED, TARGET)
