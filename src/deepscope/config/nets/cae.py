"""``cae``: a convolutional autoencoder (encoder, dense latent, decoder without skip connections)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, PositiveInt

from deepscope.config.nets.common import StagedParams

__all__ = ["CAEParams"]


class CAEParams(StagedParams):
    """Convolutional autoencoder: ``block_sizes`` channels per level, a latent of ``latent_size`` units."""

    architecture: Literal["cae"] = "cae"
    depths: list[PositiveInt] = Field(default_factory=lambda: [2, 2, 2], min_length=1,
                                      description="convolutions per level")
    block_sizes: list[PositiveInt] = Field(default_factory=lambda: [16, 32, 64], min_length=1,
                                           description="channels per level")
    latent_size: PositiveInt = Field(128, description="units of the dense latent between encoder and decoder")
    downsampling: Literal["maxpool", "conv"] = Field(
        "maxpool", description="between levels: max pool k2 s2, or a stride-2 convolution (+ norm + activation)")
