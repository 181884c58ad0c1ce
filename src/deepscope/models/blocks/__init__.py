"""Blocks: dense stacks, conv units (simple and residual), squeeze-and-excite, FiLM, gate net,
network in network, Deep Sets."""

from deepscope.models.blocks.conv import ConvUnit, ResUnit, SqueezeExcite
from deepscope.models.blocks.deepsets import DeepSets, track_mask
from deepscope.models.blocks.dense import DenseStack
from deepscope.models.blocks.film import FiLM, FiLMGenerator, film_slices
from deepscope.models.blocks.gate import GateNet, merge_gate
from deepscope.models.blocks.nin import NetworkInNetwork

__all__ = ["ConvUnit", "DeepSets", "DenseStack", "FiLM", "FiLMGenerator", "GateNet", "NetworkInNetwork",
           "ResUnit", "SqueezeExcite", "film_slices", "merge_gate", "track_mask"]
