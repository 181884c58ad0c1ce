"""``multiview``: one CNN per view (image), their features concatenated into one dense head."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from deepscope.config.common import StrictModel
from deepscope.config.model import CNNConfig, PretrainedModelConfig, TopConfig, check_parts_loaded_once

__all__ = ["MultiviewParams"]


class MultiviewParams(StrictModel):
    """A CNN per image of the data (SuperNEMO's top, side and front views, of different shapes), each
    flattened or pooled, concatenated, then ``top``. Scalars, when the data has them, join the features
    before the head."""

    architecture: Literal["multiview"] = "multiview"
    cnn: CNNConfig = Field(default_factory=CNNConfig,
                           description="the CNN of every view not named in views (the combined model's cnn keys)")
    views: dict[str, CNNConfig] = Field(default_factory=dict,
                                        description="view (image) name -> its own CNN, for views that need other "
                                                    "kernels or depths than cnn")
    top: TopConfig = Field(default_factory=TopConfig,
                           description="dense layers on the concatenated view features; the last units entry is "
                                       "the output size")
    pretrained_model: PretrainedModelConfig = Field(
        default_factory=PretrainedModelConfig,
        description="load views.<name> (or top) from an earlier multiview run, e.g. one trained on that view alone, "
                    "and optionally freeze them (the combined model's pretrained_model keys)")
    pretrained: list[PretrainedModelConfig] = Field(
        default_factory=list,
        description="more parts loaded from other runs, one entry per run (keys as pretrained_model): e.g. "
                    "views.top from the run that trained the top view alone, views.side from another")

    @model_validator(mode="after")
    def _each_part_once(self) -> "MultiviewParams":
        check_parts_loaded_once([("pretrained_model", self.pretrained_model)] + [
            (f"pretrained[{i}]", entry) for i, entry in enumerate(self.pretrained)])
        return self
