"""``resnet``: a ResNet encoder (stem, stages of basic or bottleneck blocks) with a head per ``dmode``."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, PositiveInt, field_validator

from deepscope.config.common import fail
from deepscope.config.nets.common import StagedParams

__all__ = ["ResNetParams", "StemParams"]


class StemParams(StagedParams):
    """A stem convolution (DeepFocus: k7 s2 + BN + act) and an optional max pool k3 s2 before the stages."""

    stem_kernel_size: PositiveInt = Field(7, description="kernel of the stem convolution")
    stem_stride: PositiveInt = Field(2, description="stride of the stem convolution")
    stem_pool: bool = Field(True, description="max pool k3 s2 after the stem")
    block: Literal["basic", "bottleneck"] = Field(
        "basic", description="basic: two kxk convolutions; bottleneck: 1x1, kxk, 1x1 with 4x expansion "
                         "(k = kernel_size)")
    skip_connections: bool = Field(
        False, description="deconvolver: concatenate each encoder stage into the decoder stage of its size")

    @field_validator("stem_kernel_size", mode="before")
    @classmethod
    def _odd_stem_kernel(cls, value: Any) -> Any:
        # odd like kernel_size: 'same' padding then gives ceil(size / stem_stride) on any size
        if isinstance(value, bool) or not isinstance(value, int) or value < 1 or value % 2 == 0:
            raise fail("kernel", f"found {value!r}; expected a positive odd integer (odd kernels keep sizes with "
                                 "'same' padding)")
        return value


class ResNetParams(StemParams):
    """ResNet (He et al. 2016); depths [2, 2, 2, 2] is ResNet-18, [3, 4, 6, 3] ResNet-34 (50 with bottleneck)."""

    architecture: Literal["resnet"] = "resnet"
