"""The Lightning system for supervised tasks (regression, classification, multi-label).

The net is a plain ``nn.Module`` that sees tensors, never the config or the batch dict. The
system unpacks batches, applies sample weights, logs the loss per step and every metric on the
whole split per epoch, and stops at a NaN/inf loss before it can reach the weights.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from typing import Any

import lightning as L
import numpy as np
import torch
from torch import nn

from deepscope.config.common import Component
from deepscope.errors import TrainingDiverged
from deepscope.models.regularization import apply_constraints, has_layer_reg, regularization_penalty
from deepscope.optim.optimizers import make_optimizer
from deepscope.optim.schedules import ScheduleLR, ScheduleSpec, make_scheduler
from deepscope.training.distributed import gather_outputs, global_batch_loss
from deepscope.training.performance import images_channels_last
from deepscope.training.task import Task

__all__ = ["SupervisedSystem", "model_inputs"]

log = logging.getLogger("deepscope")

INPUT_KEYS = ("images", "scalars", "tracks")


def model_inputs(batch: dict[str, Any]) -> dict[str, Any]:
    """The keyword arguments the nets take, picked from a batch dict."""
    return {k: batch[k] for k in INPUT_KEYS if k in batch}


class SupervisedSystem(L.LightningModule):
    """Trains ``net`` with a per-sample ``loss`` on the data contract's batches.

    Args:
        net: the model.
        loss: per-sample loss ``(pred, target) -> (B,)``.
        task: output semantics and metrics.
        optimizer: the "str or config dict" optimizer spec.
        lr: learning rate overriding the optimizer's default.
        epoch_lines: log one summary line per epoch (when no progress bar is shown).
        schedule: the learning-rate schedule (stepped every optimizer step), or ``None``.
        channels_last: give the net its 4D/5D images in channels-last memory format (its conv
            weights should be stored so too: ``performance.convert_channels_last``).
    """

    def __init__(self, net: nn.Module, loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], task: Task,
                 optimizer: Component, lr: float | None = None, epoch_lines: bool = False,
                 schedule: ScheduleSpec | None = None, channels_last: bool = False) -> None:
        super().__init__()
        self.net, self.loss_fn, self.task = net, loss, task
        self.optimizer_spec, self.lr, self.epoch_lines = optimizer, lr, epoch_lines
        self._outputs: dict[str, list[tuple[torch.Tensor | None, ...]]] = {}
        self._layer_reg = has_layer_reg(net)  # walking the modules every step costs ~0.5 ms
        # a net's own training-only loss term given the targets (capsnet's reconstruction decoder)
        # a net's auxiliary_loss(target) is added in training steps, unless it says it has none to add
        self._auxiliary_loss = (callable(getattr(net, "auxiliary_loss", None))
                                and bool(getattr(net, "uses_auxiliary_loss", True)))
        self._epoch_start = time.perf_counter()
        self.schedule = schedule
        self.channels_last = channels_last
        self.lr_history: list[tuple[int, float]] = []  # (global step, lr used) of every training step
        self._step_readers: str | None = None  # who reads train_loss_step: "bar", "loggers" or "none"
        self._dense = task.spec.dense  # image targets: scored per sample as each batch ends (see _step)
        # a task may score a cheaper subset on training batches (registration: not the percentiles, SSIM or
        # the label overlaps every step)
        self._train_metric_names = list(getattr(task, "train_metrics", task.metrics))

    def __setattr__(self, name: str, value: Any) -> None:
        # Lightning sets _current_fx_name before and after every hook it calls, dozens of times a
        # step; nn.Module.__setattr__'s parameter/module/buffer checks make that ~2 µs a time, and a
        # hook name is never one of those (bench/README.md, overhead)
        if name == "_current_fx_name":
            object.__setattr__(self, name, value)
        else:
            super().__setattr__(name, value)

    def transfer_batch_to_device(self, batch: Any, device: torch.device, dataloader_idx: int) -> Any:
        """The batch on ``device``; batches are read as CPU tensors, so on the CPU there is nothing to move
        (Lightning's generic walk over the batch dict costs ~0.1 ms a step)."""
        if device.type == "cpu":
            return batch
        return super().transfer_batch_to_device(batch, device, dataloader_idx)

    def forward(self, batch: dict[str, Any]) -> torch.Tensor:
        """Outputs shaped like the targets (multiplied by ``multiply_output_with`` when present)."""
        inputs = model_inputs(batch)
        if self.channels_last:
            inputs = images_channels_last(inputs)
        return self.task.shape_output(self.net(**inputs), batch.get("multiply_output_with"))

    # --- steps -------------------------------------------------------------------------------------

    def _step(self, batch: dict[str, Any], stage: str) -> torch.Tensor:
        out = self(batch)
        target = batch["targets"]
        per_sample = self.loss_fn(out, target)
        weights = batch.get("sample_weights")
        shown = None  # under DDP: the global batch's loss (``loss`` is this process's share of it)
        if stage == "train" and self._world_size > 1:
            loss, shown = global_batch_loss(per_sample, weights, self._world_size)
            # a NaN or inf on any process reaches every process's loss (0·x is 0 for a finite x), so all
            # stop at the same step instead of the others waiting in the gradient all-reduce
            loss = loss + 0.0 * shown
        elif weights is None:
            loss = per_sample.mean()
        else:
            loss = (per_sample * weights).sum() / weights.sum().clamp_min(1e-12)
        if stage == "train" and self._layer_reg:
            # layer_reg: kernel/bias penalties and this forward's activity penalties (Keras semantics);
            # the epoch losses in metrics.csv stay the data loss, comparable across settings
            penalty = regularization_penalty(self.net)
            loss = loss + penalty
            shown = None if shown is None else shown + penalty
        if stage == "train" and self._auxiliary_loss:
            auxiliary = self.net.auxiliary_loss(target)  # a scalar, outside the logged data loss as layer_reg is
            loss = loss + auxiliary
            shown = None if shown is None else shown + auxiliary.detach()
        bs = int(target.shape[0])
        if stage == "train" and self._step_loss_is_read():
            self.log("train_loss_step", loss if shown is None else shown, on_step=True, on_epoch=False,
                     batch_size=bs, prog_bar=True)
            if self.schedule is not None:
                self.log("lr_step", self._current_lr(), on_step=True, on_epoch=False, batch_size=bs)
        if self._dense:
            # image outputs are scored per sample now and dropped: keeping a split's cubes until the epoch
            # ends would hold them all in (GPU) memory; their metrics are means over samples anyway. On the
            # device where every metric has a torch version, else on the host (numpy)
            names = self._metric_names(stage)
            scores = self.task.sample_scores_torch(out.detach(), target.detach(), names)
            if scores is None:
                scores = torch.from_numpy(self.task.sample_scores(out.detach().float().cpu().numpy(),
                                                                  target.detach().cpu().numpy(), names))
            first, second = scores, None
        else:
            # kept on the device until the epoch ends: a copy to the host here would wait for the GPU every
            # step and keep the CPU from queueing the next step's work (bench/README.md, GPU throughput)
            first, second = out.detach().float(), target.detach()
        self._outputs.setdefault(stage, []).append((
            first, second, per_sample.detach().float(),
            None if weights is None else weights.detach(),
            None if "index" not in batch else batch["index"].detach(),  # de-duplicates DDP padding
        ))
        return loss

    @property
    def _world_size(self) -> int:
        """Training processes (DDP); 1 outside a trainer."""
        return self._trainer.world_size if self._trainer is not None else 1

    def _step_loss_is_read(self) -> bool:
        """Whether anything reads this step's ``train_loss_step``.

        ``self.log`` costs about 0.5 ms per call on a CPU (Lightning's bookkeeping), a tenth of a 5 ms
        step. The per-step loss is read by the progress bar, every step, and by the loggers that keep
        step values (TensorBoard, MLflow; not metrics.csv, which has one row per epoch), which
        Lightning feeds only every ``log.every_n_steps`` steps; on the other steps, and on every
        step when no one reads it, the call is skipped. What the bar and the loggers show is
        unchanged (bench/README.md).
        """
        trainer = self._trainer
        connector = getattr(trainer, "_logger_connector", None)
        if trainer is None or connector is None:
            return True
        if self._step_readers is None:  # fixed for a fit: looked up once (on_train_start resets it)
            self._step_readers = ("bar" if trainer.progress_bar_callback is not None else
                                  "loggers" if any(getattr(logger, "reads_step_values", True)
                                                   for logger in trainer.loggers) else "none")
        if self._step_readers != "loggers":
            return self._step_readers == "bar"
        return bool(getattr(connector, "should_update_logs", True))

    def on_train_start(self) -> None:
        self._step_readers = None

    def _current_lr(self) -> float:
        return float(self.optimizers().param_groups[0]["lr"])

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        if self.schedule is not None and self._trainer is not None:
            self.lr_history.append((int(self.global_step), self._current_lr()))
        return self._step(batch, "train")

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._step(batch, "val")

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._step(batch, "test")

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        # after the optimizer step (Lightning zeroes gradients *before* backward, so the zero-grad
        # hook is too early): project constrained weights (layer_reg constraints)
        if self._layer_reg:
            apply_constraints(self.net)

    def on_before_backward(self, loss: torch.Tensor) -> None:
        value = loss.item()  # one number (a sync on a GPU, as any check that stops the step must be)
        if not math.isfinite(value):
            raise TrainingDiverged(
                f"the training loss became {value} at epoch {self.current_epoch + 1}, "
                f"step {self.global_step}; training stopped before the bad step reached the weights. "
                "Try a lower learning rate, gradient clipping (train.gradient_clip_val) or check the data"
            )

    # --- epoch ends ----------------------------------------------------------------------------------

    def _epoch_end(self, stage: str) -> dict[str, float]:
        chunks = _to_numpy(self._outputs.pop(stage, []))
        if self._world_size > 1:
            # the metrics of the whole split, from every process's outputs, and the same values logged
            # on every process: checkpoints and early stopping decide alike everywhere
            gathered = gather_outputs(chunks, self._world_size)
            values = self.trainer.strategy.broadcast(None if gathered is None else self._score(gathered, stage),
                                                     src=0)
        else:
            values = self._score(chunks, stage)
        for name, value in values.items():
            self.log(f"{stage}_{name}", value, on_epoch=True, prog_bar=name == "loss" or stage == "val",
                     sync_dist=False)
        return values

    def _metric_names(self, stage: str) -> list[str]:
        """The metrics scored per batch in a stage: the task's ``train_metrics`` on training batches."""
        return self._train_metric_names if stage == "train" else self.task.metrics

    def _score(self, chunks: list[tuple[np.ndarray, ...]], stage: str = "val") -> dict[str, float]:
        """Loss and metrics of a stage from its per-batch outputs."""
        if not chunks:
            return {}
        out = np.concatenate([c[0] for c in chunks])
        per_sample = np.concatenate([c[2] for c in chunks])
        weights = None if chunks[0][3] is None else np.concatenate([c[3] for c in chunks])
        values = {"loss": float(np.average(per_sample, weights=weights))}
        if chunks[0][1] is None:  # image targets: per-sample scores (N, metrics), see _step
            w = np.ones(len(out)) if weights is None else np.asarray(weights, np.float64)
            for j, name in enumerate(self._metric_names(stage)):
                keep = ~np.isnan(out[:, j])
                values[name] = float(np.average(out[keep, j], weights=w[keep])) if keep.any() else float("nan")
            return values
        target = np.concatenate([c[1] for c in chunks])
        preds = self.task.predictions(out)
        values.update(self.task.score(preds, self.task.targets_in_data_units(target), weights))
        return values

    def on_train_epoch_start(self) -> None:
        self._epoch_start = time.perf_counter()
        self._outputs.pop("train", None)

    def on_validation_epoch_end(self) -> None:
        self._epoch_end("val")

    def on_test_epoch_end(self) -> None:
        self._epoch_end("test")

    def on_train_epoch_end(self) -> None:
        train_values = self._epoch_end("train")
        seconds = time.perf_counter() - self._epoch_start
        self.log("lr", self._current_lr(), on_epoch=True)
        self.log("epoch_time", seconds, on_epoch=True)
        self._watch_monitor(train_values)
        if self.epoch_lines and self.trainer.is_global_zero:
            metrics = self.trainer.callback_metrics
            shown = "  ".join(f"{k} {float(v):.4g}" for k, v in sorted(metrics.items())
                              if k.startswith(("train_", "val_")) and not k.endswith("_step"))
            log.info(f"epoch {self.current_epoch + 1}/{self.trainer.max_epochs}  {shown}  ({seconds:.1f} s)")

    def _watch_monitor(self, train_values: dict[str, float]) -> None:
        """Give a schedule that watches ``train.monitor`` (plateau) this epoch's value.

        Runs after validation and before the checkpoint callbacks, so last.ckpt holds the updated state.
        """
        scheduler = self.lr_schedulers() if self.schedule is not None else None
        if not isinstance(scheduler, ScheduleLR) or not scheduler.schedule.monitored:
            return
        monitor = self.schedule.monitor
        if monitor.startswith("train_"):
            value = train_values.get(monitor.removeprefix("train_"))
        else:
            value = self.trainer.callback_metrics.get(monitor)
        if value is None:  # no validation this epoch (a run cut short by train.max_steps)
            return
        # every process must take the same decision: rank 0's value
        scheduler.epoch_end(float(self.trainer.strategy.broadcast(float(value), src=0)))

    # --- optimizer --------------------------------------------------------------------------------------

    def configure_optimizers(self) -> Any:
        params = [p for p in self.net.parameters() if p.requires_grad]
        optimizer = make_optimizer(self.optimizer_spec, params, self.lr)
        if self.schedule is None:
            return optimizer
        scheduler = make_scheduler(optimizer, self.schedule)  # sets the optimizer's lr to the step-0 value
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step", "frequency": 1}}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["deepscope"] = {"input_spec": self.task.spec.to_json(), "format": 1}


def _to_numpy(chunks: list[tuple[torch.Tensor | None, ...]]) -> list[tuple[np.ndarray | None, ...]]:
    """Per-batch device tensors -> one host array per field (a single copy per field and epoch)."""
    if not chunks:
        return []
    fields = []
    for column in zip(*chunks):
        if column[0] is None:
            fields.append(None)
        else:
            fields.append(torch.cat(list(column)).cpu().numpy())
    return [tuple(fields)]
