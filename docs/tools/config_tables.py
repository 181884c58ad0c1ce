"""Regenerate the key tables of docs/config.md from the pydantic config models.

Run from the repository root:  python docs/tools/config_tables.py
It rewrites the text between the BEGIN/END markers in docs/config.md. Types and defaults are read
from the models; the meaning column comes from MEANINGS below (or the field's own description).
A field without a meaning makes the script fail, so a new key cannot slip into the docs silently.
"""

from __future__ import annotations

import sys
import types
import typing
from pathlib import Path

import annotated_types
import yaml
from pydantic import BaseModel
from pydantic.functional_validators import BeforeValidator
from pydantic_core import PydanticUndefined

from deepscope.config.data import DataBase, DigitsData, NpzData, SplitConfig, StandardizeConfig
from deepscope.config.log import LogConfig
from deepscope.config.model import (CNNConfig, CombinedParams, ScalarNetConfig, SubmodelConfig, TopConfig,
                                    TrackNetConfig)
from deepscope.config.schema import ExperimentConfig
from deepscope.config.train import EarlyStoppingConfig, TrainConfig
from deepscope.registry import Registry

DOC = Path(__file__).resolve().parents[1] / "config.md"
BEGIN, END = "<!-- BEGIN GENERATED KEY TABLES -->", "<!-- END GENERATED KEY TABLES -->"

# (heading, model, keys to leave out because another table shows them)
TABLES: list[tuple[str, type[BaseModel], tuple[str, ...]]] = [
    ("Top level", ExperimentConfig, ()),
    ("`data` — every source", DataBase, ()),
    ("`data` with `source: npz`", NpzData, tuple(DataBase.model_fields)),
    ("`data` with `source: sklearn_digits`", DigitsData, tuple(DataBase.model_fields)),
    ("`data.split`", SplitConfig, ()),
    ("`data.standardize`", StandardizeConfig, ()),
    ("`model` (architecture `combined`)", CombinedParams, ()),
    ("Keys every submodel has (`cnn`, `top`, `scalar_net`, `track_net`)", SubmodelConfig, ()),
    ("`model.cnn`", CNNConfig, tuple(SubmodelConfig.model_fields)),
    ("`model.top`", TopConfig, tuple(SubmodelConfig.model_fields)),
    ("`model.scalar_net`", ScalarNetConfig, tuple(SubmodelConfig.model_fields)),
    ("`model.track_net`", TrackNetConfig, tuple(SubmodelConfig.model_fields)),
    ("`train`", TrainConfig, ()),
    ("`train.early_stopping`", EarlyStoppingConfig, ()),
    ("`log`", LogConfig, ()),
]

