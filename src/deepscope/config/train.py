"""The ``train`` section: loss, metrics, optimizer, loop length, stopping, devices."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, PositiveFloat, PositiveInt, model_validator

from deepscope.components import LOSSES, METRICS, OPTIMIZERS, SCHEDULES
from deepscope.config.common import StrictModel, component, fail, registry_name

__all__ = ["EarlyStoppingConfig", "LRScheduleConfig", "TrainConfig"]

Loss = component(LOSSES)
Optimizer = component(OPTIMIZERS)
MetricName = registry_name(METRICS)
ScheduleName = registry_name(SCHEDULES)


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


class TrainConfig(StrictModel):
    """How the model is trained."""

    epochs: PositiveInt = 10
    batch_size: PositiveInt = 32
    loss: Loss = "mse"
    metrics: list[MetricName] = Field(default_factory=list)
    optimizer: Optimizer = "nadam"
    lr: PositiveFloat | None = Field(
        None, description="learning rate; the optimizer's default when left out (or give optimizer.config.lr)"
    )
    lr_schedule: LRScheduleConfig | None = Field(
        None, description="learning-rate schedule stepped every optimizer step; null = constant lr")
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
    devices: int | Literal["auto"] = Field(1, description="devices to train on; 'auto' takes one")
    deterministic: bool = False
