"""Dense (PSNR, SSIM) and per-column metrics against closed forms, scikit-learn and scikit-image."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as skm

from deepscope import metrics as M
from deepscope.components import METRICS

RNG = np.random.default_rng(0)
N = 120


def _noisy(shape, scale=0.3):
    t = RNG.normal(size=shape)
    return t + scale * RNG.normal(size=shape), t


def _psnr_ref(p, t):
    peak = t.max() - t.min()
    return 10 * np.log10(peak ** 2 / np.mean((p - t) ** 2))


# --- PSNR ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("weighted", [False, True])
def test_psnr_against_the_formula(weighted):
    p, t = _noisy((5, 1, 6, 7))
    w = RNG.uniform(0.1, 2.0, size=5) if weighted else None
    ref = np.average([_psnr_ref(p[i], t[i]) for i in range(5)], weights=w)
    assert M.psnr(p, t, w) == pytest.approx(ref, rel=1e-12)


def test_psnr_against_skimage():
    skmetrics = pytest.importorskip("skimage.metrics")
    p, t = _noisy((4, 2, 5, 6, 7))
    ref = np.mean([skmetrics.peak_signal_noise_ratio(t[i], p[i], data_range=np.ptp(t[i])) for i in range(4)])
    assert M.psnr(p, t) == pytest.approx(ref, rel=1e-12)


def test_psnr_peak_of_constant_and_zero_targets():
    t = np.stack([np.full((1, 4, 4), -2.0), np.zeros((1, 4, 4)), RNG.normal(size=(1, 4, 4))])
    p = t + 0.1
    # constant target: peak = max |t| = 2; the all-zero target is skipped
    expected = np.mean([10 * np.log10(4.0 / 0.01), _psnr_ref(p[2], t[2])])
    assert M.psnr(p, t) == pytest.approx(expected, rel=1e-12)
    assert np.isnan(M.psnr(p[1:2], t[1:2]))


def test_psnr_of_an_exact_prediction_is_inf():
    _, t = _noisy((3, 1, 4, 4))
    assert M.psnr(t.copy(), t) == np.inf


# --- SSIM ------------------------------------------------------------------------------------------


def _gauss(size, sigma):
    x = np.arange(size) - (size - 1) / 2
    g = np.exp(-0.5 * (x / sigma) ** 2)
    return g / g.sum()


def _ssim_one_window(x, y, w, data_range, k1=0.01, k2=0.03):
    """SSIM of a patch exactly the window's size: one window position, weights ``w``."""
    c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
    mx, my = (w * x).sum(), (w * y).sum()
    vx, vy = (w * (x - mx) ** 2).sum(), (w * (y - my) ** 2).sum()
    cxy = (w * (x - mx) * (y - my)).sum()
    return (2 * mx * my + c1) * (2 * cxy + c2) / ((mx ** 2 + my ** 2 + c1) * (vx + vy + c2))


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_ssim_of_identical_images_is_one(spatial_dims):
    t = RNG.normal(size=(3, 2, *([9] * spatial_dims)))
    assert M.ssim(t, t.copy()) == pytest.approx(1.0, abs=1e-12)


def test_ssim_on_one_window_against_the_formula():
    p, t = _noisy((2, 1, 7, 7), scale=0.5)
    w = np.outer(_gauss(7, 1.5), _gauss(7, 1.5))
    ref = np.mean([_ssim_one_window(p[i, 0], t[i, 0], w, np.ptp(t[i])) for i in range(2)])
    assert M.ssim(p, t) == pytest.approx(ref, rel=1e-12)


def test_ssim_with_a_flat_window_is_the_global_formula():
    p, t = _noisy((1, 1, 5, 5, 5), scale=0.5)
    ref = _ssim_one_window(p[0, 0], t[0, 0], np.full((5, 5, 5), 1 / 125), data_range=2.0)
    assert M.ssim(p, t, win_size=5, sigma=1e6, data_range=2.0) == pytest.approx(ref, rel=1e-9)


def _skimage_ssim(p, t, sigma):
    skmetrics = pytest.importorskip("skimage.metrics")
    return np.mean([
        skmetrics.structural_similarity(t[i], p[i], channel_axis=0, gaussian_weights=True, sigma=sigma,
                                        use_sample_covariance=False, data_range=np.ptp(t[i]))
        for i in range(len(t))
    ])


@pytest.mark.parametrize("win_size, sigma", [(11, 1.5), (7, 0.8)], ids=["wang_11_taps", "7_taps"])
@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_ssim_against_skimage(spatial_dims, win_size, sigma):
    # scikit-image's Gaussian has int(3.5 sigma + 0.5) taps each side: 11 for 1.5, 7 for 0.8
    shape = (3, 2, 16, 18) if spatial_dims == 2 else (2, 1, 12, 13, 14)
    p, t = _noisy(shape)
    assert M.ssim(p, t, win_size=win_size, sigma=sigma) == pytest.approx(_skimage_ssim(p, t, sigma), rel=1e-10)


def test_ssim_shrinks_the_window_to_small_dims():
    p, t = _noisy((2, 1, 4, 4))
    # a dim of 4 gets 3 taps; scikit-image's Gaussian of sigma 0.4 has 3 taps
    assert M.ssim(p, t, sigma=0.4) == pytest.approx(_skimage_ssim(p, t, 0.4), rel=1e-10)


