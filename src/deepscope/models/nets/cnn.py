"""DeepCalo's CNN over the (channel-concatenated) images: 'simple' or pre-activation 'res'."""

from __future__ import annotations

import math

import torch
from torch import nn

from deepscope.config.model import CNNConfig
from deepscope.errors import ConfigError
from deepscope.models.blocks import ConvUnit, ResUnit, film_slices
from deepscope.models.layers import as_tuple, conv_output_size, initialize, make_dropblock, pool, strided_conv

__all__ = ["CNN", "LayersAsDepth", "conv_input_shape", "downsampling_factors"]


def downsampling_factors(size: tuple[int, ...], min_size: int) -> tuple[int, ...] | None:
    """DeepCalo's downsampling rule for one step, or ``None`` when the image is too small.

    Every dim must be ≥ ``min_size``. A dim at least 1.5× the smallest one is reduced by 3, the
    others by 2 (so elongated calorimeter layers become squarer as they shrink).
    """
    if min(size) < min_size:
        return None
    smallest = min(size)
    return tuple(3 if s >= 1.5 * smallest else 2 for s in size)


def _size(spatial: tuple[int, ...]) -> str:
    return "x".join(map(str, spatial))


def conv_input_shape(channels: int, spatial: tuple[int, ...], conv_dim: int | None,
                     path: str = "model.cnn") -> tuple[int, tuple[int, ...], bool]:
    """What the CNN convolves over, from the images it is given and ``conv_dim``.

    - ``conv_dim`` null, or equal to the images' dims: the images as they are.
    - ``conv_dim: 3`` on 2D images (C, H, W): DeepCalo's layer stack. The C channels (the
      calorimeter layers, concatenated over the images) become a third conv dim, so the
      CNN sees one channel of (H, W, C).

    Args:
        channels: C of the (channel-concatenated) images.
        spatial: their spatial size, (H, W) or (D, H, W).
        conv_dim: ``model.cnn.conv_dim`` (2, 3 or None).
        path: dotted config path of the CNN, for error messages.

    Returns:
        (channels, spatial size, layers stacked as depth) of the CNN's input.

    Raises:
        ConfigError: ``conv_dim: 2`` on 3D images, or another combination that cannot be convolved.
    """
    dims = len(spatial)
    if conv_dim is None or conv_dim == dims:
        return channels, tuple(spatial), False
    if conv_dim == 3 and dims == 2:
        return 1, (*spatial, channels), True
    shape = f"{channels} channel(s) of {_size(spatial)}"
    if conv_dim == 2 and dims == 3:
        raise ConfigError(f"{path}.conv_dim is 2 but the images are 3D ({shape}): a 2D convolution cannot run over "
                          f"(D, H, W); set {path}.conv_dim: 3, or leave it out to use the images' dims")
    raise ConfigError(f"{path}.conv_dim is {conv_dim} but the images are {dims}D ({shape}); conv_dim 2 takes 2D "
                      "images, 3 takes 3D images or 2D images whose channels (layers) are stacked as a third dim")


