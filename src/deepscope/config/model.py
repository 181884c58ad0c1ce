"""The ``model`` section: one params model per architecture, told apart by ``model.architecture``.

DeepCalo's vocabulary is native: ``cnn``, ``top``, ``scalar_net``, ``track_net``, each with
``initialization``, ``activation``, ``normalization`` and ``dropout`` in the "str or config dict"
form. Defaults are DeepCalo's (``shared/reference/SEED-FACTS.md`` §1) unless noted.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import Field, PositiveInt, field_validator, model_validator

from deepscope.components import ACTIVATIONS, ARCHITECTURES, CONSTRAINTS, INITIALIZERS, NORMALIZATIONS, REGULARIZERS
from deepscope.config.common import AbsolutePath, StrictModel, component, fail

__all__ = ["CNNConfig", "CombinedParams", "ModelConfig", "PretrainedModelConfig", "ScalarNetConfig", "TopConfig",
           "TrackNetConfig", "pretrained_sections"]

Activation = component(ACTIVATIONS)
Initializer = component(INITIALIZERS)
Normalization = component(NORMALIZATIONS)
Regularizer = component(REGULARIZERS)
Constraint = component(CONSTRAINTS)


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


class LayerRegConfig(StrictModel):
    """Keras-style regularizers (added to the loss) and constraints (applied after each step)."""

    kernel_regularizer: Regularizer | None = None
    bias_regularizer: Regularizer | None = None
    activity_regularizer: Regularizer | None = None
    kernel_constraint: Constraint | None = None
    bias_constraint: Constraint | None = None


class SubmodelConfig(StrictModel):
    """Keys every DeepCalo submodel has."""

    initialization: Initializer = "orthogonal"
    activation: Activation | None = None
    normalization: Normalization | None = None
    layer_reg: LayerRegConfig = Field(default_factory=LayerRegConfig)
    dropout: float | None = Field(None, ge=0.0, lt=1.0, description="dropout rate after each dense layer")


class DropBlockConfig(StrictModel):
    """DropBlock (Ghiasi et al. 2018) for convolutional layers, as keras-drop-block takes it."""

    block_size: PositiveInt = 3
    keep_prob: float = Field(0.9, gt=0.0, le=1.0, description="fraction of activations kept")
    sync_channels: bool = Field(False, description="drop the same blocks in every channel")


class CNNConfig(SubmodelConfig):
    """DeepCalo's CNN over the (channel-concatenated) images."""

    cnn_type: Literal["simple", "res"] = "simple"
    dropout: DropBlockConfig | None = Field(  # type: ignore[assignment]
        None, description="DropBlock after each convolution: {block_size, keep_prob, sync_channels}")
    conv_dim: Literal[2, 3] | None = Field(
        None, description="2 or 3 conv dims; inferred from the images when left out. 3 on 2D images (C, H, W) "
                          "convolves over (H, W, C): the layers (channels) become a third dim"
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

    @field_validator("dropout", mode="before")
    @classmethod
    def _dropblock_form(cls, value: Any) -> Any:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            raise fail("dropblock", f"found {value!r}; convolutional layers use DropBlock: give "
                                    "{block_size: 3, keep_prob: 0.9} (a float rate is for dense layers)")
        return value

    @model_validator(mode="after")
    def _dims_agree(self) -> "CNNConfig":
        for key in ("init_kernel_size", "rest_kernel_size", "init_strides", "rest_strides"):
            value = getattr(self, key)
            if isinstance(value, list) and self.conv_dim is not None and len(value) != self.conv_dim:
                raise fail("kernel_dims", f"{key} has {len(value)} entries but conv_dim is {self.conv_dim}; give "
                                          f"{self.conv_dim} entries (one per conv dim) or an int")
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


ConnectTo = list[Literal["top", "FiLM_gen"]]


class ScalarNetConfig(SubmodelConfig):
    """Dense layers over the scalars (``units: []`` passes them through)."""

    units: list[PositiveInt] = Field(default_factory=list)
    connect_to: ConnectTo = Field(default_factory=lambda: ["top"])


class TrackNetConfig(SubmodelConfig):
    """Deep Sets over zero-padded tracks: φ per track, masked sum, ρ."""

    phi_units: list[PositiveInt] = Field(default_factory=lambda: [64])
    rho_units: list[PositiveInt] = Field(default_factory=lambda: [64])
    connect_to: ConnectTo = Field(default_factory=lambda: ["top"])


class NetworkInNetworkConfig(SubmodelConfig):
    """1×1 convolutions on the CNN's feature maps (Lin et al. 2013), optionally globally pooled."""

    use: bool = False
    units: list[PositiveInt] = Field(default_factory=lambda: [64])
    strides: Any = 1
    globalavgpool: bool = False

    _check_strides = field_validator("strides", mode="before")(lambda v: _kernel(v))


class FiLMGenConfig(SubmodelConfig):
    """Dense layers from the connected scalar/track features to one (γ, β) pair per CNN channel."""

    use: bool = False
    units: list[PositiveInt] = Field(default_factory=lambda: [64])


class GateNetConfig(SubmodelConfig):
    """Per-pixel MLP over a ``gate_<name>`` image, giving a gate in [0, 1] merged into image ``<name>``."""

    units: list[PositiveInt] = Field(default_factory=list)
    use_res: bool = False
    final_activation: Activation | None = None
    final_activation_init: list[float] = Field(default_factory=lambda: [1.0], min_length=1, max_length=1)
    merge_method: Literal["multiply", "concatenate"] = "concatenate"


class UpsamplingConfig(StrictModel):
    """Upsample every image to a common size by integer factors, conserving the summed energy."""

    use: bool = False
    wanted_size: list[PositiveInt] = Field(
        default_factory=lambda: [100, 100], min_length=2, max_length=3,
        description="the images' size to aim for, one entry per image dim: (H, W) for 2D images, also with "
                    "cnn.conv_dim 3 (upsampling comes before the layers are stacked), (D, H, W) for 3D images")
    interpolation: Literal["nearest", "bilinear"] = Field(
        "nearest", description="'bilinear' is trilinear for 3D images")


class PretrainedModelConfig(StrictModel):
    """Load named submodels/layers from an earlier run and optionally freeze them."""

    use: bool = False
    weights_path: AbsolutePath | None = Field(None, description="a run folder, or a checkpoint file inside one")
    params_path: AbsolutePath | None = Field(None, description="the earlier run's config.yaml, if not beside the weights")
    layers_to_load: list[str] = Field(default_factory=list)
    freeze_loaded_layers: bool | list[bool] = False


    @model_validator(mode="after")
    def _complete(self) -> "PretrainedModelConfig":
        if self.use and self.weights_path is None:
            raise fail("pretrained_path", "use is true but weights_path is missing")
        if self.use and not self.layers_to_load:
            raise fail("pretrained_layers", "use is true but layers_to_load is empty: name the submodels to load "
                                            "(e.g. [cnn, scalar_net])")
        if isinstance(self.freeze_loaded_layers, list) and len(self.freeze_loaded_layers) != len(self.layers_to_load):
            raise fail("pretrained_freeze", f"freeze_loaded_layers has {len(self.freeze_loaded_layers)} entries "
                                            f"but layers_to_load has {len(self.layers_to_load)}")
        return self


def check_parts_loaded_once(sections: list[tuple[str, PretrainedModelConfig]]) -> None:
    """Each part is loaded by one pretrained entry at most (``sections``: (key under model, section)).

    Raises:
        PydanticCustomError: naming both entries of a part loaded twice.
    """
    seen: dict[str, str] = {}
    for key, section in sections:
        for name in section.layers_to_load if section.use else []:
            if name in seen:
                raise fail("pretrained_twice", f"model.{key}.layers_to_load: '{name}' is also loaded by "
                                               f"model.{seen[name]}; load each part from one run")
            seen[name] = key


def pretrained_sections(model: Any) -> list[tuple[str, PretrainedModelConfig]]:
    """(dotted key, section) of every pretrained-weights section of a model config that is in use:
    ``pretrained_model``, then each entry of ``pretrained`` (architectures that load parts from several
    runs, such as ``multiview``)."""
    sections: list[tuple[str, PretrainedModelConfig]] = []
    single = getattr(model, "pretrained_model", None)
    if single is not None and single.use:
        sections.append(("model.pretrained_model", single))
    for i, entry in enumerate(getattr(model, "pretrained", None) or []):
        if entry.use:
            sections.append((f"model.pretrained[{i}]", entry))
    return sections


class CombinedParams(StrictModel):
    """DeepCalo's combined model. Submodels are used when the data has their input."""

    architecture: Literal["combined"] = "combined"
    cnn: CNNConfig = Field(default_factory=CNNConfig)
    network_in_network: NetworkInNetworkConfig = Field(default_factory=NetworkInNetworkConfig)
    top: TopConfig = Field(default_factory=TopConfig)
    scalar_net: ScalarNetConfig = Field(default_factory=ScalarNetConfig)
    track_net: TrackNetConfig = Field(default_factory=TrackNetConfig)
    FiLM_gen: FiLMGenConfig = Field(default_factory=FiLMGenConfig)
    gate_net: GateNetConfig = Field(default_factory=GateNetConfig)
    upsampling: UpsamplingConfig = Field(default_factory=UpsamplingConfig)
    pretrained_model: PretrainedModelConfig = Field(default_factory=PretrainedModelConfig)

    @model_validator(mode="after")
    def _submodels_agree(self) -> "CombinedParams":
        feeds = [f"model.{n}.connect_to" for n in ("scalar_net", "track_net")
                 if "FiLM_gen" in getattr(self, n).connect_to]
        if self.FiLM_gen.use and not feeds:
            raise fail("film_unconnected", "model.FiLM_gen.use is true but neither model.scalar_net.connect_to nor "
                                           "model.track_net.connect_to contains 'FiLM_gen': FiLM needs an input")
        if feeds and not self.FiLM_gen.use:
            verb = "contains" if len(feeds) == 1 else "contain"
            raise fail("film_off", f"{' and '.join(feeds)} {verb} 'FiLM_gen' but model.FiLM_gen.use is false")
        if self.network_in_network.use and self.cnn.globalavgpool:
            raise fail("nin_gap", "model.cnn.globalavgpool and model.network_in_network.use are both true: the "
                                  "network in network works on the CNN's feature maps; pool at its end instead "
                                  "(model.network_in_network.globalavgpool)")
        # wanted_size has the images' dims. Only conv_dim 2 pins them (2D images) before the data is
        # read: conv_dim 3 takes 3D images or 2D ones whose layers it stacks, so the builder checks that.
        if self.upsampling.use and self.cnn.conv_dim == 2 and len(self.upsampling.wanted_size) != 2:
            raise fail("upsampling_dims", f"model.upsampling.wanted_size has {len(self.upsampling.wanted_size)} "
                                          "entries but model.cnn.conv_dim is 2, which takes 2D images: wanted_size "
                                          "is their (H, W) size; give 2 entries")
        return self


def _params_models() -> tuple[type[StrictModel], ...]:
    """The params model of every registered architecture (``params=`` of its ``ARCHITECTURES`` entry)."""
    import importlib

    models = []
    for entry in ARCHITECTURES.entries():
        module, _, attr = str(entry.params).partition(":")
        models.append(CombinedParams if attr == "CombinedParams" else getattr(importlib.import_module(module), attr))
    return tuple(models)


ModelConfig = Annotated[Union[_params_models()], Field(discriminator="architecture")]  # type: ignore[misc]