MEANINGS: dict[str, str] = {
    "ExperimentConfig.name": "Run folder name: the run lives in `<log.dir>/<name>/`. Training the same name again "
                             "resumes it. Letters, digits, `.`, `_`, `-`; at most 120 characters.",
    "ExperimentConfig.seed": "Seeds Python, NumPy and torch, the split shuffle and the per-epoch batch order.",
    "ExperimentConfig.data": "Where the samples come from; see the `data` tables. `source` picks the kind.",
    "ExperimentConfig.model": "The network; see the `model` tables.",
    "ExperimentConfig.train": "Loss, metrics, optimizer and the training loop; see the `train` table.",
    "ExperimentConfig.log": "What the run folder holds besides checkpoints; see the `log` table.",
    "DataBase.split": "How one pool of samples is divided into train/val/test. `null` means the defaults "
                      "(15 % val, 15 % test) for unsplit data; must stay `null` for data that comes split.",
    "DataBase.standardize": "Mean/std scaling fitted on the training split only.",
    "DataBase.channels": "Where the channel axis of image arrays is: `last` = (N, H, W, C) or (N, D, H, W, C) "
                         "as in DeepCalo/Keras; `first` = (N, C, ...) as in PyTorch. (N, H, W) arrays get one channel.",
    "DataBase.num_workers": "Background worker processes that read and standardize batches (0: in the main process).",
    "DataBase.check_finite": "Refuse data that holds NaN or inf before training starts.",
    "NpzData.source": "`npz` (alias `numpy`).",
    "NpzData.path": "The `.npz` file. Required. A relative path is taken from the current folder when the config is "
                    "validated and stored absolute, so `evaluate` and `predict` work from any folder.",
    "DigitsData.source": "`sklearn_digits` (alias `digits`).",
    "DigitsData.n_samples": "Use only the first n of the 1797 images (20 to 1797).",
    "DigitsData.one_hot": "Give targets as one-hot float vectors (N, 10) instead of integer labels (N,).",
    "SplitConfig.train": "Training part. With fractions: `null` means \"everything not in val/test\". "
                         "Or an index list / `\"start:stop\"` range.",
    "SplitConfig.val": "Validation part: a fraction in [0, 1), an index list, or a `\"start:stop\"` range. "
                       "The default 0.15 applies only with fractions: with index lists, a part you leave out is empty.",
    "SplitConfig.test": "Test part, same forms and default as `val`.",
    "SplitConfig.shuffle": "Shuffle (seeded by `seed`) before cutting fractions. Ignored for index lists.",
    "StandardizeConfig.images": "`per_channel`: one mean/std per image channel; `global`: one per image input; "
                                "`none`: leave images as they are.",
    "StandardizeConfig.scalars": "Standardize each scalar feature.",
    "StandardizeConfig.tracks": "Standardize each track feature over real tracks; zero-padded tracks stay zero.",
    "StandardizeConfig.targets": "Standardize regression targets; predictions and metrics are mapped back to data "
                                 "units. Regression only: `true` with a classification loss is a config error "
                                 "(see [Data](data.md#standardization)).",
    "CombinedParams.architecture": "The registered network. `combined` (alias `deepcalo`) is the only one today.",
    "CombinedParams.cnn": "CNN over the images (used when the data has images).",
    "CombinedParams.top": "Dense head that produces the output (always used).",
    "CombinedParams.scalar_net": "Dense layers over `scalars` (used when the data has scalars).",
    "CombinedParams.track_net": "Deep Sets network over `tracks` (used when the data has tracks).",
    "SubmodelConfig.initialization": "Initializer of every dense/conv weight in the submodel (biases start at 0). "
                                     "Name or `{class_name, config}`; `deepscope list initializers`.",
    "SubmodelConfig.activation": "Activation after every hidden layer; `null` = none (linear). "
                                 "`deepscope list activations`.",
    "SubmodelConfig.normalization": "Normalization after every hidden layer, before the activation; `null` = none. "
                                    "`batch`, `layer`, `instance`, `group`.",
    "SubmodelConfig.dropout": "Dropout rate after every hidden dense layer. In `cnn` only `null` is accepted: "
                              "DropBlock (DeepCalo's dropout for conv layers) is not available yet.",
    "CNNConfig.cnn_type": "Only `simple` exists today (DeepCalo's `res` is planned).",
    "CNNConfig.conv_dim": "2 or 3. Inferred from the images when `null`; checked against them when given.",
    "CNNConfig.block_depths": "Number of conv units in each block. Block i > 0 starts with a downsampling step "
                              "and has `n_init_filters · 2^i` filters.",
    "CNNConfig.n_init_filters": "Filters of the first block.",
    "CNNConfig.init_kernel_size": "Kernel of the very first convolution: an int or one int per spatial dim. "
                                  "In 3D an int k means (k, k, 2).",
    "CNNConfig.rest_kernel_size": "Kernel of every other convolution (same forms).",
    "CNNConfig.init_strides": "Stride of the very first convolution: an int or one int per spatial dim.",
    "CNNConfig.rest_strides": "Stride of every other convolution.",
    "CNNConfig.cardinality": "Groups of the grouped convolutions used in every unit but the first; must divide "
                             "`n_init_filters` (checked by validation).",
    "CNNConfig.use_squeeze_and_excite": "Add a squeeze-and-excite block after each unit's activation.",
    "CNNConfig.squeeze_and_excite_ratio": "Channel reduction r of squeeze-and-excite; `n_init_filters // r` must be ≥ 1.",
    "CNNConfig.globalavgpool": "Average each final feature map to one number instead of flattening.",
    "CNNConfig.downsampling": "`null` (none), `avgpool`, `maxpool` or `strided` (a conv with kernel = stride).",
    "CNNConfig.min_size_for_downsampling": "Downsample only while every spatial dim is at least this large.",
    "TopConfig.units": "Widths of the dense layers; the last entry is the number of outputs. `[]` applies only "
                       "`final_activation` to the concatenated features.",
    "TopConfig.final_activation": "Activation of the output layer; `null` = linear (values or logits).",
    "ScalarNetConfig.units": "Widths of the dense layers; `[]` passes the scalars straight to the top.",
    "ScalarNetConfig.connect_to": "Where the output goes: `[top]`, or `[]` to leave the scalars unused.",
    "TrackNetConfig.phi_units": "Widths of φ, applied to each track.",
    "TrackNetConfig.rho_units": "Widths of ρ, applied to the masked sum over tracks.",
    "TrackNetConfig.connect_to": "Where the output goes: `[top]`, or `[]` to leave the tracks unused.",
    "TrainConfig.epochs": "Epochs to train. The only key that may change when a run is resumed.",
    "TrainConfig.batch_size": "Samples per batch.",
    "TrainConfig.loss": "Loss name or `{class_name, config}`; `deepscope list losses`.",
    "TrainConfig.metrics": "Metric names, computed on the whole train and val split each epoch and at the end on "
                           "val and test; `deepscope list metrics`.",
    "TrainConfig.optimizer": "Optimizer name or `{class_name, config}`; `deepscope list optimizers`.",
    "TrainConfig.lr": "Learning rate. `null`: the optimizer's own default (or `optimizer.config.lr`). "
                      "Setting both is an error.",
    "TrainConfig.monitor": "What \"best\" means for `best.ckpt` (and early stopping by default): `val_loss`, "
                           "`train_loss`, `val_<metric>` or `train_<metric>`.",
    "TrainConfig.early_stopping": "Stop when the monitored value stops improving.",
    "TrainConfig.restore_best_weights": "Compute the final val/test metrics and predictions with `best.ckpt` "
                                        "(`false`: with `last.ckpt`, the last epoch's weights). `evaluate` and "
                                        "`predict` use the same checkpoint.",
    "TrainConfig.gradient_clip_val": "Clip the gradient norm to this value; `null` = no clipping.",
    "TrainConfig.accumulate_grad_batches": "Sum gradients over this many batches per optimizer step.",
    "TrainConfig.max_steps": "Stop after this many optimizer steps (smoke tests); `null` = no limit.",
    "TrainConfig.precision": "Numeric precision. An unquoted `32` or `64` is read as `'32'` or `'64'`. "
                           "`bf16-mixed` suits recent GPUs.",
    "TrainConfig.accelerator": "`auto`, `cpu`, `gpu`, `cuda` (same as `gpu`) or `mps`.",
    "TrainConfig.devices": "Devices to train on. Only `1` or `auto` is accepted: several devices need distributed "
                           "training, which is not available yet. `auto` is passed to Lightning as it is "
                           "(see [Training](training.md#devices-and-precision)).",
    "TrainConfig.deterministic": "Use deterministic algorithms where torch has them (slower).",
    "EarlyStoppingConfig.use": "Turn early stopping on.",
    "EarlyStoppingConfig.patience": "Epochs without improvement before stopping.",
    "EarlyStoppingConfig.min_delta": "Smallest change that counts as an improvement.",
    "EarlyStoppingConfig.monitor": "Value to watch; `null` = `train.monitor`.",
    "LogConfig.dir": "Parent folder of run folders: the run is `<dir>/<name>/`.",
    "LogConfig.tensorboard": "Write TensorBoard event files to `tensorboard/`.",
    "LogConfig.figures": "Draw learning curves and confusion-matrix or regression plots into `figures/`.",
    "LogConfig.predictions": "Write `predictions/val.npz` and `predictions/test.npz`.",
    "LogConfig.progress_bar": "`auto`: a progress bar at a terminal, one line per epoch otherwise; `rich`: always "
                              "a bar; `none`: one line per epoch.",
    "LogConfig.every_n_steps": "How often per-step values (`train_loss_step`) go to TensorBoard.",
}


