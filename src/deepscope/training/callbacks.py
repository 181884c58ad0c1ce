"""Callbacks, loggers and checkpoint IO that make runs safe to interrupt and easy to read."""

from __future__ import annotations

import csv
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import lightning as L
from lightning.pytorch.loggers import Logger
from lightning.pytorch.plugins.io import TorchCheckpointIO
from lightning.pytorch.utilities import rank_zero_only
from lightning.pytorch.utilities.exceptions import SIGTERMException

__all__ = ["AtomicCheckpointIO", "atomic_write", "EpochCSVLogger", "InterruptCheckpoint", "LRLog", "LoaderProgress",
           "atomic_write_text"]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_FILE_MODE = 0o666 & ~_umask()  # what open() would give: mkstemp's 0600 would hide runs from colleagues


def atomic_write(path: Path, write: Callable[[BinaryIO], None]) -> Path:
    """Write ``path`` through ``write(file)`` on a temporary file in the same folder and a rename, so
    the file is never half-written; a failure leaves the previous file as it was."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, _FILE_MODE)
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically (:func:`atomic_write`)."""
    atomic_write(path, lambda f: f.write(text.encode("utf-8")))


class AtomicCheckpointIO(TorchCheckpointIO):
    """Saves checkpoints to a temporary file in the same folder, then renames it into place.

    A crash or a kill during a save leaves the previous checkpoint intact.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any = None) -> None:
        import torch

        atomic_write(Path(path), lambda f: torch.save(checkpoint, f))

    def load_checkpoint(self, path: Any, map_location: Any = None, weights_only: bool | None = None) -> dict[str, Any]:
        return super().load_checkpoint(path, map_location=map_location, weights_only=True)


class InterruptCheckpoint(L.Callback):
    """On Ctrl-C or SIGTERM, save ``last.ckpt`` (mid-epoch state included) before the run exits.

    A NaN stop or any other error saves nothing, so the last good checkpoint stays.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.saved_at: tuple[int, int] | None = None

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        if isinstance(exception, (KeyboardInterrupt, SIGTERMException)) and trainer.global_step > 0:
            if isinstance(exception, KeyboardInterrupt) and trainer.world_size > 1:
                # under DDP, Lightning stops every process at the same step on SIGTERM, but each one
                # sees Ctrl-C where it happens to be: no barrier (Trainer.save_checkpoint waits in
                # one); rank 0 writes its state, the others write nothing
                checkpoint = trainer._checkpoint_connector.dump_checkpoint(weights_only=False)
                trainer.strategy.save_checkpoint(checkpoint, self.path)
            else:
                trainer.save_checkpoint(self.path)
            self.saved_at = (trainer.current_epoch, trainer.global_step)


class LoaderProgress(L.Callback):
    """Tells a resumable training loader (``BatchLoader``) each time a batch has been trained on."""

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        loader = trainer.train_dataloader
        if hasattr(loader, "batch_done"):
            loader.batch_done()


class LRLog(L.Callback):
    """``lr.csv``: the lr (and the momentum, when the schedule cycles it) of every optimizer step.

    Rows are appended after every epoch (and on an interruption), so the file survives one. When
    training starts, rows at steps about to be trained again are dropped (all of them for a new run,
    those from the resumed step on for a resume), so the file covers the run as it now stands from
    step 0, across resumes. Only global rank 0 writes.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.rows: list[str] = []
        self.momentum = False
        self._last_step = -1

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        configs = trainer.lr_scheduler_configs
        schedule = getattr(configs[0].scheduler, "schedule", None) if configs else None
        self.momentum = getattr(schedule, "momentum", None) is not None
        self.rows, self._last_step = [], -1
        if not trainer.is_global_zero:
            return
        kept = []
        if self.path.exists():
            lines = self.path.read_text(encoding="utf-8").splitlines()[1:]
            kept = [line for line in lines if line and int(line.split(",", 1)[0]) < trainer.global_step]
        header = "step,lr,momentum" if self.momentum else "step,lr"
        atomic_write_text(self.path, "\n".join([header, *kept]) + "\n")

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        step = trainer.global_step
        if step == self._last_step:  # gradient accumulation: one row per optimizer step
            return
        self._last_step = step
        group = trainer.optimizers[0].param_groups[0]
        row = f"{step},{float(group['lr'])!r}"
        if self.momentum:
            row += f",{float(group['betas'][0] if 'betas' in group else group.get('momentum', 0.0))!r}"
        self.rows.append(row)

    def _flush(self, trainer: L.Trainer) -> None:
        rows, self.rows = self.rows, []
        if rows and trainer.is_global_zero:
            with self.path.open("a", encoding="utf-8") as f:
                f.write("\n".join(rows) + "\n")

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._flush(trainer)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._flush(trainer)

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        self._flush(trainer)


class EpochCSVLogger(Logger):
    """``metrics.csv`` with one row per epoch (train and val values side by side).

    On resume, rows of epochs that are about to be trained again are dropped, so the file always
    describes the run as it now stands.

    Lightning calls :meth:`save` after every ``log_metrics`` (every ``log.every_n_steps`` steps);
    the file is rewritten only when a row changed, at most once per epoch: rewriting it each time
    cost about 0.1 ms per training step (bench/README.md, overhead).
    """

    reads_step_values = False  # per-step values (``*_step``) are dropped: the system need not log them

    def __init__(self, path: Path, resume_epoch: int | None = None) -> None:
        super().__init__()
        self.path = Path(path)
        self.rows: dict[int, dict[str, float]] = {}
        self._dirty = resume_epoch is not None  # a resumed run drops the rows it trains again
        if resume_epoch is not None and self.path.exists():
            with self.path.open(newline="") as f:
                for row in csv.DictReader(f):
                    epoch = int(float(row["epoch"]))
                    if epoch < resume_epoch:
                        self.rows[epoch] = {k: float(v) for k, v in row.items() if v not in ("", None)}

    @property
    def name(self) -> str:
        return "csv"

    @property
    def version(self) -> str:
        return ""

    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        pass

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        if "epoch" not in metrics:
            return
        epoch = int(metrics["epoch"])
        kept = {k: float(v) for k, v in metrics.items() if not k.endswith("_step")}
        if len(kept) > 1:  # per-step calls carry only 'epoch' besides *_step values
            row = self.rows.setdefault(epoch, {"epoch": float(epoch)})
            row.update(kept)
            if step is not None:
                row["step"] = float(step)
            self._dirty = True

    @rank_zero_only  # every process has the same rows (the epoch values are gathered); one writes
    def save(self) -> None:
        if not (self._dirty and self.rows):
            return
        keys = ["epoch", "step"] + sorted({k for r in self.rows.values() for k in r} - {"epoch", "step"})
        lines = [",".join(keys)]
        for epoch in sorted(self.rows):
            row = self.rows[epoch]
            lines.append(",".join(_fmt(row.get(k)) for k in keys))
        atomic_write_text(self.path, "\n".join(lines) + "\n")
        self._dirty = False

    def finalize(self, status: str) -> None:
        self.save()


def _fmt(value: float | None) -> str:
    if value is None:
        return ""
    return str(int(value)) if float(value).is_integer() and abs(value) < 1e15 else repr(float(value))
