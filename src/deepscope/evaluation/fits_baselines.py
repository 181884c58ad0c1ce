"""What a FITS-folder run is judged against, on the same held-out samples (docs/deconvolution.md):

- deconvolution (image targets): the all-zeros sky and the best Wiener deconvolution with the beam in
  the dirty cubes' headers (:mod:`deepscope.evaluation.deconvolution`);
- source parameters (regressed columns): the training mean of each column, and a one-feature
  linear fit of each column on the summed flux of the input crop (fitted on the training split).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from deepscope.evaluation.deconvolution import report_lines, split_scores

__all__ = ["fits_baselines", "parameter_baselines"]


def _within(pred: np.ndarray, target: np.ndarray) -> np.ndarray:
    return np.mean(np.abs(pred - target) <= 0.1 * np.abs(target), axis=0)


def _crop_sums(store: Any, indices: np.ndarray) -> np.ndarray:
    images = next(iter(store.read(np.asarray(indices))["images"].values()))
    return images.reshape(len(images), -1).sum(1).astype(np.float64)


def parameter_baselines(train_store: Any, train_indices: np.ndarray, store: Any, result: dict[str, np.ndarray],
                        names: list[str]) -> dict[str, float]:
    """The fraction within 10% and the MAE of each column for the model, the training mean and a
    linear fit on the summed input crop (least squares on the training split).

    Returns:
        ``within_10_percent_<col>_<who>`` and ``mae_<col>_<who>`` for who in ``mean_baseline``,
        ``sum_baseline``.
    """
    train_targets = np.asarray(train_store.read(np.asarray(train_indices))["targets"], np.float64)
    train_targets = train_targets.reshape(len(train_targets), -1)
    targets = np.asarray(result["targets"], np.float64).reshape(len(result["targets"]), -1)
    mean = np.broadcast_to(train_targets.mean(0), targets.shape)
    feature = np.c_[_crop_sums(train_store, train_indices), np.ones(len(train_targets))]
    coef, *_ = np.linalg.lstsq(feature, train_targets, rcond=None)
    fitted = np.c_[_crop_sums(store, result["index"]), np.ones(len(targets))] @ coef
    scores: dict[str, float] = {}
    for who, pred in (("mean_baseline", mean), ("sum_baseline", fitted)):
        for k, name in enumerate(names):
            scores[f"within_10_percent_{name}_{who}"] = float(_within(pred[:, k], targets[:, k]))
            scores[f"mae_{name}_{who}"] = float(np.mean(np.abs(pred[:, k] - targets[:, k])))
    return scores


def _parameter_lines(scores: dict[str, float], result: dict[str, np.ndarray], names: list[str]) -> list[str]:
    pred = np.asarray(result["predictions"], np.float64).reshape(len(result["predictions"]), -1)
    target = np.asarray(result["targets"], np.float64).reshape(len(result["targets"]), -1)
    model = _within(pred, target)
    return [f"{name}: within 10% of the truth: model {model[k]:.1%} | training mean "
            f"{scores[f'within_10_percent_{name}_mean_baseline']:.1%} | linear fit on the crop's sum "
            f"{scores[f'within_10_percent_{name}_sum_baseline']:.1%}" for k, name in enumerate(names)]


def fits_baselines(data_cfg: Any, task: Any, stores: dict[str, Any], indices: dict[str, np.ndarray], split: str,
                   result: dict[str, np.ndarray]) -> tuple[dict[str, float], list[str]]:
    """The baselines of a FITS-folder run's predicted ``split`` and the lines that report them."""
    if task.spec.dense:
        scores = split_scores(data_cfg, stores[split], result)
        if scores is None:
            return {}, []
        return {k: v for k, v in scores.items() if k not in ("psnr", "ssim")}, report_lines(scores)
    if task.kind == "regression" and "train" in stores:
        names = task.spec.column_names()
        scores = parameter_baselines(stores["train"], indices["train"], stores[split], result, names)
        return scores, _parameter_lines(scores, result, names)
    return {}, []
