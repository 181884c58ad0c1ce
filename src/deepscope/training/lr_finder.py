"""The learning-rate range test before training (``train.lr_finder``; DeepCalo, after Smith 2015 §3.3).

Before a new run trains, the lr rises every optimizer step from ``scan_range[0]`` to
``scan_range[1]`` (linearly or log-spaced) over ``epochs`` epochs of the training data, and the
training loss of every step is recorded. The scan is a closed-form schedule (``lr_scan``) run by the
run's own :class:`~deepscope.training.system.SupervisedSystem` in a short Lightning ``Trainer`` with
the run's kind of device, precision, accumulation and clipping, on a fresh loader. It runs on one
device, in global rank 0 before the other processes of a distributed run start (they read its
choice), so it sees the per-device batch: for N devices the suggestion is cautious by up to N
(linear scaling). Afterwards the net's weights (buffers included) are restored bit for bit, and the
random-number generators are put back where they were, so the real training starts exactly as it
would have without the scan; its optimizer is built fresh.

How the range is suggested:

1. **Smoothing.** The loss is smoothed with the bias-corrected exponential moving average of Smith,
   fastai and Lightning (β = 0.98), run forward and then backward over the steps. A one-sided EMA
   delays every feature of the curve by about β/(1 − β) ≈ 49 steps, which on a 100-step scan moves the
   minimum most of the way to divergence; the two-sided pass has no delay. β is lowered for short
   scans so that the averaging window 1/(1 − β) stays within a tenth of the scan.
2. **Cut at divergence.** The scan stops (and the analysis ends) at the first non-finite loss, or when
   the one-sided EMA rises above 4× its lowest value so far (the rule of fastai and Lightning; 4× the
   *starting* loss would miss a divergence after the loss has already fallen by more than 4×).
3. **Upper end: a tenth of the lr at the lowest smoothed loss** (fastai's ``lr_min / 10``). The lowest
   point of a range test lies *past* the largest stable lr: instability needs several steps to show in
   the loss while the lr keeps rising. On linear least squares, where gradient descent diverges for
   lr > 2/λ_max, the lowest point falls between 1.2 and 6 times 2/λ_max for scans of 30 to 300 steps
   (tests/training/test_lr_finder.py checks the suggestion against 2/λ_max), so the "[steepest,
   lowest]" range of the CLR paper would start training in the unstable region.
4. **The single suggested lr: the steepest descent** of the smoothed loss below that upper end
   (slope against lr, or against log lr for log scans; Lightning's suggestion).
5. **Lower end: that lr, or a third of the upper end when this is lower** (Smith's base_lr = max_lr/3
   for CLR), so that a cyclical schedule always has a range of at least 3 to move in. When the loss
   did not fall below the upper end, the suggested lr is that third too.

Files (in the run folder): ``lr_finder/lr_finder.csv`` and ``lr_finder/lr_finder.h5`` (step, lr, loss,
smoothed_loss), ``lr_finder/suggestion.json`` (the suggestion and what was used, read again on
resume), ``figures/lr_finder_loss.png`` and ``figures/lr_finder_lr.png``.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import random
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch

from deepscope.config.schema import ExperimentConfig
from deepscope.errors import CheckpointError, TrainingDiverged
from deepscope.evaluation import plots
from deepscope.optim.schedules import ScheduleSpec
from deepscope.training.callbacks import atomic_write_text
from deepscope.training.run import RunDir

__all__ = ["LRChoice", "LRScan", "Suggestion", "choose", "divergence_index", "find_lr", "load_choice", "save_scan",
           "scan_lr", "smoothing_beta", "suggest"]

log = logging.getLogger("deepscope")

BETA = 0.98
DIVERGENCE = 4.0


@dataclass
class LRScan:
    """A finished scan: one row per optimizer step.

    Attributes:
        lr: (N,) the lr of each step.
        loss: (N,) its raw training loss (the mean over accumulated batches); may end non-finite.
        scan_range, scale: what was scanned.
        steps: the planned number of steps (N is smaller when the scan stopped early).
        stopped: why the scan stopped early, or ``None``.
    """

    lr: np.ndarray
    loss: np.ndarray
    scan_range: tuple[float, float]
    scale: str
    steps: int
    stopped: str | None = None


@dataclass
class Suggestion:
    """What :func:`suggest` makes of a scan.

    Attributes:
        smoothed: (N,) the smoothed loss; NaN from the divergence on.
        range: the suggested ``[lo, hi]``, or ``None`` when the scan gives none.
        lr: the suggested single lr (the steepest descent), or ``None``.
        note: why the suggestion is missing or a fallback; empty when all went well.
    """

    smoothed: np.ndarray
    range: tuple[float, float] | None
    lr: float | None
    note: str = ""


@dataclass
class LRChoice:
    """What the finder decided for the run: a range for the schedule or an lr (or neither)."""

    range: tuple[float, float] | None = None
    lr: float | None = None


# --- analysis ------------------------------------------------------------------------------------------


def smoothing_beta(steps: int) -> float:
    """β = 0.98, lowered so that the EMA's window 1/(1 − β) is at most a tenth of ``steps``."""
    return float(min(BETA, max(0.0, 1.0 - 10.0 / max(1, steps))))


