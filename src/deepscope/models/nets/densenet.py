"""``densenet``: DenseNet (Huang et al. 2017) in 2D or 3D, with a head per ``dmode``.

Stem: a k×k conv of ``init_features`` channels + norm + activation (stride 1, so small images and
thin cubes keep their detail). Dense block i: ``depths[i]`` layers, each adding ``growth_rate``
channels (``bottleneck``: norm, act, 1x1 conv to ``bn_size``·growth_rate, norm, act, k×k conv;
``basic``: norm, act, k×k conv) concatenated to its input. Between blocks a transition (norm, act,
1x1 conv halving the channels, average pool k2 s2) halves the size; a final norm + act follows the
last block, as in DenseNet.

The layers mirror MONAI's ``_DenseLayer`` / ``_Transition`` (same layer names, so state dicts load
into each other) but are our own: MONAI's fix the kernel at 3, have no basic (non-bottleneck)
layer, take MONAI's activation/normalization names, and their pooling floors odd sizes, where ours
uses ``ceil_mode`` so the decoder can return odd sizes exactly.
"""

from __future__ import annotations

import torch
from torch import nn

from deepscope.config.nets.densenet import DenseNetParams
from deepscope.data.spec import InputSpec
from deepscope.models.nets.convnet import (ConvNet, ConvNormAct, ConvOptions, Encoder, check_downsampling, make_head,
                                           net_options, resolve_shape)

__all__ = ["DenseLayer", "DenseNetEncoder", "Transition", "build_densenet"]


class DenseLayer(nn.Module):
    """(B, C, *S) -> (B, C + growth_rate, *S): the input and ``growth_rate`` new channels.

    Convolutions have no bias when there is a normalization (every output meets one next).
    """

    def __init__(self, opts: ConvOptions, in_channels: int, growth_rate: int, bn_size: int = 4,
                 bottleneck: bool = True) -> None:
        super().__init__()
        self.layers = nn.Sequential()
        self.layers.add_module("norm1", opts.norm(in_channels))
        self.layers.add_module("act1", opts.act(in_channels))
        if bottleneck:
            width = bn_size * growth_rate
            self.layers.add_module("conv1", opts.conv(in_channels, width, kernel_size=1))
            self.layers.add_module("norm2", opts.norm(width))
            self.layers.add_module("act2", opts.act(width))
            self.layers.add_module("conv2", opts.conv(width, growth_rate))
        else:
            self.layers.add_module("conv1", opts.conv(in_channels, growth_rate))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, self.layers(x)], 1)


class Transition(nn.Sequential):
    """norm → act → 1x1 conv (C -> out) → average pool k2 s2: (B, C, *S) -> (B, out, *ceil(S / 2))."""

    def __init__(self, opts: ConvOptions, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.norm = opts.norm(in_channels)
        self.act = opts.act(in_channels)
        self.conv = opts.conv(in_channels, out_channels, kernel_size=1)
        self.pool = opts.avg_pool(2, 2)


class DenseNetEncoder(Encoder):
    """Stem, dense blocks and transitions; a feature map per dense block (the last one normalized).

    Args:
        opts: how convolutions are made.
        in_channels: channels of the input.
        depths: layers per dense block.
        growth_rate: channels each layer adds.
        init_features: channels of the stem.
        bottleneck: 1x1 convolution to ``bn_size``·growth_rate channels before each k×k.
        bn_size: bottleneck width in multiples of ``growth_rate``.
    """

    def __init__(self, opts: ConvOptions, in_channels: int, *, depths: list[int], growth_rate: int,
                 init_features: int, bottleneck: bool = True, bn_size: int = 4) -> None:
        super().__init__()
        self.stem = ConvNormAct(opts, in_channels, init_features)
        self.blocks = nn.ModuleList()
        self.transitions = nn.ModuleList()
        self.channels, self.strides = [], []
        channels, stride = init_features, 1
        for i, depth in enumerate(depths):
            if i > 0:
                self.transitions.append(Transition(opts, channels, max(1, channels // 2)))
                channels, stride = max(1, channels // 2), stride * 2
            block = nn.Sequential()
            for j in range(depth):
                block.add_module(f"denselayer{j + 1}", DenseLayer(opts, channels, growth_rate, bn_size, bottleneck))
                channels += growth_rate
            self.blocks.append(block)
            self.channels.append(channels)
            self.strides.append(stride)
        self.final = nn.Sequential(opts.norm(channels), opts.act(channels))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:  # (B, C_in, *S) -> [(B, C_i, *S / 2^i)]
        x = self.stem(x)
        features = []
        for i, block in enumerate(self.blocks):
            if i > 0:
                x = self.transitions[i - 1](x)
            x = block(x)
            features.append(x)
        features[-1] = self.final(features[-1])
        return features


def build_densenet(spec: InputSpec, cfg: DenseNetParams, *, task: str | None = None) -> ConvNet:
    """A DenseNet for the data in ``spec``.

    Args:
        spec: the data's shapes.
        cfg: the ``model`` section (``architecture: densenet``).
        task: the loss's task, a hint for ``dmode`` when it is left out.

    Returns:
        A :class:`ConvNet`: (B, out_channels, *S) for ``deconvolver`` (decoder of transposed
        convolutions, one conv-norm-act per level, skips when ``skip_connections``), else (B, K).

    Raises:
        ConfigError: the config contradicts the data, or the images are too small for the transitions.
    """
    shape = resolve_shape(spec, cfg, task)
    encoder = DenseNetEncoder(net_options(shape, cfg), shape.in_channels, depths=list(cfg.depths),
                              growth_rate=cfg.growth_rate, init_features=cfg.init_features,
                              bottleneck=cfg.block == "bottleneck", bn_size=cfg.bn_size)
    check_downsampling(shape, encoder.strides, f"the {len(cfg.depths) - 1} transition(s) between dense blocks", "")
    head = make_head(shape, cfg, encoder, skip_connections=cfg.skip_connections)
    return ConvNet(image_names=shape.image_names, dmode=shape.dmode, encoder=encoder, head=head)
