"""Where a loader keeps its samples: on the training device, or on the host (``data.on_device``).

Small detector images make GPU training loader-bound: reading, standardizing and copying a batch of
56×11 images takes longer than the model's step on it. When a split fits in the GPU's memory, the
loader holds it there once and draws each batch by index on the device
(:meth:`deepscope.data.dataset.BatchLoader.held`); otherwise batches come from host memory, pinned,
and Lightning copies them without blocking while the previous step runs.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from deepscope.data.arrays import ArraySet
from deepscope.training.environment import training_device

__all__ = ["AUTO_FRACTION", "loader_device"]

log = logging.getLogger("deepscope")

AUTO_FRACTION = 0.25  # auto holds a split on the GPU when it takes at most this share of its free memory


def _split_bytes(store: Any, indices: np.ndarray) -> int:
    """Bytes the split's samples take as float32 (int64 labels), from one read sample."""
    one = store.read(np.asarray(indices[:1]))

    def size(batch: dict[str, Any]) -> int:
        return sum(size(v) if isinstance(v, dict) else int(np.prod(v.shape[1:])) * (8 if v.dtype.kind in "iu" else 4)
                   for v in batch.values())

    return size(one) * len(indices)


def _free_gpu_bytes() -> int:
    import torch

    try:
        free, _ = torch.cuda.mem_get_info()
        return int(free)
    except (RuntimeError, AssertionError):  # no usable CUDA device
        return 0


def loader_device(cfg: Any, store: Any, indices: np.ndarray, transform: Any, processes: int) -> str | None:
    """The device a split's loader holds its samples on, or None for the host.

    Args:
        cfg: the experiment config (``data.on_device``, ``train.accelerator``).
        store: the split's store (in memory: an :class:`ArraySet`; else lazy).
        indices: the split's samples in ``store``.
        transform: the numpy transform applied per batch (augmentation, crops), or None.
        processes: training processes (DDP).
    """
    choice = cfg.data.on_device
    device = training_device(cfg.train)
    if choice is False or transform is not None:
        return None  # a numpy transform per batch needs the batch on the host
    if choice is True:
        return device
    if device != "cuda" or processes > 1 or not isinstance(store, ArraySet):
        return None
    need, free = _split_bytes(store, indices), _free_gpu_bytes()
    if need > AUTO_FRACTION * free:
        log.info("data.on_device auto: the split takes %.0f MiB, more than %.0f%% of the GPU's %.0f MiB free; "
                 "batches come from pinned host memory", need / 2**20, 100 * AUTO_FRACTION, free / 2**20)
        return None
    return device