def _ema(values: np.ndarray, beta: float) -> np.ndarray:
    out = np.empty(len(values))
    avg = 0.0
    for i, v in enumerate(values):
        avg = beta * avg + (1.0 - beta) * v
        out[i] = avg / (1.0 - beta ** (i + 1))
    return out


def divergence_index(loss: np.ndarray, beta: float) -> int:
    """Rows before the divergence: the first non-finite loss, or the one-sided EMA above 4× its lowest."""
    avg, best = 0.0, math.inf
    for i, v in enumerate(loss):
        if not math.isfinite(v):
            return i
        avg = beta * avg + (1.0 - beta) * v
        smooth = avg / (1.0 - beta ** (i + 1))
        if smooth > DIVERGENCE * best:
            return i
        best = min(best, smooth)
    return len(loss)


def suggest(lr: np.ndarray, loss: np.ndarray, scale: str, beta: float) -> Suggestion:
    """The suggested range and lr of a scan (the rule is in the module's docstring).

    Args:
        lr: (N,) increasing lrs.
        loss: (N,) the loss at each.
        scale: ``linear`` or ``log``: what the slope is taken against.
        beta: the EMA's β.
    """
    lr, loss = np.asarray(lr, float), np.asarray(loss, float)
    cut = divergence_index(loss, beta)
    smoothed = np.full(len(loss), np.nan)
    if cut < 3:
        return Suggestion(smoothed, None, None, "the loss diverged within the first steps: scan lower learning "
                                                "rates (train.lr_finder.scan_range)")
    s = _ema(_ema(loss[:cut], beta)[::-1], beta)[::-1]  # forward, then backward: no delay
    smoothed[:cut] = s
    low = int(np.argmin(s))
    hi = float(lr[low]) / 10.0
    note = ""
    if cut == len(loss) and low >= 0.9 * (cut - 1):
        note = ("the loss was lowest at the end of the scan, which never diverged: the suggestion is cautious; "
                "a higher scan_range[1] shows where training becomes unstable")
    x = lr[:cut] if scale == "linear" else np.log(lr[:cut])
    below = np.nonzero(lr[:low + 1] <= hi)[0]
    best = hi / 3.0
    if len(below) >= 3:
        slope = np.gradient(s, x)
        steep = int(below[np.argmin(slope[below])])
        if slope[steep] < 0 and lr[steep] < hi:
            best = float(lr[steep])
    if hi <= lr[0]:
        note = (f"the loss was lowest at lr {lr[low]:.3g}, near the start of the scan: scan lower learning "
                "rates (train.lr_finder.scan_range)")
    elif len(below) < 3 and scale == "linear":
        note = (f"only {len(below)} scan step(s) lie below the suggested upper end {hi:.3g}: a log scan "
                "(train.lr_finder.scale: log) resolves low learning rates better")
    return Suggestion(smoothed, (min(best, hi / 3.0), hi), best, note)


# --- the scan ----------------------------------------------------------------------------------------


