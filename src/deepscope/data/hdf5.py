"""The ``hdf5`` source: any HDF5 file, its datasets mapped to images, scalars, tracks, targets, weights.

:func:`plan_hdf5` checks the file against the config from its metadata alone (datasets, shapes,
dtypes, lengths); :class:`HDF5Store` then reads whole batches as sorted, chunk-aligned slices
(:func:`deepscope.data.h5read.take_rows`), in any process. With ``lazy: false`` (or ``auto`` and
less than 1 GiB of data) the same reads fill an in-memory set once.

Layout rules (the same as for in-memory arrays, :class:`~deepscope.data.arrays.ArraySet`):

* an image given as one dataset is (N, H, W) (one channel) or has a channel axis, last or first
  as ``data.channels`` says: (N, H, W, C), (N, D, H, W, C); an image given as a list of datasets
  stacks them as channels, each (N, H, W) or (N, D, H, W);
* scalars are (N,) or (N, S) datasets, concatenated; tracks one (N, T, F) dataset or (N, T)
  datasets stacked as features;
* targets are kept as stored (integer labels as int64, anything else float32), except dense targets:
  a target with an image's spatial shape gets a channel axis, and one with that spatial shape and a
  channel axis where ``data.channels`` says is made channels first (any number of channels);
  a list of (N,) target datasets gives (N, K) columns named after them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from deepscope.data.arrays import ArraySet
from deepscope.data.h5read import (H5Handle, LazyStore, chunk_cache_bytes, chunk_rows, lazy_or_loaded, open_h5,
                                   take_rows)
from deepscope.errors import DataError, did_you_mean

__all__ = ["HDF5Plan", "HDF5Store", "describe_hdf5", "load_hdf5", "plan_hdf5"]

_SHOWN = 8  # dataset names listed when one is missing


@dataclass(frozen=True)
class HDF5Plan:
    """One split's datasets, checked against the config.

    Attributes:
        path: the file.
        group: the split's group ("" for the file's root).
        n: samples in every dataset.
        images: image name -> its datasets (one with a channel axis, or several stacked as channels).
        channel_axis: image name -> where its one dataset's channel axis is ("last", "first"), or None
            when the image adds one (one (N, *spatial) dataset, or a stacked list).
        scalars, tracks, targets: their datasets; weights: the weights dataset or None.
        target_channel_axis: the channel axis of dense targets ("last", "first", "add"), or None.
        target_integer: integer targets (labels) rather than values.
        sample_bytes: bytes of one sample over every dataset (as float32 / int64).
        chunk_rows: samples per storage chunk along axis 0 (the largest of the datasets), or None.
    """

    path: Path
    group: str
    n: int
    images: dict[str, tuple[str, ...]] = field(default_factory=dict)
    channel_axis: dict[str, str | None] = field(default_factory=dict)
    scalars: tuple[str, ...] = ()
    tracks: tuple[str, ...] = ()
    targets: tuple[str, ...] = ()
    weights: str | None = None
    target_channel_axis: str | None = None
    target_integer: bool = False
    sample_bytes: int = 0
    chunk_rows: int | None = None

    def dataset(self, name: str) -> str:
        return f"{self.group}/{name}" if self.group else name

    @property
    def target_names(self) -> tuple[str, ...]:
        return tuple(t.rsplit("/", 1)[-1] for t in self.targets) if len(self.targets) > 1 else ()


# --- the plan ----------------------------------------------------------------------------------------


def _all_datasets(node: Any) -> list[str]:
    import h5py

    names: list[str] = []
    node.visititems(lambda name, obj: names.append(name) if isinstance(obj, h5py.Dataset) else None)
    return names


def _get(f: Any, group: str, name: str, key: str, path: Path) -> Any:
    """The dataset ``name`` of ``group``, or a DataError naming the config key and what the group holds."""
    import h5py

    node = f[group] if group else f
    obj = node.get(name)
    if isinstance(obj, h5py.Dataset):
        return obj
    where = f"group '{group}'" if group else "the file's root"
    held = _all_datasets(node)
    if obj is not None:
        raise DataError(f"data.{key}: '{name}' in {where} of '{path}' is a group, not a dataset"
                        f"{did_you_mean(name, held)}")
    shown = ", ".join(f"'{n}'" for n in held[:_SHOWN]) + (", ..." if len(held) > _SHOWN else "")
    raise DataError(f"data.{key}: no dataset '{name}' in {where} of '{path}'{did_you_mean(name, held)} "
                    f"(it holds {len(held)} dataset(s): {shown or 'none'})")


def _numeric(ds: Any, key: str, path: Path) -> None:
    if not (np.issubdtype(ds.dtype, np.number) or ds.dtype == bool):
        raise DataError(f"data.{key}: dataset '{ds.name}' of '{path}' has dtype {ds.dtype}; expected numbers")


def _image_layout(cfg: Any, name: str, datasets: list[Any], stacked: bool, path: Path) -> str | None:
    """The channel axis of an image's one dataset, or None when the image gets its channel axis added
    (one (N, H, W) dataset, or a list of datasets stacked as channels)."""
    key = f"images.{name}"
    if not stacked:
        ds = datasets[0]
        if ds.ndim == 3:
            return None
        if ds.ndim in (4, 5):
            return cfg.channels
        raise DataError(f"data.{key}: dataset '{ds.name}' of '{path}' has shape {tuple(ds.shape)}; expected "
                        "(N, H, W), or with a channel axis (N, H, W, C) / (N, D, H, W, C) (channels last; set "
                        "data.channels: first for (N, C, ...))")
    first = datasets[0]
    for ds in datasets:
        if ds.ndim not in (3, 4):
            raise DataError(f"data.{key}: dataset '{ds.name}' of '{path}' has shape {tuple(ds.shape)}; a list of "
                            "datasets stacks one channel each: expected (N, H, W) or (N, D, H, W)")
        if ds.shape[1:] != first.shape[1:]:
            raise DataError(f"data.{key}: dataset '{ds.name}' of '{path}' has per-sample shape "
                            f"{tuple(ds.shape[1:])} but '{first.name}' has {tuple(first.shape[1:])}; the "
                            "channels of one image need one size")
    return None


def _target_channel_axis(cfg: Any, target_sets: list[Any], spatial_shapes: list[tuple[int, ...]]) -> str | None:
    """Where a dense target's channel axis is ("add" when it has none), or None for other targets: a
    target with an image's spatial shape, alone or with a channel axis where ``data.channels`` says."""
    if len(target_sets) != 1:
        return None
    shape = tuple(int(d) for d in target_sets[0].shape[1:])
    for spatial in spatial_shapes:
        if shape == spatial:
            return "add"
        if len(shape) == len(spatial) + 1:
            if cfg.channels == "last" and shape[:-1] == spatial:
                return "last"
            if cfg.channels == "first" and shape[1:] == spatial:
                return "first"
    return None


