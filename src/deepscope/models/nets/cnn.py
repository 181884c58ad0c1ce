"""DeepCalo's CNN over the (channel-concatenated) images: 'simple' or pre-activation 'res'."""

from __future__ import annotations

import math

import torch
from torch import nn

from deepscope.config.model import CNNConfig
from deepscope.errors import ConfigError
from deepscope.models.blocks import ConvUnit, ResUnit, film_slices
from deepscope.models.layers import as_tuple, conv_output_size, initialize, make_dropblock, pool, strided_conv

__all__ = ["CNN", "downsampling_factors"]


def downsampling_factors(size: tuple[int, ...], min_size: int) -> tuple[int, ...] | None:
    """DeepCalo's downsampling rule for one step, or ``None`` when the image is too small.

    Every dim must be ≥ ``min_size``. A dim at least 1.5× the smallest one is reduced by 3, the
    others by 2 (so elongated calorimeter layers become squarer as they shrink).
    """
    if min(size) < min_size:
        return None
    smallest = min(size)
    return tuple(3 if s >= 1.5 * smallest else 2 for s in size)


class _Block(nn.Sequential):
    """One CNN block: [downsampling], then its units. The FiLM parameters go to the first unit."""

    def __init__(self, layers: list[nn.Module], first_unit: int) -> None:
        super().__init__(*layers)
        self.first_unit = first_unit

    def forward(self, x: torch.Tensor, film: torch.Tensor | None = None) -> torch.Tensor:
        for i, layer in enumerate(self):
            x = layer(x, film) if film is not None and i == self.first_unit else layer(x)
        return x


class CNN(nn.Module):
    """DeepCalo's CNN: blocks of units, filters doubling and downsampling per block.

    Block i has F_i = ``n_init_filters · 2^i`` filters. Block i > 0 starts with a downsampling
    step (if enabled and every dim is ≥ ``min_size_for_downsampling``). The network's first
    conv uses ``init_kernel_size``/``init_strides`` and no grouping; every other conv uses
    ``rest_kernel_size``/``rest_strides`` and ``cardinality`` groups.

    - ``cnn_type: simple``: a unit is conv → norm → [FiLM] → act → [DropBlock] → [SE];
      ``block_depths[i]`` units (= convs) per block.
    - ``cnn_type: res``: a unit is a pre-activation residual unit (:class:`ResUnit`) of two
      convs; ``block_depths[i]`` units, so ``[1, 2, 2, 2, 2]`` is 18 convs. The stride of a unit
      (``init_strides`` for the first, ``rest_strides`` for the others) is on its first conv.

    With FiLM, the first unit of every block is modulated by its slice of the generator's output
    (see :mod:`deepscope.models.blocks.film`); ``film_features`` = 2·Σ_i F_i.

    Args:
        in_channels: channels of the input image.
        spatial: its spatial size (2 or 3 dims).
        cfg: the ``model.cnn`` section.
        film: build the FiLM-conditioned variant.
        flatten: ``forward`` pools or flattens the last maps; ``False`` returns the maps
            (B, *out_shape), for a network in network after the CNN.
        path: dotted config path, for error messages.

    Attributes:
        block_filters: F_i per block.
        film_features: 2·Σ_i F_i, the FiLM parameters ``forward`` takes (0 without FiLM).
        out_shape: (C, *spatial) of the last feature maps.
        out_features: width of the flattened (or pooled) output (with ``flatten``).
    """

    def __init__(self, in_channels: int, spatial: tuple[int, ...], cfg: CNNConfig, film: bool = False,
                 flatten: bool = True, path: str = "model.cnn") -> None:
        super().__init__()
        dims = len(spatial)
        if cfg.conv_dim is not None and cfg.conv_dim != dims:
            raise ConfigError(f"{path}.conv_dim is {cfg.conv_dim} but the images are {dims}D "
                              f"(spatial size {'x'.join(map(str, spatial))}); remove conv_dim or fix the data")
        if cfg.cardinality > 1 and cfg.n_init_filters % cfg.cardinality:
            raise ConfigError(f"{path}.cardinality {cfg.cardinality} must divide n_init_filters {cfg.n_init_filters} "
                              "(grouped convolutions split the channels evenly)")
        dropblock = cfg.dropout.model_dump() if cfg.dropout is not None else None
        se_ratio = cfg.squeeze_and_excite_ratio if cfg.use_squeeze_and_excite else None
        self.cnn_type = cfg.cnn_type
        self.block_filters: list[int] = []
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
            first_unit = len(layers)
            for j in range(depth):
                first = i == 0 and j == 0
                which = "init" if first else "rest"
                kernel = as_tuple(getattr(cfg, f"{which}_kernel_size"), dims, True, f"{path}.{which}_kernel_size")
                stride = as_tuple(getattr(cfg, f"{which}_strides"), dims, path=f"{path}.{which}_strides")
                groups = 1 if first else cfg.cardinality
                if cfg.cnn_type == "res":
                    layers.append(ResUnit(
                        dims, channels, filters, kernel,
                        as_tuple(cfg.rest_kernel_size, dims, True, f"{path}.rest_kernel_size"), stride,
                        groups=groups, groups2=cfg.cardinality, activation=cfg.activation,
                        normalization=cfg.normalization, se_ratio=se_ratio, path=path, dropblock=dropblock,
                        film=film and j == 0, preactivate=not first,
                    ))
                else:
                    layers.append(ConvUnit(
                        dims, channels, filters, kernel, stride, groups=groups, activation=cfg.activation,
                        normalization=cfg.normalization, se_ratio=se_ratio, path=path,
                        dropout=make_dropblock(dims, dropblock) if dropblock else None, film=film and j == 0,
                    ))
                channels, size = filters, conv_output_size(size, stride)
            blocks.append(_Block(layers, first_unit))
            self.block_filters.append(filters)
        self.blocks = nn.Sequential(*blocks)
        self.film_features = 2 * sum(self.block_filters) if film else 0
        self._film_slices = film_slices(self.block_filters)
        self.globalavgpool, self.flatten = cfg.globalavgpool, flatten
        self.out_shape = (channels, *size)
        self.out_features = channels if cfg.globalavgpool else channels * math.prod(size)
        initialize(self, cfg.initialization, f"{path}.initialization")

    def features(self, x: torch.Tensor, film: torch.Tensor | None = None) -> torch.Tensor:
        """The last feature maps, (B, C_in, *S) -> (B, *out_shape).

        Args:
            x: the images, concatenated on channels.
            film: (B, ``film_features``) FiLM parameters when the CNN was built with FiLM.

        Raises:
            ValueError: ``film`` missing for a FiLM CNN, given to one without, or of the wrong width.
        """
        if bool(self.film_features) != (film is not None):
            raise ValueError("this CNN was built with FiLM: pass film=(B, %d) parameters" % self.film_features
                             if self.film_features else "this CNN was built without FiLM: film must be None")
        if film is None:
            return self.blocks(x)
        if film.shape[-1] != self.film_features:
            raise ValueError(f"FiLM parameters have {film.shape[-1]} features; this CNN needs {self.film_features}")
        for block, part in zip(self.blocks, self._film_slices):
            x = block(x, film[:, part])
        return x

    def forward(self, x: torch.Tensor, film: torch.Tensor | None = None) -> torch.Tensor:
        """(B, C_in, *S) -> (B, out_features): the feature maps, globally pooled or flattened
        (the maps themselves, (B, *out_shape), when built with ``flatten=False``)."""
        x = self.features(x, film)
        if not self.flatten:
            return x
        return x.flatten(2).mean(-1) if self.globalavgpool else x.flatten(1)
