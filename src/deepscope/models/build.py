"""``build_model``: the only place where a model config meets modules."""

from __future__ import annotations

import inspect

import torch
from torch import nn

from deepscope.components import ARCHITECTURES, LOSSES
from deepscope.data.spec import InputSpec
from deepscope.errors import ConfigError

__all__ = ["build_model", "check_output"]


def build_model(model_cfg: object, spec: InputSpec, loss_name: str | None = None) -> nn.Module:
    """Build the registered architecture ``model_cfg.architecture`` for the data described by ``spec``.

    Args:
        model_cfg: the validated ``model`` section.
        spec: shapes and kinds of the data.
        loss_name: the training loss, to check the output size against the targets.

    Raises:
        ConfigError: the model does not fit the data (output size, dims, grouped channels…).
    """
    build = ARCHITECTURES.get(model_cfg.architecture)  # type: ignore[attr-defined]
    if loss_name is not None and "task" in inspect.signature(build).parameters:
        # the loss tells a classifier from a regressor where the targets alone do not (multi-label 0/1 floats)
        model = build(spec, model_cfg, task=LOSSES.entry(loss_name).meta["task"])
    else:
        model = build(spec, model_cfg)
    named_outputs = ARCHITECTURES.entry(model_cfg.architecture).meta.get("named_outputs")  # type: ignore[attr-defined]
    if loss_name is not None and not named_outputs:  # several outputs stacked on the channels: the family splits them
        check_output(model, spec, loss_name, "model.top.units" if hasattr(model_cfg, "top") else "model.out_channels")
    return model


def _example_inputs(spec: InputSpec, batch: int = 2) -> dict[str, object]:
    inputs: dict[str, object] = {}
    if spec.images:
        inputs["images"] = {k: torch.zeros(batch, v.channels, *v.spatial) for k, v in spec.images.items()}
    if spec.scalars:
        inputs["scalars"] = torch.zeros(batch, spec.scalars)
    if spec.tracks:
        inputs["tracks"] = torch.zeros(batch, *spec.tracks)
    return inputs


def output_width(model: nn.Module, spec: InputSpec) -> int:
    """Number of outputs per sample, from a dry run on zeros in eval mode."""
    was_training = model.training
    model.eval()
    with torch.no_grad():
        out = model(**_example_inputs(spec))
    model.train(was_training)
    return int(out[0].numel())


def check_output(model: nn.Module, spec: InputSpec, loss_name: str, key: str = "model.top.units") -> None:
    """The model's output must fit the targets (one per class for labels); ``key`` sets its size."""
    width = output_width(model, spec)
    if spec.target_kind == "label":
        if width < (spec.n_classes or 0):
            raise ConfigError(
                f"{key}: the model has {width} output(s) but the targets have {spec.n_classes} classes "
                f"(labels 0..{(spec.n_classes or 1) - 1}); " + (f"make the last entry of units {spec.n_classes}"
                                                  if key == "model.top.units" else f"make it {spec.n_classes}")
            )
        return
    if width != spec.output_size:
        what = f"per-sample shape {spec.target_shape}" if spec.target_shape else "one number per sample"
        hint = "; the last entry of model.top.units is the output size" if key == "model.top.units" else ""
        raise ConfigError(
            f"{key}: the model has {width} output(s) per sample but the targets have {what} "
            f"({spec.output_size} value(s)){hint}"
        )
