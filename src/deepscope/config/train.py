"""The ``train`` section: loss, metrics, optimizer, loop length, stopping, devices."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (BeforeValidator, Discriminator, Field, NonNegativeFloat, NonNegativeInt, PositiveFloat,
                      PositiveInt, Tag, model_validator)

from deepscope.components import LOSSES, METRICS, OPTIMIZERS, SCHEDULES
from deepscope.config.common import Component, StrictModel, component, fail, registry_name

__all__ = ["CompileConfig", "LossTerm", "EarlyStoppingConfig", "LRFinderConfig", "LRScheduleConfig", "TrainConfig",
           "WarmupConfig"]

Loss = component(LOSSES)
Optimizer = component(OPTIMIZERS)
MetricName = registry_name(METRICS)
LossName = registry_name(LOSSES)
ScheduleName = registry_name(SCHEDULES)


def _devices(value: Any) -> Any:
    # one message for the three forms instead of one per union member
    expected = "expected a number of devices (1 or more), a list of GPU indices such as [0, 1], or 'auto'"
    if value == "auto" or (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
        return value
    if isinstance(value, list) and value and all(isinstance(i, int) and not isinstance(i, bool) and i >= 0
                                                 for i in value):
        if len(set(value)) != len(value):
            raise fail("devices", f"found {value}; each device index may appear once")
        return value
    raise fail("devices", f"found {value!r}; {expected}")


# a count per node, GPU indices (e.g. [0, 1]), or 'auto' (one device)
Devices = Annotated[int | list[int] | Literal["auto"], BeforeValidator(_devices)]


class LossTerm(StrictModel):
    """One term of a weighted sum of losses (``train.loss: [{name: l1, weight: 1}, {name: ssim, weight: 0.5}]``)."""

    name: LossName
    weight: PositiveFloat = 1.0
    config: dict[str, Any] = Field(default_factory=dict, description="the loss's options")

    def component(self) -> Component:
        return Component(class_name=self.name, config=self.config)


def _mixer(value: Any) -> Any:
    """atlalign's mixer: ``"a&b"`` is the mean of the losses a and b (a weighted sum of weight 1/n each)."""
    if isinstance(value, str) and "&" in value:
        names = [part.strip() for part in value.split("&")]
        if not all(names):
            raise fail("loss_mixer", f"found '{value}'; a mixer names two or more losses joined by '&' (ncc_9&vdclip2)")
        return [{"name": name, "weight": 1.0 / len(names)} for name in names]
    return value


# one loss ("mse", {class_name, config} or the mixer "a&b"), or a weighted sum of several (a list of LossTerm)
OneLossSpec = Annotated[
    Annotated[Loss, Tag("one")] | Annotated[list[LossTerm], Tag("sum")],
    Discriminator(lambda v: "sum" if isinstance(v, list) else "one"),
    BeforeValidator(_mixer),
]


def _loss_form(value: Any) -> str:
    if isinstance(value, list):
        return "sum"
    if isinstance(value, dict) and "class_name" not in value:
        return "outputs"
    return "one"


# ... or, for a family whose model has named outputs (registration), a mapping output -> one of those
LossSpec = Annotated[
    Annotated[Loss, Tag("one")] | Annotated[list[LossTerm], Tag("sum")]
    | Annotated[dict[str, OneLossSpec], Tag("outputs")],
    Discriminator(_loss_form),
    BeforeValidator(_mixer),
]


def _terms(loss: Any) -> list[tuple[Component, float]]:
    if isinstance(loss, list):
        return [(t.component(), t.weight) for t in loss]
    return [(loss, 1.0)]


def _label(loss: Any) -> str:
    if isinstance(loss, list):
        return " + ".join(f"{t.weight:g}*{t.name}" for t in loss)
    return loss.class_name


class EarlyStoppingConfig(StrictModel):
    """Stop when the monitored value stops improving (DeepCalo defaults)."""

    use: bool = False
    patience: PositiveInt = 150
    min_delta: float = Field(1e-3, ge=0.0)
    monitor: str | None = Field(None, description="defaults to train.monitor")


