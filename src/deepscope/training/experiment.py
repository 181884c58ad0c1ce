"""``Experiment``: config → checked data → model → Lightning training → a complete run folder.

Also the entry points that work from a finished run folder: :func:`evaluate` and :func:`predict`.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch

from deepscope.config import ExperimentConfig, load_config
from deepscope.data.dataset import BatchDataset, BatchIndexSampler, BatchLoader
from deepscope.data.prepare import PreparedData, prepare_data
from deepscope.data.sources import read_npz_set
from deepscope.data.spec import InputSpec
from deepscope.data.standardize import Standardizer
from deepscope.errors import CheckpointError, ConfigError, DataError, DeepscopeError, TrainingDiverged
from deepscope.evaluation import plots
from deepscope.evaluation.architecture import architecture_figure
from deepscope.evaluation.predict import load_net_weights, predict_store, save_predictions, score
from deepscope.losses import make_loss
from deepscope.models.build import build_model
from deepscope.models.summary import summarize
from deepscope.optim.schedules import ScheduleSpec
from deepscope.training.callbacks import atomic_write_text
from deepscope.training.pretrained import freeze_pretrained, load_pretrained
from deepscope.training.run import RunDir, open_run, write_config
from deepscope.training.system import SupervisedSystem
from deepscope.training.task import Task
from deepscope.training.trainer import build_trainer, quiet_lightning, shows_progress_bar

__all__ = ["Experiment", "Interrupted", "RunResult", "evaluate", "predict", "train"]

log = logging.getLogger("deepscope")


class Interrupted(DeepscopeError):
    """Training was stopped by Ctrl-C or SIGTERM; ``last.ckpt`` holds where it stopped."""

    exit_code = 130


@dataclass
class RunResult:
    """What a finished training run left behind."""

    run_dir: Path
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)
    checkpoint: Path | None = None
    epochs: int = 0
    resumed: bool = False


def _task(cfg: ExperimentConfig, spec: InputSpec, standardizer: Standardizer) -> Task:
    return Task(cfg.train.loss.class_name, spec, list(cfg.train.metrics), standardizer.target_stats)


def _loader(prepared: PreparedData, split: str, cfg: ExperimentConfig, shuffle: bool) -> BatchLoader:
    store, per_batch = prepared.training_store(split)
    dataset = BatchDataset(store, prepared.indices[split], per_batch)
    sampler = BatchIndexSampler(len(dataset), cfg.train.batch_size, shuffle=shuffle, seed=cfg.seed)
    return BatchLoader(dataset, sampler, num_workers=cfg.data.num_workers,
                       pin_memory=torch.cuda.is_available() and cfg.train.accelerator != "cpu")


def _resume_state(path: Path, cfg: ExperimentConfig) -> tuple[int, str | None]:
    """Epochs whose training finished before ``path`` was saved (a mid-epoch save counts that epoch
    out), and why there is nothing left to train, if so."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
        done = int(ckpt["loops"]["fit_loop"]["epoch_progress"]["current"]["processed"])
        for key, state in ckpt.get("callbacks", {}).items():
            if key.startswith("EarlyStopping") and cfg.train.early_stopping.use and \
                    int(state.get("wait_count", 0)) >= cfg.train.early_stopping.patience:
                return done, f"it stopped early after epoch {done} (no improvement for {state['wait_count']} epochs)"
        if done >= cfg.train.epochs:
            return done, f"it has trained all {cfg.train.epochs} epochs; raise train.epochs to continue"
        return done, None
    except Exception as exc:
        raise CheckpointError(f"checkpoint '{path}' cannot be read ({type(exc).__name__}: {exc}); "
                              "move it away to start over") from None


