"""``vgg``: blocks of repeated convolutions, each followed by max pooling, and a head per ``dmode``."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from deepscope.config.nets.common import StagedParams

__all__ = ["VGGParams"]


class VGGParams(StagedParams):
    """VGG (Simonyan & Zisserman 2015): ``depths`` convolutions of ``block_sizes`` channels per block."""

    architecture: Literal["vgg"] = "vgg"
    skip_connections: bool = Field(False, description="deconvolver: concatenate encoder features into the decoder")
