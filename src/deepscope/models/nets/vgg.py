"""``vgg``: VGG (Simonyan & Zisserman 2015) in 2D or 3D, with a head per ``dmode``.

Block i: ``depths[i]`` k×k conv-norm-act layers of ``block_sizes[i]`` channels, then max pool k2
s2 (``ceil_mode``, so odd sizes become ceil(n / 2)). The feature maps are the blocks' pooled
outputs. MONAI has no VGG; the layers come from the dimension factory (``models.layers``).
"""

from __future__ import annotations

import torch
from torch import nn

from deepscope.config.nets.vgg import VGGParams
from deepscope.data.spec import InputSpec
from deepscope.models.nets.convnet import (ConvNet, ConvNormAct, ConvOptions, Encoder, check_downsampling, make_head,
                                           net_options, resolve_shape)

__all__ = ["VGGEncoder", "build_vgg"]


class VGGEncoder(Encoder):
    """Blocks of conv-norm-act layers, each followed by max pooling; a feature map per block.

    Args:
        opts: how convolutions are made.
        in_channels: channels of the input.
        depths: convolutions per block.
        block_sizes: channels per block.
    """

    def __init__(self, opts: ConvOptions, in_channels: int, *, depths: list[int], block_sizes: list[int]) -> None:
        super().__init__()
        if len(depths) != len(block_sizes):
            raise ValueError(f"VGG: {len(depths)} depths for {len(block_sizes)} block_sizes")
        self.blocks = nn.ModuleList()
        channels = in_channels
        for depth, width in zip(depths, block_sizes):
            layers = [ConvNormAct(opts, channels if j == 0 else width, width) for j in range(depth)]
            self.blocks.append(nn.Sequential(*layers, opts.max_pool(2, 2)))
            channels = width
        self.channels = list(block_sizes)
        self.strides = [2 ** (i + 1) for i in range(len(block_sizes))]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:  # (B, C_in, *S) -> [(B, C_i, *S / 2^(i+1))]
        features = []
        for block in self.blocks:
            x = block(x)
            features.append(x)
        return features


def build_vgg(spec: InputSpec, cfg: VGGParams, *, task: str | None = None) -> ConvNet:
    """A VGG for the data in ``spec``.

    Args:
        spec: the data's shapes.
        cfg: the ``model`` section (``architecture: vgg``).
        task: the loss's task, a hint for ``dmode`` when it is left out.

    Returns:
        A :class:`ConvNet`: (B, out_channels, *S) for ``deconvolver`` (decoder of transposed
        convolutions, one conv-norm-act per level, skips when ``skip_connections``), else (B, K).

    Raises:
        ConfigError: the config contradicts the data, or the images are too small for the poolings.
    """
    shape = resolve_shape(spec, cfg, task)
    encoder = VGGEncoder(net_options(shape, cfg), shape.in_channels, depths=list(cfg.depths),
                         block_sizes=list(cfg.block_sizes))
    check_downsampling(shape, encoder.strides, f"the max pool after each of the {len(cfg.depths)} block(s)", "")
    head = make_head(shape, cfg, encoder, skip_connections=cfg.skip_connections)
    return ConvNet(image_names=shape.image_names, dmode=shape.dmode, encoder=encoder, head=head)
