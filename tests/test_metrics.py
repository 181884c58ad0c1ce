"""Metrics against scikit-learn and numpy, with sample weights and tied scores."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as skm

from deepscope import metrics as M
from deepscope.components import METRICS

RNG = np.random.default_rng(0)
N = 200


def _softmax(x):
    e = np.exp(x - x.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def _multiclass(k=4, n=N):
    labels = RNG.integers(0, k, size=n)
    logits = RNG.normal(size=(n, k)) + 1.5 * np.eye(k)[labels]
    return _softmax(logits), labels


WEIGHTS = [None, RNG.uniform(0.1, 3.0, size=N)]


@pytest.mark.parametrize("w", WEIGHTS, ids=["unweighted", "weighted"])
def test_accuracy_multiclass(w):
    probs, labels = _multiclass()
    ref = skm.accuracy_score(labels, probs.argmax(1), sample_weight=w)
    assert M.accuracy(probs, labels, w) == pytest.approx(ref, abs=1e-12)
    assert M.accuracy(probs, np.eye(4)[labels], w) == pytest.approx(ref, abs=1e-12)  # one-hot targets
    assert 0.3 < ref < 1.0  # not a degenerate case


@pytest.mark.parametrize("w", WEIGHTS, ids=["unweighted", "weighted"])
def test_accuracy_binary(w):
    t = RNG.integers(0, 2, size=N)
    p = np.clip(0.3 * t + RNG.uniform(0, 0.7, size=N), 0, 1)
    ref = skm.accuracy_score(t, (p >= 0.5).astype(int), sample_weight=w)
    assert M.accuracy(p, t, w) == pytest.approx(ref, abs=1e-12)
    assert M.accuracy(p[:, None], t[:, None].astype(float), w) == pytest.approx(ref, abs=1e-12)


def test_accuracy_multilabel_needs_every_label():
    p = np.array([[0.9, 0.2], [0.9, 0.8], [0.1, 0.1]])
    t = np.array([[1, 0], [1, 0], [0, 0]], dtype=float)
    assert M.accuracy(p, t) == pytest.approx(skm.accuracy_score(t, (p >= 0.5).astype(float)))


@pytest.mark.parametrize("w", WEIGHTS, ids=["unweighted", "weighted"])
@pytest.mark.parametrize("decimals", [None, 1], ids=["distinct", "ties"])
def test_auc_binary(w, decimals):
    t = RNG.integers(0, 2, size=N)
    s = RNG.normal(size=N) + t
    if decimals is not None:
        s = np.round(s, decimals)
        assert len(np.unique(s)) < N  # there really are ties
    ref = skm.roc_auc_score(t, s, sample_weight=w)
    assert M.auc(s, t, w) == pytest.approx(ref, abs=1e-12)
    assert M.auc(s[:, None], t[:, None].astype(float), w) == pytest.approx(ref, abs=1e-12)


def test_auc_all_tied_scores_is_one_half():
    t = np.array([0, 1, 0, 1, 1])
    assert M.auc(np.full(5, 0.3), t) == pytest.approx(0.5)


def test_auc_with_one_class_is_nan():
    assert np.isnan(M.auc(RNG.uniform(size=10), np.ones(10)))


@pytest.mark.parametrize("w", WEIGHTS, ids=["unweighted", "weighted"])
@pytest.mark.parametrize("ties", [False, True])
def test_auc_multiclass_ovr_macro(w, ties):
    probs, labels = _multiclass(k=3)
    if ties:
        probs = np.round(probs, 1)
        probs = probs / probs.sum(1, keepdims=True)
    ref = skm.roc_auc_score(labels, probs, multi_class="ovr", average="macro", sample_weight=w)
    assert M.auc(probs, labels, w) == pytest.approx(ref, abs=1e-10)
    assert M.auc(probs, np.eye(3)[labels], w) == pytest.approx(ref, abs=1e-10)


@pytest.mark.parametrize("w", WEIGHTS, ids=["unweighted", "weighted"])
def test_auc_multilabel_is_the_macro_average_over_labels(w):
    t = (RNG.uniform(size=(N, 4)) < 0.4).astype(float)  # several labels per sample, some none
    s = RNG.normal(size=(N, 4)) + 1.5 * t
    ref = skm.roc_auc_score(t, s, average="macro", sample_weight=w)
    assert M.auc(s, t, w) == pytest.approx(ref, abs=1e-12)


def _regression(shape):
    t = RNG.uniform(0.5, 3.0, size=shape)
    p = t + RNG.normal(scale=0.3, size=shape)
    return p, t


@pytest.mark.parametrize("w", WEIGHTS, ids=["unweighted", "weighted"])
@pytest.mark.parametrize("shape", [(N,), (N, 3)])
def test_regression_metrics_against_sklearn(w, shape):
    p, t = _regression(shape)
    assert M.mse(p, t, w) == pytest.approx(skm.mean_squared_error(t, p, sample_weight=w), rel=1e-12)
    assert M.mae(p, t, w) == pytest.approx(skm.mean_absolute_error(t, p, sample_weight=w), rel=1e-12)
    assert M.rmse(p, t, w) == pytest.approx(np.sqrt(skm.mean_squared_error(t, p, sample_weight=w)), rel=1e-12)
    if len(shape) == 1:  # sklearn's rmse averages per-output roots
        assert M.rmse(p, t, w) == pytest.approx(skm.root_mean_squared_error(t, p, sample_weight=w), rel=1e-12)
    assert M.r2(p, t, w) == pytest.approx(skm.r2_score(t, p, sample_weight=w), rel=1e-10)
    # scikit-learn returns a fraction; deepscope (Keras) a percentage
    ref = 100 * skm.mean_absolute_percentage_error(t, p, sample_weight=w)
    assert M.mape(p, t, w) == pytest.approx(ref, rel=1e-10)


def test_r2_of_constant_targets():
    t = np.full(5, 2.0)
    assert M.r2(t.copy(), t) == skm.r2_score(t, t) == 1.0
    p = t + np.arange(5)
    assert M.r2(p, t) == skm.r2_score(t, p) == 0.0


def test_r2_worse_than_the_mean_is_negative():
    t = np.arange(10.0)
    p = t[::-1].copy()
    assert M.r2(p, t) == pytest.approx(skm.r2_score(t, p)) and M.r2(p, t) < 0


def _resolution_ref(p, t):
    r = p / t
    q25, q50, q75 = np.percentile(r, [25, 50, 75])
    return (q75 - q25) / (1.349 * q50)


def test_resolution_against_numpy():
    t = RNG.uniform(10, 100, size=N)
    p = t * RNG.normal(1.02, 0.08, size=N)
    assert M.resolution(p, t) == pytest.approx(_resolution_ref(p, t), rel=1e-12)


def test_resolution_skips_zero_targets():
    t = RNG.uniform(10, 100, size=N)
    p = t * RNG.normal(1.0, 0.1, size=N)
    t0 = np.r_[t, 0.0, 0.0]
    p0 = np.r_[p, 5.0, 7.0]
    assert M.resolution(p0, t0) == pytest.approx(_resolution_ref(p, t), rel=1e-12)


def test_resolution_is_sigma_over_mu_for_a_gaussian():
    rng = np.random.default_rng(1)
    t = rng.uniform(1, 50, size=200_000)
    p = t * rng.normal(2.0, 0.2, size=t.size)  # ratio ~ N(mu=2, sigma=0.2)
    assert M.resolution(p, t) == pytest.approx(0.2 / 2.0, rel=0.02)


def test_resolution_with_equal_weights_is_close_to_unweighted():
    t = RNG.uniform(10, 100, size=2000)
    p = t * RNG.normal(1.0, 0.1, size=2000)
    assert M.resolution(p, t, np.ones(2000)) == pytest.approx(M.resolution(p, t), rel=0.01)


def test_resolution_weights_matter():
    t = np.ones(1000)
    p = np.r_[RNG.normal(1.0, 0.05, 500), RNG.normal(1.0, 0.5, 500)]
    w = np.r_[np.ones(500), np.full(500, 1e-6)]  # the wide half barely counts
    assert M.resolution(p, t, w) == pytest.approx(_resolution_ref(p[:500], t[:500]), rel=0.05)


def test_weighted_quantile_equal_weights():
    x = RNG.normal(size=501)
    q = np.array([0.1, 0.25, 0.5, 0.75, 0.9])
    got = M.weighted_quantile(x, q, np.ones_like(x))
    np.testing.assert_allclose(got, np.quantile(x, q), atol=0.02)
    # equal weights put the i-th sorted value at (i + 0.5) / n: Hazen's plotting position
    np.testing.assert_allclose(got, np.quantile(x, q, method="hazen"), rtol=1e-12)
    np.testing.assert_allclose(M.weighted_quantile(x, q), np.quantile(x, q), rtol=1e-12)


def test_weighted_quantile_by_hand():
    x = np.array([4.0, 1.0, 3.0, 2.0])  # unsorted on purpose
    w = np.array([5.0, 1.0, 1.0, 3.0])
    # sorted: x 1, 2, 3, 4 with w 1, 3, 1, 5 (sum 10); mid-point CDF (cumsum - w/2) / 10 = .05, .25, .45, .75
    assert M.weighted_quantile(x, 0.25, w) == pytest.approx(2.0)
    assert M.weighted_quantile(x, 0.5, w) == pytest.approx(3.0 + (0.5 - 0.45) / (0.75 - 0.45))
    assert M.weighted_quantile(x, 0.35, w) == pytest.approx(2.5)
    assert M.weighted_quantile(x, 0.01, w) == 1.0 and M.weighted_quantile(x, 0.95, w) == 4.0


def test_registered_metrics_resolve():
    assert METRICS.get("r2_score") is M.r2
    assert METRICS.get("roc_auc") is M.auc