class LRScheduleConfig(StrictModel):
    """A learning-rate schedule updated every optimizer step (DeepCalo's lr_schedule)."""

    name: ScheduleName
    range: tuple[PositiveFloat, PositiveFloat] = Field(
        (1e-3, 5e-3), description="[min_lr, max_lr]")
    step_size_factor: PositiveFloat = Field(2.0, description="half-cycle length in epochs (CLR), number of half "
                                                             "cycles (OneCycle), first cycle in epochs (SGDR)")
    kwargs: dict[str, Any] = Field(default_factory=dict, description="schedule-specific options")

    @model_validator(mode="after")
    def _check_range(self) -> "LRScheduleConfig":
        if self.range[0] >= self.range[1]:
            raise fail("lr_range", f"range: min_lr {self.range[0]} must be below max_lr {self.range[1]}")
        return self


class WarmupConfig(StrictModel):
    """Linear learning-rate warm-up (DeepFocus): the lr (or the schedule) times a factor rising to 1."""

    epochs: PositiveFloat | None = Field(None, description="warm-up length in epochs (give this or steps)")
    steps: PositiveInt | None = Field(None, description="warm-up length in optimizer steps (give this or epochs)")
    start_factor: float = Field(0.0, ge=0.0, lt=1.0, description="factor at the first step, in [0, 1)")

    @model_validator(mode="after")
    def _check_length(self) -> "WarmupConfig":
        if (self.epochs is None) == (self.steps is None):
            given = "both" if self.epochs is not None else "neither"
            raise fail("warmup_length", f"give exactly one of epochs and steps (found {given})")
        return self


class LRFinderConfig(StrictModel):
    """The learning-rate range test before training (DeepCalo's lr_finder, with its defaults)."""

    use: bool = Field(False, description="scan the lr before training (new runs only)")
    scan_range: tuple[PositiveFloat, PositiveFloat] = Field((1e-4, 1e-2), description="[first lr, last lr]")
    epochs: PositiveFloat = Field(1.0, description="length of the scan in epochs of the training data")
    scale: Literal["linear", "log"] = Field("linear", description="lr rises linearly or log-spaced")
    prompt_for_input: bool = Field(False, description="ask at a terminal which range (or lr) to use")
    use_suggestion: bool = Field(False, description="train with the suggested range (or lr)")

    @model_validator(mode="after")
    def _check(self) -> "LRFinderConfig":
        if self.scan_range[0] >= self.scan_range[1]:
            raise fail("lr_range", f"scan_range: the first lr {self.scan_range[0]} must be below the last "
                                   f"{self.scan_range[1]}")
        if not self.use:
            for key in ("use_suggestion", "prompt_for_input"):
                if getattr(self, key):
                    raise fail("lr_finder_off", f"{key} is true but use is false: the finder only suggests when "
                                                "it runs; set use: true")
        return self


class CompileConfig(StrictModel):
    """Options of ``torch.compile`` for the net (``train.compile``)."""

    mode: Literal["default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"] = Field(
        "default", description="inductor's optimization mode")
    backend: str = Field("inductor", min_length=1, description="torch.compile backend: 'inductor', 'eager', ...")
    fullgraph: bool = Field(False, description="fail on a graph break instead of falling back to Python")
    dynamic: bool | None = Field(None, description="dynamic shapes: null = after a shape changes")

    @model_validator(mode="after")
    def _check_mode_backend(self) -> "CompileConfig":
        if self.mode != "default" and self.backend != "inductor":
            raise fail("compile_mode", f"mode '{self.mode}' is an option of the 'inductor' backend, but backend is "
                                       f"'{self.backend}': use backend 'inductor' or mode 'default'")
        return self


def _compile_options(value: Any) -> Any:
    # true = every option at its default; false = off (stored as null)
    if value is True:
        return {}
    if value is None or value is False:
        return None
    if not isinstance(value, (dict, CompileConfig)):
        raise fail("compile_form", f"found {value!r}; expected true, false or a mapping of options "
                                   f"({', '.join(CompileConfig.model_fields)})")
    return value


