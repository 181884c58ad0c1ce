"""In-memory sample sets in the data contract's layout, and their validation.

An :class:`ArraySet` holds whole arrays (channels-first images) and reads batches by fancy
indexing. ``ArraySet.from_mapping`` checks a user's dict (DeepCalo layout) and says exactly which
key or shape is wrong.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from deepscope.errors import DataError, did_you_mean

__all__ = ["ArraySet", "INPUT_KEYS", "SET_KEYS"]

INPUT_KEYS = ("images", "scalars", "tracks")
SET_KEYS = ("images", "scalars", "tracks", "targets", "sample_weights", "multiply_output_with")
SPLIT_NAMES = ("train", "val", "test")


def _is_empty(value: Any) -> bool:
    return value is None or (isinstance(value, Mapping) and not value) or (
        isinstance(value, (list, tuple)) and not value
    )


def _as_array(value: Any, where: str) -> np.ndarray:
    try:
        arr = np.asarray(value)
    except Exception as exc:  # ragged lists and the like
        raise DataError(f"{where}: cannot be read as an array ({exc})") from None
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise DataError(f"{where}: found dtype {arr.dtype}; expected numbers")
    return arr


@dataclass
class ArraySet:
    """One set of samples held in memory.

    Attributes:
        images: name -> (N, C, *spatial) float32, channels first.
        scalars: (N, S) float32 or None.
        tracks: (N, T, F) float32, zero-padded, or None.
        targets: (N, ...) or None (prediction inputs have none).
        sample_weights: (N,) float32 or None.
        multiply_output_with: (N,) float32 or None.
        target_names: names of the target columns (labels, parameters), when the source knows them.
    """

    images: dict[str, np.ndarray] = field(default_factory=dict)
    scalars: np.ndarray | None = None
    tracks: np.ndarray | None = None
    targets: np.ndarray | None = None
    sample_weights: np.ndarray | None = None
    multiply_output_with: np.ndarray | None = None
    target_names: tuple[str, ...] = ()

    @classmethod
    def from_batch(cls, batch: dict[str, Any]) -> "ArraySet":
        """The set holding a batch in the data contract's layout (keys other than :data:`SET_KEYS` ignored)."""
        return cls(images=dict(batch.get("images", {})), **{k: batch.get(k) for k in SET_KEYS[1:]})

    def __len__(self) -> int:
        for arr in self._arrays().values():
            return int(arr.shape[0])
        return 0

    def _arrays(self) -> dict[str, np.ndarray]:
        out = {f"images/{k}": v for k, v in self.images.items()}
        for key in SET_KEYS[1:]:
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        return out

    def read(self, indices: np.ndarray) -> dict[str, Any]:
        """A batch in the data contract's layout (numpy), for the given sample indices."""
        batch: dict[str, Any] = {}
        if self.images:
            batch["images"] = {k: v[indices] for k, v in self.images.items()}
        for key in SET_KEYS[1:]:
            value = getattr(self, key)
            if value is not None:
                batch[key] = value[indices]
        return batch

    def take(self, indices: np.ndarray) -> "ArraySet":
        """A new set holding only ``indices``."""
        return ArraySet(**{k: (v[indices] if v is not None else None) for k, v in self._fields().items()},
                        images={k: v[indices] for k, v in self.images.items()}, target_names=self.target_names)

    def standardized(self, transform: Any, chunk: int = 4096) -> "ArraySet":
        """A new set holding ``transform(batch)`` of every sample, computed once in chunks.

        Training on in-memory data then skips the per-batch numpy standardization (the largest
        per-step cost after the model itself; see bench/README.md). Costs one copy of the inputs.
        """
        n = len(self)
        first = transform(self.read(np.arange(min(chunk, n))))
        out = ArraySet(images={k: np.empty((n, *v.shape[1:]), v.dtype) for k, v in first.get("images", {}).items()},
                       **{k: (np.empty((n, *first[k].shape[1:]), first[k].dtype) if k in first else None)
                          for k in SET_KEYS[1:]}, target_names=self.target_names)
        for start in range(0, n, chunk):
            idx = np.arange(start, min(start + chunk, n))
            batch = first if start == 0 else transform(self.read(idx))
            for k, v in batch.get("images", {}).items():
                out.images[k][idx] = v
            for k in SET_KEYS[1:]:
                if k in batch:
                    getattr(out, k)[idx] = batch[k]
        return out

    def _fields(self) -> dict[str, np.ndarray | None]:
        return {k: getattr(self, k) for k in SET_KEYS[1:]}

    # --- construction and checks -----------------------------------------------------------------

    @classmethod
    def from_mapping(
        cls, raw: Mapping[str, Any], where: str, channels: str = "last", require_targets: bool = True
    ) -> "ArraySet":
        """Check a DeepCalo-style dict of arrays and convert it (images to channels first).

        Args:
            raw: ``{"images": {name: array}, "scalars": ..., "tracks": ..., "targets": ..., ...}``.
            where: how to name this set in errors (``"data['train']"`` or a file path).
            channels: ``"last"`` when images are (N, *spatial, C), ``"first"`` for (N, C, *spatial).
            require_targets: training sets need targets; prediction inputs do not.

        Raises:
            DataError: unknown keys, wrong ndim, mismatched lengths, missing targets, no inputs.
        """
        if not isinstance(raw, Mapping):
            raise DataError(f"{where}: found {type(raw).__name__}; expected a dict with keys {', '.join(SET_KEYS)}")
        unknown = [k for k in raw if k not in SET_KEYS]
        if unknown:
            k = unknown[0]
            raise DataError(f"{where}: unknown key '{k}'{did_you_mean(k, SET_KEYS)} (allowed: {', '.join(SET_KEYS)})")
        out = cls()
        images = raw.get("images")
        if not _is_empty(images):
            if not isinstance(images, Mapping):
                images = {"images": images}
            for name, value in images.items():
                out.images[str(name)] = _image(_as_array(value, f"{where}['images']['{name}']"),
                                               f"{where}['images']['{name}']", channels)
        if not _is_empty(raw.get("scalars")):
            s = _as_array(raw["scalars"], f"{where}['scalars']")
            if s.ndim == 1:
                s = s[:, None]
            if s.ndim != 2:
                raise DataError(f"{where}['scalars']: found shape {s.shape}; expected (N, S)")
            out.scalars = s.astype(np.float32, copy=False)
        if not _is_empty(raw.get("tracks")):
            t = _as_array(raw["tracks"], f"{where}['tracks']")
            if t.ndim != 3:
                raise DataError(f"{where}['tracks']: found shape {t.shape}; expected (N, T, F) zero-padded tracks")
            out.tracks = t.astype(np.float32, copy=False)
        if not _is_empty(raw.get("targets")):
            y = _as_array(raw["targets"], f"{where}['targets']")
            if y.ndim == 0:
                raise DataError(f"{where}['targets']: found a single number; expected one target per sample")
            out.targets = y if np.issubdtype(y.dtype, np.integer) else y.astype(np.float32, copy=False)
        elif require_targets:
            raise DataError(f"{where}: 'targets' is missing; every training set needs targets (N, ...)")
        for key in ("sample_weights", "multiply_output_with"):
            if not _is_empty(raw.get(key)):
                v = _as_array(raw[key], f"{where}['{key}']")
                if v.ndim == 2 and v.shape[1] == 1:
                    v = v[:, 0]
                if v.ndim != 1:
                    raise DataError(f"{where}['{key}']: found shape {v.shape}; expected (N,)")
                setattr(out, key, v.astype(np.float32, copy=False))
        if not out.images and out.scalars is None and out.tracks is None:
            raise DataError(f"{where}: no inputs; give at least one of 'images', 'scalars', 'tracks'")
        out._check_lengths(where)
        return out

    def _check_lengths(self, where: str) -> None:
        lengths = {k: v.shape[0] for k, v in self._arrays().items()}
        if len(set(lengths.values())) > 1:
            ref_key, ref = next(iter(lengths.items()))
            key, n = next((k, n) for k, n in lengths.items() if n != ref)
            raise DataError(f"{where}: '{key}' has {n} samples but '{ref_key}' has {ref}; every array needs the same N")
        if lengths and next(iter(lengths.values())) == 0:
            raise DataError(f"{where}: holds no samples")

    def check_finite(self, where: str) -> None:
        """Raise :class:`DataError` naming the first array that holds NaN or inf."""
        for key, arr in self._arrays().items():
            if np.issubdtype(arr.dtype, np.floating):
                bad = ~np.isfinite(arr)
                if bad.any():
                    first = int(np.argwhere(bad)[0][0])
                    raise DataError(
                        f"{where}['{key}']: {int(bad.sum())} NaN/inf value(s), first in sample {first}; "
                        "clean the data or set data.check_finite: false"
                    )


def _image(arr: np.ndarray, where: str, channels: str) -> np.ndarray:
    if arr.ndim == 3:  # (N, H, W): one channel
        arr = arr[:, None]
    elif arr.ndim in (4, 5):
        if channels == "last":
            arr = np.moveaxis(arr, -1, 1)
    else:
        raise DataError(
            f"{where}: found shape {arr.shape}; expected (N, H, W), (N, H, W, C) or (N, D, H, W, C) "
            "(channels last; set data.channels: first for (N, C, ...))"
        )
    return np.ascontiguousarray(arr, dtype=np.float32)


def split_sets(raw: Mapping[str, Any]) -> bool:
    """Whether a data dict is already split into train / val / test."""
    return isinstance(raw, Mapping) and any(k in raw for k in SPLIT_NAMES)