class _ScanRecorder(L.Callback):
    """Records each optimizer step's lr and mean training loss; stops at the divergence."""

    def __init__(self, beta: float) -> None:
        self.beta = beta
        self.lrs: list[float] = []
        self.losses: list[float] = []
        self._sum, self._count, self._step, self._lr = 0.0, 0, -1, 0.0
        self._avg, self._best = 0.0, math.inf
        self.stopped: str | None = None

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        if trainer.global_step != self._step:  # a new optimizer step (not the next accumulated batch)
            self._step = trainer.global_step
            self._sum, self._count = 0.0, 0
            self._lr = float(trainer.optimizers[0].param_groups[0]["lr"])

    def on_before_backward(self, trainer: L.Trainer, pl_module: L.LightningModule, loss: torch.Tensor) -> None:
        # the system stops at a non-finite loss right after this hook (TrainingDiverged); a loss scaler
        # (16-mixed) has scaled ``loss`` by then, which keeps it non-finite
        value = float(loss.detach().float())
        if not math.isfinite(value):
            self.lrs.append(self._lr)
            self.losses.append(value)
            self.stopped = f"the loss became {value} at lr {self._lr:.3g}"

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        # Lightning divides the step's loss by accumulate_grad_batches before backward
        self._sum += float(outputs["loss"]) * trainer.accumulate_grad_batches
        self._count += 1
        if trainer.global_step == self._step:  # still accumulating
            return
        self.lrs.append(self._lr)
        value = self._sum / self._count
        self.losses.append(value)
        n = len(self.losses)
        self._avg = self.beta * self._avg + (1.0 - self.beta) * value
        smooth = self._avg / (1.0 - self.beta ** n)
        if smooth > DIVERGENCE * self._best:
            self.stopped = f"the smoothed loss rose above {DIVERGENCE:g}x its lowest value at lr {self.lrs[-1]:.3g}"
            trainer.should_stop = True
        self._best = min(self._best, smooth)


def _rng_state() -> dict[str, Any]:
    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}


def _set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if state["cuda"] is not None:
        torch.cuda.set_rng_state_all(state["cuda"])


def _scan_trainer(cfg: ExperimentConfig, steps: int, steps_per_epoch: int, recorder: L.Callback,
                  root: Path) -> L.Trainer:
    from deepscope.training.trainer import step_numerics

    t = cfg.train
    return L.Trainer(
        default_root_dir=str(root),
        max_epochs=math.ceil(steps / steps_per_epoch),
        max_steps=steps,
        # the kind of device and the numerics of build_trainer, on one device: the scan runs before
        # the processes of a distributed run start
        devices=[t.devices[0]] if isinstance(t.devices, list) else 1,
        strategy="auto",
        num_nodes=1,
        **step_numerics(t),
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_val_batches=0,
        callbacks=[recorder],
        use_distributed_sampler=False,
    )


def scan_lr(system: L.LightningModule, loader: Any, cfg: ExperimentConfig, root: Path) -> LRScan:
    """Run the scan with ``system`` on ``loader`` and put the net and the random generators back.

    Args:
        system: the run's system; its net's weights are restored bit for bit afterwards.
        loader: a fresh training loader (the real one keeps its own position).
        cfg: the run's config (``train.lr_finder`` and the trainer's settings).
        root: a folder for the trainer (nothing is written there).
    """
    finder = cfg.train.lr_finder
    lo, hi = (float(v) for v in finder.scan_range)
    per_epoch = max(1, math.ceil(len(loader) / cfg.train.accumulate_grad_batches))
    steps = max(2, round(finder.epochs * per_epoch))
    spec = ScheduleSpec("lr_scan", lo, hi, 1.0, {"scale": finder.scale}, steps, 1)
    weights = copy.deepcopy(system.net.state_dict())
    rng = _rng_state()
    saved = system.schedule, system.epoch_lines
    system.schedule, system.epoch_lines = spec, False
    recorder = _ScanRecorder(smoothing_beta(steps))
    trainer = _scan_trainer(cfg, steps, per_epoch, recorder, root)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*no `val_dataloader`.*")
            trainer.fit(system, train_dataloaders=loader)
    except TrainingDiverged:
        pass  # recorded; the scan ends there
    finally:
        system.net.load_state_dict(weights)
        system.schedule, system.epoch_lines = saved
        system.lr_history.clear()
        _set_rng_state(rng)
    lrs, losses = trainer.strategy.broadcast((recorder.lrs, recorder.losses), src=0)
    return LRScan(np.asarray(lrs, float), np.asarray(losses, float), (lo, hi), finder.scale, steps,
                  recorder.stopped)