def test_ssim_is_weighted_per_sample():
    p, t = _noisy((4, 1, 8, 8))
    w = np.array([1.0, 0.0, 2.0, 0.5])
    per_sample = [M.ssim(p[i:i + 1], t[i:i + 1]) for i in range(4)]
    assert M.ssim(p, t, w) == pytest.approx(np.average(per_sample, weights=w), rel=1e-12)


def test_ssim_rejects_other_shapes():
    with pytest.raises(ValueError, match=r"\(N, C, H, W\) or \(N, C, D, H, W\)"):
        M.ssim(np.zeros((3, 8, 8)), np.zeros((3, 8, 8)))
    with pytest.raises(ValueError, match="win_size"):
        M.ssim(np.zeros((1, 1, 8, 8)), np.zeros((1, 1, 8, 8)), win_size=4)


# --- per-column metrics ---------------------------------------------------------------------------

WEIGHTS = [None, RNG.uniform(0.1, 3.0, size=N)]


@pytest.mark.parametrize("w", WEIGHTS, ids=["unweighted", "weighted"])
@pytest.mark.parametrize("k", [None, 3])
def test_mae_per_column_against_sklearn(w, k):
    shape = (N,) if k is None else (N, k)
    p, t = _noisy(shape)
    ref = np.atleast_1d(skm.mean_absolute_error(t, p, sample_weight=w, multioutput="raw_values"))
    got = M.mae_per_column(p, t, w)
    assert got.shape == (k or 1,)
    np.testing.assert_allclose(got, ref, rtol=1e-12)


@pytest.mark.parametrize("w", WEIGHTS, ids=["unweighted", "weighted"])
def test_within_10_percent(w):
    t = RNG.uniform(1.0, 10.0, size=(N, 2))
    p = t * RNG.uniform(0.8, 1.2, size=(N, 2))
    ref = np.average(np.abs(p / t - 1) <= 0.1, axis=0, weights=w)
    np.testing.assert_allclose(M.within_10_percent(p, t, w), ref, rtol=1e-12)
    assert 0.2 < ref.min() and ref.max() < 0.8  # not degenerate
    # the boundary counts; a zero target needs an exact prediction
    np.testing.assert_allclose(M.within_10_percent(np.array([11.0, 0.0, 1e-9]), np.array([10.0, 0.0, 0.0])),
                               [2 / 3])


SK = {"precision": skm.precision_score, "recall": skm.recall_score, "f1": skm.f1_score}


@pytest.mark.parametrize("name", sorted(SK))
@pytest.mark.parametrize("w", WEIGHTS, ids=["unweighted", "weighted"])
def test_multilabel_scores_against_sklearn(name, w):
    t = (RNG.uniform(size=(N, 4)) < 0.4).astype(int)
    p = np.where(RNG.uniform(size=(N, 4)) < 0.75, t, 1 - t)
    p[:, 3] = 0  # never predicted: precision 0/0 -> 0
    ref = SK[name](t, p, average=None, sample_weight=w, zero_division=0)
    got = METRICS.get(name)(p, t, w)
    assert got.shape == (4,)
    np.testing.assert_allclose(got, ref, rtol=1e-12)


@pytest.mark.parametrize("name", sorted(SK))
@pytest.mark.parametrize("w", WEIGHTS, ids=["unweighted", "weighted"])
def test_multiclass_scores_against_sklearn(name, w):
    labels = RNG.integers(0, 5, size=N)
    pred = np.where(RNG.uniform(size=N) < 0.6, labels, RNG.integers(0, 4, size=N))  # class 4 rarely predicted
    pred[pred == 4] = 0
    ref = SK[name](labels, pred, labels=np.arange(5), average=None, sample_weight=w, zero_division=0)
    fn = METRICS.get(name)
    np.testing.assert_allclose(fn(pred, labels, w), ref, rtol=1e-12)
    np.testing.assert_allclose(fn(pred, np.eye(5)[labels], w), ref, rtol=1e-12)  # one-hot targets


def test_scores_with_nothing_to_score_are_zero():
    t, p = np.zeros((3, 2)), np.zeros((3, 2))
    for fn in (M.precision, M.recall, M.f1):
        np.testing.assert_array_equal(fn(p, t), [0.0, 0.0])


def test_return_types_follow_per_column():
    p, t = _noisy((6, 1, 8, 8))
    for name in ("psnr", "ssim", "mse", "mae"):
        assert not METRICS.entry(name).meta.get("per_column") and isinstance(METRICS.get(name)(p, t), float)
    per_column = [e.name for e in METRICS.entries() if e.meta.get("per_column")]
    assert sorted(per_column) == ["f1", "mae_per_column", "precision", "recall", "within_10_percent"]
    vp, vt = _noisy((6, 3))
    cp, ct = (vt > 0).astype(int), (vp > 0).astype(int)
    for name in per_column:
        args = (cp, ct) if METRICS.entry(name).meta.get("input") == "classes" else (vp, vt)
        out = METRICS.get(name)(*args)
        assert isinstance(out, np.ndarray) and out.shape == (3,), name
