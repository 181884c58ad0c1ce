"""Network in network (Lin et al. 2013): 1×1 convolutions on the CNN's feature maps."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from deepscope.config.common import Component
from deepscope.models.blocks.conv import ConvUnit
from deepscope.models.layers import conv_output_size, initialize

__all__ = ["NetworkInNetwork"]


class NetworkInNetwork(nn.Module):
    """A series of 1×1 conv units (conv → norm → activation → dropout), then optional global
    average pooling, then flattening.

    ``dropout`` is the submodel's float rate, applied element-wise after each activation (the
    config key is a rate; DeepCalo put DropBlock there, which on 1×1 maps is rarely wanted).

    Args:
        spatial_dims: 2 or 3.
        in_channels: channels of the CNN's last feature maps.
        spatial: their spatial size.
        units: filters of each 1×1 conv.
        strides: stride of every conv (one entry per spatial dim).
        activation, normalization, dropout, initialization: the submodel's keys.
        globalavgpool: average every map to one number at the end.
        path: dotted config path, for error messages.

    Attributes:
        out_shape: (C, *spatial) of the last maps; out_features: width of the output.
    """

    def __init__(self, spatial_dims: int, in_channels: int, spatial: Sequence[int], units: Sequence[int],
                 strides: Sequence[int], activation: Component | None = None,
                 normalization: Component | None = None, dropout: float | None = None,
                 initialization: Component | None = None, globalavgpool: bool = False,
                 path: str = "model.network_in_network") -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels, size = in_channels, tuple(spatial)
        for filters in units:
            layers.append(ConvUnit(spatial_dims, channels, filters, (1,) * spatial_dims, strides, 1, activation,
                                   normalization, None, path, dropout=nn.Dropout(dropout) if dropout else None))
            channels, size = filters, conv_output_size(size, strides)
        self.layers = nn.Sequential(*layers)
        self.globalavgpool = globalavgpool
        self.out_shape = (channels, *size)
        self.out_features = channels if globalavgpool else channels * math.prod(size)
        initialize(self, initialization, f"{path}.initialization")

    def forward(self, maps: torch.Tensor) -> torch.Tensor:  # (B, C, *S) -> (B, out_features)
        x = self.layers(maps)
        return x.flatten(2).mean(-1) if self.globalavgpool else x.flatten(1)
