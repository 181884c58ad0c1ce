"""Keras-style weight regularizers and constraints (DeepCalo's ``layer_reg``), and their wiring.

A regularizer maps a tensor to a scalar penalty that is added to the training loss; a constraint
maps a weight tensor to its projection, applied after every optimizer step. Norm-based constraints
work per output unit: over every axis but the first of torch's weight layout (``(out, in, *k)``),
which is what Keras' recommended ``axis`` (all but the last of its ``(*k, in, out)`` layout) does.
A 1-D tensor (a bias) is treated as one vector.

Wiring: :func:`attach_layer_reg` tags every dense and conv layer of a submodel (as DeepCalo's
README says: "all dense or convolutional layers in the submodel"); the training step adds
:func:`regularization_penalty` to the loss and calls :func:`apply_constraints` after each
optimizer step. Regularizers and constraints are small picklable objects, so a tagged model can
be deep-copied and pickled.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from deepscope.components import CONSTRAINTS, REGULARIZERS
from deepscope.config.common import Component
from deepscope.models.layers import WEIGHTED_LAYERS
from deepscope.registry import check_kwargs

__all__ = ["LayerReg", "activity_recorders", "apply_constraints", "attach_layer_reg", "clear_activity", "has_layer_reg", "l1", "l1_l2", "l2", "layer_reg_of",
           "make_constraint", "make_regularizer", "max_norm", "min_max_norm", "non_neg", "regularization_penalty",
           "unit_norm"]

Penalty = Callable[[torch.Tensor], torch.Tensor]
Projection = Callable[[torch.Tensor], torch.Tensor]
_EPS = 1e-7  # Keras' epsilon
_TAG = "_deepscope_layer_reg"


# --- regularizers ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _L1L2:
    l1: float = 0.0
    l2: float = 0.0

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        penalty = x.new_zeros(())
        if self.l1:
            penalty = penalty + self.l1 * x.abs().sum()
        if self.l2:
            penalty = penalty + self.l2 * (x * x).sum()
        return penalty


def l1(l: float = 0.01) -> Penalty:  # noqa: E741 (Keras' name)
    """l · Σ|x|."""
    return _L1L2(l1=l)


def l2(l: float = 0.01) -> Penalty:  # noqa: E741
    """l · Σx²."""
    return _L1L2(l2=l)


def l1_l2(l1: float = 0.01, l2: float = 0.01) -> Penalty:
    """l1 · Σ|x| + l2 · Σx²."""
    return _L1L2(l1=l1, l2=l2)


# --- constraints -----------------------------------------------------------------------------------


def _unit_norms(w: torch.Tensor) -> torch.Tensor:
    if w.ndim == 1:
        return w.norm().reshape(())
    return w.flatten(1).norm(dim=1).reshape(-1, *([1] * (w.ndim - 1)))


@dataclass(frozen=True)
class _MinMaxNorm:
    min_value: float = 0.0
    max_value: float = 1.0
    rate: float = 1.0

    def __call__(self, w: torch.Tensor) -> torch.Tensor:
        norms = _unit_norms(w)
        desired = self.rate * norms.clamp(self.min_value, self.max_value) + (1.0 - self.rate) * norms
        return w * (desired / (_EPS + norms))


@dataclass(frozen=True)
class _MaxNorm:
    max_value: float = 2.0

    def __call__(self, w: torch.Tensor) -> torch.Tensor:
        norms = _unit_norms(w)
        return w * (norms.clamp(0.0, self.max_value) / (_EPS + norms))


@dataclass(frozen=True)
class _UnitNorm:
    def __call__(self, w: torch.Tensor) -> torch.Tensor:
        return w / (_EPS + _unit_norms(w))


@dataclass(frozen=True)
class _NonNeg:
    def __call__(self, w: torch.Tensor) -> torch.Tensor:
        return w.clamp_min(0.0)


def max_norm(max_value: float = 2.0) -> Projection:
    """Rescale each output unit's weights to norm ≤ ``max_value``."""
    return _MaxNorm(max_value)


def unit_norm() -> Projection:
    """Rescale each output unit's weights to norm 1."""
    return _UnitNorm()


def non_neg() -> Projection:
    """Clip weights at 0 from below."""
    return _NonNeg()


def min_max_norm(min_value: float = 0.0, max_value: float = 1.0, rate: float = 1.0) -> Projection:
    """Move each output unit's norm into [min_value, max_value] by ``rate``."""
    return _MinMaxNorm(min_value, max_value, rate)


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


# --- wiring: tag layers, sum penalties, apply constraints ------------------------------------------


@dataclass
class _ActivityRecorder:
    """Forward hook: records penalty(output) / batch size of a tagged layer in training mode.

    The division by the batch size is tf.keras' (Keras ≥ 2.3; standalone Keras 2.2, which
    DeepCalo used, summed over the batch), so the penalty does not grow with the batch size.
    """

    penalty: Penalty
    values: list[torch.Tensor] = field(default_factory=list)

    def __call__(self, module: nn.Module, args: Any, output: torch.Tensor) -> None:
        if module.training:
            self.values.append(self.penalty(output) / max(1, output.shape[0]))

    def __getstate__(self) -> dict[str, Any]:
        return {"penalty": self.penalty, "values": []}  # recorded tensors belong to one forward


@dataclass
class LayerReg:
    """What one layer carries after :func:`attach_layer_reg`.

    Attributes:
        path: the submodel's dotted config path (``model.cnn.layer_reg``).
        kernel, bias: weight penalties; activity: recorder of the output penalty.
        kernel_constraint, bias_constraint: projections.
    """

    path: str
    kernel: Penalty | None = None
    bias: Penalty | None = None
    activity: _ActivityRecorder | None = None
    kernel_constraint: Projection | None = None
    bias_constraint: Projection | None = None


