"""Loss functions. Each returns one loss per sample, shape (B,), so sample weights apply exactly.

Names, aliases and what output each expects (values, logits or probabilities) are declared in
:mod:`deepscope.components`. Keras' definitions are followed where the name is Keras' (``mape`` is
in percent, ``categorical_crossentropy`` takes probabilities clipped at 1e-7).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

from deepscope.components import LOSSES
from deepscope.config.common import Component
from deepscope.registry import check_kwargs

__all__ = ["make_loss"]

_EPS = 1e-7


def _per_sample(x: torch.Tensor) -> torch.Tensor:
    return x.reshape(x.shape[0], -1).mean(1) if x.ndim > 1 else x


def mse(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return _per_sample((pred - target) ** 2)


def mae(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return _per_sample((pred - target).abs())


def huber(pred: torch.Tensor, target: torch.Tensor, delta: float = 1.0) -> torch.Tensor:
    return _per_sample(F.huber_loss(pred, target, reduction="none", delta=delta))


def logcosh(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    x = pred - target  # log(cosh(x)) = x + softplus(-2x) - log 2, stable for large |x|
    return _per_sample(x + F.softplus(-2.0 * x) - math.log(2.0))


def mape(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return _per_sample(100.0 * (pred - target).abs() / target.abs().clamp_min(_EPS))


def msle(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return _per_sample((torch.log1p(pred.clamp_min(0.0)) - torch.log1p(target.clamp_min(0.0))) ** 2)


def poisson(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return _per_sample(pred - target * torch.log(pred + _EPS))


def bce(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    p = pred.clamp(_EPS, 1.0 - _EPS)
    return _per_sample(-(target * torch.log(p) + (1.0 - target) * torch.log(1.0 - p)))


def bce_with_logits(pred: torch.Tensor, target: torch.Tensor, pos_weight: float | None = None) -> torch.Tensor:
    w = None if pos_weight is None else torch.as_tensor(pos_weight, dtype=pred.dtype, device=pred.device)
    return _per_sample(F.binary_cross_entropy_with_logits(pred, target, reduction="none", pos_weight=w))


def cross_entropy(pred: torch.Tensor, target: torch.Tensor, label_smoothing: float = 0.0) -> torch.Tensor:
    """Softmax cross entropy on logits (B, K); targets are labels (B,) or probabilities (B, K)."""
    return F.cross_entropy(pred, target, reduction="none", label_smoothing=label_smoothing)


def categorical_crossentropy(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Keras' categorical cross entropy on probabilities (B, K); labels (B,) are one-hot encoded."""
    if target.ndim == 1:
        target = F.one_hot(target.long(), pred.shape[-1]).to(pred.dtype)
    p = pred / pred.sum(-1, keepdim=True)
    return -(target * torch.log(p.clamp(_EPS, 1.0 - _EPS))).sum(-1)


def make_loss(spec: Component, path: str = "train.loss") -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The per-sample loss function for a spec, with its config bound."""
    fn = LOSSES.get(spec.class_name)
    check_kwargs(fn, spec.config, f"{path}.config", ignore=("pred", "target"))
    if not spec.config:
        return fn
    kwargs = dict(spec.config)
    return lambda pred, target: fn(pred, target, **kwargs)
