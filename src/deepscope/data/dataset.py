"""Batch-level datasets: one ``__getitem__`` call returns a whole batch.

Per-sample ``__getitem__`` + collate is the classic bottleneck for small detector images; here the
sampler yields index arrays, the store reads them in one fancy-indexing call (sorted, so HDF5 reads
are sequential), and the loader passes batches through without collating.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, Protocol

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from deepscope.data.arrays import ArraySet
from deepscope.data.standardize import Standardizer

__all__ = ["BatchDataset", "BatchIndexSampler", "BatchLoader", "SampleStore", "to_tensors"]


class SampleStore(Protocol):
    """Anything that reads a batch of samples by index (in memory, HDF5, …)."""

    def __len__(self) -> int: ...

    def read(self, indices: np.ndarray) -> dict[str, Any]: ...


def to_tensors(batch: dict[str, Any]) -> dict[str, Any]:
    """numpy batch -> torch tensors (float32; integer labels int64), sharing memory where possible."""
    out: dict[str, Any] = {}
    for key, value in batch.items():
        if isinstance(value, dict):
            out[key] = to_tensors(value)
        elif isinstance(value, np.ndarray):
            if np.issubdtype(value.dtype, np.integer):
                out[key] = torch.from_numpy(np.ascontiguousarray(value, dtype=np.int64))
            else:
                out[key] = torch.from_numpy(np.ascontiguousarray(value, dtype=np.float32))
        else:
            out[key] = value
    return out


class BatchDataset(Dataset):
    """Batches of one split of a :class:`SampleStore`, standardized.

    Args:
        store: where samples are read from.
        indices: the split's sample indices in ``store``.
        standardizer: applied to every batch (numpy, inside the worker).
        transform: applied to every standardized numpy batch after it (augmentation, crops).
    """

    def __init__(self, store: SampleStore, indices: np.ndarray, standardizer: Standardizer | None = None,
                 transform: Callable[[dict[str, Any]], dict[str, Any]] | None = None) -> None:
        self.store = store
        self.indices = np.asarray(indices, dtype=np.int64)
        self.standardizer = standardizer
        self.transform = transform

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, positions: np.ndarray | tuple[int, np.ndarray]) -> dict[str, Any]:
        # (epoch, positions) from a sampler that tells the epoch (random transforms draw per epoch;
        # persistent loader workers never see a set_epoch made in the main process)
        epoch = None
        if isinstance(positions, tuple):
            epoch, positions = positions
        idx = self.indices[np.asarray(positions)]
        if isinstance(self.store, ArraySet):  # in memory: sorting gains nothing and reordering copies the batch
            batch = self.store.read(idx)
        else:
            order = np.argsort(idx, kind="stable")
            batch = self.store.read(idx[order])  # sorted reads: contiguous for HDF5
            if not np.all(order[:-1] <= order[1:]):
                inverse = np.empty_like(order)
                inverse[order] = np.arange(len(order))
                batch = _reorder(batch, inverse)
        if self.standardizer is not None:
            batch = self.standardizer.transform(batch)
        batch["index"] = idx
        if self.transform is not None:
            batch = self.transform(batch, epoch=epoch)
        return to_tensors(batch)


def _reorder(batch: dict[str, Any], order: np.ndarray) -> dict[str, Any]:
    return {k: (_reorder(v, order) if isinstance(v, dict) else v[order]) for k, v in batch.items()}


def _to_device(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    return {k: (_to_device(v, device) if isinstance(v, dict) else v.to(device)) for k, v in batch.items()}


def _index(held: dict[str, Any], idx: torch.Tensor) -> dict[str, Any]:
    return {k: (_index(v, idx) if isinstance(v, dict) else v.index_select(0, idx)) for k, v in held.items()}


class BatchIndexSampler(Sampler[np.ndarray]):
    """Yields arrays of positions, one per batch; reshuffled per epoch from ``(seed, epoch)``.

    Under DDP, ``batch_size`` is per process and the epoch is cut into *global* batches of
    ``batch_size * num_replicas`` samples taken from the same permutation a single process uses;
    process ``rank`` gets the ``rank``-th slice of each. So N processes with batch B see, step by
    step, exactly the samples one process sees with batch N·B. Every process yields the same number
    of batches (DDP synchronizes every training step). The last, partial global batch of R samples
    is split as evenly as possible (slices differ by at most one sample); when R < num_replicas some
    process would get nothing, and then the samplers agree on one of two things: with
    ``pad=False`` (training) that remainder is dropped for this epoch — the next epoch's permutation
    puts those samples elsewhere —, with ``pad=True`` (evaluation) the processes left empty repeat the
    remainder's last sample, which the epoch metrics count once (they de-duplicate by sample index).

    Args:
        n: number of samples in the split.
        batch_size: samples per batch (per process under DDP).
        shuffle: permute each epoch.
        seed: base seed; the permutation of epoch e depends only on (seed, e), so a resumed run
            sees the same order.
        drop_last: drop the last batch when it is partial.
        num_replicas, rank: the number of processes and this one's global rank (DDP).
        pad: see above.
        block: shuffle chunk-locally: permute the order of blocks of ``block`` consecutive positions
            (a file's storage chunks), then the positions within windows of a few neighbouring blocks
            (at least two, and at least two global batches), so that each batch reads few chunks.
            None: every batch is drawn from the whole split.
    """

    def __init__(self, n: int, batch_size: int, shuffle: bool, seed: int = 0, drop_last: bool = False,
                 num_replicas: int = 1, rank: int = 0, pad: bool = False, block: int | None = None) -> None:
        self.n, self.batch_size, self.shuffle, self.seed = n, batch_size, shuffle, seed
        self.drop_last, self.pad, self.block = drop_last, pad, block
        self.num_replicas, self.rank = 1, 0
        self.shard(num_replicas, rank)
        self.epoch = 0
        self.skip = 0  # batches to skip at the start of the next iteration (mid-epoch resume)

    def shard(self, num_replicas: int, rank: int) -> None:
        """Take this process's share of every global batch (``rank`` of ``num_replicas``)."""
        if num_replicas < 1 or not 0 <= rank < num_replicas:
            raise ValueError(f"rank {rank} is outside 0..{num_replicas - 1} (num_replicas {num_replicas})")
        self.num_replicas, self.rank = num_replicas, rank

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    with_epoch = False  # yield (epoch, positions) instead of positions (set by BatchLoader when needed)

    def _order(self) -> np.ndarray:
        """This epoch's order of the positions."""
        if not self.shuffle:
            return np.arange(self.n)
        rng = np.random.default_rng([self.seed, self.epoch])
        if not self.block or self.block <= 1:
            return rng.permutation(self.n)
        block = int(self.block)
        starts = rng.permutation(np.arange(0, self.n, block))
        order = np.concatenate([np.arange(s, min(s + block, self.n)) for s in starts])
        window = block * max(2, -(-2 * self.batch_size * self.num_replicas // block))
        for start in range(0, self.n, window):
            rng.shuffle(order[start:start + window])  # in place, within the window
        return order

    def _batches(self) -> list[np.ndarray]:
        order = self._order()
        b, w, r = self.batch_size, self.num_replicas, self.rank
        full = self.n // (b * w)
        batches = [order[k * b * w + r * b:k * b * w + (r + 1) * b] for k in range(full)]
        rest = order[full * b * w:]
        if len(rest) and not (self.drop_last or (len(rest) < w and not self.pad)):
            part = np.array_split(rest, w)[r]
            batches.append(part if len(part) else rest[-1:])
        return batches

    def __iter__(self) -> Iterator[np.ndarray]:
        skip, self.skip = self.skip, 0
        if self.with_epoch:
            yield from ((self.epoch, batch) for batch in self._batches()[skip:])
        else:
            yield from self._batches()[skip:]

    def __len__(self) -> int:
        w = self.num_replicas
        full, rest = divmod(self.n, self.batch_size * w)
        return full + (1 if rest and not (self.drop_last or (rest < w and not self.pad)) else 0)


class BatchLoader(DataLoader):
    """A DataLoader over a :class:`BatchDataset` that can resume mid-epoch.

    It implements ``state_dict``/``load_state_dict`` (Lightning saves them in checkpoints): an
    interrupted epoch continues with the batches it had not yet trained on, in the same order.
    The training loop reports each finished batch through :meth:`batch_done` (Lightning prefetches
    a batch ahead, so counting the batches handed out would skip one on resume).
    """

    def __init__(self, dataset: BatchDataset, sampler: BatchIndexSampler, num_workers: int = 0,
                 pin_memory: bool = False, prefetch: int = 2, device: str | torch.device | None = None) -> None:
        super().__init__(dataset, sampler=sampler, batch_size=None, num_workers=num_workers,
                         pin_memory=pin_memory and device is None, persistent_workers=num_workers > 0,
                         prefetch_factor=prefetch if num_workers > 0 else None)
        self._done = 0
        self._resume_at = 0
        sampler.with_epoch = dataset.transform is not None
        if device is not None and dataset.transform is not None:
            raise ValueError("a loader holding its data on a device cannot apply a numpy transform per batch")
        self.device = device
        self._held: dict[str, Any] | None = None

    def __iter__(self) -> Iterator[dict[str, Any]]:  # type: ignore[override]
        start, self._resume_at = self._resume_at, 0
        self.sampler.skip = start
        self._done = start
        if self.device is not None:
            return self._on_device()
        if self.num_workers == 0 and not self.pin_memory:
            return self._in_process()
        return super().__iter__()

    def held(self) -> dict[str, Any]:
        """The split's samples as tensors on :attr:`device` (standardized), moved there on first use.

        ``"cuda"`` means the current CUDA device, which Lightning sets for each process before it asks
        for batches.
        """
        if self._held is None:
            device = torch.device(self.device)
            if device.type == "cuda" and device.index is None:
                device = torch.device("cuda", torch.cuda.current_device())
            dataset = self.dataset
            batch = dataset.store.read(dataset.indices)
            if dataset.standardizer is not None:
                batch = dataset.standardizer.transform(batch)
            batch["index"] = dataset.indices
            self._held = _to_device(to_tensors(batch), device)
        return self._held

    def _on_device(self) -> Iterator[dict[str, Any]]:
        """Batches drawn by index from the tensors held on the device: no copy from the host but the
        positions, no collate."""
        held = self.held()
        device = held["index"].device
        for positions in self.sampler:
            idx = torch.from_numpy(np.asarray(positions, dtype=np.int64)).to(device, non_blocking=True)
            yield _index(held, idx)

    def _in_process(self) -> Iterator[dict[str, Any]]:
        """The batches, read in this process. What the DataLoader's own iterator adds per batch without
        workers (a profiler range, a fetcher, a collate pass-through) costs about 40 µs, nearly as
        much as reading a batch of small in-memory images (bench/README.md, overhead)."""
        dataset = self.dataset
        for positions in self.sampler:
            yield dataset[positions]

    def batch_done(self) -> None:
        """Count one batch of the current epoch as trained on."""
        self._done += 1

    def state_dict(self) -> dict[str, int]:
        return {"batches_done": self._done, "epoch": self.sampler.epoch}

    def load_state_dict(self, state: dict[str, int]) -> None:
        done = int(state.get("batches_done", 0))
        self._resume_at = done if 0 < done < len(self.sampler) else 0
