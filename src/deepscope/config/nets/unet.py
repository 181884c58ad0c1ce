"""``unet``: an encoder and a decoder joined by skip connections at every level."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, PositiveInt

from deepscope.config.nets.common import StagedParams

__all__ = ["UNetParams"]


class UNetParams(StagedParams):
    """U-Net (Ronneberger et al. 2015): ``block_sizes`` channels per level, ``depths`` convolutions per level."""

    architecture: Literal["unet"] = "unet"
    depths: list[PositiveInt] = Field(default_factory=lambda: [2, 2, 2], min_length=1,
                                      description="convolutions per level")
    block_sizes: list[PositiveInt] = Field(default_factory=lambda: [16, 32, 64], min_length=1,
                                           description="channels per level, the first is the base width")
    skip_connections: bool = Field(True, description="concatenate each encoder level into the decoder")
    downsampling: Literal["maxpool", "conv"] = Field(
        "maxpool", description="between levels: max pool k2 s2, or a stride-2 convolution (+ norm + activation)")
