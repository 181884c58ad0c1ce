"""Convolutional units of DeepCalo's 'simple' CNN and the squeeze-and-excite block."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from deepscope.config.common import Component
from deepscope.models.layers import ConvSame, make_activation, make_normalization

__all__ = ["ConvUnit", "SqueezeExcite"]


class SqueezeExcite(nn.Module):
    """Hu et al. 2017: global average pool → Dense(C/r, relu) → Dense(C, sigmoid) → rescale channels."""

    def __init__(self, channels: int, ratio: int) -> None:
        super().__init__()
        hidden = channels // ratio
        if hidden < 1:
            raise ValueError(f"squeeze-and-excite ratio {ratio} leaves no units for {channels} channels")
        self.fc = nn.Sequential(nn.Linear(channels, hidden), nn.ReLU(), nn.Linear(hidden, channels), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, *spatial)
        w = self.fc(x.flatten(2).mean(-1))  # (B, C)
        return x * w.reshape(*w.shape, *([1] * (x.ndim - 2)))


class ConvUnit(nn.Module):
    """conv('same') → norm → activation → optional squeeze-and-excite (DeepCalo's simple unit)."""

    def __init__(self, spatial_dims: int, in_channels: int, out_channels: int, kernel_size: Sequence[int],
                 stride: Sequence[int], groups: int, activation: Component | None,
                 normalization: Component | None, se_ratio: int | None, path: str) -> None:
        super().__init__()
        self.conv = ConvSame(spatial_dims, in_channels, out_channels, kernel_size, stride, groups,
                             bias=normalization is None)
        self.norm = make_normalization(normalization, out_channels, spatial_dims, f"{path}.normalization")
        self.act = make_activation(activation, out_channels, f"{path}.activation")
        self.se = SqueezeExcite(out_channels, se_ratio) if se_ratio else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C_in, *S) -> (B, C_out, *S')
        return self.se(self.act(self.norm(self.conv(x))))
