"""``unet``: U-Net (Ronneberger et al. 2015) in 2D or 3D, with a head per ``dmode``.

Level i: ``depths[i]`` k×k conv-norm-act layers of ``block_sizes[i]`` channels; between levels the
size halves, by max pool k2 s2 or a stride-2 conv-norm-act (``downsampling``). The decoder mirrors
the levels: transposed conv, interpolation to the encoder level's exact size, concatenation of that
level (``skip_connections``) and ``depths[i]`` conv-norm-act layers; a 1x1 conv and
``final_activation`` give the output.

Our own rather than MONAI's ``UNet`` / ``BasicUNet``: those need sizes divisible by 2 per level
(they fail or crop on odd sizes) and take MONAI's activation/normalization names.
"""

from __future__ import annotations

import torch
from torch import nn

from deepscope.config.nets.cae import CAEParams
from deepscope.config.nets.unet import UNetParams
from deepscope.data.spec import InputSpec
from deepscope.models.nets.convnet import (ConvNet, ConvNormAct, ConvOptions, Encoder, NetShape, check_downsampling,
                                           make_head, net_options, resolve_shape)

__all__ = ["LevelEncoder", "build_unet", "level_encoder"]


class LevelEncoder(Encoder):
    """Levels of conv-norm-act layers, halving the size between levels; a feature map per level.

    Args:
        opts: how convolutions are made.
        in_channels: channels of the input.
        depths: convolutions per level.
        block_sizes: channels per level.
        downsampling: ``maxpool`` (k2 s2) or ``conv`` (a stride-2 conv-norm-act) between levels.
    """

    def __init__(self, opts: ConvOptions, in_channels: int, *, depths: list[int], block_sizes: list[int],
                 downsampling: str = "maxpool") -> None:
        super().__init__()
        if len(depths) != len(block_sizes):
            raise ValueError(f"U-Net: {len(depths)} depths for {len(block_sizes)} block_sizes")
        if downsampling not in ("maxpool", "conv"):
            raise ValueError(f"downsampling {downsampling!r}; available: maxpool, conv")
        self.downs = nn.ModuleList()
        self.levels = nn.ModuleList()
        channels = in_channels
        for i, (depth, width) in enumerate(zip(depths, block_sizes)):
            if i > 0:
                self.downs.append(opts.max_pool(2, 2) if downsampling == "maxpool"
                                  else ConvNormAct(opts, channels, channels, stride=2))
            self.levels.append(nn.Sequential(*(ConvNormAct(opts, channels if j == 0 else width, width)
                                               for j in range(depth))))
            channels = width
        self.channels = list(block_sizes)
        self.strides = [2 ** i for i in range(len(block_sizes))]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:  # (B, C_in, *S) -> [(B, C_i, *S / 2^i)]
        features = []
        for i, level in enumerate(self.levels):
            if i > 0:
                x = self.downs[i - 1](x)
            x = level(x)
            features.append(x)
        return features


def level_encoder(shape: NetShape, cfg: UNetParams | CAEParams) -> LevelEncoder:
    """The level encoder of ``cfg`` (``unet`` and ``cae``), checked against the images' size."""
    encoder = LevelEncoder(net_options(shape, cfg), shape.in_channels, depths=list(cfg.depths),
                           block_sizes=list(cfg.block_sizes), downsampling=cfg.downsampling)
    check_downsampling(shape, encoder.strides, f"the {len(cfg.depths) - 1} downsampling(s) between levels", "")
    return encoder


def build_unet(spec: InputSpec, cfg: UNetParams, *, task: str | None = None) -> ConvNet:
    """A U-Net for the data in ``spec``.

    Args:
        spec: the data's shapes.
        cfg: the ``model`` section (``architecture: unet``).
        task: the loss's task, a hint for ``dmode`` when it is left out.

    Returns:
        A :class:`ConvNet`: (B, out_channels, *S) for ``deconvolver``, else (B, K) from the deepest
        level, globally pooled.

    Raises:
        ConfigError: the config contradicts the data, or the images are too small for the levels.
    """
    shape = resolve_shape(spec, cfg, task)
    encoder = level_encoder(shape, cfg)
    head = make_head(shape, cfg, encoder, decoder_depths=list(cfg.depths[:-1]), skip_connections=cfg.skip_connections)
    return ConvNet(image_names=shape.image_names, dmode=shape.dmode, encoder=encoder, head=head)
