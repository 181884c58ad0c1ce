"""DeepCalo's gate net: a per-pixel MLP turning a ``gate_<name>`` image into a gate for image ``<name>``."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from deepscope.components import ACTIVATIONS
from deepscope.config.common import Component
from deepscope.models.blocks.dense import DenseStack
from deepscope.models.layers import initialize, make_activation

__all__ = ["GateNet", "merge_gate"]

_PARAMETRIC = ("pgauss", "pgauss_f")
MERGE_METHODS = ("multiply", "concatenate")


class GateNet(nn.Module):
    """1 → ``units`` → 1 per pixel, then ``final_activation``; one net shared by every pixel,
    channel and gated image (DeepCalo applied one ``gate_net`` through a TimeDistributed layer).

    Hidden layers are DeepCalo's dense layers (Linear → Dropout → norm → activation); the output
    layer is Linear(·, 1) with a bias. With ``use_res`` the input is added to that output. With
    ``units: []`` only ``final_activation`` is applied (to the gate image itself).

    Args:
        units: hidden layer widths.
        use_res: add the input to the output layer (only with hidden layers, as DeepCalo).
        final_activation: the gate's activation, e.g. ``gauss``, ``gauss_f``, ``pgauss``,
            ``pgauss_f`` (``None``: linear).
        final_activation_init: ``[α]``, the starting width of ``pgauss``/``pgauss_f``; an
            ``init`` in the activation's own config wins over it.
        activation, normalization, dropout, initialization: the submodel's keys.
        path: dotted config path, for error messages.
    """

    def __init__(self, units: Sequence[int] = (), use_res: bool = False,
                 final_activation: Component | None = None, final_activation_init: Sequence[float] = (1.0,),
                 activation: Component | None = None, normalization: Component | None = None,
                 dropout: float | None = None, initialization: Component | None = None,
                 path: str = "model.gate_net") -> None:
        super().__init__()
        self.hidden = DenseStack(1, units, activation, normalization, dropout, initialization, path)
        self.output = nn.Linear(self.hidden.out_features, 1) if units else None
        if self.output is not None:
            initialize(self.output, initialization, f"{path}.initialization")
        self.use_res = bool(use_res and units)
        if final_activation is not None and "init" not in final_activation.config \
                and ACTIVATIONS.canonical(final_activation.class_name, f"{path}.final_activation") in _PARAMETRIC:
            final_activation = Component(class_name=final_activation.class_name,
                                         config={**final_activation.config, "init": float(final_activation_init[0])})
        self.final_activation = make_activation(final_activation, 1, f"{path}.final_activation")

    def forward(self, gate_image: torch.Tensor) -> torch.Tensor:  # (B, C, *S) -> (B, C, *S)
        x = gate_image.unsqueeze(-1)  # every pixel of every channel is one 1-feature sample
        h = self.hidden(x)
        if self.output is not None:
            h = self.output(h)
            if self.use_res:
                h = h + x
        return self.final_activation(h.reshape(-1, 1)).reshape(gate_image.shape)


def merge_gate(image: torch.Tensor, gate: torch.Tensor, method: str) -> torch.Tensor:
    """``multiply``: image·gate; ``concatenate``: [image, image·gate] on channels (2·C channels).

    Raises:
        ValueError: an unknown ``method``.
    """
    if method == "multiply":
        return image * gate
    if method == "concatenate":
        return torch.cat([image, image * gate], 1)
    raise ValueError(f"gate merge method {method!r}; available: {', '.join(MERGE_METHODS)}")
