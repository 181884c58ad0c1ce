"""``densenet``: dense blocks with transition layers, and a head per ``dmode``."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, PositiveInt

from deepscope.config.nets.common import ConvNetParams

__all__ = ["DenseNetParams"]


class DenseNetParams(ConvNetParams):
    """DenseNet (Huang et al. 2017): each layer adds ``growth_rate`` channels; transitions halve them and the size."""

    architecture: Literal["densenet"] = "densenet"
    depths: list[PositiveInt] = Field(default_factory=lambda: [4, 4, 4], min_length=1,
                                      description="layers per dense block")
    growth_rate: PositiveInt = Field(12, description="channels each layer adds")
    init_features: PositiveInt = Field(32, description="channels of the stem convolution")
    block: Literal["basic", "bottleneck"] = Field(
        "bottleneck", description="bottleneck: a 1x1 convolution to bn_size x growth_rate channels before each kxk "
                                  "(k = kernel_size); basic: the kxk convolution only")
    bn_size: PositiveInt = Field(4, description="bottleneck width in multiples of growth_rate")
    skip_connections: bool = Field(False, description="deconvolver: concatenate encoder features into the decoder")
