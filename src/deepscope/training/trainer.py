"""The Lightning ``Trainer`` for a config: loggers, callbacks, devices, quiet defaults."""

from __future__ import annotations

import contextlib
import sys
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint, RichProgressBar
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.profilers import PassThroughProfiler

from deepscope.config.schema import ExperimentConfig
from deepscope.training.callbacks import AtomicCheckpointIO, EpochCSVLogger, InterruptCheckpoint, LoaderProgress
from deepscope.training.processes import process_count
from deepscope.training.mlflow_logger import mlflow_logging
from deepscope.training.run import RunDir
from deepscope.training.snapshots import WeightSnapshots
from deepscope.training.quiet import quiet_lightning  # re-exported
from deepscope.training.task import monitor_mode  # re-exported (Lightning-free there)

__all__ = ["NoProfiler", "build_trainer", "monitor_mode", "quiet_lightning", "shows_progress_bar", "step_numerics"]


class NoProfiler(PassThroughProfiler):
    """Lightning's default (no profiling), without building a generator context manager around every
    hook and loop action it times: about a hundred a training step, 1.2 µs each (bench/README.md)."""

    _NOTHING = contextlib.nullcontext()

    def profile(self, action_name: str) -> contextlib.AbstractContextManager:  # type: ignore[override]
        return self._NOTHING


class _ModelCheckpoint(ModelCheckpoint):
    """Lightning's ModelCheckpoint, its state key computed once.

    Lightning formats every callback's ``state_key`` for every hook of every step (twelve times a
    step for two checkpoints, 1.7 µs each here); this one's never changes after construction. The
    class keeps the name ``ModelCheckpoint``, so the key, under which a checkpoint stores the
    callback's state (the best score, for resuming), is the one Lightning's class gives.
    """

    __qualname__ = "ModelCheckpoint"

    @property
    def state_key(self) -> str:
        key = self.__dict__.get("_state_key_once")
        if key is None:
            key = self.__dict__["_state_key_once"] = super().state_key
        return key


def _accelerator(t: Any) -> str:
    if t.accelerator == "cuda" or (t.accelerator == "auto" and isinstance(t.devices, list)):
        return "gpu"  # a list of device indices names GPUs
    return t.accelerator


def step_numerics(t: Any) -> dict[str, Any]:
    """The Trainer options that decide what one optimizer step computes: the kind of device, the
    precision, clipping, accumulation and determinism. The training run and the lr finder's scan
    share them, so the scan sees the steps the run will take."""
    return {"accelerator": _accelerator(t), "precision": t.precision, "gradient_clip_val": t.gradient_clip_val,
            "accumulate_grad_batches": t.accumulate_grad_batches, "deterministic": t.deterministic}


def _sync_batchnorm(t: Any) -> bool:
    """train.sync_batchnorm where it can work: several processes on GPUs (torch's SyncBatchNorm needs them)."""
    # on CPUs each process normalizes with its own batch's statistics (docs/distributed.md)
    return t.sync_batchnorm and process_count(t) > 1 and (
        _accelerator(t) == "gpu" or (t.accelerator == "auto" and torch.cuda.is_available()))


def shows_progress_bar(cfg: ExperimentConfig) -> bool:
    if cfg.log.progress_bar == "none":
        return False
    return cfg.log.progress_bar == "rich" or sys.stderr.isatty()


def build_trainer(cfg: ExperimentConfig, run: RunDir, resume_epoch: int | None,
                  extra_callbacks: list[L.Callback] = ()) -> tuple[L.Trainer, InterruptCheckpoint]:
    """A Trainer writing into ``run``; returns it with the interrupt callback (to report saves)."""
    quiet_lightning()
    t = cfg.train
    monitor = t.monitor
    best = _ModelCheckpoint(
        dirpath=run.checkpoints, filename="best", monitor=monitor, mode=monitor_mode(monitor),
        save_top_k=1, save_last=False, enable_version_counter=False, auto_insert_metric_name=False,
    )
    # Lightning's save_last only rewrites last.ckpt when a new best is saved; this one saves every epoch.
    last = _ModelCheckpoint(dirpath=run.checkpoints, filename="last", monitor=None, save_top_k=1,
                           every_n_epochs=1, enable_version_counter=False, auto_insert_metric_name=False)
    interrupt = InterruptCheckpoint(run.last)
    callbacks: list[L.Callback] = [best, last, interrupt, LoaderProgress(), *extra_callbacks]
    if t.early_stopping.use:
        es_monitor = t.early_stopping.monitor or monitor
        callbacks.append(EarlyStopping(monitor=es_monitor, mode=monitor_mode(es_monitor),
                                       patience=t.early_stopping.patience, min_delta=t.early_stopping.min_delta,
                                       # names are checked with the config; a run cut short by max_steps
                                       # may end before the first validation
                                       strict=False, check_on_train_epoch_end=es_monitor.startswith("train_")))
    bar = shows_progress_bar(cfg)
    if bar:
        callbacks.append(RichProgressBar(leave=True))
    loggers: list[Any] = [EpochCSVLogger(run.metrics, resume_epoch)]
    if cfg.log.tensorboard:
        loggers.append(TensorBoardLogger(save_dir=str(run.path), name="tensorboard", version="",
                                         default_hp_metric=False))
    if cfg.log.mlflow is not None:
        mlflow, mlflow_info = mlflow_logging(cfg, run)
        loggers.append(mlflow)
        callbacks.append(mlflow_info)
    snapshots = cfg.log.weight_snapshots
    if snapshots is not None:
        drawn = snapshots.figures and cfg.log.figures
        callbacks.append(WeightSnapshots(run.weight_snapshots, run.figures / "weights" if drawn else None,
                                         snapshots.every_n_epochs))
    trainer = L.Trainer(
        default_root_dir=str(run.path),
        max_epochs=t.epochs,
        max_steps=t.max_steps or -1,
        devices=1 if t.devices == "auto" else t.devices,  # 'auto' would take every visible GPU
        strategy=t.strategy,
        num_nodes=t.num_nodes,
        sync_batchnorm=_sync_batchnorm(t),
        **step_numerics(t),
        logger=loggers,
        callbacks=callbacks,
        enable_progress_bar=bar,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        log_every_n_steps=cfg.log.every_n_steps,
        plugins=[AtomicCheckpointIO()],
        profiler=NoProfiler(),
        use_distributed_sampler=False,
    )
    return trainer, interrupt
