"""Metrics over a whole split, in numpy (float64), with optional sample weights.

Each takes ``(pred, target, weights)``: ``pred`` is class probabilities (N, K), a probability
(N,) for binary tasks, or values for regression; ``target`` is labels (N,), one-hot (N, K), or
values. They are checked against scikit-learn in ``tests/test_metrics.py``.
"""

from __future__ import annotations

import numpy as np

__all__ = ["accuracy", "auc", "mae", "mape", "mse", "r2", "resolution", "rmse", "weighted_quantile"]


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
    """ROC AUC; one-vs-rest macro average over classes for multi-class (sklearn's 'ovr', 'macro')."""
    w = _w(weights, len(pred))
    if pred.ndim == 1 or pred.shape[-1] == 1:
        return _binary_auc(pred.reshape(-1), (target.reshape(-1) >= 0.5).astype(float), w)
    labels = _labels(target) if target.ndim == 1 or target.shape[-1] == pred.shape[-1] else None
    scores = []
    for k in range(pred.shape[-1]):
        positive = (labels == k).astype(float) if labels is not None else target[:, k]
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