# --- files, prompt and choice ------------------------------------------------------------------------


def save_scan(scan: LRScan, sug: Suggestion, run: RunDir, figures: bool) -> None:
    """``lr_finder/lr_finder.csv`` and ``.h5``, and the two figures (when ``figures``)."""
    import h5py

    folder = run.lr_finder
    folder.mkdir(parents=True, exist_ok=True)
    steps = np.arange(len(scan.lr))
    lines = ["step,lr,loss,smoothed_loss"]
    lines += [f"{i},{lr!r},{loss!r},{'' if not np.isfinite(s) else repr(float(s))}"
              for i, lr, loss, s in zip(steps.tolist(), scan.lr.tolist(), scan.loss.tolist(), sug.smoothed)]
    atomic_write_text(folder / "lr_finder.csv", "\n".join(lines) + "\n")
    with h5py.File(folder / "lr_finder.h5", "w") as f:
        f["step"], f["lr"], f["loss"], f["smoothed_loss"] = steps, scan.lr, scan.loss, sug.smoothed
        f.attrs["scan_range"] = np.asarray(scan.scan_range, float)
        f.attrs["scale"] = scan.scale
        f.attrs["suggestion"] = np.asarray(sug.range if sug.range else [], float)
        f.attrs["suggested_lr"] = float("nan") if sug.lr is None else sug.lr
    if figures:
        plots.lr_finder_figures(scan.lr, scan.loss, sug.smoothed, scan.scale, sug.range, sug.lr,
                                run.figures / "lr_finder_loss.png", run.figures / "lr_finder_lr.png")


def _ask(question: str, count: int) -> list[float] | None:
    """Numbers typed at the terminal: ``count`` positive floats (increasing), or ``None`` for Enter."""
    while True:
        try:
            answer = input(question).strip()
        except EOFError:
            return None
        if not answer:
            return None
        try:
            values = [float(v) for v in answer.replace(",", " ").split()]
        except ValueError:
            values = []
        if len(values) == count and all(math.isfinite(v) and v > 0 for v in values) and values == sorted(set(values)):
            return values
        want = "two positive numbers, the lower first (e.g. 1e-3 5e-3)" if count == 2 else "one positive number"
        log.warning(f"'{answer}' is not {want}; try again, or press Enter for the suggestion")


def choose(sug: Suggestion, cfg: ExperimentConfig) -> tuple[LRChoice, str]:
    """What to train with, and where it came from (``suggestion``, ``typed`` or ``none``)."""
    finder = cfg.train.lr_finder
    with_range = cfg.train.lr_schedule is not None
    typed = None
    if finder.prompt_for_input:
        if sys.stdin is not None and sys.stdin.isatty():
            shown = (f"[{sug.range[0]:.3g} {sug.range[1]:.3g}]" if with_range else f"{sug.lr:.3g}") if sug.range \
                else "none"
            question = (f"learning-rate range to use [lo hi] (Enter = suggestion {shown}): " if with_range
                        else f"learning rate to use (Enter = suggestion {shown}): ")
            typed = _ask(question, 2 if with_range else 1)
        else:
            log.info("train.lr_finder.prompt_for_input: no terminal to ask at; the suggestion is used")
    if typed is not None:
        return (LRChoice(range=(typed[0], typed[1])) if with_range else LRChoice(lr=typed[0])), "typed"
    if not (finder.use_suggestion or finder.prompt_for_input):
        return LRChoice(), "none"
    if sug.range is None:
        log.warning(f"lr finder: no suggestion ({sug.note}); training with the configured learning rate")
        return LRChoice(), "none"
    return (LRChoice(range=sug.range) if with_range else LRChoice(lr=sug.lr)), "suggestion"


