"""Convolutional units of DeepCalo's CNNs ('simple' and pre-activation 'res') and squeeze-and-excite."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from deepscope.config.common import Component
from deepscope.models.blocks.film import FiLM
from deepscope.models.layers import ConvSame, make_activation, make_dropblock, make_normalization

__all__ = ["ConvUnit", "ResUnit", "SqueezeExcite"]


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
    """DeepCalo's simple unit: conv('same') → norm → [FiLM] → activation → [dropout] → [squeeze-and-excite].

    Args:
        spatial_dims: 2 or 3 (1 works too).
        in_channels, out_channels: channel counts.
        kernel_size, stride: one entry per spatial dim.
        groups: grouped convolution (cardinality).
        activation, normalization: "str or config dict" specs (``None``: none).
        se_ratio: squeeze-and-excite ratio, or ``None`` for no squeeze-and-excite.
        path: dotted config path, for error messages.
        dropout: module applied after the activation (DropBlock for the CNN, Dropout for the
            network in network), or ``None``.
        film: the unit is FiLM-conditioned: its normalization has no scale and shift of its
            own and ``forward`` needs the (B, 2·out_channels) FiLM parameters.

    The conv has a bias only when no normalization follows it.
    """

    def __init__(self, spatial_dims: int, in_channels: int, out_channels: int, kernel_size: Sequence[int],
                 stride: Sequence[int], groups: int, activation: Component | None,
                 normalization: Component | None, se_ratio: int | None, path: str,
                 dropout: nn.Module | None = None, film: bool = False) -> None:
        super().__init__()
        self.conv = ConvSame(spatial_dims, in_channels, out_channels, kernel_size, stride, groups,
                             bias=normalization is None)
        self.norm = make_normalization(normalization, out_channels, spatial_dims, f"{path}.normalization",
                                       affine=not film)
        self.film = FiLM() if film else None
        self.act = make_activation(activation, out_channels, f"{path}.activation")
        self.drop = dropout if dropout is not None else nn.Identity()
        self.se = SqueezeExcite(out_channels, se_ratio) if se_ratio else nn.Identity()

    def forward(self, x: torch.Tensor, film: torch.Tensor | None = None) -> torch.Tensor:
        # (B, C_in, *S) -> (B, C_out, *S'); film: (B, 2·C_out) when the unit is FiLM-conditioned
        x = self.norm(self.conv(x))
        x = _modulate(self.film, x, film)
        return self.se(self.drop(self.act(x)))


class ResUnit(nn.Module):
    """Pre-activation residual unit (He et al. 2016) as DeepCalo's ``cnn_type: res`` builds it.

        h = conv1(drop(act(norm1(x))))           # the network's first unit: h = conv1(x)
        h = conv2(drop(act(FiLM(norm2(h)))))     # FiLM only in the first unit of a block
        out = SE(h) + shortcut(x)

    DropBlock sits where DeepCalo's code put it: after each pre-activation, right before the
    conv it feeds. ``conv1`` carries the unit's stride; the shortcut is the identity unless
    the channels or the stride change, when it is a 1×1 conv with that stride (on ``x``, not
    on the pre-activated ``x``, as in DeepCalo). ``conv1`` has a bias only without
    normalization; ``conv2`` and the projection always have one (the sum is not normalized
    until the next unit). No normalization/activation follows the last unit (DeepCalo).

    Args:
        spatial_dims: 2 or 3 (1 works too).
        in_channels, out_channels: channel counts.
        kernel_size: kernel of conv1; ``kernel_size2``: kernel of conv2.
        stride: stride of conv1 and of the projection shortcut.
        groups: grouping of conv1 (1 for the network's first conv); ``groups2`` of conv2.
        activation, normalization: "str or config dict" specs.
        se_ratio: squeeze-and-excite ratio, or ``None``.
        path: dotted config path, for error messages.
        dropblock: options of the DropBlock layers (``block_size``, ``keep_prob``,
            ``sync_channels``), or ``None``.
        film: FiLM-condition the unit (norm2 has no scale and shift of its own).
        preactivate: ``False`` for the network's first unit, whose input is the raw image.
    """

    def __init__(self, spatial_dims: int, in_channels: int, out_channels: int, kernel_size: Sequence[int],
                 kernel_size2: Sequence[int], stride: Sequence[int], groups: int, groups2: int,
                 activation: Component | None, normalization: Component | None, se_ratio: int | None,
                 path: str, dropblock: Mapping[str, Any] | None = None, film: bool = False,
                 preactivate: bool = True) -> None:
        super().__init__()
        norm_path, act_path = f"{path}.normalization", f"{path}.activation"
        if preactivate:
            self.norm1 = make_normalization(normalization, in_channels, spatial_dims, norm_path)
            self.act1 = make_activation(activation, in_channels, act_path)
            self.drop1 = make_dropblock(spatial_dims, dropblock)
        else:
            self.norm1, self.act1, self.drop1 = nn.Identity(), nn.Identity(), nn.Identity()
        self.conv1 = ConvSame(spatial_dims, in_channels, out_channels, kernel_size, stride, groups,
                              bias=normalization is None)
        self.norm2 = make_normalization(normalization, out_channels, spatial_dims, norm_path, affine=not film)
        self.film = FiLM() if film else None
        self.act2 = make_activation(activation, out_channels, act_path)
        self.drop2 = make_dropblock(spatial_dims, dropblock)
        self.conv2 = ConvSame(spatial_dims, out_channels, out_channels, kernel_size2, (1,) * spatial_dims, groups2)
        self.se = SqueezeExcite(out_channels, se_ratio) if se_ratio else nn.Identity()
        project = in_channels != out_channels or any(s != 1 for s in stride)
        self.shortcut = (ConvSame(spatial_dims, in_channels, out_channels, (1,) * spatial_dims, stride)
                         if project else nn.Identity())

    def forward(self, x: torch.Tensor, film: torch.Tensor | None = None) -> torch.Tensor:
        # (B, C_in, *S) -> (B, C_out, *S'); film: (B, 2·C_out) when the unit is FiLM-conditioned
        h = self.conv1(self.drop1(self.act1(self.norm1(x))))
        h = _modulate(self.film, self.norm2(h), film)
        h = self.conv2(self.drop2(self.act2(h)))
        return self.se(h) + self.shortcut(x)


def _modulate(layer: FiLM | None, x: torch.Tensor, params: torch.Tensor | None) -> torch.Tensor:
    if layer is None:
        if params is not None:
            raise ValueError("FiLM parameters given to a unit built without FiLM")
        return x
    if params is None:
        raise ValueError("this unit is FiLM-conditioned: pass the FiLM generator's parameters")
    return layer(x, params)
