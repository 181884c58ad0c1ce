"""``deepfocus``: DeepFocus's net: ResNet encoder, dense latent, skip-connected decoder."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, PositiveInt

from deepscope.config.nets.resnet import StemParams

__all__ = ["DeepFocusParams"]


class DeepFocusParams(StemParams):
    """The seed's builder: stem k7 s2 + max pool, ResNet stages; deconvolver: a dense latent of
    ``latent_size`` units, a decoder of transposed convolutions and interpolation with skip connections,
    a 1x1 output convolution and ``final_activation``; regressor/classifier: global pool, dropout, dense."""

    architecture: Literal["deepfocus"] = "deepfocus"
    depths: list[PositiveInt] = Field(default_factory=lambda: [2, 2, 2], min_length=1)
    block_sizes: list[PositiveInt] = Field(default_factory=lambda: [32, 64, 128], min_length=1)
    latent_size: PositiveInt = Field(256, description="units of the dense latent (deconvolver)")
    skip_connections: bool = True