def _write_choice(path: Path, scan: LRScan, sug: Suggestion, choice: LRChoice, source: str) -> None:
    record = {
        "scan_range": list(scan.scan_range), "scale": scan.scale, "steps_planned": scan.steps,
        "steps_done": len(scan.lr), "stopped": scan.stopped,
        "suggested_range": list(sug.range) if sug.range else None, "suggested_lr": sug.lr, "note": sug.note,
        "used": source != "none", "source": source,
        "range": list(choice.range) if choice.range else None, "lr": choice.lr,
    }
    atomic_write_text(path, json.dumps(record, indent=2) + "\n")


def load_choice(run: RunDir, cfg: ExperimentConfig) -> LRChoice:
    """The choice a run made when it started (resume: the finder does not run again).

    Raises:
        CheckpointError: ``suggestion.json`` is missing or unreadable while the run trains with it.
    """
    path = run.lr_finder / "suggestion.json"
    finder = cfg.train.lr_finder
    wanted = finder.use_suggestion or finder.prompt_for_input
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        if not wanted:
            return LRChoice()
        raise CheckpointError(f"'{path}' cannot be read ({type(exc).__name__}); it holds the learning rate this run "
                              "was started with, so the run cannot be resumed as it was: start a new run "
                              "(--new-version)") from None
    choice = LRChoice(range=tuple(record["range"]) if record.get("range") else None, lr=record.get("lr"))
    if record.get("used"):
        log.info(f"lr finder: training with the {_describe(choice)} chosen when the run started ({path})")
    return choice


def _describe(choice: LRChoice) -> str:
    if choice.range is not None:
        return f"lr range [{choice.range[0]:.3g}, {choice.range[1]:.3g}]"
    return f"lr {choice.lr:.3g}" if choice.lr is not None else "configured learning rate"


def find_lr(system: L.LightningModule, loader: Any, cfg: ExperimentConfig, run: RunDir) -> LRChoice:
    """Scan, suggest, save, ask (when configured) and return what the run trains with.

    Logs the suggested range; writes the files and figures in ``run`` (global rank 0 only).
    """
    log.info(f"lr finder: scanning lr {cfg.train.lr_finder.scan_range[0]:g} -> {cfg.train.lr_finder.scan_range[1]:g} "
             f"({cfg.train.lr_finder.scale}) over {cfg.train.lr_finder.epochs:g} epoch(s)")
    scan = scan_lr(system, loader, cfg, run.lr_finder)
    sug = suggest(scan.lr, scan.loss, scan.scale, smoothing_beta(scan.steps))
    main = _is_global_zero()
    if main:
        save_scan(scan, sug, run, cfg.log.figures)
    stop = f"; stopped early: {scan.stopped}" if scan.stopped else ""
    if sug.range is not None:
        log.info(f"lr finder: suggested range [{sug.range[0]:.3g}, {sug.range[1]:.3g}], suggested lr {sug.lr:.3g} "
                 f"({len(scan.lr)} steps{stop}); see {run.lr_finder}")
    else:
        log.warning(f"lr finder: no suggestion: {sug.note} ({len(scan.lr)} steps{stop})")
    if sug.note and sug.range is not None:
        log.info(f"lr finder: {sug.note}")
    choice, source = choose(sug, cfg) if main else (LRChoice(), "none")
    if main:
        _write_choice(run.lr_finder / "suggestion.json", scan, sug, choice, source)
    choice, source = _from_rank_zero((choice, source))
    if source != "none":
        log.info(f"lr finder: training with the {_describe(choice)} ({source})")
    elif sug.range is not None and not (cfg.train.lr_finder.use_suggestion or cfg.train.lr_finder.prompt_for_input):
        log.info("lr finder: the suggestion is not used (train.lr_finder.use_suggestion: true would use it)")
    return choice


def _distributed() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def _is_global_zero() -> bool:
    return not _distributed() or torch.distributed.get_rank() == 0


def _from_rank_zero(value: Any) -> Any:
    """Every process continues with rank 0's value (the one that may have asked at the terminal)."""
    if not _distributed():
        return value
    box = [value]
    torch.distributed.broadcast_object_list(box, src=0)
    return box[0]