def attach_layer_reg(module: nn.Module, layer_reg_cfg: Any, path: str) -> int:
    """Tag every dense and conv layer inside ``module`` with the submodel's ``layer_reg``.

    Every ``nn.Linear``/``nn.ConvNd`` counts, including squeeze-and-excite layers, strided
    downsampling convs, residual projections and output layers (DeepCalo's README: "all dense or
    convolutional layers in the submodel"). An activity regularizer adds a forward hook that
    records ``penalty(output) / batch size`` in training mode. Tagging again replaces the tag.

    Args:
        module: the submodel.
        layer_reg_cfg: an object or mapping with ``kernel_regularizer``, ``bias_regularizer``,
            ``activity_regularizer``, ``kernel_constraint``, ``bias_constraint`` ("str or config
            dict" specs or ``None``), e.g. ``model.cnn.layer_reg``; ``None`` or all-``None`` tags nothing.
        path: the submodel's dotted config path (``model.cnn``), for messages.

    Returns:
        The number of layers tagged.

    Raises:
        ConfigError: an unknown option in a regularizer's or constraint's config.
    """
    if layer_reg_cfg is None:
        return 0
    get = layer_reg_cfg.get if isinstance(layer_reg_cfg, Mapping) else \
        (lambda key: getattr(layer_reg_cfg, key, None))
    base = f"{path}.layer_reg"
    kernel = make_regularizer(_component(get("kernel_regularizer")), f"{base}.kernel_regularizer")
    bias = make_regularizer(_component(get("bias_regularizer")), f"{base}.bias_regularizer")
    activity = make_regularizer(_component(get("activity_regularizer")), f"{base}.activity_regularizer")
    kernel_c = make_constraint(_component(get("kernel_constraint")), f"{base}.kernel_constraint")
    bias_c = make_constraint(_component(get("bias_constraint")), f"{base}.bias_constraint")
    if all(x is None for x in (kernel, bias, activity, kernel_c, bias_c)):
        return 0
    count = 0
    for layer in module.modules():
        if not isinstance(layer, WEIGHTED_LAYERS):
            continue
        old = getattr(layer, _TAG, None)
        if old is not None and old.activity is not None:
            for key, hook in list(layer._forward_hooks.items()):
                if hook is old.activity:
                    del layer._forward_hooks[key]
        recorder = _ActivityRecorder(activity) if activity is not None else None
        if recorder is not None:
            layer.register_forward_hook(recorder)
        setattr(layer, _TAG, LayerReg(base, kernel, bias, recorder, kernel_c, bias_c))
        count += 1
    return count


def layer_reg_of(layer: nn.Module) -> LayerReg | None:
    """The tag :func:`attach_layer_reg` left on ``layer``, or ``None``."""
    return getattr(layer, _TAG, None)


def _component(value: Any) -> Component | None:
    if value is None or isinstance(value, Component):
        return value
    if isinstance(value, str):
        return Component(class_name=value)
    return Component(**dict(value))


def _tagged(net: nn.Module) -> list[tuple[nn.Module, LayerReg]]:
    tagged = []
    for m in net.modules():
        tag = getattr(m, _TAG, None)
        if tag is not None:
            tagged.append((m, tag))
    return tagged


def activity_recorders(net: nn.Module) -> list[_ActivityRecorder]:
    """The activity-penalty recorders of ``net``'s tagged layers (found once, so that a forward pass
    clears them without walking the modules: the walk costs time every step and breaks torch.compile's graph)."""
    return [tag.activity for _, tag in _tagged(net) if tag.activity is not None]


def has_layer_reg(net: nn.Module) -> bool:
    """Whether any layer of ``net`` carries a regularizer or constraint (checked once, not per step)."""
    return bool(_tagged(net))


def clear_activity(net: nn.Module) -> None:
    """Forget the activity penalties recorded so far (a new forward pass starts)."""
    for _, tag in _tagged(net):
        if tag.activity is not None:
            tag.activity.values.clear()


def regularization_penalty(net: nn.Module) -> torch.Tensor:
    """The penalty to add to the loss: kernel and bias penalties of every tagged layer, plus the
    activity penalties recorded since the last call (normally: the last training forward).

    Reading consumes the activity penalties, so call it once per training step, after the
    forward. Returns a 0-d tensor (zero when nothing is tagged) on the parameters' device.
    """
    terms: list[torch.Tensor] = []
    for layer, tag in _tagged(net):
        if tag.kernel is not None:
            terms.append(tag.kernel(layer.weight))
        if tag.bias is not None and layer.bias is not None:
            terms.append(tag.bias(layer.bias))
        if tag.activity is not None and tag.activity.values:
            terms.extend(tag.activity.values)
            tag.activity.values = []
    if not terms:
        param = next(net.parameters(), None)
        return torch.zeros((), device=param.device if param is not None else None)
    return torch.stack([t.reshape(()) for t in terms]).sum()


def apply_constraints(net: nn.Module) -> None:
    """Project the weights and biases of every tagged layer in place (call after each optimizer step)."""
    with torch.no_grad():
        for layer, tag in _tagged(net):
            if tag.kernel_constraint is not None:
                layer.weight.copy_(tag.kernel_constraint(layer.weight))
            if tag.bias_constraint is not None and layer.bias is not None:
                layer.bias.copy_(tag.bias_constraint(layer.bias))