# Fields typed ``Any`` in the models (checked by their own validators): say what they accept.
TYPE_OVERRIDES: dict[str, str] = {
    "SplitConfig.train": "fraction, index list, `\"start:stop\"` or null",
    "SplitConfig.val": "fraction, index list, `\"start:stop\"` or null",
    "SplitConfig.test": "fraction, index list, `\"start:stop\"` or null",
    "CNNConfig.init_kernel_size": "int > 0 or list of int > 0",
    "CNNConfig.rest_kernel_size": "int > 0 or list of int > 0",
    "CNNConfig.init_strides": "int > 0 or list of int > 0",
    "CNNConfig.rest_strides": "int > 0 or list of int > 0",
}


def _registry_of(annotation: typing.Any, metadata: list[typing.Any]) -> Registry | None:
    validators = [m for m in metadata if isinstance(m, BeforeValidator)]
    if typing.get_origin(annotation) is typing.Annotated:
        validators += [m for m in typing.get_args(annotation)[1:] if isinstance(m, BeforeValidator)]
    for v in validators:
        for cell in getattr(v.func, "__closure__", None) or ():
            if isinstance(cell.cell_contents, Registry):
                return cell.cell_contents
    return None


def _constraint(metadata: list[typing.Any]) -> str:
    parts = []
    for m in metadata:
        if isinstance(m, annotated_types.Gt):
            parts.append(f"> {m.gt}")
        elif isinstance(m, annotated_types.Ge):
            parts.append(f"≥ {m.ge}")
        elif isinstance(m, annotated_types.Lt):
            parts.append(f"< {m.lt}")
        elif isinstance(m, annotated_types.Le):
            parts.append(f"≤ {m.le}")
        elif isinstance(m, annotated_types.MinLen):
            parts.append(f"at least {m.min_length} entr{'y' if m.min_length == 1 else 'ies'}")
    return ", ".join(parts)


