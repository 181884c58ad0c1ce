"""Training on several processes (Lightning DDP): who writes, and what the processes share.

Lightning's ``ddp`` strategy starts processes 1..N-1 of a machine by running the same command line
again (``LOCAL_RANK`` etc. in their environment); under SLURM ``srun`` or ``torchrun`` the launcher
starts every process. Either way global rank 0 alone writes the run folder, and every process trains
from the same folder with the same resume decision:

- rank 0 hands both down to the processes Lightning starts, through an environment variable they
  inherit (:func:`handing_down`, :func:`handed_down_run`);
- processes started by ``srun`` find the folder by its name, as rank 0 does; :class:`DistributedSetup`
  checks at the start of fit that every process made the same resume decision and gives them the
  folder rank 0 chose (with ``--new-version`` only rank 0 knows it).

The training loss is normalized by the whole global batch (:func:`global_batch_loss`) and the epoch
metrics are computed on every process's outputs together (:func:`gather_outputs`), so that N
processes with batch B train, log, checkpoint and stop like one process with batch N·B.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
import torch.distributed as dist

from deepscope.errors import CheckpointError
from deepscope.training.environment import device_problem  # re-exported: the pre-flight checks import it from there
from deepscope.training.processes import (RUN_ENV, handed_down_run, handing_down, process_count,  # re-exported
                                          starts_as_rank_zero)
from deepscope.training.quiet import quiet_lightning

__all__ = ["DistributedSetup", "RUN_ENV", "StopTogether", "device_problem", "gather_outputs", "global_batch_loss",
           "handed_down_run", "handing_down", "process_count", "starts_as_rank_zero"]

class DistributedSetup(L.Callback):
    """At the start of fit: shard the loaders by global rank and agree on the run folder.

    The loaders are built knowing the number of processes (it sets their length); which share is this
    process's is set here, in the process that trains (with ``ddp_spawn`` not the one that built them).
    With several processes, every process's resume decision is compared (a disagreement means the
    processes do not see the same files, e.g. ``log.dir`` is not on a filesystem every node shares)
    and ``run.path`` becomes rank 0's.

    Args:
        run: the run folder (an object with a ``path``); its path is replaced by rank 0's.
        resume: whether this process resumes from ``last.ckpt``.
        loaders: :class:`~deepscope.data.dataset.BatchLoader` s whose samplers to shard.
    """

    def __init__(self, run: Any, resume: bool, loaders: Sequence[Any] = ()) -> None:
        self.run, self.resume, self.loaders = run, resume, list(loaders)

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        quiet_lightning()  # again: ddp_spawn trains in fresh processes
        for loader in self.loaders:
            loader.sampler.shard(trainer.world_size, trainer.global_rank)
        if trainer.world_size < 2 or not dist.is_initialized():
            return
        views: list[Any] = [None] * trainer.world_size
        dist.all_gather_object(views, (str(self.run.path), self.resume))
        resuming = [rank for rank, (_, resume) in enumerate(views) if resume]
        if 0 < len(resuming) < len(views):
            raise CheckpointError(
                f"the training processes disagree on resuming '{views[0][0]}': ranks {resuming} found "
                f"checkpoints/last.ckpt, the others did not. Put log.dir on a filesystem every node sees")
        self.run.path = Path(views[0][0])


class StopTogether(L.Callback):
    """Under DDP, stop every process at the end of the same step on Ctrl-C or SIGTERM.

    Lightning's own handling lets each process stop where it sees the signal (and its SIGTERM
    handler calls a collective from inside the handler), which can leave the processes waiting for
    each other (Lightning-AI/pytorch-lightning#20806). Here the handlers only note the signal; after
    every training batch the processes add up their notes (one all-reduce of one number) and, when
    any process was signalled, all of them take Lightning's SIGTERM exit at the end of that step:
    :class:`~deepscope.training.callbacks.InterruptCheckpoint` saves ``last.ckpt`` and the run
    stops. A second Ctrl-C interrupts at once.
    """

    def __init__(self) -> None:
        self._signalled = False
        self._previous: dict[int, Any] = {}

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._signalled = False
        if trainer.world_size < 2 or threading.current_thread() is not threading.main_thread():
            return
        for signum in (signal.SIGINT, signal.SIGTERM):
            self._previous[signum] = signal.signal(signum, self._note)

    def _note(self, signum: int, frame: Any) -> None:
        if self._signalled and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self._signalled = True

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        if not self._previous:
            return
        signalled = torch.tensor([float(self._signalled)], device=trainer.strategy.root_device)
        dist.all_reduce(signalled)
        if signalled.item() > 0:
            # every process at once: Lightning raises SIGTERMException at the end of this step
            trainer._signal_connector.received_sigterm = True

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}


def global_batch_loss(per_sample: torch.Tensor, weights: torch.Tensor | None,
                      world_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """This process's loss for DDP, and the (weighted) mean loss over the global batch.

    DDP averages the processes' gradients. Dividing this process's weighted sum by the *global*
    batch's total weight, times the number of processes, makes that average the gradient of the
    global batch's mean — what one process with the whole batch computes, also for the uneven last
    batch of an epoch and with sample weights. Costs one all-reduce of two numbers per step.

    Args:
        per_sample: ``(B,)`` losses of this process's samples.
        weights: ``(B,)`` sample weights, or ``None``.
        world_size: number of processes.

    Returns:
        The loss to back-propagate (scalar) and the global batch's mean loss (scalar, detached; the
        same on every process).
    """
    w = torch.ones_like(per_sample) if weights is None else weights.to(per_sample.dtype)
    total = (per_sample * w).sum()
    sums = torch.stack([total.detach(), w.sum().detach()]).float()  # (2,)
    dist.all_reduce(sums)
    denominator = sums[1].clamp_min(1e-12)
    return total * world_size / denominator, sums[0] / denominator


def gather_outputs(chunks: list[tuple[Any, ...]], world_size: int) -> list[tuple[Any, ...]] | None:
    """Every process's per-batch outputs, on rank 0 in the order one process would have them.

    Rank r's k-th batch is the r-th slice of global batch k (see
    :class:`~deepscope.data.dataset.BatchIndexSampler`), so taking the chunks step by step, rank 0
    first, restores one process's order. A sample repeated to pad the last evaluation batch (same
    sample index, the chunk's last element) is kept once.

    Args:
        chunks: this process's ``(outputs, targets, per_sample, weights, index)`` tuples, one per batch.
        world_size: number of processes (all must call this).

    Returns:
        The chunks of every process on rank 0; ``None`` on the others.
    """
    rank = dist.get_rank()
    per_rank: list[Any] | None = [None] * world_size if rank == 0 else None
    dist.gather_object(chunks, per_rank, dst=0)
    if per_rank is None:
        return None
    steps = max((len(c) for c in per_rank), default=0)
    ordered = [c[k] for k in range(steps) for c in per_rank if k < len(c)]
    return _drop_repeats(ordered)


def _drop_repeats(chunks: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    if not chunks or chunks[0][-1] is None:
        return chunks
    index = np.concatenate([c[-1] for c in chunks])
    _, first = np.unique(index, return_index=True)
    if len(first) == len(index):
        return chunks
    keep = np.zeros(len(index), dtype=bool)
    keep[first] = True
    out, start = [], 0
    for chunk in chunks:
        mask = keep[start:start + len(chunk[-1])]
        start += len(chunk[-1])
        if mask.any():
            out.append(tuple(None if a is None else a[mask] for a in chunk))
    return out
