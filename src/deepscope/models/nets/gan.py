"""``gan``: a convolutional-autoencoder generator and a discriminator of (event, image) pairs.

The generator (``unet`` with or without skip connections, or ``cae``) maps the event's image to the
logits of an image of the same size (one track's hits). The discriminator sees the event image
concatenated on channels with an image (the true one, or the generator's probabilities) and gives
one logit: a real pair or a generated one. ``forward`` is the generator alone, so evaluation,
prediction and every figure treat a trained GAN as the image-to-image net it is; the ``adversarial``
family's system trains both (:mod:`deepscope.training.adversarial`).

The discriminator is written here (a DCGAN critic is a few lines); the generators are the registered
image-to-image nets.
"""

from __future__ import annotations

import torch
from torch import nn

from deepscope.components import ARCHITECTURES
from deepscope.config.nets.gan import DiscriminatorConfig, GANParams
from deepscope.data.spec import InputSpec
from deepscope.errors import ConfigError

__all__ = ["Discriminator", "GANNet", "build_gan"]

NO_HIT_LOGIT = -30.0  # sigmoid(-30) ~ 1e-13: a cell without a hit is never part of the output


class Discriminator(nn.Module):
    """(B, C, H, W) pairs -> (B,) logits: stride-2 3×3 convolutions, LeakyReLU(0.2), average pool, linear."""

    def __init__(self, in_channels: int, cfg: DiscriminatorConfig) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = in_channels
        for i, width in enumerate(cfg.block_sizes):
            layers.append(nn.Conv2d(channels, width, 3, stride=2, padding=1, bias=cfg.normalization == "none" or i == 0))
            if i > 0 and cfg.normalization == "batch":
                layers.append(nn.BatchNorm2d(width))
            elif i > 0 and cfg.normalization == "instance":
                layers.append(nn.InstanceNorm2d(width, affine=True))
            layers.append(nn.LeakyReLU(0.2))
            channels = width
        self.features = nn.Sequential(*layers)
        self.dropout = nn.Dropout(cfg.dropout)
        self.logit = nn.Linear(channels, 1)

    def forward(self, pairs: torch.Tensor) -> torch.Tensor:
        pooled = self.features(pairs).mean(dim=(2, 3))
        return self.logit(self.dropout(pooled)).squeeze(1)


class GANNet(nn.Module):
    """``forward(images) -> (B, C_out, H, W)`` logits of the generator; :meth:`discriminate` judges pairs."""

    def __init__(self, spec: InputSpec, cfg: GANParams) -> None:
        super().__init__()
        if len(spec.images) != 1:
            raise ConfigError(f"model.architecture gan takes one image (the event's view); the data has "
                              f"{len(spec.images)} ({', '.join(spec.images) or 'none'}): keep one view in data.views")
        (self.image_name, image), = spec.images.items()
        if len(image.spatial) != 2:
            raise ConfigError(f"model.architecture gan takes 2D images; '{self.image_name}' has spatial shape "
                              f"{tuple(image.spatial)}")
        if not spec.dense:
            raise ConfigError("model.architecture gan generates images: the targets must be images of the input's "
                              "size (e.g. data.target: {mask: tracker_track, view: top}); they are "
                              f"{'one value' if not spec.target_shape else spec.target_shape} per sample")
        generator_cfg = cfg.generator
        if generator_cfg.dmode not in (None, "deconvolver"):
            raise ConfigError(f"model.generator.dmode: '{generator_cfg.dmode}'; the generator maps images to "
                              "images (deconvolver, or leave it out)")
        build = ARCHITECTURES.get(generator_cfg.architecture)
        self.generator = build(spec, generator_cfg, task="binary")
        out_channels = int(spec.target_shape[0])
        self.discriminator = Discriminator(image.channels + out_channels, cfg.discriminator)
        self.mask_to_hits = cfg.mask_to_hits

    def forward(self, images: dict[str, torch.Tensor], scalars: torch.Tensor | None = None,
                tracks: torch.Tensor | None = None) -> torch.Tensor:
        logits = self.generator(images=images)
        if self.mask_to_hits:
            empty = images[self.image_name].sum(1, keepdim=True) <= 0
            logits = logits.masked_fill(empty, NO_HIT_LOGIT)
        return logits

    def discriminate(self, images: dict[str, torch.Tensor], candidate: torch.Tensor) -> torch.Tensor:
        """(B,) logits that ``candidate`` (B, C_out, H, W) in [0, 1] is the true image of each event."""
        event = images[self.image_name]
        return self.discriminator(torch.cat([event, candidate.to(event.dtype)], dim=1))


def build_gan(spec: InputSpec, cfg: GANParams) -> GANNet:
    """The generator and discriminator for the one image and the image targets of ``spec``."""
    return GANNet(spec, cfg)