def _yaml_scalar(value: typing.Any) -> str:
    """How the value is written in YAML (strings that YAML would read as numbers keep their quotes)."""
    return yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()


def render_type(annotation: typing.Any, metadata: list[typing.Any] = ()) -> str:
    """A short, user-facing type."""
    metadata = list(metadata)
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        base, *extra = typing.get_args(annotation)
        return render_type(base, [*metadata, *extra])
    registry = _registry_of(annotation, metadata)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(annotation)
        rendered = [render_type(a, metadata) for a in args if a is not type(None)]
        text = " or ".join(dict.fromkeys(rendered))
        return text + (" or null" if type(None) in args else "")
    if origin is typing.Literal:
        return " \\| ".join(f"`{_yaml_scalar(a)}`" for a in typing.get_args(annotation))
    if origin is list:
        (inner,) = typing.get_args(annotation)
        return f"list of {render_type(inner)}" + (f" ({_constraint(metadata)})" if _constraint(metadata) else "")
    if registry is not None:
        from deepscope.config.common import Component

        if annotation is Component:
            return f"{registry.kind} name or config dict"
        return f"{registry.kind} name"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "section"
    if annotation is typing.Any:
        return "see meaning"
    name = {int: "int", float: "float", bool: "bool", str: "str", Path: "path"}.get(annotation,
                                                                                    getattr(annotation, "__name__", str(annotation)))
    c = _constraint(metadata)
    return f"{name} {c}".strip() if c else name


def render_default(model: type[BaseModel], key: str) -> str:
    field = model.model_fields[key]
    if field.default is PydanticUndefined and field.default_factory is None:
        return "required"
    value = field.default_factory() if field.default_factory is not None else field.default
    if isinstance(value, BaseModel):
        return "see its table"
    if hasattr(value, "model_dump"):
        value = value.model_dump(mode="json")
    if isinstance(value, Path):
        value = str(value)
    if model is ExperimentConfig and key in ("data", "model", "train", "log"):
        return "see its table"
    text = yaml.safe_dump(value, default_flow_style=True, width=1000).strip().removesuffix("...").strip()
    return f"`{text}`"


def table(model: type[BaseModel], skip: tuple[str, ...]) -> str:
    lines = ["| key | type | default | meaning |", "|---|---|---|---|"]
    for key, field in model.model_fields.items():
        if key in skip:
            continue
        meaning = MEANINGS.get(f"{model.__name__}.{key}")
        if meaning is None:
            for base in model.__mro__[1:]:
                meaning = MEANINGS.get(f"{getattr(base, '__name__', '')}.{key}")
                if meaning:
                    break
        if meaning is None:
            meaning = field.description
        if not meaning:
            raise SystemExit(f"no meaning for {model.__name__}.{key}: add it to MEANINGS in {__file__}")
        if model is ExperimentConfig and key == "data":
            kind = "section (`source` picks the kind)"
        elif f"{model.__name__}.{key}" in TYPE_OVERRIDES:
            kind = TYPE_OVERRIDES[f"{model.__name__}.{key}"]
        else:
            kind = render_type(field.annotation, field.metadata)
            if kind == "see meaning":
                raise SystemExit(f"{model.__name__}.{key} is typed Any: add it to TYPE_OVERRIDES in {__file__}")
        lines.append(f"| `{key}` | {kind} | {render_default(model, key)} | {meaning} |")
    return "\n".join(lines)


def generate() -> str:
    out = [BEGIN, "<!-- generated by docs/tools/config_tables.py from the pydantic models; do not edit by hand -->", ""]
    for heading, model, skip in TABLES:
        out += [f"### {heading}", "", table(model, skip), ""]
    out.append(END)
    return "\n".join(out)


def main() -> int:
    text = DOC.read_text(encoding="utf-8")
    start, end = text.index(BEGIN), text.index(END) + len(END)
    new = text[:start] + generate() + text[end:]
    if "--check" in sys.argv:
        if new != text:
            print("docs/config.md key tables are out of date: run python docs/tools/config_tables.py")
            return 1
        return 0
    DOC.write_text(new, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
