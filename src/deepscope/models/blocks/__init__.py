"""Blocks: dense stacks, conv units, squeeze-and-excite, Deep Sets."""

from deepscope.models.blocks.conv import ConvUnit, SqueezeExcite
from deepscope.models.blocks.deepsets import DeepSets, track_mask
from deepscope.models.blocks.dense import DenseStack

__all__ = ["ConvUnit", "DeepSets", "DenseStack", "SqueezeExcite", "track_mask"]
