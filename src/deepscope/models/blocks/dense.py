"""Dense stacks as DeepCalo builds them: Linear → Dropout → Norm → Activation per layer."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from deepscope.config.common import Component
from deepscope.models.layers import initialize, make_activation, make_normalization

__all__ = ["DenseStack"]


class DenseLayer(nn.Module):
    """One hidden dense layer. The bias is dropped when a normalization follows (it would cancel)."""

    def __init__(self, in_features: int, out_features: int, activation: Component | None,
                 normalization: Component | None, dropout: float | None, path: str) -> None:
        super().__init__()
        self.linear = nn.Linear(in_features, out_features, bias=normalization is None)
        self.dropout = nn.Dropout(dropout) if dropout else nn.Identity()
        self.norm = make_normalization(normalization, out_features, 0, f"{path}.normalization")
        self.act = make_activation(activation, out_features, f"{path}.activation")

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (..., in) -> (..., out)
        x = self.dropout(self.linear(x))
        lead = x.shape[:-1]
        x = x.reshape(-1, x.shape[-1])  # (N, C): norms and per-channel activations see features on dim 1
        return self.act(self.norm(x)).reshape(*lead, x.shape[-1])


class DenseStack(nn.Module):
    """Hidden dense layers over the last axis; ``units = []`` is the identity.

    Args:
        in_features: input width.
        units: width of each layer.
        activation, normalization, dropout, initialization: DeepCalo's per-submodel keys.
        path: dotted config path, for error messages.
    """

    def __init__(self, in_features: int, units: Sequence[int], activation: Component | None = None,
                 normalization: Component | None = None, dropout: float | None = None,
                 initialization: Component | None = None, path: str = "dense") -> None:
        super().__init__()
        widths = [in_features, *units]
        self.layers = nn.Sequential(*[
            DenseLayer(a, b, activation, normalization, dropout, path) for a, b in zip(widths, widths[1:])
        ])
        self.out_features = widths[-1]
        initialize(self, initialization, f"{path}.initialization")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)
