"""Decision thresholds of binary and multi-label outputs chosen on the validation split
(``train.thresholds: auto``): per label, the one that maximizes F1."""

from __future__ import annotations

import numpy as np

__all__ = ["best_f1_thresholds"]


def _best_f1(p: np.ndarray, t: np.ndarray) -> float:
    """The threshold of one label: halfway between the lowest probability called positive at the best
    F1 and the next lower one (0.5 when the label never occurs)."""
    positives = float(t.sum())
    if positives == 0 or len(p) == 0:
        return 0.5
    order = np.argsort(-p, kind="stable")
    p_sorted, t_sorted = p[order], t[order]
    last_of_tie = np.r_[np.flatnonzero(np.diff(p_sorted) != 0), len(p_sorted) - 1]  # all equal values go together
    tp = np.cumsum(t_sorted)[last_of_tie]
    called = last_of_tie + 1.0
    f1 = 2.0 * tp / (called + positives)
    k = int(np.argmax(f1))  # the first (highest) threshold of the best F1
    lowest_called = p_sorted[last_of_tie[k]]
    below = p_sorted[last_of_tie[k] + 1] if last_of_tie[k] + 1 < len(p_sorted) else 0.0
    return float(np.clip((lowest_called + below) / 2.0, 1e-6, 1.0 - 1e-6))


def best_f1_thresholds(probabilities: np.ndarray, targets: np.ndarray) -> list[float]:
    """One threshold per label, each maximizing that label's F1 on these samples.

    Args:
        probabilities: (N,) for one binary output, or (N, K) for K labels.
        targets: 0/1 of the same shape.

    Returns:
        K thresholds (one for a single output), each in (0, 1).
    """
    p = np.asarray(probabilities, np.float64).reshape(len(probabilities), -1)
    t = (np.asarray(targets, np.float64).reshape(len(targets), -1) >= 0.5).astype(np.float64)
    return [_best_f1(p[:, k], t[:, k]) for k in range(p.shape[1])]