class TrainConfig(StrictModel):
    """How the model is trained."""

    epochs: PositiveInt = 10
    batch_size: PositiveInt = 32
    loss: LossSpec = Field("mse", description="a loss name (or {class_name, config}), a weighted sum: "
                                               "[{name: l1, weight: 1}, {name: ssim, weight: 0.5}], the mean "
                                               "'a&b', or per named output of the model (registration): "
                                               "{registered: ncc_9, field: vdclip2}")
    loss_weights: dict[str, NonNegativeFloat] | None = Field(
        None, description="with a loss per named output: each output's weight in the total (1 when left out); "
                          "atlalign's losses_weights")
    metrics: list[MetricName] = Field(
        default_factory=list, description="metrics logged per epoch and in the final scores; empty: the task "
                                          "family's defaults (psnr and ssim for image targets, none otherwise)")
    thresholds: float | list[float] | dict[str, float] | Literal["auto"] = Field(
        0.5, description="decision threshold of binary and multi-label outputs: one for all labels, a list "
                         "(one per label), a mapping label -> threshold (others 0.5), or auto: per label the one "
                         "that maximizes F1 on the validation split after training (0.5 while training)")
    optimizer: Optimizer = "nadam"
    lr: PositiveFloat | None = Field(
        None, description="learning rate; the optimizer's default when left out (or give optimizer.config.lr)"
    )
    lr_schedule: LRScheduleConfig | None = Field(
        None, description="learning-rate schedule stepped every optimizer step; null = constant lr")
    warmup: WarmupConfig | None = Field(None, description="linear lr warm-up; null = none")
    lr_finder: LRFinderConfig = Field(default_factory=LRFinderConfig)
    auto_lr: bool = Field(False, description="lr = c·sqrt(batch size) with a per-optimizer constant (DeepCalo)")
    monitor: str = Field("val_loss", description="what 'best' means: val_loss, or val_<metric> / train_<metric>")
    early_stopping: EarlyStoppingConfig = Field(default_factory=EarlyStoppingConfig)
    restore_best_weights: bool = Field(
        True, description="evaluate and predict with the best checkpoint instead of the last weights"
    )
    gradient_clip_val: PositiveFloat | None = None
    accumulate_grad_batches: PositiveInt = 1
    max_steps: PositiveInt | None = Field(None, description="stop after this many optimizer steps (smoke runs)")
    precision: Annotated[Literal["32", "64", "16-mixed", "bf16-mixed"], BeforeValidator(
        lambda v: str(v) if isinstance(v, int) and not isinstance(v, bool) else v)] = "32"
    accelerator: Literal["auto", "cpu", "gpu", "cuda", "mps"] = "auto"
    devices: Devices = Field(
        1, description="devices per node: a count, a list of GPU indices, or 'auto' (one device); "
                       "batch_size is per device")
    strategy: Literal["auto", "ddp", "ddp_spawn", "ddp_find_unused_parameters_true"] = Field(
        "auto", description="how several devices train together; 'auto' = ddp when there are several")
    num_nodes: PositiveInt = Field(1, description="machines to train on (SLURM: the job's nodes)")
    sync_batchnorm: bool = Field(
        True, description="BatchNorm statistics over the whole global batch when several GPUs train")
    n_gpus: NonNegativeInt | None = Field(
        None, description="DeepCalo's spelling: 0 = the CPU, N = N GPUs (accelerator gpu, devices N); "
                          "not together with accelerator or devices")
    deterministic: bool = False
    compile: Annotated[CompileConfig | None, BeforeValidator(_compile_options)] = Field(
        None, description="compile the net with torch.compile: true (default options), a mapping of options, "
                          "or false/null (off)")
    channels_last: Literal["auto"] | bool = Field(
        "auto", description="channels-last memory format for conv weights and images; 'auto': on a GPU with convs")

    @model_validator(mode="before")
    @classmethod
    def _n_gpus_to_devices(cls, raw: Any) -> Any:
        # DeepCalo's n_gpus is read as accelerator + devices and stored as null, so the resolved config
        # (written to the run folder and read again on resume) names the devices once
        if not isinstance(raw, dict) or raw.get("n_gpus") is None:
            return raw
        n = raw["n_gpus"]
        if not isinstance(n, int) or isinstance(n, bool) or n < 0:
            return raw  # the field reports it
        given = [k for k in ("accelerator", "devices") if k in raw]
        if given:
            both = " and ".join(f"train.{k} ({raw[k]!r})" for k in given)
            raise fail("n_gpus_twice", f"train.n_gpus ({n}) is set together with {both}: n_gpus is DeepCalo's "
                                       "way of saying accelerator and devices; keep one of the two")
        return {**raw, "n_gpus": None, "accelerator": "gpu" if n else "cpu", "devices": max(n, 1)}

    @model_validator(mode="after")
    def _loss_terms_agree(self) -> "TrainConfig":
        per_output = self.loss if isinstance(self.loss, dict) else {"": self.loss}
        if isinstance(self.loss, dict) and not self.loss:
            raise fail("loss_empty", "loss: the mapping of losses per output is empty; name at least one output")
        for output, loss in per_output.items():
            where = f"loss.{output}" if output else "loss"
            if not isinstance(loss, list):
                continue
            if not loss:
                raise fail("loss_empty", f"{where}: the list of loss terms is empty; give at least one")
            kinds = {(LOSSES.entry(t.name).meta["task"], LOSSES.entry(t.name).meta["output"]) for t in loss}
            if len(kinds) > 1:
                names = ", ".join(f"{t.name} ({LOSSES.entry(t.name).meta['task']} on "
                                  f"{LOSSES.entry(t.name).meta['output']})" for t in loss)
                raise fail("loss_mixed", f"{where}: the terms of a weighted sum must expect the same output; "
                                         f"found {names}")
        if self.loss_weights is not None:
            if not isinstance(self.loss, dict):
                raise fail("loss_weights", "loss_weights: weighs the losses of named outputs; give train.loss as a "
                                           "mapping output -> loss ({registered: ncc_9, field: vdclip2}), or remove it")
        return self

    @model_validator(mode="after")
    def _thresholds_in_range(self) -> "TrainConfig":
        if self.thresholds == "auto":
            return self
        values = (self.thresholds if isinstance(self.thresholds, list) else list(self.thresholds.values())
                  if isinstance(self.thresholds, dict) else [self.thresholds])
        bad = [v for v in values if not 0.0 < v < 1.0]
        if bad:
            raise fail("thresholds", f"thresholds: found {bad[0]}; a threshold is a probability in (0, 1)")
        return self

    @property
    def loss_terms(self) -> list[tuple[Component, float]]:
        """The loss as (component, weight) terms: one term of weight 1 for a single loss; with a loss per
        output, every output's terms (weights times the output's weight)."""
        if isinstance(self.loss, dict):
            return [(spec, weight * w) for output, w in self.output_weights.items()
                    for spec, weight in _terms(self.loss[output])]
        return _terms(self.loss)

    @property
    def output_losses(self) -> dict[str, list[tuple[Component, float]]]:
        """With a loss per named output: output -> its (component, weight) terms; else empty."""
        if not isinstance(self.loss, dict):
            return {}
        return {output: _terms(loss) for output, loss in self.loss.items()}

    @property
    def output_weights(self) -> dict[str, float]:
        """With a loss per named output: output -> its weight (``loss_weights``, 1 when left out)."""
        if not isinstance(self.loss, dict):
            return {}
        given = self.loss_weights or {}
        return {output: float(given.get(output, 1.0)) for output in self.loss}

    @property
    def loss_name(self) -> str:
        """The canonical name of the (first) loss: what its family, task and expected output are read from."""
        return self.loss_terms[0][0].class_name

    @property
    def loss_label(self) -> str:
        """The loss as users wrote it, for messages: 'mse' or '1*l1 + 0.5*ssim'."""
        if isinstance(self.loss, dict):
            return "; ".join(f"{output}: {_label(loss)}" for output, loss in self.loss.items())
        return _label(self.loss)
