"""What a ``grf_cubes`` classification run is judged against, on the same held-out samples: a logistic
regression on one number per sample, fitted on the training split (docs/grf-simulator.md).

- ``slope``: the fitted log-log slope of the sample's radially averaged power spectrum (every shell),
  the quantity the classes differ in;
- ``variance``: the sample's pixel variance (the classes are normalised to the same variance in
  expectation, so this one should stay near chance);
- ``small_scale``: the small-scale power, the mean variance of differences between neighbouring
  pixels along each axis. With the total power fixed, the steeper (GR) spectrum has less of it; on
  a Gaussian field, whose power spectrum holds all its information, one well-chosen band power like
  this is a strong classifier, and the bar a network has to reach.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["FEATURES", "grf_baselines", "sample_features"]

FEATURES = ("slope", "variance", "small_scale")
_MAX_TRAIN = 4096  # training samples the regressions are fitted on (a fixed random subset beyond this)
_CHUNK, _CHUNK_VOXELS = 256, 1 << 23  # samples read at once: at most 256, and at most ~8M voxels


def sample_features(images: np.ndarray) -> np.ndarray:
    """(B, 3): the power-spectrum slope, the pixel variance and the small-scale power of each sample
    (B, C, *spatial), from its first channel."""
    from deepscope.data.simulators.grf import fit_slope, power_spectrum

    first = np.asarray(images, np.float64)[:, 0]
    out = np.empty((len(first), len(FEATURES)))
    for i, sample in enumerate(first):
        small = np.mean([np.var(np.diff(sample, axis=a)) for a in range(sample.ndim)])
        out[i] = fit_slope(*power_spectrum(sample)), np.var(sample), small
    return out


def _features(store: Any, positions: np.ndarray) -> np.ndarray:
    """The features of the samples at ``positions``, read a few at a time (whole cubes are large)."""
    parts, i, chunk = [], 0, 1
    while i < len(positions):
        images = next(iter(store.read(positions[i:i + chunk])["images"].values()))
        parts.append(sample_features(images))
        i += len(images)
        chunk = max(1, min(_CHUNK, _CHUNK_VOXELS // max(1, images[0].size)))
    return np.concatenate(parts) if parts else np.empty((0, len(FEATURES)))


def _labels(store: Any, positions: np.ndarray) -> np.ndarray:
    if hasattr(store, "read_targets"):
        return np.asarray(store.read_targets(positions)).reshape(-1).astype(np.int64)
    return np.asarray(store.read(positions)["targets"]).reshape(-1).astype(np.int64)


def _auc(labels: np.ndarray, probs: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    if len(np.unique(labels)) < 2:
        return float("nan")
    if probs.shape[1] == 2:
        return float(roc_auc_score(labels, probs[:, 1]))
    return float(roc_auc_score(labels, probs, multi_class="ovr"))


def grf_baselines(data_cfg: Any, task: Any, stores: dict[str, Any], indices: dict[str, np.ndarray], split: str,
                  result: dict[str, np.ndarray]) -> tuple[dict[str, float], list[str]]:
    """Accuracy and AUC of each one-feature logistic regression on the samples of ``result``.

    Returns:
        ``({"accuracy_<feature>_baseline": ..., "auc_<feature>_baseline": ...}, report lines)``;
        empty for a task that is not a classification with one class label per sample, or without a
        training split.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    targets = np.asarray(result["targets"])
    if not task.is_classification or "train" not in stores or targets.size != len(targets):
        return {}, []  # one class label per sample only (not multi-label, not one-hot)
    train = np.asarray(indices["train"])
    if len(train) > _MAX_TRAIN:
        train = np.sort(np.random.default_rng(0).choice(train, _MAX_TRAIN, replace=False))
    y_train = _labels(stores["train"], train)
    if len(np.unique(y_train)) < 2:
        return {}, []
    x_train = _features(stores["train"], train)
    positions = np.asarray(result["index"])
    x, y = _features(stores[split], positions), targets.reshape(-1).astype(np.int64)
    scores: dict[str, float] = {}
    for j, name in enumerate(FEATURES):
        fit = make_pipeline(StandardScaler(), LogisticRegression()).fit(x_train[:, [j]], y_train)
        scores[f"accuracy_{name}_baseline"] = float(np.mean(fit.predict(x[:, [j]]) == y))
        scores[f"auc_{name}_baseline"] = _auc(y, fit.predict_proba(x[:, [j]]))
    model = float(np.mean(np.asarray(result["predictions"]).reshape(-1) == y))
    acc = {name: scores[f"accuracy_{name}_baseline"] for name in FEATURES}
    lines = [f"accuracy: model {model:.3f} | logistic regression on the power-spectrum slope {acc['slope']:.3f}, "
             f"on the pixel variance {acc['variance']:.3f}, on the small-scale power {acc['small_scale']:.3f} | "
             f"chance {np.bincount(y).max() / len(y):.3f}"]
    return scores, lines