class Experiment:
    """One experiment, from its config.

    Args:
        config: YAML path, dict or :class:`ExperimentConfig`.
        data: in-memory arrays (DeepCalo layout) for ``data.source: arrays``.
        overrides: ``key.path=value`` strings applied to the config.

    Example:
        >>> result = Experiment("configs/digits.yaml", overrides=["train.epochs=3"]).train()
    """

    def __init__(self, config: Any, data: Any = None, overrides: list[str] | tuple[str, ...] = ()) -> None:
        self.cfg: ExperimentConfig = load_config(config, overrides)
        self.data = data

    def train(self, new_version: bool = False) -> RunResult:
        """Train (or resume) and fill the run folder.

        Raises:
            ConfigError, DataError: before anything is written.
            TrainingDiverged: NaN/inf loss; the last good checkpoint is kept.
            Interrupted: Ctrl-C / SIGTERM; ``last.ckpt`` was saved first.
        """
        cfg = self.cfg
        run, resume = open_run(cfg, new_version)
        resume_epoch, finished = _resume_state(run.last, cfg) if resume else (None, None)
        prepared = prepare_data(cfg, self.data)
        spec = prepared.spec
        if spec.multiply_output_with and cfg.data.standardize.targets:
            raise ConfigError("data.standardize.targets must be false when the data has multiply_output_with "
                              "(the model predicts a correction factor in data units)")
        L.seed_everything(cfg.seed, workers=True, verbose=False)
        net = build_model(cfg.model, spec, cfg.train.loss.class_name)
        pretrained = getattr(cfg.model, "pretrained_model", None)
        if pretrained is not None and pretrained.use:
            # a resumed run has the loaded weights in its checkpoint; only the freezing is re-applied
            lines = freeze_pretrained(net, pretrained) if resume else load_pretrained(net, pretrained, spec)
            for line in lines:
                log.info(line)
        task = _task(cfg, spec, prepared.standardizer)
        loss = make_loss(cfg.train.loss)
        train_loader = _loader(prepared, "train", cfg, shuffle=True)
        system = SupervisedSystem(net, loss, task, cfg.train.optimizer, cfg.train.lr,
                                  epoch_lines=not shows_progress_bar(cfg), schedule=_schedule(cfg, len(train_loader)))
        summary = summarize(net, spec)
        system.configure_optimizers()  # optimizer options are checked before anything is written

        write_config(cfg, run)
        atomic_write_text(run.summary, summary)
        if cfg.log.figures:
            architecture_figure(net, spec, run.figures / "architecture.png")
        atomic_write_text(run.input_spec, spec.to_json())
        prepared.standardizer.save(run.standardization)
        sizes = prepared.sizes()
        log.info(f"run folder {run.path} ({'resuming after epoch ' + str(resume_epoch) if resume else 'new run'}); "
                 f"samples: " + ", ".join(f"{k} {v}" for k, v in sizes.items()))

        trainer, interrupt = build_trainer(cfg, run, resume_epoch)
        loaders = {"train_dataloaders": train_loader}
        if "val" in prepared.indices:
            loaders["val_dataloaders"] = _loader(prepared, "val", cfg, shuffle=False)
        try:
            if finished:
                log.info(f"nothing to train in {run.path}: {finished}")
            else:
                trainer.fit(system, **loaders, ckpt_path=str(run.last) if resume else None, weights_only=True)
        except TrainingDiverged as exc:
            kept = f"; the last good checkpoint is {run.last}" if run.last.exists() else "; no checkpoint was written"
            raise TrainingDiverged(str(exc) + kept) from None
        except SystemExit as exc:  # Lightning turns Ctrl-C and SIGTERM into SystemExit
            if interrupt.saved_at is not None:
                epoch, step = interrupt.saved_at
                raise Interrupted(f"interrupted in epoch {epoch + 1} at step {step}; saved {run.last}. "
                                  "Run the same command again to continue") from None
            raise Interrupted("interrupted before the first step; nothing was saved") from exc
        if trainer.interrupted:
            raise Interrupted(f"interrupted; progress is in {run.last}")
        stopper = trainer.early_stopping_callback
        if stopper is not None and stopper.stopped_epoch > 0:
            log.info(f"early stopping: {stopper.monitor} did not improve by more than {abs(stopper.min_delta)} for "
                     f"{stopper.patience} epochs; stopped after epoch {stopper.stopped_epoch + 1}")

        weights = run.weights_for_evaluation(cfg.train.restore_best_weights)
        load_net_weights(net, weights)
        metrics = self._finish(run, net, task, prepared, loss, system.lr_history)
        epochs = resume_epoch if finished else int(trainer.current_epoch)
        return RunResult(run.path, metrics, weights, int(epochs or 0), resume)

    def _finish(self, run: RunDir, net: torch.nn.Module, task: Task, prepared: PreparedData,
                loss: Any, lr_history: list[tuple[int, float]] | None = None) -> dict[str, dict[str, float]]:
        cfg = self.cfg
        metrics: dict[str, dict[str, float]] = {}
        device = "cuda" if torch.cuda.is_available() and cfg.train.accelerator != "cpu" else "cpu"
        for split in ("val", "test"):
            if split not in prepared.indices:
                continue
            result = predict_store(net, task, prepared.stores[split], prepared.indices[split], prepared.standardizer,
                                   batch_size=max(cfg.train.batch_size, 256), device=device, loss=loss)
            metrics[split] = score(task, result)
            if cfg.log.predictions:
                save_predictions(result, run.predictions / f"{split}.npz")
            if cfg.log.figures:
                _split_figures(task, result, run.figures, split)
        if cfg.log.figures:
            plots.learning_curves(run.metrics, run.figures / "learning_curves.png")
            if lr_history:
                plots.lr_schedule_figure(lr_history, run.figures / "lr_schedule.png")
        atomic_write_text(run.path / "final_metrics.json", json.dumps(metrics, indent=2))
        return metrics


