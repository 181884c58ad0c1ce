"""Data sources: each turns its config (and, for ``arrays``, the user's dict) into sample sets.

A source returns either one pool of samples (split later by ``data.split``) or a dict of
``train``/``val``/``test`` sets. Sources are registered in :mod:`deepscope.components`.
"""

from __future__ import annotations

import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from deepscope.data.arrays import SPLIT_NAMES, ArraySet, split_sets
from deepscope.errors import DataError, did_you_mean

__all__ = ["load_arrays", "load_npz", "load_sklearn_digits", "read_npz_set"]

Loaded = ArraySet | dict[str, ArraySet]


def _from_dict(raw: Mapping[str, Any], where: str, channels: str, require_targets: bool = True) -> Loaded:
    if split_sets(raw):
        unknown = [k for k in raw if k not in SPLIT_NAMES]
        if unknown:
            raise DataError(
                f"{where}: key '{unknown[0]}' next to train/val/test{did_you_mean(unknown[0], SPLIT_NAMES)}; "
                "a split data dict holds only 'train', 'val' and 'test'"
            )
        if "train" not in raw:
            raise DataError(f"{where}: has {', '.join(raw)} but no 'train' set")
        return {name: ArraySet.from_mapping(raw[name], f"{where}['{name}']", channels, require_targets)
                for name in SPLIT_NAMES if name in raw}
    return ArraySet.from_mapping(raw, where, channels, require_targets)


def load_arrays(cfg: Any, data: Any = None) -> Loaded:
    """In-memory arrays passed as ``deepscope.train(cfg, data=...)``.

    Raises:
        DataError: no data was passed, or it does not follow the layout.
    """
    if data is None:
        raise DataError(
            "data.source 'arrays' reads in-memory arrays: pass them as deepscope.train(cfg, data=...), "
            "or point the config at a file (data.source: npz, data.path: ...)"
        )
    return _from_dict(data, "data", cfg.channels)


def _npz_mapping(npz: Mapping[str, np.ndarray], path: Path) -> dict[str, Any]:
    """Rebuild the nested layout from flat npz keys like ``train/images/calo``."""
    nested: dict[str, Any] = {}
    for key in npz.keys():
        parts = key.split("/")
        node = nested
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise DataError(f"{path}: key '{key}' clashes with an array named '{part}'")
        node[parts[-1]] = npz[key]
    return nested


def read_npz_set(path: str | Path, channels: str, require_targets: bool = True) -> Loaded:
    """Read a ``.npz`` file in the data contract's layout.

    Raises:
        DataError: missing, unreadable or corrupt file, or wrong layout.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"data file '{path}' not found")
    try:
        with np.load(path, allow_pickle=False) as npz:
            raw = _npz_mapping({k: npz[k] for k in npz.files}, path)
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as exc:
        raise DataError(f"data file '{path}' is not a readable .npz archive ({exc})") from None
    return _from_dict(raw, str(path), channels, require_targets)


def load_npz(cfg: Any, data: Any = None) -> Loaded:
    """The ``npz`` source."""
    return read_npz_set(cfg.path, cfg.channels)


def load_sklearn_digits(cfg: Any, data: Any = None) -> Loaded:
    """scikit-learn's bundled handwritten digits: (N, 1, 8, 8) images with values 0..16, labels 0..9."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    n = cfg.n_samples or len(bunch.target)
    images = bunch.images[:n, None].astype(np.float32)  # (N, 1, 8, 8)
    labels = bunch.target[:n].astype(np.int64)
    targets = np.eye(10, dtype=np.float32)[labels] if cfg.one_hot else labels
    return ArraySet(images={"digits": images}, targets=targets)
