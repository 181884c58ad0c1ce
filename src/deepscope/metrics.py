"""Metrics over a whole split, in numpy (float64), with optional sample weights.

Each takes ``(pred, target, weights)``: ``pred`` is class probabilities (N, K), a probability
(N,) for binary tasks, or values for regression; ``target`` is labels (N,), one-hot (N, K), or
values. They are checked against scikit-learn in ``tests/test_metrics.py``.

Dense metrics (``psnr``, ``ssim``) take images (N, C, H, W) or cubes (N, C, D, H, W) and are checked
against scikit-image in ``tests/test_metrics_dense.py``. Per-column metrics (``mae_per_column``,
``within_10_percent``, ``precision``, ``recall``, ``f1``) return an array (K,), one value per target
column, label or class; every other metric returns a float.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter1d

__all__ = [
    "accuracy",
    "hit_efficiency",
    "hit_purity",
    "auc",
    "f1",
    "mae",
    "mae_per_column",
    "mape",
    "mse",
    "precision",
    "psnr",
    "r2",
    "recall",
    "resolution",
    "rmse",
    "ssim",
    "weighted_quantile",
    "within_10_percent",
]


def _w(weights: np.ndarray | None, n: int) -> np.ndarray:
    return np.ones(n) if weights is None else np.asarray(weights, dtype=np.float64)


def _labels(target: np.ndarray) -> np.ndarray:
    return target.argmax(-1) if target.ndim > 1 else target


def _flat(pred: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pred, target = np.asarray(pred, np.float64), np.asarray(target, np.float64)
    return pred.reshape(len(pred), -1), target.reshape(len(target), -1)


def accuracy(pred: np.ndarray, target: np.ndarray, weights: np.ndarray | None = None) -> float:
    """Multi-class: argmax vs label; binary / multi-label: threshold 0.5 (all labels must match)."""
    w = _w(weights, len(pred))
    if pred.ndim > 1 and pred.shape[-1] > 1 and (target.ndim == 1 or np.allclose(target.sum(-1), 1.0)) \
            and np.allclose(pred.sum(-1), 1.0, atol=1e-3):
        correct = pred.argmax(-1) == _labels(target)
    else:
        hit = (pred >= 0.5) == (target >= 0.5)
        correct = hit.reshape(len(hit), -1).all(1)
    return float((w * correct).sum() / w.sum())


def _binary_auc(score: np.ndarray, positive: np.ndarray, w: np.ndarray) -> float:
    order = np.argsort(-score, kind="mergesort")
    score, positive, w = score[order], positive[order], w[order]
    tp = np.cumsum(w * positive)
    fp = np.cumsum(w * (1 - positive))
    last = np.r_[np.diff(score) != 0, True]  # one ROC point per distinct score (ties share it)
    tpr = np.r_[0.0, tp[last]] / max(tp[-1], 1e-300)
    fpr = np.r_[0.0, fp[last]] / max(fp[-1], 1e-300)
    if tp[-1] == 0 or fp[-1] == 0:
        return float("nan")
    return float(np.trapezoid(tpr, fpr))


def auc(pred: np.ndarray, target: np.ndarray, weights: np.ndarray | None = None) -> float:
    """ROC AUC; the macro average over columns for several outputs: one-vs-rest over classes for
    multi-class (labels (N,) or one-hot (N, K): sklearn's 'ovr', 'macro'), per label for multi-label
    0/1 targets (N, K) (sklearn's 'macro' on multi-label indicators)."""
    w = _w(weights, len(pred))
    if pred.ndim == 1 or pred.shape[-1] == 1:
        return _binary_auc(pred.reshape(-1), (target.reshape(-1) >= 0.5).astype(float), w)
    # (N, K) targets, one-hot or multi-hot, are each column's positives as they are: for a one-hot row
    # that is the same as its label == k
    labels = _labels(target) if target.ndim == 1 else None
    scores = []
    for k in range(pred.shape[-1]):
        positive = (labels == k).astype(float) if labels is not None else (target[:, k] >= 0.5).astype(float)
        scores.append(_binary_auc(pred[:, k], positive, w))
    return float(np.nanmean(scores)) if not np.all(np.isnan(scores)) else float("nan")


def mse(pred: np.ndarray, target: np.ndarray, weights: np.ndarray | None = None) -> float:
    p, t = _flat(pred, target)
    return float(np.average(((p - t) ** 2).mean(1), weights=_w(weights, len(p))))


def mae(pred: np.ndarray, target: np.ndarray, weights: np.ndarray | None = None) -> float:
    p, t = _flat(pred, target)
    return float(np.average(np.abs(p - t).mean(1), weights=_w(weights, len(p))))


def rmse(pred: np.ndarray, target: np.ndarray, weights: np.ndarray | None = None) -> float:
    return float(np.sqrt(mse(pred, target, weights)))


def mape(pred: np.ndarray, target: np.ndarray, weights: np.ndarray | None = None) -> float:
    p, t = _flat(pred, target)
    return float(np.average((100 * np.abs(p - t) / np.maximum(np.abs(t), 1e-7)).mean(1), weights=_w(weights, len(p))))


def r2(pred: np.ndarray, target: np.ndarray, weights: np.ndarray | None = None) -> float:
    """Coefficient of determination, averaged uniformly over outputs (as scikit-learn)."""
    p, t = _flat(pred, target)
    w = _w(weights, len(p))[:, None]
    mean = (w * t).sum(0) / w.sum()
    ss_res = (w * (t - p) ** 2).sum(0)
    ss_tot = (w * (t - mean) ** 2).sum(0)
    with np.errstate(divide="ignore", invalid="ignore"):
        score = np.where(ss_tot > 0, 1 - ss_res / ss_tot, np.where(ss_res > 0, 0.0, 1.0))
    return float(score.mean())


def weighted_quantile(x: np.ndarray, q: float | np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """Quantile(s) of ``x``; with weights, by linear interpolation of the weighted CDF."""
    x = np.asarray(x, np.float64).reshape(-1)
    if weights is None:
        return np.quantile(x, q)
    order = np.argsort(x)
    x, w = x[order], np.asarray(weights, np.float64).reshape(-1)[order]
    cdf = (np.cumsum(w) - 0.5 * w) / w.sum()
    return np.interp(q, cdf, x)


def resolution(pred: np.ndarray, target: np.ndarray, weights: np.ndarray | None = None) -> float:
    """Robust relative resolution of r = pred/target: IQR(r) / (1.349 · median(r)).

    The 1.349 makes it equal σ/μ for a Gaussian; it is what energy-regression papers quote.
    """
    p, t = _flat(pred, target)
    ratio = (p / np.where(t == 0, np.nan, t)).reshape(-1)
    keep = np.isfinite(ratio)
    w = None if weights is None else np.repeat(_w(weights, len(p)), p.shape[1])[keep]
    q25, q50, q75 = weighted_quantile(ratio[keep], np.array([0.25, 0.5, 0.75]), w)
    return float((q75 - q25) / (1.349 * q50))


# --- dense targets (images, cubes) -------------------------------------------------------------------


def _weighted_mean(values: np.ndarray, weights: np.ndarray | None) -> float:
    """Weighted mean skipping NaN values; NaN when nothing is left."""
    w = _w(weights, len(values))
    keep = ~np.isnan(values) & (w > 0)
    if not keep.any():
        return float("nan")
    return float(np.average(values[keep], weights=w[keep]))


def _psnr_per_sample(pred: np.ndarray, target: np.ndarray) -> np.ndarray:
    p, t = _flat(pred, target)
    peak = t.max(1) - t.min(1)
    peak = np.where(peak > 0, peak, np.abs(t).max(1))
    err = ((p - t) ** 2).mean(1)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = 10 * np.log10(peak ** 2 / err)  # err 0: +inf (a perfect prediction)
    return np.where(peak > 0, out, np.nan)


def psnr(pred: np.ndarray, target: np.ndarray, weights: np.ndarray | None = None) -> float:
    """Peak signal-to-noise ratio in dB, per sample, then the (weighted) mean over samples.

    Per sample: 10 log10(peak^2 / mse), peak = the target's max - min (its max |value| when the target
    is constant), as ``skimage.metrics.peak_signal_noise_ratio(target, pred, data_range=peak)``.
    All-zero targets have no peak and are skipped (NaN when every target is zero); an exact
    prediction scores +inf.

    Args:
        pred: predictions (N, ...).
        target: targets of the same shape.
        weights: sample weights (N,).
    """
    return _weighted_mean(_psnr_per_sample(pred, target), weights)


def _data_range(t: np.ndarray) -> float:
    r = float(t.max() - t.min())
    if r <= 0:
        r = float(np.abs(t).max())
    return r if r > 0 else 1.0


def _ssim_one(x: np.ndarray, y: np.ndarray, win_size: int, sigma: float, k1: float, k2: float,
              data_range: float | None) -> float:
    """SSIM of one sample (C, *S), averaged over channels and the pixels where the window fits."""
    radii = [min(win_size, d if d % 2 else d - 1) // 2 for d in x.shape[1:]]

    def blur(a: np.ndarray) -> np.ndarray:
        for axis, r in enumerate(radii, start=1):
            if r:  # truncate chosen so that scipy's radius int(truncate * sigma + 0.5) is r
                a = gaussian_filter1d(a, sigma, axis=axis, mode="reflect", truncate=r / sigma)
        return a

    r = _data_range(y) if data_range is None else float(data_range)
    c1, c2 = (k1 * r) ** 2, (k2 * r) ** 2
    mu_x, mu_y = blur(x), blur(y)
    var_x = blur(x * x) - mu_x ** 2
    var_y = blur(y * y) - mu_y ** 2
    cov = blur(x * y) - mu_x * mu_y
    s = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x ** 2 + mu_y ** 2 + c1) * (var_x + var_y + c2))
    inside = (slice(None), *(slice(r_, d - r_) for r_, d in zip(radii, x.shape[1:])))
    return float(s[inside].mean())


def ssim(
    pred: np.ndarray,
    target: np.ndarray,
    weights: np.ndarray | None = None,
    *,
    win_size: int = 7,
    sigma: float = 1.5,
    k1: float = 0.01,
    k2: float = 0.03,
    data_range: float | None = None,
) -> float:
    """Structural similarity per sample, then the (weighted) mean over samples.

    The definition of the ``ssim`` loss (:func:`deepscope.losses.ssim`, 1 - this value): scikit-image's
    ``structural_similarity(gaussian_weights=True, use_sample_covariance=False)`` with a ``win_size``-tap
    Gaussian window of ``sigma`` pixels, the map cropped by ``(win_size - 1) // 2``, channels averaged.
    A spatial dim smaller than ``win_size`` gets the largest odd window that fits it. Computed here
    independently, with ``scipy.ndimage``.

    Args:
        pred: predictions (N, C, H, W) or (N, C, D, H, W).
        target: targets of the same shape.
        weights: sample weights (N,).
        win_size: odd number of window taps per spatial dim.
        sigma: standard deviation of the Gaussian window in pixels.
        k1: luminance stabiliser, C1 = (k1 * data_range)^2.
        k2: contrast-structure stabiliser, C2 = (k2 * data_range)^2.
        data_range: ``None``: per sample, the target's max - min (its max |value| when constant, 1 when
            all zero).

    Raises:
        ValueError: the shapes differ or are not 4-D / 5-D; ``win_size`` is not a positive odd integer.
    """
    pred, target = np.asarray(pred, np.float64), np.asarray(target, np.float64)
    if pred.shape != target.shape or pred.ndim not in (4, 5):
        raise ValueError(f"ssim: pred {pred.shape} and target {target.shape} must have one shape, "
                         "(N, C, H, W) or (N, C, D, H, W)")
    if win_size < 1 or win_size % 2 == 0:
        raise ValueError(f"ssim: win_size must be an odd integer >= 1; found {win_size!r}")
    # one sample at a time: five filtered copies of a whole split of cubes would not fit in memory
    values = np.array([_ssim_one(x, y, win_size, sigma, k1, k2, data_range) for x, y in zip(pred, target)])
    return _weighted_mean(values, weights)


# --- per-column metrics: one value per target column, label or class -----------------------------------


def _columns(pred: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    p, t = np.asarray(pred, np.float64), np.asarray(target, np.float64)
    return p.reshape(len(p), -1), t.reshape(len(t), -1)


def mae_per_column(pred: np.ndarray, target: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """Mean absolute error of each target column: (K,) for (N, K) values, (1,) for (N,)."""
    p, t = _columns(pred, target)
    return np.average(np.abs(p - t), axis=0, weights=_w(weights, len(p)))


def within_10_percent(pred: np.ndarray, target: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """Fraction of samples with |pred - target| <= 0.1 |target|, per column: (K,) (or (1,) for (N,))."""
    p, t = _columns(pred, target)
    return np.average(np.abs(p - t) <= 0.1 * np.abs(t), axis=0, weights=_w(weights, len(p)))


def _confusion(pred: np.ndarray, target: np.ndarray, weights: np.ndarray | None
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Weighted true positives, false positives and false negatives per label or class, each (K,)."""
    pred, target = np.asarray(pred), np.asarray(target)
    w = _w(weights, len(pred))[:, None]
    if pred.ndim == 2:  # multi-label: 0/1 per label
        p, t = pred >= 0.5, target >= 0.5
    else:  # multi-class: class indices, targets as labels or one-hot
        labels = _labels(target).astype(int)
        classes = pred.astype(int)
        k = target.shape[-1] if target.ndim == 2 else int(max(classes.max(initial=0), labels.max(initial=0))) + 1
        p, t = np.eye(k, dtype=bool)[classes], np.eye(k, dtype=bool)[labels]
    return (w * (p & t)).sum(0), (w * (p & ~t)).sum(0), (w * (~p & t)).sum(0)


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    return np.divide(num, den, out=np.zeros_like(num), where=den > 0)  # 0/0 -> 0 (sklearn zero_division=0)


def precision(pred: np.ndarray, target: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """Precision per label or class, (K,).

    Args:
        pred: predicted classes: 0/1 (N, K) for multi-label, class indices (N,) for multi-class.
        target: 0/1 (N, K) for multi-label; labels (N,) or one-hot (N, K) for multi-class. With labels,
            K is the largest class index seen in pred or target, plus one.
        weights: sample weights (N,).
    """
    tp, fp, _ = _confusion(pred, target, weights)
    return _ratio(tp, tp + fp)


def recall(pred: np.ndarray, target: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """Recall per label or class, (K,); arguments as :func:`precision`."""
    tp, _, fn = _confusion(pred, target, weights)
    return _ratio(tp, tp + fn)


def f1(pred: np.ndarray, target: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """F1 per label or class, 2 tp / (2 tp + fp + fn), (K,); arguments as :func:`precision`."""
    tp, fp, fn = _confusion(pred, target, weights)
    return _ratio(2 * tp, 2 * tp + fp + fn)


def _label_hits(pred: np.ndarray, target: np.ndarray) -> np.ndarray:
    """(N, K) bool: each label right (multi-label 0/1 predictions), or (N, 1) for class predictions."""
    if pred.ndim == 1:
        return (pred == _labels(target))[:, None]
    return (pred >= 0.5) == (target >= 0.5)


def exact_match(pred: np.ndarray, target: np.ndarray, weights: np.ndarray | None = None) -> float:
    """Fraction of samples whose every label is right (the subset accuracy of multi-label outputs).

    Args:
        pred: predicted classes: 0/1 (N, K) for multi-label (after the thresholds), class indices (N,).
        target: 0/1 (N, K), or labels (N,) / one-hot (N, K) for classes.
    """
    w = _w(weights, len(pred))
    correct = _label_hits(pred, target).reshape(len(pred), -1).all(1)
    return float((w * correct).sum() / w.sum())


def hamming_loss(pred: np.ndarray, target: np.ndarray, weights: np.ndarray | None = None) -> float:
    """Fraction of wrong labels over all samples and labels (1 - accuracy for one class per sample);
    arguments as :func:`exact_match`."""
    w = _w(weights, len(pred))
    wrong = 1.0 - _label_hits(pred, target).reshape(len(pred), -1).mean(1)
    return float((w * wrong).sum() / w.sum())


def _hit_overlap(pred: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per sample: (cells both mark, cells the target marks, cells the prediction marks) of 0/1 images."""
    p, t = _flat(pred, target)
    p, t = p >= 0.5, t >= 0.5
    return (p & t).sum(1).astype(np.float64), t.sum(1).astype(np.float64), p.sum(1).astype(np.float64)


def hit_efficiency(pred: np.ndarray, target: np.ndarray, weights: np.ndarray | None = None) -> float:
    """Per sample, the fraction of the true cluster's hits (cells of the 0/1 target) that the 0/1 prediction
    marks; the (weighted) mean over samples with a non-empty target (clustering: one track's hits)."""
    both, true, _ = _hit_overlap(pred, target)
    with np.errstate(invalid="ignore", divide="ignore"):
        return _weighted_mean(np.where(true > 0, both / true, np.nan), weights)


def hit_purity(pred: np.ndarray, target: np.ndarray, weights: np.ndarray | None = None) -> float:
    """Per sample, the fraction of the predicted hits that belong to the true cluster; the (weighted) mean
    over samples where something is predicted (an empty prediction has no purity; its efficiency is 0)."""
    both, _, marked = _hit_overlap(pred, target)
    with np.errstate(invalid="ignore", divide="ignore"):
        return _weighted_mean(np.where(marked > 0, both / marked, np.nan), weights)
