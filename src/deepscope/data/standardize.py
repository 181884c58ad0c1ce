"""Standardization statistics: fitted on the training split only, saved with the run.

Statistics are accumulated batch by batch in float64 (so lazy sources never load everything).
Zero-padded tracks are left out of the track statistics and stay exactly zero after the transform,
so the track net can still mask them.
"""

from __future__ import annotations

import zipfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

from deepscope.config.data import StandardizeConfig
from deepscope.errors import CheckpointError

__all__ = ["Standardizer"]

_EPS = 1e-12
_CHUNK_BYTES = 64 << 20


def _batch_bytes(batch: dict[str, Any]) -> int:
    return sum(_batch_bytes(v) if isinstance(v, dict) else int(np.asarray(v).nbytes) for v in batch.values())


class _Moments:
    """Running sum, sum of squares and count over some axes."""

    def __init__(self) -> None:
        self.s: np.ndarray | None = None
        self.ss: np.ndarray | None = None
        self.n: np.ndarray | float = 0.0

    def add(self, x: np.ndarray, axes: tuple[int, ...], weight: np.ndarray | None = None) -> None:
        x = x.astype(np.float64, copy=False)
        if weight is None:
            s, ss, n = x.sum(axes), (x * x).sum(axes), np.prod([x.shape[a] for a in axes])
        else:
            s, ss, n = (x * weight).sum(axes), (x * x * weight).sum(axes), weight.sum(axes)
        self.s = s if self.s is None else self.s + s
        self.ss = ss if self.ss is None else self.ss + ss
        self.n = self.n + n

    def result(self) -> tuple[np.ndarray, np.ndarray]:
        n = np.maximum(self.n, 1.0)
        mean = self.s / n
        var = np.maximum(self.ss / n - mean * mean, 0.0)
        std = np.sqrt(var)
        std = np.where(std < _EPS, 1.0, std)  # constant features pass through unscaled
        return mean.astype(np.float32), std.astype(np.float32)


def _track_mask(tracks: np.ndarray) -> np.ndarray:
    """(N, T, 1) float mask: 1 for real tracks, 0 for all-zero padding."""
    return (np.abs(tracks).sum(-1, keepdims=True) > 0).astype(np.float64)


def _dense(batch: dict[str, Any]) -> bool:
    """Whether the batch's targets are images: (B, C, *spatial) with an image's spatial size."""
    t = batch["targets"]
    return t.ndim >= 4 and any(img.shape[2:] == t.shape[2:] for img in batch.get("images", {}).values())


def _per_channel(stats: tuple[np.ndarray, np.ndarray], values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Target stats shaped to broadcast over ``values``: per channel (C,) against (B, C, *spatial)."""
    mean, std = stats
    if mean.ndim == 1 and values.ndim >= 4 and mean.shape != values.shape[1:]:
        shape = (1, -1) + (1,) * (values.ndim - 2)
        return mean.reshape(shape), std.reshape(shape)
    return mean, std


class Standardizer:
    """Per-key mean/std; ``transform`` maps a numpy batch, ``inverse_targets`` undoes targets."""

    def __init__(self, stats: dict[str, tuple[np.ndarray, np.ndarray]] | None = None) -> None:
        self.stats: dict[str, tuple[np.ndarray, np.ndarray]] = dict(stats or {})

    @classmethod
    def fit(
        cls,
        read: Callable[[np.ndarray], dict[str, Any]],
        indices: np.ndarray,
        cfg: StandardizeConfig,
        standardize_targets: bool,
        chunk: int = 4096,
    ) -> "Standardizer":
        """Accumulate statistics over ``indices`` read in chunks by ``read``: at most ``chunk``
        samples and about 64 MiB per read (cubes are large), so lazy stores stream."""
        moments: dict[str, _Moments] = {}
        if len(indices):
            chunk = max(1, min(chunk, _CHUNK_BYTES // max(1, _batch_bytes(read(indices[:1])))))
        for start in range(0, len(indices), chunk):
            batch = read(indices[start:start + chunk])
            for name, img in batch.get("images", {}).items():
                if cfg.images == "none":
                    continue
                axes = tuple(i for i in range(img.ndim) if i != 1) if cfg.images == "per_channel" else tuple(
                    range(img.ndim))
                moments.setdefault(f"images/{name}", _Moments()).add(img, axes)
            if cfg.scalars and "scalars" in batch:
                moments.setdefault("scalars", _Moments()).add(batch["scalars"], (0,))
            if cfg.tracks and "tracks" in batch:
                t = batch["tracks"]
                moments.setdefault("tracks", _Moments()).add(t, (0, 1), np.broadcast_to(_track_mask(t), t.shape))
            if standardize_targets and "targets" in batch:
                t = batch["targets"]
                # image targets (B, C, *spatial): one mean/std per channel, as per_channel images
                axes = tuple(i for i in range(t.ndim) if i != 1) if _dense(batch) else (0,)
                moments.setdefault("targets", _Moments()).add(t, axes)
        return cls({k: m.result() for k, m in moments.items()})

    def transform(self, batch: dict[str, Any]) -> dict[str, Any]:
        """Standardize a numpy batch (a new dict; the input is not changed)."""
        out = dict(batch)
        if "images" in batch:
            out["images"] = {}
            for name, img in batch["images"].items():
                key = f"images/{name}"
                if key in self.stats:
                    mean, std = self.stats[key]
                    shape = (1, -1) + (1,) * (img.ndim - 2) if mean.ndim == 1 else ()
                    img = (img - mean.reshape(shape)) / std.reshape(shape)
                out["images"][name] = img.astype(np.float32, copy=False)
        if "scalars" in batch and "scalars" in self.stats:
            mean, std = self.stats["scalars"]
            out["scalars"] = ((batch["scalars"] - mean) / std).astype(np.float32)
        if "tracks" in batch and "tracks" in self.stats:
            mean, std = self.stats["tracks"]
            t = batch["tracks"]
            out["tracks"] = (((t - mean) / std) * _track_mask(t)).astype(np.float32)
        if "targets" in batch and "targets" in self.stats:
            mean, std = _per_channel(self.stats["targets"], batch["targets"])
            out["targets"] = ((batch["targets"] - mean) / std).astype(np.float32)
        return out

    def inverse_targets(self, values: np.ndarray) -> np.ndarray:
        """Map standardized targets (or predictions of them) back to data units."""
        if "targets" not in self.stats:
            return values
        mean, std = _per_channel(self.stats["targets"], values)
        return values * std + mean

    @property
    def target_stats(self) -> tuple[np.ndarray, np.ndarray] | None:
        return self.stats.get("targets")

    def save(self, path: Path) -> None:
        arrays = {f"{k}/mean": v[0] for k, v in self.stats.items()}
        arrays.update({f"{k}/std": v[1] for k, v in self.stats.items()})
        tmp = Path(path).with_suffix(".tmp.npz")
        np.savez(tmp, **arrays)
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path) -> "Standardizer":
        try:
            with np.load(path, allow_pickle=False) as npz:
                keys = {k.rsplit("/", 1)[0] for k in npz.files}
                return cls({k: (npz[f"{k}/mean"], npz[f"{k}/std"]) for k in keys})
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
            raise CheckpointError(f"standardization file '{path}' is missing or corrupt ({exc})") from None

    def describe(self) -> Iterable[str]:
        for key, (mean, std) in self.stats.items():
            yield f"{key}: mean {np.round(mean, 4).tolist()} std {np.round(std, 4).tolist()}"
