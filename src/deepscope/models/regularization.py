"""Keras-style weight regularizers and constraints (DeepCalo's ``layer_reg``).

A regularizer maps a tensor to a scalar penalty that is added to the training loss; a constraint
maps a weight tensor to its projection, applied after every optimizer step. Norm-based constraints
work per output unit: over every axis but the first of torch's weight layout (``(out, in, *k)``),
which is what Keras' recommended ``axis`` (all but the last of its ``(*k, in, out)`` layout) does.
A 1-D tensor (a bias) is treated as one vector.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from deepscope.components import CONSTRAINTS, REGULARIZERS
from deepscope.config.common import Component
from deepscope.registry import check_kwargs

__all__ = ["l1", "l1_l2", "l2", "make_constraint", "make_regularizer", "max_norm", "min_max_norm", "non_neg",
           "unit_norm"]

Penalty = Callable[[torch.Tensor], torch.Tensor]
Projection = Callable[[torch.Tensor], torch.Tensor]
_EPS = 1e-7  # Keras' epsilon


def l1(l: float = 0.01) -> Penalty:  # noqa: E741 (Keras' name)
    return lambda x: l * x.abs().sum()


def l2(l: float = 0.01) -> Penalty:  # noqa: E741
    return lambda x: l * (x * x).sum()


def l1_l2(l1: float = 0.01, l2: float = 0.01) -> Penalty:
    return lambda x: l1 * x.abs().sum() + l2 * (x * x).sum()


def _unit_norms(w: torch.Tensor) -> torch.Tensor:
    if w.ndim == 1:
        return w.norm().reshape(())
    return w.flatten(1).norm(dim=1).reshape(-1, *([1] * (w.ndim - 1)))


def max_norm(max_value: float = 2.0) -> Projection:
    def project(w: torch.Tensor) -> torch.Tensor:
        norms = _unit_norms(w)
        return w * (norms.clamp(0.0, max_value) / (_EPS + norms))
    return project


def unit_norm() -> Projection:
    return lambda w: w / (_EPS + _unit_norms(w))


def non_neg() -> Projection:
    return lambda w: w.clamp_min(0.0)


def min_max_norm(min_value: float = 0.0, max_value: float = 1.0, rate: float = 1.0) -> Projection:
    def project(w: torch.Tensor) -> torch.Tensor:
        norms = _unit_norms(w)
        desired = rate * norms.clamp(min_value, max_value) + (1.0 - rate) * norms
        return w * (desired / (_EPS + norms))
    return project


def make_regularizer(spec: Component | None, path: str) -> Penalty | None:
    """The penalty function for a spec (``None`` for none)."""
    if spec is None:
        return None
    build = REGULARIZERS.get(spec.class_name)
    check_kwargs(build, spec.config, f"{path}.config")
    return build(**spec.config)


def make_constraint(spec: Component | None, path: str) -> Projection | None:
    """The projection function for a spec (``None`` for none)."""
    if spec is None:
        return None
    build = CONSTRAINTS.get(spec.class_name)
    check_kwargs(build, spec.config, f"{path}.config")
    return build(**spec.config)
