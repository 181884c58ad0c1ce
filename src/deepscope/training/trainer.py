"""The Lightning ``Trainer`` for a config: loggers, callbacks, devices, quiet defaults."""

from __future__ import annotations

import logging
import sys
import warnings
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint, RichProgressBar
from lightning.pytorch.loggers import TensorBoardLogger

from deepscope.config.schema import ExperimentConfig
from deepscope.training.callbacks import AtomicCheckpointIO, EpochCSVLogger, InterruptCheckpoint, LoaderProgress
from deepscope.training.distributed import process_count
from deepscope.training.mlflow_logger import mlflow_logging
from deepscope.training.run import RunDir
from deepscope.training.snapshots import WeightSnapshots
from deepscope.training.task import monitor_mode  # re-exported (Lightning-free there)

__all__ = ["build_trainer", "monitor_mode", "quiet_lightning", "shows_progress_bar", "step_numerics"]


def quiet_lightning() -> None:
    """Keep Lightning's banners and hints out of the user's terminal (``--debug`` shows them)."""
    for name in ("lightning", "lightning.pytorch", "lightning.fabric", "pytorch_lightning"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=".*is smaller than the logging interval.*")
    warnings.filterwarnings("ignore", message=".*`isinstance\\(treespec, LeafSpec\\)` is deprecated.*")
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")
    warnings.filterwarnings("ignore", message=".*Checkpoint directory .* exists and is not empty.*")
    # a run cut short by train.max_steps can end before its first validation
    warnings.filterwarnings("ignore", message=".*could not find the monitored key in the returned metrics.*")
    # under DDP the epoch values are computed from every process's outputs and logged alike everywhere
    # (SupervisedSystem._epoch_end); Lightning's advice to sync them does not apply
    warnings.filterwarnings("ignore", message=".*when logging on epoch level in distributed setting.*")


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
    best = ModelCheckpoint(
        dirpath=run.checkpoints, filename="best", monitor=monitor, mode=monitor_mode(monitor),
        save_top_k=1, save_last=False, enable_version_counter=False, auto_insert_metric_name=False,
    )
    # Lightning's save_last only rewrites last.ckpt when a new best is saved; this one saves every epoch.
    last = ModelCheckpoint(dirpath=run.checkpoints, filename="last", monitor=None, save_top_k=1,
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
        use_distributed_sampler=False,
    )
    return trainer, interrupt
