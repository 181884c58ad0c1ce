"""``resnet``: ResNet (He et al. 2016) in 2D or 3D, with a head per ``dmode``.

Stem: conv ``stem_kernel_size`` / ``stem_stride`` + norm + activation, then (``stem_pool``) max
pool k3 s2. Stages: ``depths[i]`` blocks of ``block_sizes[i]`` planes, stride 2 in the first block
of every stage after the first; ``basic`` blocks are two k×k convolutions, ``bottleneck`` blocks
1x1, k×k, 1x1 with ×4 expansion. A projection shortcut (1x1 conv + norm) where the shape changes.

The blocks mirror MONAI's ``ResNetBlock`` / ``ResNetBottleneck`` layer for layer (same names, so
state dicts load into each other) but are our own: MONAI's fix the kernel at 3 and take MONAI's
activation/normalization names, where ours take ``kernel_size`` and the config's specs.
"""

from __future__ import annotations

import torch
from torch import nn

from deepscope.config.nets.resnet import ResNetParams, StemParams
from deepscope.data.spec import InputSpec
from deepscope.models.nets.convnet import (ConvNet, ConvNormAct, ConvOptions, Encoder, NetShape, check_downsampling,
                                           make_head, net_options, resolve_shape)

__all__ = ["BasicBlock", "BottleneckBlock", "ResNetEncoder", "build_resnet", "check_resnet_size", "resnet_encoder"]


