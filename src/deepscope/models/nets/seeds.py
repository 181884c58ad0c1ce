"""The fixed networks of RACCOON and PENGUIN, in 2D (the seed's slices) and 3D (whole cubes).

Each is a stack of [convolution without bias + BatchNorm + activation] layers whose kernel, stride
and padding do the downsampling (no pooling), then fully connected layers with dropout and one output
per target value (one logit for the seed's GR-vs-Newton classification with BCE-with-logits). The
flatten size follows the input size: 8·lp·4·4 for RACCOON on the seed's 256², and whatever the
layers leave of a smaller input (``shared/reference/SEED-FACTS.md`` §2).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from deepscope.config.common import Component
from deepscope.config.nets.seeds import FixedNetParams
from deepscope.data.spec import InputSpec
from deepscope.errors import ConfigError
from deepscope.models.layers import layer_class, make_activation, make_normalization

__all__ = ["FixedNet", "conv_stack_size"]

_BATCH = Component(class_name="batch")  # every conv layer is followed by BatchNorm, as in the seed


def conv_stack_size(size: Sequence[int], layers: Sequence[tuple[int, int, int]]) -> tuple[int, ...]:
    """The spatial size after convolutions of (kernel, stride, padding), as torch computes it."""
    out = tuple(size)
    for kernel, stride, padding in layers:
        out = tuple((n + 2 * padding - kernel) // stride + 1 for n in out)
    return out


class FixedNet(nn.Module):
    """Conv stack + dense head. ``forward(images, scalars=None, tracks=None) -> (B, outputs)``.

    Args:
        name: the architecture, for error messages.
        spec: the data's shapes (one image input, or several of one size, stacked along channels).
        cfg: the ``model`` section.
        widths: output channels of each conv layer.
        conv: (kernel, stride, padding) of every conv layer.
        hidden: units of the hidden dense layers.
        dense_norm: BatchNorm1d after each hidden dense layer (PENGUIN).
    """

    def __init__(self, name: str, spec: InputSpec, cfg: FixedNetParams, widths: Sequence[int],
                 conv: tuple[int, int, int], hidden: Sequence[int], dense_norm: bool) -> None:
        super().__init__()
        sizes = {tuple(v.spatial) for v in spec.images.values()}
        if len(sizes) != 1:
            raise ConfigError(f"model.architecture {name}: the images have different sizes "
                              f"({', '.join(f'{k} {tuple(v.spatial)}' for k, v in spec.images.items())}); it takes "
                              "one stack of channels")
        spatial = next(iter(sizes))
        if len(spatial) not in (2, 3):
            raise ConfigError(f"model.architecture {name}: takes 2D or 3D images; found spatial size {spatial}")
        if spec.dense:
            raise ConfigError(f"model.architecture {name}: outputs one value per target column, but the targets "
                              f"are images {spec.target_shape}; use unet or another deconvolver")
        dims = len(spatial)
        final = conv_stack_size(spatial, [conv] * len(widths))
        if min(final) < 1:
            smallest = 1
            for _ in widths:  # invert one layer: the least n with (n + 2p - k) // s + 1 >= m
                smallest = (smallest - 1) * conv[1] + conv[0] - 2 * conv[2]
            raise ConfigError(f"model.architecture {name}: images of {spatial} are too small for its {len(widths)} "
                              f"convolutions (kernel {conv[0]}, stride {conv[1]}, padding {conv[2]}); "
                              f"they need at least {smallest} pixels per side")
        layers: list[nn.Module] = []
        channels = spec.in_channels
        for width in widths:
            layers += [layer_class("conv", dims)(channels, width, conv[0], conv[1], conv[2], bias=False),
                       make_normalization(_BATCH, width, dims), make_activation(cfg.activation, width, "model.activation")]
            channels = width
        self.features = nn.Sequential(*layers, nn.Flatten())
        head: list[nn.Module] = []
        units = channels * math.prod(final)
        for width in hidden:
            head.append(nn.Linear(units, width))
            if dense_norm:
                head.append(nn.BatchNorm1d(width))
            head += [make_activation(cfg.activation, width, "model.activation"), nn.Dropout(cfg.dropout)]
            units = width
        head.append(nn.Linear(units, spec.output_size))
        self.head = nn.Sequential(*head)
        self.image_names = list(spec.images)

    def forward(self, images: dict[str, torch.Tensor], scalars: torch.Tensor | None = None,
                tracks: torch.Tensor | None = None) -> torch.Tensor:
        x = images[self.image_names[0]] if len(self.image_names) == 1 else \
            torch.cat([images[k] for k in self.image_names], dim=1)
        return self.head(self.features(x))