class LayersAsDepth(nn.Module):
    """(B, C, H, W) -> (B, 1, H, W, C): the C layers of a 2D image stack become its depth dim.

    The torch form of DeepCalo's ``Reshape((H, W, C, 1))`` for ``conv_dim: 3``: layer j of the
    stack is depth index j, so a (k, k, 2) kernel convolves pairs of neighbouring layers.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, 1, H, W, C)
        return x.movedim(1, -1).unsqueeze(1)


def _check_kernel_lists(cfg: CNNConfig, dims: int, spatial: tuple[int, ...], path: str) -> None:
    """With ``conv_dim`` left out, kernel and stride lists need one entry per image dim (a given
    ``conv_dim`` is checked against them when the config is validated)."""
    if cfg.conv_dim is not None:
        return
    for key in ("init_kernel_size", "rest_kernel_size", "init_strides", "rest_strides"):
        value = getattr(cfg, key)
        if not isinstance(value, (list, tuple)) or len(value) == dims:
            continue
        hint = f"; or set {path}.conv_dim: 3 to convolve over their layers as a third dim" if len(value) == 3 else ""
        raise ConfigError(f"{path}.{key} {list(value)} has {len(value)} entries but the images are {dims}D "
                          f"({_size(spatial)}); give {dims} entries, or an int{hint}")


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
    step (if enabled and every conv dim is ≥ ``min_size_for_downsampling``). The network's first
    conv uses ``init_kernel_size``/``init_strides`` and no grouping; every other conv uses
    ``rest_kernel_size``/``rest_strides`` and ``cardinality`` groups.

    - ``cnn_type: simple``: a unit is conv → norm → [FiLM] → act → [DropBlock] → [SE];
      ``block_depths[i]`` units (= convs) per block.
    - ``cnn_type: res``: a unit is a pre-activation residual unit (:class:`ResUnit`) of two
      convs; ``block_depths[i]`` units, so ``[1, 2, 2, 2, 2]`` is 18 convs. The stride of a unit
      (``init_strides`` for the first, ``rest_strides`` for the others) is on its first conv.

    With FiLM, the first unit of every block is modulated by its slice of the generator's output
    (see :mod:`deepscope.models.blocks.film`); ``film_features`` = 2·Σ_i F_i.

    **Conv dims** (:func:`conv_input_shape`): the CNN convolves over the images' own dims, or,
    with ``conv_dim: 3`` on 2D images (B, C, H, W), over DeepCalo's layer stack: the input is
    reshaped to (B, 1, H, W, C) (:class:`LayersAsDepth`), one channel whose third dim holds the
    layers in channel order, and an int kernel k means (k, k, 2) (two neighbouring layers).
    Everything after that is the plain 3D CNN, and the layer dim is a conv dim like H and W:
    it must be ≥ ``min_size_for_downsampling`` for a block to downsample, takes part in the
    1.5× rule, and is divided by the downsampling factor (2, or 3 when it is ≥ 1.5× the
    smallest dim), as DeepCalo's README defines these for every dim convolved over. An int
    stride s strides the layer dim too; give ``[s, s, 1]`` to keep the layers. ``cardinality``
    groups every conv but the first in 3D as in 2D (the first has one input channel there;
    DeepCalo ignored cardinality in 3D with a warning).

    Args:
        in_channels: channels of the input image (the images concatenated on channels).
        spatial: its spatial size, (H, W) or (D, H, W).
        cfg: the ``model.cnn`` section.
        film: build the FiLM-conditioned variant.
        flatten: ``forward`` pools or flattens the last maps; ``False`` returns the maps
            (B, *out_shape), for a network in network after the CNN.
        path: dotted config path, for error messages.

    Attributes:
        conv_dim: 2 or 3, the dims convolved over.
        layers_as_depth: the :class:`LayersAsDepth` reshape that runs first, or ``None``.
        in_shape: (C, *S) of what the first conv sees: (1, H, W, C) with ``layers_as_depth``.
        block_filters: F_i per block.
        film_features: 2·Σ_i F_i, the FiLM parameters ``forward`` takes (0 without FiLM).
        out_shape: (C, *S) of the last feature maps.
        out_features: width of the flattened (or pooled) output (with ``flatten``).

    Raises:
        ConfigError: ``conv_dim`` does not fit the images, a kernel/stride list has another
            number of entries than the conv dims, or ``cardinality`` does not divide the filters.
    """

    def __init__(self, in_channels: int, spatial: tuple[int, ...], cfg: CNNConfig, film: bool = False,
                 flatten: bool = True, path: str = "model.cnn") -> None:
        super().__init__()
        channels, size, stacked = conv_input_shape(in_channels, tuple(spatial), cfg.conv_dim, path)
        dims = len(size)
        _check_kernel_lists(cfg, dims, tuple(spatial), path)
        self.conv_dim, self.in_shape = dims, (channels, *size)
        self.layers_as_depth = LayersAsDepth() if stacked else None
        if cfg.cardinality > 1 and cfg.n_init_filters % cfg.cardinality:
            raise ConfigError(f"{path}.cardinality {cfg.cardinality} must divide n_init_filters {cfg.n_init_filters} "
                              "(grouped convolutions split the channels evenly)")
        dropblock = cfg.dropout.model_dump() if cfg.dropout is not None else None
        se_ratio = cfg.squeeze_and_excite_ratio if cfg.use_squeeze_and_excite else None
        self.cnn_type = cfg.cnn_type
        self.block_filters: list[int] = []
        blocks: list[nn.Module] = []
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
            x: the images, concatenated on channels, (B, C_in, *S) as the CNN was built for
                (with ``layers_as_depth`` they are reshaped to (B, 1, *S, C_in) here).
            film: (B, ``film_features``) FiLM parameters when the CNN was built with FiLM.

        Raises:
            ValueError: ``film`` missing for a FiLM CNN, given to one without, or of the wrong width.
        """
        if bool(self.film_features) != (film is not None):
            raise ValueError("this CNN was built with FiLM: pass film=(B, %d) parameters" % self.film_features
                             if self.film_features else "this CNN was built without FiLM: film must be None")
        if self.layers_as_depth is not None:
            x = self.layers_as_depth(x)  # (B, C, H, W) -> (B, 1, H, W, C)
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
