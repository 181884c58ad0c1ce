"""What the model's raw output means: how it is shaped to the targets, turned into predictions
(probabilities, classes, values in data units) and scored. Shared by training, evaluation and
prediction so the three can never disagree.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from deepscope.components import LOSSES, METRICS
from deepscope.data.spec import InputSpec

__all__ = ["Task", "MAXIMIZED_METRICS", "monitor_mode", "softmax_default_threshold"]

MAXIMIZED_METRICS = {"accuracy", "auc", "r2", "psnr", "ssim", "precision", "recall", "f1", "within_10_percent"}


def monitor_mode(monitor: str) -> str:
    """'max' for metrics where higher is better (listed here, or ``maximize`` in their registry entry),
    else 'min'."""
    name = monitor.split("_", 1)[-1]
    maximize = name in MAXIMIZED_METRICS or (name in METRICS and METRICS.entry(name).meta.get("maximize", False))
    return "max" if maximize else "min"


def softmax_default_threshold(n_labels: int) -> float:
    """The default decision threshold of multi-label softmax probabilities (``softmax_multi_hot``).

    A perfect fit gives each of a sample's m labels 1/m and the others 0; the smallest share of a
    label that is on is 1/K (every label on). 1/(2K) lies halfway between that and 0: of all
    thresholds, it keeps the widest margin both to a label that is on (whatever m) and to one that is off.

    Args:
        n_labels: K, the number of labels (>= 1).

    Returns:
        1 / (2 K).
    """
    return 1.0 / (2.0 * max(int(n_labels), 1))


@dataclass
class Task:
    """The loss family and target layout of one experiment.

    Attributes:
        loss_name: canonical loss name.
        output: what the loss expects of the model output: ``values``, ``logits``, ``probs``, or
            ``softmax_logits`` (multi-label logits whose probabilities are one softmax over the labels,
            the ``softmax_multi_hot`` loss).
        kind: ``regression``, ``binary`` or ``multiclass``.
        spec: the data's :class:`InputSpec`.
        target_stats: (mean, std) when regression targets were standardized.
        metrics: canonical metric names.
        thresholds: decision threshold of binary / multi-label outputs: one, or one per label. With
            ``softmax_logits`` a single 0.5 (``train.thresholds``' default, also what ``auto`` uses until
            it has chosen) is read as :func:`softmax_default_threshold`, 1/(2K) for K labels.
    """

    loss_name: str
    spec: InputSpec
    metrics: list[str] = field(default_factory=list)
    target_stats: tuple[np.ndarray, np.ndarray] | None = None
    thresholds: float | list[float] = 0.5

    def __post_init__(self) -> None:
        meta = LOSSES.entry(self.loss_name).meta
        self.output, self.kind = meta["output"], meta["task"]
        if self.output == "softmax_logits" and not isinstance(self.thresholds, list) and self.thresholds == 0.5:
            # K softmax probabilities share 1: a label of a sample with m labels is fit best by 1/m, so 0.5
            # would call at most one label
            self.thresholds = softmax_default_threshold(self.spec.output_size)

    @property
    def is_classification(self) -> bool:
        return self.kind in ("binary", "multiclass")

    def shape_output(self, out: torch.Tensor, multiply: torch.Tensor | None = None) -> torch.Tensor:
        """Raw (B, K) output → target layout; times ``multiply_output_with`` (B,) when given."""
        if self.spec.target_kind == "label":
            shaped = out
        elif self.spec.dense:  # images keep their own size: a net trained on crops predicts whole images
            shaped = out.reshape(out.shape[0], self.spec.target_shape[0], *out.shape[2:])
        elif self.spec.target_shape:
            shaped = out.reshape(out.shape[0], *self.spec.target_shape)
        else:
            shaped = out.reshape(out.shape[0])
        if multiply is not None:
            shaped = shaped * multiply.reshape(-1, *([1] * (shaped.ndim - 1)))
        return shaped

    def predictions(self, shaped: np.ndarray) -> dict[str, np.ndarray]:
        """Shaped outputs (numpy) → what users read: probabilities and classes, or values in data units."""
        if self.kind == "multiclass":
            probs = _softmax(shaped) if self.output == "logits" else shaped / shaped.sum(-1, keepdims=True)
            return {"predictions": probs.argmax(-1), "probabilities": probs}
        if self.kind == "binary":
            if self.output == "softmax_logits":
                probs = _softmax(shaped)  # (B, K), one distribution over the labels
            else:
                probs = 1.0 / (1.0 + np.exp(-shaped)) if self.output == "logits" else shaped
            threshold = np.asarray(self.thresholds, dtype=probs.dtype if probs.dtype.kind == "f" else np.float64)
            return {"predictions": (probs >= threshold).astype(np.int64), "probabilities": probs}
        return {"predictions": self.targets_in_data_units(shaped)}

    def targets_in_data_units(self, targets: np.ndarray) -> np.ndarray:
        """Standardized regression targets (or predictions of them) back in data units; dense targets
        were standardized per channel."""
        if self.kind == "regression" and self.target_stats is not None:
            mean, std = self.target_stats
            if self.spec.dense and mean.ndim == 1:
                shape = (1, -1) + (1,) * (targets.ndim - 2)
                mean, std = mean.reshape(shape), std.reshape(shape)
            return targets * std + mean
        return targets

    def score(self, preds: dict[str, np.ndarray], targets: np.ndarray, weights: np.ndarray | None) -> dict[str, float]:
        """Every configured metric on a whole split (predictions from :meth:`predictions`).

        A per-column metric (``per_column`` in its registry entry) is logged as its mean under its
        name and per column as ``<prefix>_<column>`` (columns named by the data, else 0, 1, …).
        """
        values: dict[str, float] = {}
        for name in self.metrics:
            entry = METRICS.entry(name)
            value = entry.load()(self._scored(entry, preds), targets, weights)
            if entry.meta.get("per_column"):
                column_values = np.atleast_1d(np.asarray(value, dtype=np.float64))
                values[name] = float(np.nanmean(column_values)) if column_values.size else float("nan")
                prefix = entry.meta.get("column_prefix", name)
                for column, v in zip(self._column_names(len(column_values)), column_values):
                    values[f"{prefix}_{column}"] = float(v)
            else:
                values[name] = float(value)
        return values

    def sample_scores(self, shaped: np.ndarray, targets: np.ndarray, names: list[str] | None = None) -> np.ndarray:
        """Each configured metric (or each of ``names``) of each sample, (B, M) in that order, for image targets:
        their metrics are means over samples, so a split's value is the (weighted) mean of these and
        the images need not be kept until the split ends (NaN: a sample the metric skips, such as the
        PSNR of an all-zero target)."""
        preds = self.predictions(shaped)
        targets = self.targets_in_data_units(targets)
        names = self.metrics if names is None else names
        out = np.empty((len(targets), len(names)))
        for j, name in enumerate(names):
            entry = METRICS.entry(name)
            scored, fn = self._scored(entry, preds), entry.load()
            for i in range(len(targets)):
                out[i, j] = float(fn(scored[i:i + 1], targets[i:i + 1], None))
        return out

    def sample_scores_torch(self, shaped: torch.Tensor, targets: torch.Tensor,
                            names: list[str] | None = None) -> torch.Tensor | None:
        """:meth:`sample_scores` on the outputs' device, (B, M), for regression to image targets whose
        metrics all have a torch version (``sample_torch`` in their registry entry); ``None`` otherwise."""
        entries = [METRICS.entry(name) for name in (self.metrics if names is None else names)]
        if self.kind != "regression" or not all("sample_torch" in e.meta for e in entries):
            return None
        preds, targets = shaped.float(), targets.float()
        if self.target_stats is not None:  # back to data units, as :meth:`targets_in_data_units`
            mean, std = (torch.as_tensor(a, dtype=torch.float32, device=preds.device) for a in self.target_stats)
            if mean.ndim == 1:
                shape = (1, -1) + (1,) * (preds.ndim - 2)
                mean, std = mean.reshape(shape), std.reshape(shape)
            preds, targets = preds * std + mean, targets * std + mean
        if not entries:
            return preds.new_zeros((len(preds), 0))
        import importlib

        columns = []
        for entry in entries:
            module, _, attr = entry.meta["sample_torch"].partition(":")
            columns.append(getattr(importlib.import_module(module), attr)(preds, targets))
        return torch.stack(columns, dim=1)

    def _scored(self, entry: Any, preds: dict[str, np.ndarray]) -> np.ndarray:
        """What a metric reads: the classes, or the probabilities (values for regression)."""
        wants = entry.meta.get("input")
        if self.kind == "binary":
            wants = entry.meta.get("binary_input", wants)
        return preds["predictions"] if wants == "classes" else preds.get("probabilities", preds["predictions"])

    def _column_names(self, n: int) -> list[str]:
        names = self.spec.column_names()
        return names if len(names) == n else [str(i) for i in range(n)]


def _softmax(x: np.ndarray) -> np.ndarray:
    z = np.exp(x - x.max(-1, keepdims=True))
    return z / z.sum(-1, keepdims=True)
