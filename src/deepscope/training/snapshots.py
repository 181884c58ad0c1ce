"""Weight snapshots during training (``log.weight_snapshots``), as DeepCalo logged its weights.

After every n-th epoch, and after the last one, the net's ``state_dict`` goes to
``weights/epoch_<n>.pt`` and, with figures on, one histogram per weight tensor to
``figures/weights/epoch_<n>.png``. ``<n>`` counts finished epochs from 1 (``epoch_0005`` holds the
weights after five epochs: the row ``epoch`` 4 of ``metrics.csv``). A resumed run adds to the
snapshots already there.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch import nn

from deepscope.evaluation import plots
from deepscope.training.callbacks import atomic_write

__all__ = ["WeightSnapshots", "save_weights", "snapshot_name"]


def snapshot_name(epochs_done: int) -> str:
    """``epoch_0005`` for the weights after five epochs."""
    return f"epoch_{epochs_done:04d}"


def save_weights(state: dict[str, torch.Tensor], path: Path) -> Path:
    """Write a ``state_dict`` (CPU tensors only, loadable with ``weights_only=True``) atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu() for k, v in state.items()}
    return atomic_write(path, lambda f: torch.save(tensors, f))


class WeightSnapshots(L.Callback):
    """Saves the net's weights every ``every_n_epochs`` epochs and after the last epoch (rank 0 only).

    Args:
        weights_dir: folder of the ``.pt`` files (``<run>/weights``).
        figures_dir: folder of the histogram figures (``<run>/figures/weights``), or ``None`` for none.
        every_n_epochs: save after epochs n, 2n, 3n, … (counted from 1).
    """

    def __init__(self, weights_dir: Path, figures_dir: Path | None, every_n_epochs: int = 1) -> None:
        if every_n_epochs < 1:
            raise ValueError(f"every_n_epochs must be at least 1, got {every_n_epochs}")
        self.weights_dir = Path(weights_dir)
        self.figures_dir = None if figures_dir is None else Path(figures_dir)
        self.every_n_epochs = every_n_epochs
        self._finished: int | None = None  # epochs finished so far in this fit
        self._saved: int | None = None  # the last snapshot written in this fit

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        self._finished = trainer.current_epoch + 1
        if self._finished % self.every_n_epochs == 0 or self._finished >= trainer.max_epochs:
            self.snapshot(getattr(pl_module, "net", pl_module), self._finished)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # early stopping or train.max_steps can end training before the last configured epoch
        if trainer.is_global_zero and self._finished is not None and self._saved != self._finished:
            self.snapshot(getattr(pl_module, "net", pl_module), self._finished)

    def snapshot(self, net: nn.Module, epochs_done: int) -> Path:
        """Write the weights after ``epochs_done`` epochs (and their figure); returns the ``.pt`` path."""
        name = snapshot_name(epochs_done)
        path = save_weights(net.state_dict(), self.weights_dir / f"{name}.pt")
        if self.figures_dir is not None:
            params = {k: _numpy(p) for k, p in net.named_parameters()}
            plots.weight_histograms_figure(params, self.figures_dir / f"{name}.png",
                                           title=f"weights after epoch {epochs_done}")
        self._saved = epochs_done
        return path


def _numpy(t: torch.Tensor) -> Any:
    return t.detach().float().cpu().numpy()