def _per_sample_bytes(ds: Any, as_int: bool = False) -> int:
    return int(np.prod(ds.shape[1:], dtype=np.int64)) * (8 if as_int else 4)


def plan_split(f: Any, cfg: Any, group: str, split: str) -> HDF5Plan:
    """Check one split's datasets against the config (metadata only).

    Raises:
        DataError: a missing group or dataset, a non-numeric dtype, a wrong number of axes,
            datasets of different lengths, or an empty split.
    """
    import h5py

    path = Path(cfg.path)
    if group:
        obj = f.get(group)
        if not isinstance(obj, h5py.Group):
            groups = [k for k in f if isinstance(f[k], h5py.Group)]
            what = "is a dataset, not a group, in" if obj is not None else "is not in"
            raise DataError(f"data.sets.{split}: group '{group}' {what} '{path}'{did_you_mean(group, groups)} "
                            f"(groups: {', '.join(groups) or 'none'})")
    named: list[tuple[str, Any]] = []  # (config key, dataset) in config order

    def get(name: str, key: str) -> Any:
        ds = _get(f, group, name, key, path)
        _numeric(ds, key, path)
        named.append((key, ds))
        return ds

    images: dict[str, tuple[str, ...]] = {}
    axes: dict[str, str | None] = {}
    spatial_shapes: list[tuple[int, ...]] = []  # the images' spatial shapes (dense targets are matched on them)
    size = 0
    for name, value in cfg.images.items():
        names = [value] if isinstance(value, str) else list(value)
        datasets = [get(d, f"images.{name}") for d in names]
        axes[name] = _image_layout(cfg, name, datasets, isinstance(value, list), path)
        shape = tuple(int(d) for d in datasets[0].shape[1:])
        spatial_shapes.append(shape[:-1] if axes[name] == "last" else shape[1:] if axes[name] == "first" else shape)
        images[name] = tuple(names)
        size += sum(_per_sample_bytes(ds) for ds in datasets)
    scalars = tuple(cfg.scalars)
    for name in scalars:
        ds = get(name, "scalars")
        if ds.ndim not in (1, 2):
            raise DataError(f"data.scalars: dataset '{ds.name}' of '{path}' has shape {tuple(ds.shape)}; expected "
                            "(N,) or (N, S)")
        size += _per_sample_bytes(ds)
    tracks = () if cfg.tracks is None else ((cfg.tracks,) if isinstance(cfg.tracks, str) else tuple(cfg.tracks))
    track_sets = [get(name, "tracks") for name in tracks]
    want = 3 if len(tracks) == 1 else 2
    for ds in track_sets:
        if ds.ndim != want or ds.shape[1:2] != track_sets[0].shape[1:2]:
            expected = "(N, T, F) zero-padded tracks" if want == 3 else "(N, T), one track feature, with the T of the others"
            raise DataError(f"data.tracks: dataset '{ds.name}' of '{path}' has shape {tuple(ds.shape)}; "
                            f"expected {expected}")
        size += _per_sample_bytes(ds)
    targets = (cfg.targets,) if isinstance(cfg.targets, str) else tuple(cfg.targets)
    target_sets = [get(name, "targets") for name in targets]
    if len(target_sets) > 1:
        for ds in target_sets:
            if ds.ndim != 1 and ds.shape[1:] != (1,):
                raise DataError(f"data.targets: dataset '{ds.name}' of '{path}' has shape {tuple(ds.shape)}; a list "
                                "of targets stacks (N,) datasets as columns")
    integer = all(np.issubdtype(ds.dtype, np.integer) for ds in target_sets) and len(target_sets) == 1
    size += sum(_per_sample_bytes(ds, integer) for ds in target_sets)
    target_axis = _target_channel_axis(cfg, target_sets, spatial_shapes)
    weights = cfg.weights
    if weights is not None:
        ds = get(weights, "weights")
        if ds.ndim != 1 and ds.shape[1:] != (1,):
            raise DataError(f"data.weights: dataset '{ds.name}' of '{path}' has shape {tuple(ds.shape)}; expected (N,)")
        size += 4
    lengths = {ds.name: int(ds.shape[0]) for _, ds in named}
    first_name, n = next(iter(lengths.items()))
    for key, ds in named:
        if int(ds.shape[0]) != n:
            raise DataError(f"data.{key}: dataset '{ds.name}' of '{path}' has {ds.shape[0]} samples but "
                            f"'{first_name}' has {n}; every dataset of a split needs the same N")
    if n == 0:
        raise DataError(f"data.sets.{split}: the datasets of '{path}' hold no samples" if group else
                        f"data.path: the datasets of '{path}' hold no samples")
    rows = [r for r in (chunk_rows(ds) for _, ds in named) if r is not None]
    return HDF5Plan(path, group, n, images, axes, scalars, tracks, targets, weights, target_axis, integer,
                    size, max(rows) if rows else None)


