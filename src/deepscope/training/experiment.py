"""``Experiment``: config → checked data → model → Lightning training → a complete run folder.

Also the entry points that work from a finished run folder: :func:`evaluate` and :func:`predict`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch

from deepscope import preflight
from deepscope.config import ExperimentConfig, load_config
from deepscope.config.model import pretrained_sections
from deepscope.data.arrays import ArraySet
from deepscope.data.dataset import BatchDataset, BatchIndexSampler, BatchLoader
from deepscope.data.prepare import PreparedData, check_target_standardization, prepare_data, training_crop
from deepscope.data.spec import InputSpec
from deepscope.data.standardize import Standardizer
from deepscope.errors import CheckpointError, DataError, DeepscopeError, TrainingDiverged
from deepscope.evaluation import plots
from deepscope.evaluation.architecture import architecture_figure
from deepscope.evaluation.predict import load_net_weights, predict_store, save_predictions, score
from deepscope.models.build import build_model
from deepscope.models.summary import summarize
from deepscope.optim.optimizers import auto_lr
from deepscope.optim.schedules import ScheduleSpec, schedule_spec
from deepscope.training.callbacks import LRLog, atomic_write_text
from deepscope.training.distributed import DistributedSetup, StopTogether, handing_down, process_count
from deepscope.training.lr_finder import find_lr, load_choice
from deepscope.training.performance import (compile_net, convert_channels_last, set_deterministic_env,
                                            training_device, use_channels_last)
from deepscope.training.pretrained import freeze_pretrained, load_pretrained
from deepscope.training.placement import loader_device
from deepscope.training.run import RunDir, claim_run, write_config
from deepscope.tasks import family_for
from deepscope.training.task import Task
from deepscope.training.trainer import build_trainer, monitor_mode, quiet_lightning, shows_progress_bar

__all__ = ["Experiment", "Interrupted", "RunResult", "evaluate", "predict", "train"]

log = logging.getLogger("deepscope")


class Interrupted(DeepscopeError):
    """Training was stopped by Ctrl-C or SIGTERM; ``last.ckpt`` holds where it stopped."""

    exit_code = 130


@dataclass
class RunResult:
    """What a finished training run left behind.

    Attributes:
        run_dir: the run folder.
        metrics: the final loss and metrics per split, ``{"val": {...}, "test": {...}}``, as in
            ``final_metrics.json``.
        checkpoint: the checkpoint the final metrics were computed with (``best.ckpt``, or ``last.ckpt``
            with ``train.restore_best_weights: false``).
        epochs: epochs completed.
        resumed: whether this call resumed an existing run.
        global_rank: ``0``; under DDP the process's global rank (only rank 0's result has ``metrics``
            and ``checkpoint``).
        phases: phased experiments: each phase run's result, by phase name.
    """

    run_dir: Path
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)
    checkpoint: Path | None = None
    epochs: int = 0
    resumed: bool = False
    global_rank: int = 0  # under DDP, only rank 0's result has the metrics and the checkpoint
    phases: dict[str, "RunResult"] = field(default_factory=dict)  # phased experiments: each phase run's result


def _task(cfg: ExperimentConfig, spec: InputSpec, standardizer: Standardizer) -> Task:
    return family_for(cfg).outputs(cfg, spec, standardizer)


def _loader(prepared: PreparedData, split: str, cfg: ExperimentConfig, shuffle: bool,
            processes: int = 1) -> BatchLoader:
    """A loader of one split; with several ``processes`` (DDP) it has the length of each one's share
    (:class:`DistributedSetup` tells it which share is this process's)."""
    store, per_batch = prepared.training_store(split)
    dataset = BatchDataset(store, prepared.indices[split], per_batch,
                           transform=_batch_transform(cfg, split, prepared))
    # validation is padded, not cut, when the last global batch is smaller than the processes: every
    # sample is scored (BatchIndexSampler)
    block = None
    if shuffle and getattr(cfg.data, "shuffle", "samples") == "chunks":
        block = getattr(store, "chunk_rows", None)
        if block is None:
            log.info("data.shuffle: chunks: the %s split is %s; its batches are drawn from the whole split", split,
                     "in memory" if isinstance(store, ArraySet) else "stored without chunks")
    sampler = BatchIndexSampler(len(dataset), cfg.train.batch_size, shuffle=shuffle, seed=cfg.seed,
                                num_replicas=processes, pad=not shuffle, block=block)
    device = loader_device(cfg, store, dataset.indices, dataset.transform, processes)
    return BatchLoader(dataset, sampler, num_workers=0 if device else cfg.data.num_workers,
                       pin_memory=torch.cuda.is_available() and cfg.train.accelerator != "cpu",
                       prefetch=cfg.data.prefetch, device=device)


def _batch_transform(cfg: ExperimentConfig, split: str, prepared: PreparedData) -> Any:
    """What is done to each batch after standardization: ``data.augment`` on training batches; the
    centre window of the crop size on the others, when training takes crops."""
    augment, crop = cfg.data.augment, training_crop(cfg)
    if crop and not augment.crop:  # the source's crop (fits_dirs deconvolution) is a random training crop
        augment = augment.model_copy(update={"crop": crop})
    if split == "train" and augment.enabled:
        from deepscope.data.augment import Augmenter

        augmenter = Augmenter(augment, cfg.seed, standardizer=prepared.standardizer)
        data_spec = prepared.data_spec
        augmenter.check({n: s.spatial for n, s in data_spec.images.items()}, data_spec.target_shape)
        return augmenter
    if crop:
        from deepscope.data.windows import CenterCrop

        return CenterCrop(crop)
    return None


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
        callbacks: Lightning callbacks added to the trainer of every run this experiment trains (of a
            phased experiment: its last phase's run), e.g. ``deepscope tune``'s pruning callback.

    Example:
        >>> result = Experiment("configs/digits.yaml", overrides=["train.epochs=3"]).train()
    """

    def __init__(self, config: Any, data: Any = None, overrides: list[str] | tuple[str, ...] = (),
                 callbacks: list[L.Callback] | tuple[L.Callback, ...] = ()) -> None:
        self.cfg: ExperimentConfig = load_config(config, overrides)
        self.data = data
        self.callbacks = list(callbacks)

    def train(self, new_version: bool = False) -> RunResult:
        """Train (or resume) and fill the run folder: what the config's task family runs, one run folder
        (:meth:`train_run`) or several (``phases``: each phase a run folder of its own, docs/phases.md).

        Under DDP every process runs this; global rank 0 alone writes the run folder and returns the
        final metrics, the others return a result without them (docs/distributed.md).

        Raises:
            ConfigError, DataError: before anything is written.
            RunInUse: another process writes the run folder (docs/runs.md); nothing was touched.
            TrainingDiverged: NaN/inf loss; the last good checkpoint is kept.
            Interrupted: Ctrl-C / SIGTERM; ``last.ckpt`` was saved first.
        """
        return family_for(self.cfg).run(self, new_version)

    def train_run(self, new_version: bool = False) -> RunResult:
        """Train (or resume) one run folder, ``<log.dir>/<name>`` (see :meth:`train`)."""
        cfg = self.cfg
        preflight.check(cfg)  # every check that reads no data, as 'deepscope validate' makes them
        set_deterministic_env(cfg.train.deterministic)  # before anything can start CUDA
        # one writer per run folder: its lock is held from before the resume decision to the last write
        # (a process Lightning's ddp strategy started trains in rank 0's folder, decided there)
        with claim_run(cfg, new_version) as (run, resume):
            return self._train_in(run, resume)

    def _train_in(self, run: RunDir, resume: bool) -> RunResult:
        """:meth:`train` in ``run``, which this process holds; ``resume`` from its ``last.ckpt``."""
        cfg = self.cfg
        resume_epoch, finished = _resume_state(run.last, cfg) if resume else (None, None)
        prepared = prepare_data(cfg, self.data)
        spec = prepared.spec
        check_target_standardization(cfg, spec)
        family = family_for(cfg)
        family.check_data(cfg, spec)
        L.seed_everything(cfg.seed, workers=True, verbose=False)
        net = build_model(cfg.model, spec, cfg.train.loss_name)
        for key, pretrained in pretrained_sections(cfg.model):
            # a resumed run has the loaded weights in its checkpoint; only the freezing is re-applied
            lines = (freeze_pretrained(net, pretrained, key) if resume
                     else load_pretrained(net, pretrained, spec, key))
            for line in lines:
                log.info(line)
        channels_last = use_channels_last(cfg.train.channels_last, training_device(cfg.train), net)
        if channels_last:
            convert_channels_last(net)
        task = family.outputs(cfg, spec, prepared.standardizer)
        loss = family.loss(cfg, task)
        processes = process_count(cfg.train)
        train_loader = _loader(prepared, "train", cfg, shuffle=True, processes=processes)
        val_loader = _loader(prepared, "val", cfg, shuffle=False, processes=processes) \
            if "val" in prepared.indices else None
        system = family.system(cfg, net, task, loss, epoch_lines=not shows_progress_bar(cfg),
                               schedule=_schedule(cfg, len(train_loader)), channels_last=channels_last)
        summary = summarize(net, spec)
        system.configure_optimizers()  # optimizer options are checked before anything is written

        loaders = {"train_dataloaders": train_loader}
        if val_loader is not None:
            loaders["val_dataloaders"] = val_loader
        callbacks: list[L.Callback] = [LRLog(run.lr_log), *self.callbacks]
        if processes > 1:
            # Lightning calls every callback at every hook of every step (about 5 µs each on a CPU):
            # a single process is left without the ones it does not need
            callbacks += [DistributedSetup(run, resume, list(loaders.values())), StopTogether()]
        trainer, interrupt = build_trainer(cfg, run, resume_epoch, extra_callbacks=callbacks)
        writer = trainer.global_rank == 0  # under DDP only global rank 0 writes the run folder
        if writer:
            write_config(cfg, run)
            atomic_write_text(run.summary, summary)
            if cfg.log.figures:
                architecture_figure(net, spec, run.figures / "architecture.png")
            atomic_write_text(run.input_spec, spec.to_json())
            prepared.standardizer.save(run.standardization)
            sizes = prepared.sizes()
            log.info(f"run folder {run.path} ({'resuming after epoch ' + str(resume_epoch) if resume else 'new run'}"
                     f"{_processes_note(trainer)}); samples: " + ", ".join(f"{k} {v}" for k, v in sizes.items()))

        compile_net(net, cfg.train.compile)  # after the summary and the figure, which hook into the layers
        if not finished:
            self._set_learning_rate(system, run, resume, prepared, len(train_loader), trainer.world_size,
                                    trainer.global_rank)
        try:
            if finished:
                if writer:
                    log.info(f"nothing to train in {run.path}: {finished}")
            else:
                with handing_down(run.path, resume) if trainer.world_size > 1 else contextlib.nullcontext():
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
        epochs = int((resume_epoch if finished else trainer.current_epoch) or 0)
        if not writer:  # rank 0 predicts, draws and writes the final metrics
            return RunResult(run.path, {}, None, epochs, resume, trainer.global_rank)
        stopper = trainer.early_stopping_callback
        if stopper is not None and stopper.stopped_epoch > 0:
            log.info(f"early stopping: {stopper.monitor} did not improve by more than {abs(stopper.min_delta)} for "
                     f"{stopper.patience} epochs; stopped after epoch {stopper.stopped_epoch + 1}")

        weights = run.weights_for_evaluation(cfg.train.restore_best_weights)
        net.float()  # train.precision '64' trained it in float64; evaluate and predict use float32 too
        load_net_weights(net, weights)
        metrics = self._finish(run, net, task, prepared, loss)
        return RunResult(run.path, metrics, weights, epochs, resume)

    def _set_learning_rate(self, system: L.LightningModule, run: RunDir, resume: bool, prepared: PreparedData,
                           train_batches: int, world_size: int, rank: int = 0) -> None:
        """The lr (or the schedule's range) the run trains with: configured, found or automatic.

        ``train.lr_finder`` scans before a new run, in global rank 0 before the other processes start
        (a resumed run, and those processes, read the choice made then); ``train.auto_lr`` is DeepCalo's
        ``c·sqrt(batch)`` with the effective batch size.
        """
        cfg = self.cfg
        t = cfg.train
        lr = t.lr
        lr_range = tuple(t.lr_schedule.range) if t.lr_schedule is not None else None
        if t.lr_finder.use:
            if resume or rank != 0:
                choice = load_choice(run, cfg)
            else:
                try:
                    choice = find_lr(system, _loader(prepared, "train", cfg, shuffle=True), cfg, run)
                except SystemExit as exc:  # Ctrl-C / SIGTERM in the scan: nothing trained yet
                    raise Interrupted("interrupted during the learning-rate finder; nothing was trained. Run the "
                                      "same command again to start over") from exc
            lr_range = choice.range or lr_range
            lr = choice.lr if choice.lr is not None else lr
        if t.auto_lr:
            batch = t.batch_size * t.accumulate_grad_batches * world_size
            value = auto_lr(t.optimizer, batch)
            if lr_range is not None:
                lr_range = (value / math.sqrt(3), value * math.sqrt(3))
                log.info(f"auto_lr: lr range [{lr_range[0]:.3g}, {lr_range[1]:.3g}] (lr {value:.3g} for "
                         f"{t.optimizer.class_name} with effective batch {batch}, divided and multiplied by sqrt(3))")
            else:
                lr = value
                log.info(f"auto_lr: lr {value:.3g} for {t.optimizer.class_name} with effective batch {batch}")
        system.lr = lr
        system.schedule = _schedule(cfg, train_batches, lr_range)

    def _finish(self, run: RunDir, net: torch.nn.Module, task: Task, prepared: PreparedData,
                loss: Any) -> dict[str, dict[str, float]]:
        cfg = self.cfg
        metrics: dict[str, dict[str, float]] = {}
        device = "cuda" if torch.cuda.is_available() and cfg.train.accelerator != "cpu" else "cpu"
        for split in ("val", "test"):
            if split not in prepared.indices:
                continue
            result = predict_store(net, task, prepared.stores[split], prepared.indices[split], prepared.standardizer,
                                   batch_size=_eval_batch_size(cfg, prepared.spec), device=device, loss=loss)
            if split == "val" and cfg.train.thresholds == "auto" and task.kind == "binary":
                _choose_thresholds(run, task, result)
            if task.kind == "binary" and "probabilities" in result:  # the thresholds may have been chosen since
                result["predictions"] = (result["probabilities"] >= np.asarray(task.thresholds)).astype(np.int64)
            metrics[split] = score(task, result)
            metrics[split].update(_baselines(cfg, task, prepared.stores, prepared.indices, split, result))
            if cfg.log.predictions:
                save_predictions(result, run.predictions / f"{split}.npz")
            if cfg.log.figures:
                family_for(cfg).figures(cfg, task, result, run.figures, split,
                                        inputs=_figure_inputs(prepared, split, result),
                                        read=_figure_reader(prepared, split, result))
        if cfg.log.figures:
            plots.learning_curves(run.metrics, run.figures / "learning_curves.png")
            if cfg.train.lr_schedule is not None or cfg.train.warmup is not None:
                plots.lr_schedule_figure(run.lr_log, run.figures / "lr_schedule.png")
        atomic_write_text(run.path / "final_metrics.json", json.dumps(metrics, indent=2))
        from deepscope.reports import report_after_training

        report_after_training(run.path, prepared.sizes())  # report.html; a failure is a warning, never the run's
        return metrics


THRESHOLDS_FILE = "thresholds.json"


def _choose_thresholds(run: RunDir, task: Task, result: dict[str, np.ndarray]) -> None:
    """``train.thresholds: auto``: per label the threshold of the best F1 on the validation predictions,
    kept in the task (for the scores and figures that follow) and in the run (for evaluate and predict)."""
    from deepscope.evaluation.thresholds import best_f1_thresholds

    chosen = best_f1_thresholds(result["probabilities"], result["targets"])
    task.thresholds = chosen if len(chosen) > 1 else chosen[0]
    names = task.spec.column_names()
    record = {"thresholds": chosen, "labels": names if len(names) == len(chosen) else None,
              "chosen_on": "val", "criterion": "f1"}
    atomic_write_text(run.path / THRESHOLDS_FILE, json.dumps(record, indent=2))
    log.info("train.thresholds auto: %s (best F1 on the validation split)",
             ", ".join(f"{t:.3f}" for t in chosen))


def _eval_batch_size(cfg: ExperimentConfig, spec: InputSpec) -> int:
    """Samples per inference batch: at least 256 small samples, but image outputs (whole cubes through a
    sliding window) no more at a time than training took."""
    return cfg.train.batch_size if spec.dense else max(cfg.train.batch_size, 256)


def _baselines(cfg: ExperimentConfig, task: Task, stores: dict[str, Any], indices: dict[str, np.ndarray],
               split: str, result: dict[str, np.ndarray]) -> dict[str, float]:
    """Predictions of a source that names its baselines (``baselines=`` in its registry entry) beside
    the strongest cheap ones on the same samples (FITS cubes: the all-zeros sky and the best Wiener
    deconvolution, or the training mean and a one-feature fit of source parameters)."""
    import importlib

    from deepscope.components import SOURCES

    entry = SOURCES.entry(cfg.data.source)
    if "baselines" not in entry.meta or not len(result["index"]):
        return {}
    module, _, attr = entry.meta["baselines"].partition(":")
    scores, lines = getattr(importlib.import_module(module), attr)(cfg.data, task, stores, indices, split, result)
    for line in lines:
        log.info(f"{split}: {line}")
    return scores


def _processes_note(trainer: L.Trainer) -> str:
    if trainer.world_size < 2:
        return ""
    return f"; {trainer.world_size} processes on {trainer.num_nodes} node{'s' if trainer.num_nodes > 1 else ''}"


def _schedule(cfg: ExperimentConfig, train_batches: int,
              lr_range: tuple[float, float] | None = None) -> ScheduleSpec | None:
    """The lr schedule's spec (with the warm-up) for ``train_batches`` batches per epoch; ``lr_range``
    replaces ``lr_schedule.range``. ``None`` when there is neither a schedule nor a warm-up."""
    return schedule_spec(cfg.train, train_batches, lr_range, monitor_mode(cfg.train.monitor))


def _figure_inputs(prepared: PreparedData, split: str, result: dict[str, np.ndarray],
                   limit: int = 4) -> dict[str, np.ndarray] | None:
    """The raw images of the first ``limit`` predicted samples of a split (for figures of image outputs)."""
    if not prepared.spec.dense or not len(result["index"]):
        return None
    return prepared.stores[split].read(np.asarray(result["index"][:limit])).get("images")


def _figure_reader(prepared: PreparedData, split: str, result: dict[str, np.ndarray]) -> Any:
    """Positions in ``result`` -> the raw images of those samples (None for data without images)."""
    if not prepared.spec.images:
        return None
    store, index = prepared.stores[split], np.asarray(result["index"])
    return lambda positions: store.read(index[np.asarray(positions, dtype=np.int64)]).get("images", {})


def train(config: Any, data: Any = None, overrides: list[str] | tuple[str, ...] = (),
          new_version: bool = False) -> RunResult:
    """Train from a config (path, dict or model), or resume its run; see :class:`Experiment`.

    Args:
        config: YAML path, dict or :class:`ExperimentConfig`.
        data: in-memory arrays (DeepCalo layout) for ``data.source: arrays``.
        overrides: ``key.path=value`` strings applied to the config.
        new_version: start a new run folder beside an existing one (``--new-version``).

    Returns:
        The run folder, the final metrics and the checkpoint they come from.

    Raises:
        ConfigError, DataError: before anything is written.
        RunInUse: another process writes the run folder; nothing was touched.
        TrainingDiverged: NaN/inf loss; the last good checkpoint is kept.
        Interrupted: Ctrl-C / SIGTERM; ``last.ckpt`` was saved first.
    """
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
    task = _task(cfg, spec, standardizer)
    chosen = run.path / THRESHOLDS_FILE
    if cfg.train.thresholds == "auto" and chosen.is_file():
        values = json.loads(chosen.read_text())["thresholds"]
        task.thresholds = values if len(values) > 1 else values[0]
    return _Loaded(cfg, run, spec, standardizer, net, task)


def evaluate(run_dir: str | Path, split: str = "test", data: Any = None,
             checkpoint: str | Path | None = None, overrides: Any = ()) -> dict[str, float]:
    """Recompute the loss and metrics on a split from the run's checkpoint and saved standardization.

    The checkpoint is best.ckpt (last.ckpt when ``train.restore_best_weights`` is false), unless
    ``checkpoint`` names one. Writes ``evaluation/<split>_metrics.json`` in the run folder. ``overrides`` change the stored config
    for this evaluation only (e.g. ``data.path=other.npz``).

    Args:
        run_dir: the run folder.
        split: ``"test"``, ``"val"`` or ``"train"``.
        data: the in-memory arrays again, for a run trained on ``data.source: arrays``.
        checkpoint: a checkpoint file to use instead of the run's own.
        overrides: ``key.path=value`` strings applied to the stored config for this call.

    Returns:
        ``samples`` (the number of samples), ``loss`` and each configured metric.

    Raises:
        DataError: the data is missing (in-memory arrays not passed again) or has no such split.
        CheckpointError: the run folder or its checkpoint is missing or damaged.
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
                           loaded.standardizer, batch_size=_eval_batch_size(cfg, loaded.spec),
                           loss=family_for(cfg).loss(cfg, loaded.task))
    metrics = score(loaded.task, result)
    metrics.update(_baselines(cfg, loaded.task, prepared.stores, prepared.indices, split, result))
    metrics = {"samples": float(len(result["index"])), **metrics}
    atomic_write_text(loaded.run.path / "evaluation" / f"{split}_metrics.json", json.dumps(metrics, indent=2))
    return metrics


def predict(run_dir: str | Path, input_path: str | Path, output_path: str | Path,
            channels: str | None = None, checkpoint: str | Path | None = None,
            overrides: Any = ()) -> dict[str, np.ndarray]:
    """Apply a trained run to new data and write the predictions (:mod:`deepscope.evaluation.predict_io`).

    The input is an ``.npz`` file or a file of the run's source format (HDF5, ROOT, a folder of FITS
    cubes), read with the run's own data section; the whole file is predicted. The output is written
    in the format its suffix names (``.npz``, ``.h5``, ``.root``), else in the input's; an existing
    output is refused. The run's saved standardization is applied; targets in the input are
    optional (and, when present, are copied to the output).

    Args:
        run_dir: the run folder.
        input_path: the ``.npz`` file of samples (or the source's own file or folder format, when the run's
            data source reads one).
        output_path: where the predictions are written (never over an existing file).
        channels: ``"last"`` or ``"first"``: overrides the run's ``data.channels`` for the input.
        checkpoint: a checkpoint file to use instead of the run's own.
        overrides: ``key.path=value`` strings applied to the stored config for this call.

    Returns:
        ``predictions``, ``probabilities`` (classification), ``index``, and ``targets`` /
        ``sample_weights`` / the per-sample ``loss`` when the input has targets.

    Raises:
        DataError: a missing, corrupt or unreadable input, a format the run does not read, a missing
            dataset or branch, inputs that do not match the ones the model was trained on, or an
            existing output.
    """
    from deepscope.evaluation.predict_io import predict_path

    quiet_lightning()
    loaded = _load_run(run_dir, checkpoint, overrides)
    cfg = loaded.cfg
    weights = Path(checkpoint) if checkpoint else loaded.run.weights_for_evaluation(cfg.train.restore_best_weights)
    return predict_path(loaded, Path(input_path), Path(output_path), weights, channels=channels,
                        batch_size=_eval_batch_size(cfg, loaded.spec), loss=family_for(cfg).loss(cfg, loaded.task))