def _schedule(cfg: ExperimentConfig, train_batches: int) -> ScheduleSpec | None:
    """The lr schedule's spec: steps per epoch = training batches // accumulate_grad_batches."""
    sch = cfg.train.lr_schedule
    if sch is None:
        return None
    steps = max(1, train_batches // cfg.train.accumulate_grad_batches)
    return ScheduleSpec(sch.name, float(sch.range[0]), float(sch.range[1]), float(sch.step_size_factor),
                        dict(sch.kwargs), steps, cfg.train.epochs)


def _split_figures(task: Task, result: dict[str, np.ndarray], figures: Path, split: str) -> None:
    if task.kind == "multiclass":
        plots.confusion_matrix_figure(result["predictions"], result["targets"],
                                      figures / f"confusion_matrix_{split}.png", title=split)
    elif task.kind == "regression":
        plots.regression_figure(result["predictions"], result["targets"], figures / f"regression_{split}.png",
                                title=split)
        plots.resolution_figure(result["predictions"], result["targets"], figures / f"resolution_{split}.png",
                                title=split)


def train(config: Any, data: Any = None, overrides: list[str] | tuple[str, ...] = (),
          new_version: bool = False) -> RunResult:
    """Train from a config (path, dict or model); see :class:`Experiment`."""
    return Experiment(config, data, overrides).train(new_version=new_version)


# --- working from a run folder ---------------------------------------------------------------------


@dataclass
class _Loaded:
    cfg: ExperimentConfig
    run: RunDir
    spec: InputSpec
    standardizer: Standardizer
    net: torch.nn.Module
    task: Task


def _load_run(run_dir: str | Path, checkpoint: str | Path | None = None, overrides: Any = ()) -> _Loaded:
    run = RunDir.existing(run_dir)
    cfg = load_config(run.config, overrides)
    spec = InputSpec.load(run.input_spec)
    standardizer = Standardizer.load(run.standardization)
    net = build_model(cfg.model, spec)
    weights = Path(checkpoint) if checkpoint else run.weights_for_evaluation(cfg.train.restore_best_weights)
    load_net_weights(net, weights)
    return _Loaded(cfg, run, spec, standardizer, net, _task(cfg, spec, standardizer))


def evaluate(run_dir: str | Path, split: str = "test", data: Any = None,
             checkpoint: str | Path | None = None, overrides: Any = ()) -> dict[str, float]:
    """Recompute the loss and metrics on a split from the run's checkpoint and saved standardization.

    The checkpoint is best.ckpt (last.ckpt when ``train.restore_best_weights`` is false), unless
    ``checkpoint`` names one. Writes ``evaluation/<split>_metrics.json`` in the run folder. ``overrides`` change the stored config
    for this evaluation only (e.g. ``data.path=other.npz``).
    """
    quiet_lightning()
    loaded = _load_run(run_dir, checkpoint, overrides)
    cfg = loaded.cfg
    if cfg.data.source == "arrays" and data is None:
        raise DataError(f"run '{loaded.run.path}' was trained on in-memory arrays; pass them again: "
                        "deepscope.evaluate(run_dir, data=...)")
    prepared = prepare_data(cfg, data)
    if split not in prepared.indices:
        raise DataError(f"the data of run '{loaded.run.path}' has no '{split}' split "
                        f"(it has {', '.join(prepared.indices)})")
    result = predict_store(loaded.net, loaded.task, prepared.stores[split], prepared.indices[split],
                           loaded.standardizer, batch_size=max(cfg.train.batch_size, 256),
                           loss=make_loss(cfg.train.loss))
    metrics = score(loaded.task, result)
    metrics = {"samples": float(len(result["index"])), **metrics}
    atomic_write_text(loaded.run.path / "evaluation" / f"{split}_metrics.json", json.dumps(metrics, indent=2))
    return metrics


def predict(run_dir: str | Path, input_path: str | Path, output_path: str | Path,
            channels: str | None = None, checkpoint: str | Path | None = None,
            overrides: Any = ()) -> dict[str, np.ndarray]:
    """Apply a trained run to new data in an ``.npz`` file and write the predictions.

    The run's saved standardization is applied; targets in the input are optional (and, when
    present, are copied to the output).

    Raises:
        DataError: the input does not match the inputs the model was trained on.
    """
    quiet_lightning()
    loaded = _load_run(run_dir, checkpoint, overrides)
    store = read_npz_set(input_path, channels or loaded.cfg.data.channels, require_targets=False)
    if isinstance(store, dict):
        raise DataError(f"{input_path}: holds split sets ({', '.join(store)}); give one set of samples to predict")
    _check_matches_spec(store, loaded.spec, str(input_path))
    if loaded.spec.target_kind == "label" and store.targets is not None and not np.issubdtype(store.targets.dtype, np.integer):
        store.targets = store.targets.astype(np.int64)
    result = predict_store(loaded.net, loaded.task, store, np.arange(len(store)), loaded.standardizer,
                           batch_size=max(loaded.cfg.train.batch_size, 256), loss=make_loss(loaded.cfg.train.loss))
    save_predictions(result, Path(output_path))
    return result


def _check_matches_spec(store: Any, spec: InputSpec, where: str) -> None:
    for name, image in spec.images.items():
        if name not in store.images:
            raise DataError(f"{where}: image '{name}' is missing (the model takes: {', '.join(spec.images)})")
        got = store.images[name].shape[1:]
        want = (image.channels, *image.spatial)
        if tuple(got) != want:
            raise DataError(f"{where}: image '{name}' has per-sample shape (C, ...) = {tuple(got)} but the model "
                            f"was trained on {want}; check --channels (first/last)")
    for key, want in (("scalars", spec.scalars), ("tracks", spec.tracks)):
        have = getattr(store, key)
        if want and have is None:
            raise DataError(f"{where}: '{key}' is missing; the model was trained with {key}")
        if key == "scalars" and want and have.shape[1] != want:
            raise DataError(f"{where}: scalars have {have.shape[1]} features; the model takes {want}")
        if key == "tracks" and want and have.shape[2] != want[1]:
            raise DataError(f"{where}: tracks have {have.shape[2]} features; the model takes {want[1]}")
    if spec.multiply_output_with and store.multiply_output_with is None:
        raise DataError(f"{where}: 'multiply_output_with' is missing; the model's output is multiplied by it")