def plan_hdf5(cfg: Any) -> tuple[dict[str, HDF5Plan], int]:
    """Every split's plan and the chunk cache size, from the file's metadata.

    Returns:
        ``({split or "pool": plan}, cache_bytes)``: one plan per group of ``data.sets``, or one
        ``"pool"`` plan for datasets at the root.

    Raises:
        DataError: what :func:`plan_split` raises, and a file that is missing or not HDF5.
    """
    path = Path(cfg.path)
    with open_h5(path) as f:
        groups = cfg.sets or {"pool": ""}
        plans = {split: plan_split(f, cfg, group, split) for split, group in groups.items()}
        cache = chunk_cache_bytes([f[p.dataset(d)] for p in plans.values() for d in cfg.input_datasets()],
                                  cfg.chunk_cache_mb)
    _same_shapes(plans, path)
    return plans, cache


def _same_shapes(plans: dict[str, HDF5Plan], path: Path) -> None:
    if len(plans) < 2:
        return
    with open_h5(path) as f:
        ref_split, ref = next(iter(plans.items()))
        for split, plan in plans.items():
            for a, b in zip(_dataset_paths(ref), _dataset_paths(plan)):
                da, db = f[ref.dataset(a)], f[plan.dataset(b)]
                if da.shape[1:] != db.shape[1:]:
                    raise DataError(f"'{path}': dataset '{db.name}' ({split}) has per-sample shape {tuple(db.shape[1:])} "
                                    f"but '{da.name}' ({ref_split}) has {tuple(da.shape[1:])}; every split needs "
                                    "the same shapes")


