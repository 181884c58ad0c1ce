"""Options shared by the DeepFocus family of nets (ResNet, DenseNet, VGG, U-Net, CAE, DeepFocus).

Each net works for 2D and 3D images (``spatial_dims`` comes from the data) in one of DeepFocus's
three modes (``dmode``): ``deconvolver`` (image → image with the target's channels), ``regressor``
(→ one value per target column) and ``classifier`` (→ one logit per class or label). ``in_channels``
and ``out_channels`` come from the data too; given, they are checked against it.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, PositiveInt, field_validator, model_validator

from deepscope.components import ACTIVATIONS, NORMALIZATIONS
from deepscope.config.common import StrictModel, component, fail

__all__ = ["ConvNetParams", "DMode", "StagedParams", "kernel_size"]

Activation = component(ACTIVATIONS)
Normalization = component(NORMALIZATIONS)
DMode = Literal["deconvolver", "regressor", "classifier"]


def kernel_size(value: Any, key: str = "kernel_size") -> Any:
    """A positive odd int, or a list of them (one per spatial dim): odd kernels keep sizes with 'same' padding."""
    items = value if isinstance(value, (list, tuple)) else [value]
    if not items or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 and v % 2 for v in items):
        raise fail("kernel", f"{key}: found {value!r}; expected a positive odd integer or a list of them "
                             "(one per spatial dim)")
    if isinstance(value, (list, tuple)):
        if len(value) not in (2, 3):
            raise fail("kernel", f"{key}: found {list(value)!r}; a list needs one entry per spatial dim (2 or 3)")
        return list(value)
    return value


class ConvNetParams(StrictModel):
    """Keys every net of the DeepFocus family takes (the seed's builder arguments)."""

    dmode: DMode | None = Field(
        None, description="deconvolver (image -> image), regressor (-> values) or classifier (-> classes/labels); "
                          "inferred from the targets when left out: images -> deconvolver, class labels or a "
                          "classification loss -> classifier, else regressor")
    spatial_dims: Literal[2, 3] | None = Field(None, description="2 or 3; from the data's images when left out")
    in_channels: PositiveInt | None = Field(None, description="input channels; from the data when left out")
    out_channels: PositiveInt | None = Field(
        None, description="output channels (deconvolver), values (regressor) or classes (classifier); "
                          "from the targets when left out")
    kernel_size: Any = Field(3, description="odd int or one per spatial dim")
    activation: Activation = "relu"
    final_activation: Activation | None = Field(
        None, description="after the output layer (e.g. relu for non-negative skies); none gives raw values/logits")
    normalization: Normalization | None = "batch"
    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="dropout before the dense layers of the head (and latent)")
    hidden_size: PositiveInt = Field(256, description="units of the dense layer of the regressor/classifier head")

    _check_kernel = field_validator("kernel_size", mode="before")(lambda v: kernel_size(v))

    @model_validator(mode="after")
    def _kernel_dims(self) -> "ConvNetParams":
        if isinstance(self.kernel_size, list) and self.spatial_dims and len(self.kernel_size) != self.spatial_dims:
            raise fail("kernel_dims", f"kernel_size has {len(self.kernel_size)} entries but spatial_dims is "
                                      f"{self.spatial_dims}")
        return self


class StagedParams(ConvNetParams):
    """Nets built of stages: ``block_sizes`` channels per stage, ``depths`` blocks (or convolutions) per stage."""

    depths: list[PositiveInt] = Field(default_factory=lambda: [2, 2, 2, 2], min_length=1,
                                      description="blocks (or convolutions) per stage")
    block_sizes: list[PositiveInt] = Field(default_factory=lambda: [64, 128, 256, 512], min_length=1,
                                           description="output channels of each stage")

    @model_validator(mode="after")
    def _stages_agree(self) -> "StagedParams":
        if len(self.depths) != len(self.block_sizes):
            raise fail("stages", f"depths has {len(self.depths)} entries but block_sizes has {len(self.block_sizes)}: "
                                 "give one depth per stage")
        return self
