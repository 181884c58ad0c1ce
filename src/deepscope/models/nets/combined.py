"""DeepCalo's combined model: CNN over images, scalar net, track net (Deep Sets), top.

Submodels exist only for the inputs the data has. Their names (``cnn``, ``scalar_net``,
``track_net``, ``top``) are DeepCalo's, so checkpoints and summaries can be read the same way.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from deepscope.config.model import CNNConfig, CombinedParams, TopConfig
from deepscope.data.spec import InputSpec
from deepscope.errors import ConfigError
from deepscope.models.blocks import ConvUnit, DeepSets, DenseStack
from deepscope.models.layers import as_tuple, conv_output_size, initialize, make_activation, pool, strided_conv

__all__ = ["CNN", "CombinedNet", "Top", "build_combined", "downsampling_factors"]


def downsampling_factors(size: tuple[int, ...], min_size: int) -> tuple[int, ...] | None:
    """DeepCalo's downsampling rule for one step, or ``None`` when the image is too small.

    Every dim must be ≥ ``min_size``. A dim at least 1.5× the smallest one is reduced by 3, the
    others by 2 (so elongated calorimeter layers become squarer as they shrink).
    """
    if min(size) < min_size:
        return None
    smallest = min(size)
    return tuple(3 if s >= 1.5 * smallest else 2 for s in size)


class CNN(nn.Module):
    """DeepCalo's 'simple' CNN: blocks of conv units, filters doubling and downsampling per block.

    Block 0 starts with the init conv (``init_kernel_size``, ``init_strides``); block i > 0 starts
    with a downsampling step (if enabled and the image is large enough) and has
    ``n_init_filters · 2^i`` filters. Ends with global average pooling or flattening.

    Attributes:
        out_features: width of the flattened (or pooled) output.
        out_shape: (C, *spatial) of the last feature maps.
    """

    def __init__(self, in_channels: int, spatial: tuple[int, ...], cfg: CNNConfig, path: str = "model.cnn") -> None:
        super().__init__()
        dims = len(spatial)
        if cfg.conv_dim is not None and cfg.conv_dim != dims:
            raise ConfigError(f"{path}.conv_dim is {cfg.conv_dim} but the images are {dims}D "
                              f"(spatial size {'x'.join(map(str, spatial))}); remove conv_dim or fix the data")
        if cfg.cardinality > 1 and cfg.n_init_filters % cfg.cardinality:
            raise ConfigError(f"{path}.cardinality {cfg.cardinality} must divide n_init_filters {cfg.n_init_filters} "
                              "(grouped convolutions split the channels evenly)")
        blocks: list[nn.Module] = []
        channels, size = in_channels, tuple(spatial)
        for i, depth in enumerate(cfg.block_depths):
            layers: list[nn.Module] = []
            filters = cfg.n_init_filters * 2**i
            if i > 0 and cfg.downsampling is not None:
                factors = downsampling_factors(size, cfg.min_size_for_downsampling)
                if factors is not None:
                    layers.append(strided_conv(dims, channels, factors) if cfg.downsampling == "strided"
                                  else pool(cfg.downsampling, dims, factors))
                    size = tuple(s // f for s, f in zip(size, factors))
            for j in range(depth):
                first = i == 0 and j == 0
                kernel = as_tuple(cfg.init_kernel_size if first else cfg.rest_kernel_size, dims, kernel=True)
                stride = as_tuple(cfg.init_strides if first else cfg.rest_strides, dims)
                layers.append(ConvUnit(
                    dims, channels, filters, kernel, stride, groups=1 if first else cfg.cardinality,
                    activation=cfg.activation, normalization=cfg.normalization,
                    se_ratio=cfg.squeeze_and_excite_ratio if cfg.use_squeeze_and_excite else None, path=path,
                ))
                channels, size = filters, conv_output_size(size, stride)
            blocks.append(nn.Sequential(*layers))
        self.blocks = nn.Sequential(*blocks)
        self.globalavgpool = cfg.globalavgpool
        self.out_shape = (channels, *size)
        self.out_features = channels if cfg.globalavgpool else channels * int(torch.tensor(size).prod())
        initialize(self, cfg.initialization, f"{path}.initialization")

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, *S) -> (B, out_features)
        x = self.blocks(x)
        return x.flatten(2).mean(-1) if self.globalavgpool else x.flatten(1)


class Top(nn.Module):
    """Hidden dense layers, then the output layer (with bias) and ``final_activation``."""

    def __init__(self, in_features: int, cfg: TopConfig, path: str = "model.top") -> None:
        super().__init__()
        self.hidden = DenseStack(in_features, cfg.units[:-1], cfg.activation, cfg.normalization, cfg.dropout,
                                 cfg.initialization, path)
        self.output = nn.Linear(self.hidden.out_features, cfg.units[-1]) if cfg.units else nn.Identity()
        initialize(self.output, cfg.initialization, f"{path}.initialization")
        self.final_activation = make_activation(cfg.final_activation, None, f"{path}.final_activation")
        self.out_features = cfg.units[-1] if cfg.units else in_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, in) -> (B, out)
        return self.final_activation(self.output(self.hidden(x)))


class CombinedNet(nn.Module):
    """Images (concatenated on channels) → ``cnn``; ``scalars`` → ``scalar_net``;
    ``tracks`` → ``track_net``; the features connected to the top are concatenated → ``top``.

    Args:
        image_names: order in which images are concatenated on channels.
        cnn, scalar_net, track_net: submodels, or None when the data lacks that input.
        top: the head.
    """

    def __init__(self, image_names: list[str], cnn: CNN | None, scalar_net: DenseStack | None,
                 track_net: DeepSets | None, top: Top) -> None:
        super().__init__()
        self.image_names = list(image_names)
        self.cnn, self.scalar_net, self.track_net, self.top = cnn, scalar_net, track_net, top

    def forward(self, images: dict[str, torch.Tensor] | None = None, scalars: torch.Tensor | None = None,
                tracks: torch.Tensor | None = None) -> torch.Tensor:
        features: list[torch.Tensor] = []
        if self.cnn is not None:
            assert images is not None
            x = torch.cat([images[n] for n in self.image_names], 1) if len(self.image_names) > 1 \
                else images[self.image_names[0]]
            features.append(self.cnn(x))
        if self.scalar_net is not None:
            features.append(self.scalar_net(scalars))
        if self.track_net is not None:
            features.append(self.track_net(tracks))
        return self.top(torch.cat(features, 1) if len(features) > 1 else features[0])


def build_combined(spec: InputSpec, p: CombinedParams) -> CombinedNet:
    """Build the combined model for the inputs in ``spec``."""
    cnn = None
    names = list(spec.images)
    if names:
        first = spec.images[names[0]]
        channels = sum(spec.images[n].channels for n in names)
        cnn = CNN(channels, first.spatial, p.cnn)
    scalar_net = None
    if spec.scalars and "top" in p.scalar_net.connect_to:
        s = p.scalar_net
        scalar_net = DenseStack(spec.scalars, s.units, s.activation, s.normalization, s.dropout, s.initialization,
                                "model.scalar_net")
    track_net = None
    if spec.tracks and "top" in p.track_net.connect_to:
        t = p.track_net
        common: dict[str, Any] = dict(activation=t.activation, normalization=t.normalization, dropout=t.dropout,
                                      initialization=t.initialization)
        phi = DenseStack(spec.tracks[1], t.phi_units, path="model.track_net", **common)
        rho = DenseStack(phi.out_features, t.rho_units, path="model.track_net", **common)
        track_net = DeepSets(phi, rho)
    width = sum(m.out_features for m in (cnn, scalar_net, track_net) if m is not None)
    if width == 0:
        raise ConfigError("model: no submodel receives any input (check scalar_net.connect_to / track_net.connect_to)")
    top = Top(width, p.top)
    return CombinedNet(names, cnn, scalar_net, track_net, top)