def _dataset_paths(plan: HDF5Plan) -> list[str]:
    out = [d for ds in plan.images.values() for d in ds] + list(plan.scalars) + list(plan.tracks) + list(plan.targets)
    return out + ([plan.weights] if plan.weights else [])


# --- the store ----------------------------------------------------------------------------------------


def _to_channels_first(arr: np.ndarray, axis: str | None) -> np.ndarray:
    if axis is None or axis == "add":
        return arr[:, None]
    if axis == "last":
        return np.moveaxis(arr, -1, 1)
    return arr


class HDF5Store(LazyStore):
    """The samples of one split of an ``hdf5`` source, read in whole batches (the ``SampleStore`` protocol).

    Args:
        plan: the split's checked datasets (from :func:`plan_hdf5`).
        cache_bytes: HDF5's chunk cache per dataset, in each process.
    """

    def __init__(self, plan: HDF5Plan, cache_bytes: int | None = None) -> None:
        self.plan = plan
        self._n = plan.n
        self.h5 = H5Handle(plan.path, cache_bytes)
        self.rows_read = 0
        self.target_names = plan.target_names

    def __repr__(self) -> str:
        where = f"group '{self.plan.group}'" if self.plan.group else "root"
        return f"HDF5Store('{self.plan.path}', {where}, {self._n} samples)"

    @property
    def chunk_rows(self) -> int | None:
        """Samples per storage chunk (the largest of the datasets), for chunk-local shuffling."""
        return self.plan.chunk_rows

    def sample_bytes(self) -> int:
        return self.plan.sample_bytes

    def _take(self, name: str, rows: np.ndarray) -> np.ndarray:
        ds = self.h5.file[self.plan.dataset(name)]
        out, read = take_rows(ds, rows, f"data file '{self.plan.path}', dataset '{ds.name}'")
        self.rows_read += read
        return out

    def _read_sorted(self, rows: np.ndarray) -> dict[str, Any]:
        plan, b = self.plan, len(rows)
        batch: dict[str, Any] = {}
        if plan.images:
            batch["images"] = {}
            for name, datasets in plan.images.items():
                if len(datasets) == 1:
                    img = _to_channels_first(self._take(datasets[0], rows), plan.channel_axis[name])
                else:
                    img = np.stack([self._take(d, rows) for d in datasets], axis=1)
                batch["images"][name] = np.ascontiguousarray(img, dtype=np.float32)
        if plan.scalars:
            batch["scalars"] = np.concatenate([self._take(d, rows).reshape(b, -1) for d in plan.scalars],
                                              axis=1).astype(np.float32, copy=False)
        if plan.tracks:
            feats = [self._take(d, rows) for d in plan.tracks]
            tracks = feats[0] if len(feats) == 1 else np.stack(feats, axis=-1)
            batch["tracks"] = tracks.astype(np.float32, copy=False)
        batch["targets"] = self._targets(rows)
        if plan.weights:
            batch["sample_weights"] = self._take(plan.weights, rows).reshape(b).astype(np.float32, copy=False)
        return batch

    def _targets(self, rows: np.ndarray) -> np.ndarray:
        plan = self.plan
        if len(plan.targets) > 1:
            return np.stack([self._take(t, rows).reshape(len(rows)) for t in plan.targets],
                            axis=1).astype(np.float32, copy=False)
        t = self._take(plan.targets[0], rows)
        if plan.target_channel_axis is not None:
            t = _to_channels_first(t, plan.target_channel_axis)
        if plan.target_integer:
            return t.astype(np.int64, copy=False)
        return np.ascontiguousarray(t, dtype=np.float32)

    def read_targets(self, positions: np.ndarray) -> np.ndarray:
        """Only the targets of ``positions``, without reading the inputs."""
        positions = self._positions(positions)
        uniq, inverse = np.unique(positions, return_inverse=True)
        return self._targets(uniq)[inverse]

    def describe_sample(self, key: str, position: int) -> str:
        plan = self.plan
        datasets = {"scalars": plan.scalars, "tracks": plan.tracks, "targets": plan.targets,
                    "sample_weights": (plan.weights,)}
        names = plan.images.get(key.split("/", 1)[-1], ()) if key.startswith("images/") else datasets.get(key, ())
        shown = ", ".join(f"'{plan.dataset(d)}'" for d in names if d)
        return f"'{plan.path}', dataset {shown}, sample {position}"