class BasicBlock(nn.Module):
    """Two k×k conv-norm layers and a shortcut: (B, C_in, *S) -> (B, planes, *ceil(S / stride))."""

    expansion = 1

    def __init__(self, opts: ConvOptions, in_channels: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = opts.conv(in_channels, planes, stride=stride)
        self.bn1 = opts.norm(planes)
        self.act1 = opts.act(planes)
        self.conv2 = opts.conv(planes, planes)
        self.bn2 = opts.norm(planes)
        self.downsample = _shortcut(opts, in_channels, planes * self.expansion, stride)
        self.act2 = opts.act(planes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.act1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        residual = x if self.downsample is None else self.downsample(x)
        return self.act2(out + residual)


class BottleneckBlock(nn.Module):
    """1x1 (planes) → k×k (planes, stride) → 1x1 (4·planes), and a shortcut:
    (B, C_in, *S) -> (B, 4·planes, *ceil(S / stride))."""

    expansion = 4

    def __init__(self, opts: ConvOptions, in_channels: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        out = planes * self.expansion
        self.conv1 = opts.conv(in_channels, planes, kernel_size=1)
        self.bn1 = opts.norm(planes)
        self.act1 = opts.act(planes)
        self.conv2 = opts.conv(planes, planes, stride=stride)
        self.bn2 = opts.norm(planes)
        self.act2 = opts.act(planes)
        self.conv3 = opts.conv(planes, out, kernel_size=1)
        self.bn3 = opts.norm(out)
        self.downsample = _shortcut(opts, in_channels, out, stride)
        self.act3 = opts.act(out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.act1(self.bn1(self.conv1(x)))
        out = self.act2(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        residual = x if self.downsample is None else self.downsample(x)
        return self.act3(out + residual)


def _shortcut(opts: ConvOptions, in_channels: int, out_channels: int, stride: int) -> nn.Module | None:
    """MONAI's shortcut type B: a 1x1 projection (+ norm) where the shape changes, else the identity."""
    if stride == 1 and in_channels == out_channels:
        return None
    return nn.Sequential(opts.conv(in_channels, out_channels, kernel_size=1, stride=stride), opts.norm(out_channels))


_BLOCKS: dict[str, type[BasicBlock] | type[BottleneckBlock]] = {"basic": BasicBlock, "bottleneck": BottleneckBlock}


class ResNetEncoder(Encoder):
    """Stem (conv + norm + act, optional max pool k3 s2), then ResNet stages.

    Feature maps: the stem's output (before the pool), then every stage's output.

    Args:
        opts: how convolutions are made.
        in_channels: channels of the input.
        block: ``basic`` or ``bottleneck``.
        depths: blocks per stage.
        block_sizes: planes per stage (the stem makes ``block_sizes[0]`` channels; a bottleneck
            stage outputs 4× its planes).
        stem_kernel_size, stem_stride: the stem convolution's (odd) kernel and stride.
        stem_pool: max pool k3 s2 after the stem.
    """

    def __init__(self, opts: ConvOptions, in_channels: int, *, block: str, depths: list[int], block_sizes: list[int],
                 stem_kernel_size: int = 7, stem_stride: int = 2, stem_pool: bool = True) -> None:
        super().__init__()
        if block not in _BLOCKS:
            raise ValueError(f"ResNet block {block!r}; available: {', '.join(_BLOCKS)}")
        if len(depths) != len(block_sizes):
            raise ValueError(f"ResNet: {len(depths)} depths for {len(block_sizes)} block_sizes")
        kind = _BLOCKS[block]
        self.stem = ConvNormAct(opts, in_channels, block_sizes[0], stride=stem_stride, kernel_size=stem_kernel_size)
        self.pool = opts.max_pool(3, 2) if stem_pool else None
        self.stages = nn.ModuleList()
        self.channels, self.strides = [block_sizes[0]], [stem_stride]
        channels, stride = block_sizes[0], stem_stride * (2 if stem_pool else 1)
        for i, (depth, planes) in enumerate(zip(depths, block_sizes)):
            first = 1 if i == 0 else 2
            blocks = []
            for j in range(depth):
                blocks.append(kind(opts, channels, planes, first if j == 0 else 1))
                channels = planes * kind.expansion
            self.stages.append(nn.Sequential(*blocks))
            stride *= first
            self.channels.append(channels)
            self.strides.append(stride)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:  # (B, C_in, *S) -> [(B, C_i, *S_i)]
        x = self.stem(x)
        features = [x]
        if self.pool is not None:
            x = self.pool(x)
        for stage in self.stages:
            x = stage(x)
            features.append(x)
        return features


def resnet_encoder(shape: NetShape, cfg: StemParams) -> ResNetEncoder:
    """The ResNet encoder of ``cfg`` (``resnet`` and ``deepfocus``) for the data's channels."""
    return ResNetEncoder(net_options(shape, cfg), shape.in_channels, block=cfg.block, depths=list(cfg.depths),
                         block_sizes=list(cfg.block_sizes), stem_kernel_size=cfg.stem_kernel_size,
                         stem_stride=cfg.stem_stride, stem_pool=cfg.stem_pool)


def check_resnet_size(shape: NetShape, cfg: StemParams, encoder: ResNetEncoder) -> None:
    """The images must be large enough for the stem, its pool and the stages' downsamplings."""
    stem = f"the stem (stride {cfg.stem_stride})" + (", its max pool" if cfg.stem_pool else "")
    n = len(cfg.depths) - 1
    what = f"{stem} and {n} stride-2 stage(s)" if n else stem
    check_downsampling(shape, encoder.strides, what, ", or set stem_pool: false or stem_stride: 1")


def build_resnet(spec: InputSpec, cfg: ResNetParams, *, task: str | None = None) -> ConvNet:
    """A ResNet for the data in ``spec``.

    Args:
        spec: the data's shapes.
        cfg: the ``model`` section (``architecture: resnet``).
        task: the loss's task, a hint for ``dmode`` when it is left out.

    Returns:
        A :class:`ConvNet`: (B, out_channels, *S) for ``deconvolver`` (decoder of transposed
        convolutions, one conv-norm-act per level, skips when ``skip_connections``), else (B, K).

    Raises:
        ConfigError: the config contradicts the data, or the images are too small for the stages.
    """
    shape = resolve_shape(spec, cfg, task)
    encoder = resnet_encoder(shape, cfg)
    check_resnet_size(shape, cfg, encoder)
    head = make_head(shape, cfg, encoder, skip_connections=cfg.skip_connections)
    return ConvNet(image_names=shape.image_names, dmode=shape.dmode, encoder=encoder, head=head)
