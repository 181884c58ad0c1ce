"""The whole experiment config and its cross-field checks.

Each check is a small named function that looks at two or more keys and names all of them in its
message; they run after every section has validated on its own.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import Field, model_validator
from pydantic_core import PydanticCustomError

from deepscope.components import ARCHITECTURES, LOSSES, METRICS, SOURCES, TASKS
from deepscope.config.common import StrictModel, registry_name
from deepscope.config.data import ArraysData, DataConfig
from deepscope.config.log import LogConfig
from deepscope.config.model import CombinedParams, ModelConfig
from deepscope.config.phases import PhaseConfig
from deepscope.config.train import TrainConfig
from deepscope.config.tune import TuneConfig

__all__ = ["ExperimentConfig", "CHECKS"]


class ExperimentConfig(StrictModel):
    """One experiment: data, model, training and logging.

    Attributes:
        name: run folder name (``<log.dir>/<name>/``); re-running the same name resumes.
        seed: seeds Python, NumPy and torch, the split shuffle and the batch order.
    """

    name: str = Field("run", pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$", max_length=120)
    seed: int = Field(0, ge=0)
    task: registry_name(TASKS) | None = Field(  # type: ignore[valid-type]
        None, description="the task family (deepscope list tasks); inferred from the loss and targets when left out")
    data: DataConfig = Field(default_factory=ArraysData)
    model: ModelConfig = Field(default_factory=CombinedParams)
    train: TrainConfig = Field(default_factory=TrainConfig)
    log: LogConfig = Field(default_factory=LogConfig)
    phases: list[PhaseConfig] = Field(
        default_factory=list, description="train in phases, each a run folder <log.dir>/<name>/<phase> "
                                          "(the phased task family, docs/phases.md); empty: one run")
    tune: TuneConfig | None = Field(None, description="a hyperparameter search over this config (deepscope tune, "
                                                      "docs/tune.md); deepscope train ignores it")

    @model_validator(mode="before")
    @classmethod
    def _canonical_tags(cls, raw: Any) -> Any:
        # Accept aliases for the discriminators (source: digits -> sklearn_digits) before the union
        # picks its member; unknown names are left for the union's own error.
        if not isinstance(raw, dict):
            return raw
        raw = dict(raw)
        for section, key, registry, default in (
            ("data", "source", SOURCES, "arrays"),
            ("model", "architecture", ARCHITECTURES, "combined"),
        ):
            sub = raw.get(section)
            if isinstance(sub, dict) and key not in sub:
                raw[section] = {key: default, **sub}
            elif isinstance(sub, dict) and isinstance(sub.get(key), str) and sub[key] in registry:
                raw[section] = {**sub, key: registry.canonical(sub[key])}
        return raw

    @model_validator(mode="after")
    def _cross_checks(self) -> "ExperimentConfig":
        fill_default_metrics(self)
        problems = [msg for check in CHECKS if (msg := check(self))]
        problems += check_task_family(self)
        if problems:
            raise PydanticCustomError("cross_check", "{msgs}", {"msgs": "\n".join(problems)})
        return self


# --- cross-field checks -----------------------------------------------------------------------------


def check_task_family(cfg: ExperimentConfig) -> list[str]:
    """The task family's own checks; its default metrics fill an empty ``train.metrics`` (first, so the
    monitor check sees them)."""
    from deepscope.errors import ConfigError
    from deepscope.tasks import family_for

    try:
        family = family_for(cfg)
    except ConfigError as exc:
        return [str(exc)]
    if isinstance(cfg.train.loss, dict) and not family.output_losses:
        return [f"train.loss: a loss per named output ({', '.join(cfg.train.loss)}) is for models with named "
                f"outputs (the registration family); the {family.name} family trains one output: give one loss, "
                "or a weighted sum [{name: l1, weight: 1}, ...]"]
    from deepscope.errors import did_you_mean

    loss = cfg.train.loss
    unweighed = [f"train.loss_weights.{output}: no loss for output '{output}'{did_you_mean(output, list(loss))} "
                 f"(train.loss names: {', '.join(loss)})"
                 for output in cfg.train.loss_weights or {} if isinstance(loss, dict) and output not in loss]
    return family.check_config(cfg) + unweighed


def fill_default_metrics(cfg: ExperimentConfig) -> None:
    if cfg.train.metrics:
        return
    from deepscope.errors import ConfigError
    from deepscope.tasks import family_for

    try:
        cfg.train.metrics = family_for(cfg).default_metrics(cfg)
    except ConfigError:
        pass  # reported by check_task_family


def _loss_meta(cfg: ExperimentConfig) -> dict[str, Any]:
    return LOSSES.entry(cfg.train.loss_name).meta


def check_metrics_match_loss(cfg: ExperimentConfig) -> str | None:
    from deepscope.errors import ConfigError
    from deepscope.tasks import family_for

    try:
        own = family_for(cfg).metrics_task
    except ConfigError:
        own = None  # reported by check_task_family
    if own is not None:
        wrong = [m for m in cfg.train.metrics if METRICS.entry(m).meta["task"] != own]
        if wrong:
            options = [name for name in METRICS.names() if METRICS.entry(name).meta["task"] == own]
            return (f"train.metrics: {', '.join(wrong)} {'is not a' if len(wrong) == 1 else 'are not'} {own} "
                    f"metric{'' if len(wrong) == 1 else 's'} (the {own} metrics: {', '.join(options)})")
        return None
    task = _loss_meta(cfg)["task"]
    family = "regression" if task == "regression" else "classification"
    wrong = [m for m in cfg.train.metrics if METRICS.entry(m).meta["task"] != family]
    if wrong:
        return (
            f"train.metrics: {', '.join(wrong)} {'is a' if len(wrong) == 1 else 'are'} "
            f"{'classification' if family == 'regression' else 'regression'} metric"
            f"{'' if len(wrong) == 1 else 's'} but train.loss '{cfg.train.loss_label}' is a {family} loss"
        )
    return None


def check_final_activation_matches_loss(cfg: ExperimentConfig) -> str | None:
    top = getattr(cfg.model, "top", None)
    if top is None:
        return None
    output = _loss_meta(cfg)["output"]
    act = top.final_activation.class_name if top.final_activation else "linear"
    loss = cfg.train.loss_label
    if output == "logits" and act in ("softmax", "sigmoid"):
        return (
            f"model.top.final_activation '{act}' contradicts train.loss '{loss}', which expects logits: "
            f"set final_activation: null, or use a loss on probabilities "
            f"('{'categorical_crossentropy' if act == 'softmax' else 'bce'}')"
        )
    if output == "probs":
        wanted = "softmax" if _loss_meta(cfg)["task"] == "multiclass" else "sigmoid"
        if act != wanted:
            return (
                f"train.loss '{loss}' expects probabilities but model.top.final_activation is '{act}': "
                f"set final_activation: {wanted}, or use the logits loss "
                f"('{'cross_entropy' if wanted == 'softmax' else 'bce_with_logits'}') with final_activation: null"
            )
    return None


def check_multiclass_output_size(cfg: ExperimentConfig) -> str | None:
    top = getattr(cfg.model, "top", None)
    if top is None or not top.units:
        return None
    if _loss_meta(cfg)["task"] == "multiclass" and top.units[-1] < 2:
        return (
            f"model.top.units ends with {top.units[-1]} output but train.loss '{cfg.train.loss_label}' "
            "needs one output per class: make the last entry the number of classes"
        )
    return None


def _monitor_options(cfg: ExperimentConfig) -> list[str]:
    names = ["loss", *cfg.train.metrics]
    return [f"{stage}_{n}" for stage in ("val", "train") for n in names]


def check_monitor(cfg: ExperimentConfig) -> str | None:
    from deepscope.errors import did_you_mean

    options = _monitor_options(cfg)
    for key, value in (("train.monitor", cfg.train.monitor),
                       ("train.early_stopping.monitor", cfg.train.early_stopping.monitor)):
        if value is not None and value not in options:
            return f"{key}: '{value}' is not logged{did_you_mean(value, options)} (logged: {', '.join(options)})"
    return None


def check_validation_exists(cfg: ExperimentConfig) -> str | None:
    split = getattr(cfg.data, "split", None)
    monitor = cfg.train.early_stopping.monitor or cfg.train.monitor
    if split is not None and not split.val and monitor.startswith("val_"):
        what = "train.early_stopping" if cfg.train.early_stopping.use else "train.monitor"
        return (f"data.split.val is empty but {what} watches '{monitor}': give a validation split "
                "or monitor a train_ value")
    return None


def check_lr_given_once(cfg: ExperimentConfig) -> str | None:
    # 'learning_rate' is the Keras spelling of 'lr' (see deepscope.optim.optimizers)
    given = [k for k in ("lr", "learning_rate") if k in cfg.train.optimizer.config]
    if len(given) == 2:
        return "train.optimizer.config.lr and train.optimizer.config.learning_rate are both set: keep one"
    if cfg.train.lr is not None and given:
        return (f"train.lr and train.optimizer.config.{given[0]} are both set "
                f"({cfg.train.lr} and {cfg.train.optimizer.config[given[0]]}): keep one")
    return None


def _lr_keys_given(cfg: ExperimentConfig) -> list[str]:
    keys = ["train.lr"] if cfg.train.lr is not None else []
    return keys + [f"train.optimizer.config.{k}" for k in ("lr", "learning_rate") if k in cfg.train.optimizer.config]


def check_auto_lr_alone(cfg: ExperimentConfig) -> str | None:
    if not cfg.train.auto_lr:
        return None
    given = _lr_keys_given(cfg)
    if given:
        return (f"train.auto_lr is true but {given[0]} is set too: auto_lr computes the learning rate from the "
                f"batch size; remove {given[0]} or set auto_lr: false")
    finder = cfg.train.lr_finder
    for key in ("use_suggestion", "prompt_for_input"):
        if getattr(finder, key):
            return (f"train.auto_lr and train.lr_finder.{key} are both true: both choose the learning rate; "
                    "keep one")
    return None


def check_lr_finder_suggestion_target(cfg: ExperimentConfig) -> str | None:
    finder = cfg.train.lr_finder
    if cfg.train.lr_schedule is not None or not (finder.use_suggestion or finder.prompt_for_input):
        return None
    given = _lr_keys_given(cfg)
    if given:
        key = "use_suggestion" if finder.use_suggestion else "prompt_for_input"
        return (f"train.lr_finder.{key} sets the learning rate (there is no train.lr_schedule), but {given[0]} "
                f"is set too: remove {given[0]}, or set {key}: false")
    return None


def check_target_standardization(cfg: ExperimentConfig) -> str | None:
    if cfg.data.standardize.targets and _loss_meta(cfg)["task"] != "regression":
        return (f"data.standardize.targets is true but train.loss '{cfg.train.loss_label}' is a "
                "classification loss: class targets are never standardized; set it to false")
    return None


def check_device_list_needs_gpus(cfg: ExperimentConfig) -> str | None:
    t = cfg.train
    if isinstance(t.devices, list) and t.accelerator in ("cpu", "mps"):
        return (f"train.devices {t.devices} lists GPU indices but train.accelerator is '{t.accelerator}': "
                f"give a count instead (devices: {len(t.devices)}), or accelerator: gpu")
    return None


def check_tune(cfg: ExperimentConfig) -> str | None:
    """``tune``: the judged metric is logged on a validation split, and no searched key is one the trials set."""
    if cfg.tune is None:
        return None
    from deepscope.config.tune import tune_metric
    from deepscope.errors import did_you_mean

    for stage in cfg.tune.stage_list():
        where = f"tune.stages.{stage.name}.space" if stage.name else "tune.space"
        for path in stage.space:
            if path.split(".")[0] in ("tune", "name") or path.startswith("log.dir"):
                return f"{where}.{path}: set by each trial (its run folder); search other keys"
    metric = tune_metric(cfg)
    options = [f"val_{n}" for n in ("loss", *cfg.train.metrics)]
    if metric not in options:
        return (f"tune.metric: '{cfg.tune.metric}' is not logged on the validation split"
                f"{did_you_mean(metric, options)} (logged: {', '.join(options)})")
    split = getattr(cfg.data, "split", None)
    if split is not None and not split.val:
        return "tune: trials are judged on the validation split, but data.split.val is 0; give it a fraction"
    return None


CHECKS: list[Callable[[ExperimentConfig], str | None]] = [
    check_target_standardization,
    check_device_list_needs_gpus,
    check_metrics_match_loss,
    check_final_activation_matches_loss,
    check_multiclass_output_size,
    check_monitor,
    check_validation_exists,
    check_lr_given_once,
    check_auto_lr_alone,
    check_lr_finder_suggestion_target,
    check_tune,
]