def load_hdf5(cfg: Any, data: Any = None) -> dict[str, HDF5Store | ArraySet] | HDF5Store | ArraySet:
    """The ``hdf5`` source: a lazy store (or an in-memory set, as ``data.lazy`` says) per group of
    ``data.sets``, or one pool for datasets at the root (split by ``data.split``).

    Raises:
        DataError: what :func:`plan_hdf5` raises, or a dataset that cannot be read.
    """
    plans, cache = plan_hdf5(cfg)
    stores = {split: HDF5Store(plan, cache) for split, plan in plans.items()}
    out = lazy_or_loaded(stores, cfg.lazy, f"hdf5 '{cfg.path}'")
    return out if cfg.sets else out["pool"]


def describe_hdf5(cfg: Any, task: str) -> Any:
    """The file checked as :func:`load_hdf5` checks it, and stand-ins of the real shapes and dtypes.

    The stand-in targets are the first and last samples' targets, so a classification loss is
    described only when the labels' range is known: ``None`` then (the loader reads every target).

    Raises:
        DataError: what :func:`plan_hdf5` raises.
    """
    from deepscope.data.sources import Description

    plans, cache = plan_hdf5(cfg)
    if task != "regression":
        return None  # the labels' range needs every target: the loader reads them
    sets = {}
    for split, plan in plans.items():
        store = HDF5Store(plan, cache)
        try:
            sets[split] = ArraySet.from_batch(store.read(np.array([0])))
        finally:
            store.close()
    if cfg.sets:
        return Description(sets)
    return Description(sets["pool"], plans["pool"].n)
