"""``multiview``: one CNN per view, features concatenated, one dense head (SuperNEMO's combined model).

Each image of the data is a view with its own CNN (views may differ in shape: 9 × 113, 30 × 113,
30 × 9); the CNNs' flattened (or pooled) features and the scalars are concatenated and go through
``top``. The CNNs are ``views.<name>`` and the head ``top``, so a view's CNN can be loaded from
another run and frozen by those names.
"""

from __future__ import annotations

import torch
from torch import nn

from deepscope.config.nets.multiview import MultiviewParams
from deepscope.data.spec import InputSpec
from deepscope.errors import ConfigError, did_you_mean
from deepscope.models.nets.cnn import CNN
from deepscope.models.nets.combined import Top

__all__ = ["MultiviewNet", "build_multiview"]


class MultiviewNet(nn.Module):
    """``forward(images, scalars=None, tracks=None) -> (B, outputs)``."""

    def __init__(self, spec: InputSpec, cfg: MultiviewParams) -> None:
        super().__init__()
        if not spec.images:
            raise ConfigError("model.architecture multiview needs images (one per view); the data has none")
        for name in cfg.views:
            if name not in spec.images:
                raise ConfigError(f"model.views.{name}: the data has no image '{name}'"
                                  f"{did_you_mean(name, list(spec.images))} (images: {', '.join(spec.images)})")
        self.views = nn.ModuleDict({
            name: CNN(image.channels, tuple(image.spatial), cfg.views.get(name, cfg.cnn),
                      path=f"model.views.{name}" if name in cfg.views else "model.cnn")
            for name, image in spec.images.items()})
        width = sum(cnn.out_features for cnn in self.views.values()) + (spec.scalars or 0)
        self.top = Top(width, cfg.top)
        self.uses_scalars = bool(spec.scalars)

    def features(self, images: dict[str, torch.Tensor], scalars: torch.Tensor | None = None) -> torch.Tensor:
        """The concatenated view features (and scalars): what ``top`` sees."""
        parts = [cnn(images[name]) for name, cnn in self.views.items()]
        if self.uses_scalars and scalars is not None:
            parts.append(scalars)
        return torch.cat(parts, dim=1)

    def forward(self, images: dict[str, torch.Tensor], scalars: torch.Tensor | None = None,
                tracks: torch.Tensor | None = None) -> torch.Tensor:
        return self.top(self.features(images, scalars))


def build_multiview(spec: InputSpec, cfg: MultiviewParams) -> MultiviewNet:
    """The multiview model for the images (views) in ``spec``."""
    return MultiviewNet(spec, cfg)
