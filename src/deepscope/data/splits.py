"""Train / val / test splits of one pool of samples."""

from __future__ import annotations

import numpy as np

from deepscope.config.data import SplitConfig
from deepscope.errors import DataError

__all__ = ["split_indices"]


def _resolve(part: object, n: int, name: str) -> np.ndarray:
    if isinstance(part, str):
        start_s, _, stop_s = part.partition(":")
        start = int(start_s) if start_s else 0
        stop = int(stop_s) if stop_s else n
        if stop > n or start >= n:
            raise DataError(f"data.split.{name}: range '{part}' is outside the {n} samples")
        return np.arange(start, stop)
    idx = np.asarray(part, dtype=np.int64)
    if idx.size and idx.max() >= n:
        raise DataError(f"data.split.{name}: index {int(idx.max())} is outside the {n} samples")
    return idx


def split_indices(n: int, cfg: SplitConfig, seed: int) -> dict[str, np.ndarray]:
    """Sample indices of each split.

    Fractions are taken after a permutation seeded by ``seed`` (if ``cfg.shuffle``); train gets
    the remainder unless given. Explicit indices are used as given and must not overlap.

    Raises:
        DataError: out-of-range indices, overlapping parts, or an empty training split.
    """
    if cfg.uses_fractions:
        order = np.random.default_rng(seed).permutation(n) if cfg.shuffle else np.arange(n)
        n_val = int(round((cfg.val or 0.0) * n))
        n_test = int(round((cfg.test or 0.0) * n))
        n_train = int(round(cfg.train * n)) if cfg.train is not None else n - n_val - n_test
        if n_train < 1:
            raise DataError(f"data.split leaves no training samples out of {n}")
        out = {"train": order[:n_train], "val": order[n_train:n_train + n_val],
               "test": order[n_train + n_val:n_train + n_val + n_test]}
    else:
        out = {name: _resolve(getattr(cfg, name), n, name)
               for name in ("train", "val", "test") if getattr(cfg, name) is not None}
        seen: dict[int, str] = {}
        for name, idx in out.items():
            for i in idx[np.isin(idx, list(seen))][:1]:
                raise DataError(f"data.split: sample {int(i)} is in both '{seen[int(i)]}' and '{name}'")
            seen.update(dict.fromkeys(idx.tolist(), name))
    return {k: np.sort(v) for k, v in out.items() if len(v)}
