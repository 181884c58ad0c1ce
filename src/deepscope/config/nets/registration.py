"""The registration nets of atlalign (SEED-FACTS §5): ``registration_global`` (an affine STN),
``registration_local`` (a U-Net predicting a displacement field) and ``registration_merged`` (the two
composed, global first).

The defaults are the seed's best settings. A merged model's ``global_model`` / ``local_model`` take
the options of the standalone nets (without ``architecture``; ``compute_inv`` is set once, on the merged
model), so the weights of a standalone run load into its ``global_net`` / ``local_net`` by key.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, PositiveInt, model_validator

from deepscope.components import ACTIVATIONS
from deepscope.config.common import StrictModel, component, fail
from deepscope.config.model import PretrainedModelConfig, check_parts_loaded_once

__all__ = [
    "RegistrationGlobalOptions",
    "RegistrationGlobalParams",
    "RegistrationLocalOptions",
    "RegistrationLocalParams",
    "RegistrationMergedParams",
]

Activation = component(ACTIVATIONS)

_COMPUTE_INV = ("also output the inverse field (the last nd channels), for a loss on atlalign's inv_deltas_xy; "
                "the output is then (B, 1 + 2 nd, *S)")


class RegistrationGlobalOptions(StrictModel):
    """An affine spatial transformer: per entry of ``filters`` 2 x [conv 3x3 + activation] and a max pool 2,
    then flatten, ``dense_layers`` and a linear layer to the nd (nd + 1) affine parameters, initialised to
    the identity."""

    filters: list[PositiveInt] = Field(
        default_factory=lambda: [16, 16, 32, 32, 32], min_length=1,
        description="channels of each conv block (2 x [conv 3x3 + activation], then max pool 2); every axis of "
                    "the images needs at least 2^len(filters) pixels")
    dense_layers: list[PositiveInt] = Field(
        default_factory=lambda: [40],
        description="units of the dense layers between the flattened features and the affine head; [] for none")
    activation: Activation = Field("relu", description="after every convolution")
    dense_activation: Activation = Field(
        "linear", description="after every dense layer: linear, as atlalign's code (with relu the demo's global "
                              "net stayed at the identity for hundreds of steps; bench/README.md)")


class RegistrationGlobalParams(RegistrationGlobalOptions):
    """``registration_global``: the affine net alone (atlalign's ``supervised_global_model_factory``).
    Output (B, 1 + nd, *S): the registered moving image, then the affine displacement field."""

    architecture: Literal["registration_global"] = "registration_global"


class RegistrationLocalOptions(StrictModel):
    """A U-Net on [reference, moving] (atlalign's ``supervised_model_factory``): ``start_filters`` convs, per
    entry of ``downsample_filters`` a max pool 2 and a conv, ``middle_filters`` convs, per entry of
    ``upsample_filters`` an upsampling, a conv, the skip concatenation and a conv, ``end_filters`` convs,
    then a 2x2 conv to the nd field channels (all convs 3x3 + activation, 'same' padding). The input is
    cropped centrally to a multiple of 2^len(downsample_filters) per axis and the field zero-padded back."""

    start_filters: list[PositiveInt] = Field(
        default_factory=lambda: [16], min_length=1,
        description="channels of the convs before the first downsampling (the last one is the first skip)")
    downsample_filters: list[PositiveInt] = Field(
        default_factory=lambda: [16, 32, 32, 32], min_length=1,
        description="channels of the conv after each max pool 2; the images are cropped to a multiple of "
                    "2^len(downsample_filters) per axis")
    middle_filters: list[PositiveInt] = Field(
        default_factory=lambda: [32], description="channels of the convs at the coarsest level")
    upsample_filters: list[PositiveInt] = Field(
        default_factory=lambda: [32, 32, 32, 32], min_length=1,
        description="channels of the two convs of each upsampling block (one per downsampling, coarsest first)")
    end_filters: list[PositiveInt] = Field(
        default_factory=lambda: [64, 64], description="channels of the convs after the last upsampling block")
    activation: Activation = Field(
        {"class_name": "leakyrelu", "config": {"negative_slope": 0.2}},
        description="after every convolution but the field output (the seed's LeakyReLU 0.2)")

    @model_validator(mode="after")
    def _levels_agree(self) -> "RegistrationLocalOptions":
        if len(self.upsample_filters) != len(self.downsample_filters):
            raise fail("levels", f"upsample_filters has {len(self.upsample_filters)} entries but downsample_filters "
                                 f"has {len(self.downsample_filters)}: give one upsampling block per downsampling")
        return self


class RegistrationLocalParams(RegistrationLocalOptions):
    """``registration_local``: the U-Net alone. Output (B, 1 + nd [+ nd], *S): the registered moving image,
    the field, and with ``compute_inv`` the inverse field (the same weights on [moving, reference])."""

    architecture: Literal["registration_local"] = "registration_local"
    compute_inv: bool = Field(False, description=_COMPUTE_INV)


class RegistrationMergedParams(StrictModel):
    """``registration_merged``: the global net, then the local net on the globally warped moving image; the
    fields are composed and the moving image is warped once. Output as ``registration_local``."""

    architecture: Literal["registration_merged"] = "registration_merged"
    global_model: RegistrationGlobalOptions = Field(
        default_factory=RegistrationGlobalOptions,
        description="options of the global net (registration_global's keys but architecture); its weights are "
                    "the model's global_net.*")
    local_model: RegistrationLocalOptions = Field(
        default_factory=RegistrationLocalOptions,
        description="options of the local net (registration_local's keys but architecture and compute_inv); its "
                    "weights are the model's local_net.*")
    compute_inv: bool = Field(
        False, description=_COMPUTE_INV + "; the global part is inverted analytically, the local part by the "
                                          "local net on the swapped inputs")
    pretrained: list[PretrainedModelConfig] = Field(
        default_factory=list,
        description="parts loaded from earlier runs, one entry per run: layers_to_load [global_net] from a "
                    "registration_global run, [local_net] from a registration_local run (or either from a merged "
                    "run), freeze_loaded_layers to keep them fixed")

    @model_validator(mode="after")
    def _each_part_once(self) -> "RegistrationMergedParams":
        check_parts_loaded_once([(f"pretrained[{i}]", entry) for i, entry in enumerate(self.pretrained)])
        return self
