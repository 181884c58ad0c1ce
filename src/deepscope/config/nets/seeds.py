"""Options shared by the fixed networks of RACCOON and PENGUIN (``shared/reference/SEED-FACTS.md`` §2)."""

from __future__ import annotations

from pydantic import Field, PositiveInt

from deepscope.components import ACTIVATIONS
from deepscope.config.common import StrictModel, component

__all__ = ["FixedNetParams"]

Activation = component(ACTIVATIONS)


class FixedNetParams(StrictModel):
    """A fixed layout whose width is set by ``layer_param``; the input channels and size come from the data."""

    layer_param: PositiveInt = Field(16, description="feature maps of the first layer; the others are multiples of it")
    dropout: float = Field(0.5, ge=0.0, lt=1.0, description="dropout rate of the fully connected layers")
    activation: Activation = Field(
        "relu", description="after every normalization: relu (the seed's default); RACCOON's code used "
                            "{class_name: leakyrelu, config: {negative_slope: 0.2}}")
