"""What the model's raw output means: how it is shaped to the targets, turned into predictions
(probabilities, classes, values in data units) and scored. Shared by training, evaluation and
prediction so the three can never disagree.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from deepscope.components import LOSSES, METRICS
from deepscope.data.spec import InputSpec

__all__ = ["Task", "MAXIMIZED_METRICS", "monitor_mode"]

MAXIMIZED_METRICS = {"accuracy", "auc", "r2"}


def monitor_mode(monitor: str) -> str:
    """'max' for metrics where higher is better, else 'min'."""
    return "max" if monitor.split("_", 1)[-1] in MAXIMIZED_METRICS else "min"


@dataclass
class Task:
    """The loss family and target layout of one experiment.

    Attributes:
        loss_name: canonical loss name.
        output: what the loss expects of the model output: ``values``, ``logits`` or ``probs``.
        kind: ``regression``, ``binary`` or ``multiclass``.
        spec: the data's :class:`InputSpec`.
        target_stats: (mean, std) when regression targets were standardized.
        metrics: canonical metric names.
    """

    loss_name: str
    spec: InputSpec
    metrics: list[str] = field(default_factory=list)
    target_stats: tuple[np.ndarray, np.ndarray] | None = None

    def __post_init__(self) -> None:
        meta = LOSSES.entry(self.loss_name).meta
        self.output, self.kind = meta["output"], meta["task"]

    @property
    def is_classification(self) -> bool:
        return self.kind in ("binary", "multiclass")

    def shape_output(self, out: torch.Tensor, multiply: torch.Tensor | None = None) -> torch.Tensor:
        """Raw (B, K) output → target layout; times ``multiply_output_with`` (B,) when given."""
        if self.spec.target_kind == "label":
            shaped = out
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
            probs = 1.0 / (1.0 + np.exp(-shaped)) if self.output == "logits" else shaped
            return {"predictions": (probs >= 0.5).astype(np.int64), "probabilities": probs}
        values = shaped
        if self.target_stats is not None:
            mean, std = self.target_stats
            values = values * std + mean
        return {"predictions": values}

    def targets_in_data_units(self, targets: np.ndarray) -> np.ndarray:
        if self.kind == "regression" and self.target_stats is not None:
            mean, std = self.target_stats
            return targets * std + mean
        return targets

    def score(self, preds: dict[str, np.ndarray], targets: np.ndarray, weights: np.ndarray | None) -> dict[str, float]:
        """Every configured metric on a whole split (predictions from :meth:`predictions`)."""
        scored = preds.get("probabilities", preds["predictions"])
        return {name: float(METRICS.get(name)(scored, targets, weights)) for name in self.metrics}


def _softmax(x: np.ndarray) -> np.ndarray:
    z = np.exp(x - x.max(-1, keepdims=True))
    return z / z.sum(-1, keepdims=True)
