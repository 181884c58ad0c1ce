"""FiLM (Perez et al. 2018): feature-wise scale and shift of CNN feature maps from other inputs.

DeepCalo's FiLM generator is a dense stack over the concatenated outputs of ``scalar_net`` and
``track_net`` (those whose ``connect_to`` contains ``'FiLM_gen'``), ending in one linear layer
with 2·F_i outputs for every CNN block i (F_i = filters of block i). The slice of block i holds γ
(first F_i) then β (last F_i); the first unit of block i computes (1 + γ)·x + β after a
normalization without its own scale and shift, before the activation.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from deepscope.config.common import Component
from deepscope.models.blocks.dense import DenseStack
from deepscope.models.layers import initialize

__all__ = ["FiLM", "FiLMGenerator", "film_slices"]


def film_slices(block_filters: Sequence[int]) -> list[slice]:
    """The slice of the generator's output that belongs to each block: 2·F_i wide, in block order."""
    slices, start = [], 0
    for filters in block_filters:
        slices.append(slice(start, start + 2 * filters))
        start += 2 * filters
    return slices


class FiLM(nn.Module):
    """(1 + γ)·x + β with γ, β broadcast over the spatial dims. No parameters of its own.

    ``forward(x, params)`` takes ``params`` (B, 2C): γ = ``params[:, :C]``, β = ``params[:, C:]``.
    The ``1 +`` makes a zero generator output the identity.
    """

    def forward(self, x: torch.Tensor, params: torch.Tensor) -> torch.Tensor:  # (B, C, *S), (B, 2C)
        channels = x.shape[1]
        if params.shape != (x.shape[0], 2 * channels):
            raise ValueError(f"FiLM parameters of shape {tuple(params.shape)} for feature maps of shape "
                             f"{tuple(x.shape)}; expected (B, 2·C) = ({x.shape[0]}, {2 * channels})")
        view = (x.shape[0], channels, *([1] * (x.ndim - 2)))
        gamma, beta = params[:, :channels].reshape(view), params[:, channels:].reshape(view)
        return (1.0 + gamma) * x + beta


class FiLMGenerator(nn.Module):
    """Dense stack → Linear(2·Σ_i F_i): one (γ, β) pair per channel of every CNN block.

    Args:
        in_features: width of the concatenated connected features.
        units: hidden layer widths (``[]``: the output layer sees the inputs directly).
        block_filters: F_i, the filters of each CNN block (DeepCalo: F0·2^i, so the output has
            2·F0·(2^B − 1) features).
        activation, normalization, dropout, initialization: the submodel's keys (the
            initialization covers the output layer too).
        path: dotted config path, for error messages.

    Attributes:
        out_features: 2·Σ_i F_i.
    """

    def __init__(self, in_features: int, units: Sequence[int], block_filters: Sequence[int],
                 activation: Component | None = None, normalization: Component | None = None,
                 dropout: float | None = None, initialization: Component | None = None,
                 path: str = "model.FiLM_gen") -> None:
        super().__init__()
        self.block_filters = [int(f) for f in block_filters]
        self.out_features = 2 * sum(self.block_filters)
        self.hidden = DenseStack(in_features, units, activation, normalization, dropout, initialization, path)
        self.output = nn.Linear(self.hidden.out_features, self.out_features)
        initialize(self.output, initialization, f"{path}.initialization")

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, in) -> (B, 2·ΣF)
        return self.output(self.hidden(x))
