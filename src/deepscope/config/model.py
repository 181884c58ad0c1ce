"""The ``model`` section: one params model per architecture, told apart by ``model.architecture``.

DeepCalo's vocabulary is native: ``cnn``, ``top``, ``scalar_net``, ``track_net``, each with
``initialization``, ``activation``, ``normalization`` and ``dropout`` in the "str or config dict"
form. Defaults are DeepCalo's (``shared/reference/SEED-FACTS.md`` §1) unless noted.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import Field, PositiveInt, field_validator, model_validator

from deepscope.components import ACTIVATIONS, INITIALIZERS, NORMALIZATIONS
from deepscope.config.common import StrictModel, component, fail

__all__ = ["CNNConfig", "CombinedParams", "ModelConfig", "ScalarNetConfig", "TopConfig", "TrackNetConfig"]

Activation = component(ACTIVATIONS)
Initializer = component(INITIALIZERS)
Normalization = component(NORMALIZATIONS)


def _kernel(value: Any) -> Any:
    """An int, or a list of ints (one per spatial dim)."""
    expected = "expected a positive integer or a list of them (one per spatial dim)"
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 1:
            raise fail("kernel", f"found {value!r}; expected a positive integer")
        return value
    if isinstance(value, (list, tuple)) and value and all(
        isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in value
    ):
        if len(value) not in (2, 3):
            raise fail("kernel", f"found {list(value)!r}; a list needs one entry per spatial dim (2 or 3)")
        return list(value)
    raise fail("kernel", f"found {value!r}; {expected}")


class SubmodelConfig(StrictModel):
    """Keys every DeepCalo submodel has."""

    initialization: Initializer = "orthogonal"
    activation: Activation | None = None
    normalization: Normalization | None = None
    dropout: float | None = Field(None, ge=0.0, lt=1.0, description="dropout rate after each dense layer")


class CNNConfig(SubmodelConfig):
    """DeepCalo's CNN over the (channel-concatenated) images."""

    cnn_type: Literal["simple"] = "simple"
    conv_dim: Literal[2, 3] | None = Field(
        None, description="2 or 3; inferred from the images when left out, checked against them when given"
    )
    block_depths: list[PositiveInt] = Field(default_factory=lambda: [1], min_length=1)
    n_init_filters: PositiveInt = 4
    init_kernel_size: Any = 5
    rest_kernel_size: Any = 3
    init_strides: Any = 1
    rest_strides: Any = 1
    cardinality: PositiveInt = 1
    use_squeeze_and_excite: bool = False
    squeeze_and_excite_ratio: PositiveInt = 16
    globalavgpool: bool = False
    downsampling: Literal["avgpool", "maxpool", "strided"] | None = None
    min_size_for_downsampling: PositiveInt = 2

    _check_kernels = field_validator(
        "init_kernel_size", "rest_kernel_size", "init_strides", "rest_strides", mode="before"
    )(lambda v: _kernel(v))

    @model_validator(mode="after")
    def _dims_agree(self) -> "CNNConfig":
        for key in ("init_kernel_size", "rest_kernel_size", "init_strides", "rest_strides"):
            value = getattr(self, key)
            if isinstance(value, list) and self.conv_dim is not None and len(value) != self.conv_dim:
                raise fail("kernel_dims", f"{key} has {len(value)} entries but conv_dim is {self.conv_dim}")
        if self.dropout is not None:
            raise fail("cnn_dropout", "dropout for convolutional layers (DropBlock) is not available yet; "
                                      "set model.cnn.dropout: null and use model.top.dropout for dense layers")
        if self.cardinality > 1 and self.n_init_filters % self.cardinality:
            raise fail("cardinality", f"cardinality {self.cardinality} must divide n_init_filters "
                                      f"{self.n_init_filters} (grouped convolutions split the channels evenly)")
        if self.use_squeeze_and_excite:
            smallest = self.n_init_filters
            if smallest // self.squeeze_and_excite_ratio < 1:
                raise fail(
                    "se_ratio",
                    f"squeeze_and_excite_ratio {self.squeeze_and_excite_ratio} is larger than n_init_filters "
                    f"{smallest}: the squeeze layer would have no units; use a ratio <= {smallest}",
                )
        return self


class TopConfig(SubmodelConfig):
    """Dense layers on the concatenated features; the last entry of ``units`` is the output size."""

    units: list[PositiveInt] = Field(default_factory=lambda: [64, 1])
    final_activation: Activation | None = None


class ScalarNetConfig(SubmodelConfig):
    """Dense layers over the scalars (``units: []`` passes them through)."""

    units: list[PositiveInt] = Field(default_factory=list)
    connect_to: list[Literal["top"]] = Field(default_factory=lambda: ["top"])


class TrackNetConfig(SubmodelConfig):
    """Deep Sets over zero-padded tracks: φ per track, masked sum, ρ."""

    phi_units: list[PositiveInt] = Field(default_factory=lambda: [64])
    rho_units: list[PositiveInt] = Field(default_factory=lambda: [64])
    connect_to: list[Literal["top"]] = Field(default_factory=lambda: ["top"])


class CombinedParams(StrictModel):
    """DeepCalo's combined model. Submodels are used when the data has their input."""

    architecture: Literal["combined"] = "combined"
    cnn: CNNConfig = Field(default_factory=CNNConfig)
    top: TopConfig = Field(default_factory=TopConfig)
    scalar_net: ScalarNetConfig = Field(default_factory=ScalarNetConfig)
    track_net: TrackNetConfig = Field(default_factory=TrackNetConfig)


ModelConfig = Annotated[Union[CombinedParams], Field(discriminator="architecture")]
