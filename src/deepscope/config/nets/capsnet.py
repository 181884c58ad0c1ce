"""``capsnet``: a capsule network with dynamic routing by agreement (Sabour, Frosst & Hinton 2017)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, PositiveInt

from deepscope.config.common import StrictModel

__all__ = ["CapsNetDecoderConfig", "CapsNetParams"]


class CapsNetDecoderConfig(StrictModel):
    """The paper's reconstruction decoder, a regularizer: the class capsules masked to one class (the true
    class in training, else the longest capsule) go through dense layers to a sigmoid image of the input's
    size; ``weight`` times the summed squared error to the input is added to the training loss."""

    use: bool = Field(False, description="reconstruct the input image from the class capsules during training")
    units: list[PositiveInt] = Field(default_factory=lambda: [512, 1024],
                                     description="widths of the decoder's hidden dense layers (ReLU), in order; the "
                                                 "sigmoid output layer has the image's channels x height x width units")
    weight: float = Field(0.0005, ge=0.0, description="factor of the reconstruction loss (per-sample sum of squared "
                                                       "errors, averaged over the batch) in the training loss")


class CapsNetParams(StrictModel):
    """Conv + ReLU, primary capsules (a strided conv cut into ``primary_dim``-vectors, squashed), one class
    capsule per class reached by dynamic routing; the output is each class capsule's length, in [0, 1).
    Train it with the ``margin`` loss. 2D images (SuperNEMO's views); 28² MNIST with the defaults gives
    the paper's 1152 primary capsules."""

    architecture: Literal["capsnet"] = "capsnet"
    conv_channels: PositiveInt = Field(256, description="feature maps of the first convolution (ReLU)")
    conv_kernel: PositiveInt = Field(9, description="kernel size of the first convolution (stride 1, no padding)")
    primary_types: PositiveInt = Field(32, description="primary capsule types: maps of capsules per position")
    primary_dim: PositiveInt = Field(8, description="length of a primary capsule's vector")
    primary_kernel: PositiveInt = Field(9, description="kernel size of the primary-capsule convolution (no padding)")
    primary_stride: PositiveInt = Field(2, description="stride of the primary-capsule convolution")
    class_dim: PositiveInt = Field(16, description="length of a class capsule's vector")
    routing_iterations: int = Field(3, ge=1, le=10, description="iterations of routing by agreement (the paper: 3)")
    decoder: CapsNetDecoderConfig = Field(default_factory=CapsNetDecoderConfig,
                                          description="the reconstruction decoder (off by default): "
                                                      "{use, units, weight}")
