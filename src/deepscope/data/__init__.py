"""Data: sources, checks, splits, standardization, batch-level datasets and the data module."""

from deepscope.data.arrays import ArraySet
from deepscope.data.spec import ImageSpec, InputSpec
from deepscope.data.standardize import Standardizer

__all__ = ["ArraySet", "ImageSpec", "InputSpec", "Standardizer"]
