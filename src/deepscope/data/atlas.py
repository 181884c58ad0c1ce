"""The ``atlas_hdf5`` source: DeepCalo's ATLAS HDF5 layout, read in whole batches.

Layout (DeepCalo's ``load_atlas_data``): one group per set; every dataset is ``{set}/{name}`` with
the events along axis 0.

* image: a stack name ``img`` (the datasets ``{set}/{img}_Lr{k}``, one channel each in increasing
  k) or a named list of datasets (``data.images: {name: [dataset, ...]}``, one channel each in that
  order), each (N, H, W) or (N, D, H, W) of one size. DeepCalo stacks them channels last; here
  they are stacked channels first, (N, C, H, W), the data contract's layout. Gate images become
  ``gate_<name>`` (see :mod:`deepscope.data.atlas_plan` for how their datasets are found).
* scalar: ``{set}/{name}``, (N,) (or (N, 1)); the scalars are stacked to (N, S) in config order.
* track feature: ``{set}/{name}``, a ragged ``vlen`` (N,) dataset holding each event's real tracks
  (or an already padded (N, T) dataset). The features are stacked to (N, T, F): an event's tracks
  fill the first rows and the rest are zeros (padding "post"), so the track net can mask them. An
  event with more than ``max_tracks`` tracks keeps its first ``max_tracks``.
* target ``{set}/{name}``, or the ratio of two datasets ``[numerator, denominator]``.

:class:`AtlasHDF5Store` reads a batch of events with one sorted read per dataset (a slice when the
events are close together, h5py's fancy indexing otherwise), so memory holds only the batches in
flight. It opens the file lazily in each process and never pickles an open handle, so DataLoader
workers each get their own. With ``lazy: false`` (or ``auto`` and less than 1 GiB of selected data)
the same reads fill an in-memory :class:`~deepscope.data.arrays.ArraySet` once.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from deepscope.data.arrays import ArraySet
from deepscope.data.h5read import LAZY_THRESHOLD_BYTES, H5Handle, LazyStore, lazy_or_loaded
from deepscope.data.atlas_plan import SetPlan, longest_tracks, plan_set, same_images, selected_rows
from deepscope.errors import DataError

__all__ = ["AtlasHDF5Store", "LAZY_THRESHOLD_BYTES", "describe_atlas_hdf5", "load_atlas_hdf5", "open_atlas_hdf5"]

log = logging.getLogger(__name__)

_CHUNK_BYTES = 64 << 20  # a sparse read spanning at most this much is read as one slice


def _open(path: Path) -> Any:
    import h5py

    if not path.exists():
        raise DataError(f"data file '{path}' not found")
    if path.is_dir():
        raise DataError(f"data file '{path}' is a folder; expected an HDF5 file")
    try:
        return h5py.File(path, "r")
    except (OSError, ValueError) as exc:
        raise DataError(f"data file '{path}' is not a readable HDF5 file ({exc})") from None


def open_atlas_hdf5(cfg: Any) -> dict[str, "AtlasHDF5Store"]:
    """Check the file against an ``atlas_hdf5`` config and return a lazy store per split.

    Raises:
        DataError: a missing or unreadable file, group or dataset, a wrong shape or dtype, datasets of
            different lengths, or an ``n_points`` outside a set.
    """
    path = Path(cfg.path)
    with _open(path) as f:
        plans: dict[str, SetPlan] = {}
        tracks: dict[str, list[Any]] = {}
        for key, group in cfg.sets.items():
            plans[key], tracks[key] = plan_set(path, f, key, group, cfg)
        same_images(path, plans)
        max_tracks = cfg.max_tracks
        if max_tracks is None:
            max_tracks = max((longest_tracks(path, plans[k].group, tracks[k][0]) for k in plans if tracks[k]),
                             default=0)
            max_tracks = max(max_tracks, 1) if cfg.tracks else 0
    stores = {}
    for key, plan in plans.items():
        plan = replace(plan, max_tracks=int(max_tracks))
        rows, n = selected_rows(cfg.n_points.get(key), plan.n_events, key, path, plan.group)
        stores[key] = AtlasHDF5Store(path, plan, rows, n)
    return stores


def describe_atlas_hdf5(cfg: Any, task: str) -> Any:
    """The file's layout checked as :func:`open_atlas_hdf5` checks it, from its metadata, and one
    event per set as the stand-in whose shapes the pre-flight checks build the model for.

    The longest track list is not looked for (it takes a pass over the track datasets; the model
    does not depend on it). ``None`` for a classification loss: the number of classes comes from
    every target.

    Raises:
        DataError: what :func:`open_atlas_hdf5` raises for a missing or malformed file, group or dataset.
    """
    from deepscope.data.sources import Description

    if task != "regression":
        return None
    path = Path(cfg.path)
    with _open(path) as f:
        plans = {key: plan_set(path, f, key, group, cfg)[0] for key, group in cfg.sets.items()}
        same_images(path, plans)
    max_tracks = int(cfg.max_tracks or 1) if cfg.tracks else 0
    sets: dict[str, ArraySet] = {}
    for key, plan in plans.items():
        rows, n = selected_rows(cfg.n_points.get(key), plan.n_events, key, path, plan.group)
        store = AtlasHDF5Store(path, replace(plan, max_tracks=max_tracks), rows, n)
        try:
            batch = store.read(np.arange(min(n, 1)))
        finally:
            store.close()
        sets[key] = ArraySet.from_batch(batch)
    return Description(sets)


def load_atlas_hdf5(cfg: Any, data: Any = None) -> dict[str, "AtlasHDF5Store | ArraySet"]:
    """The ``atlas_hdf5`` source: lazy stores, or in-memory sets when ``lazy`` says so."""
    return lazy_or_loaded(open_atlas_hdf5(cfg), cfg.lazy, f"atlas_hdf5 '{cfg.path}'")


# --- the store -----------------------------------------------------------------------------------------


def _pad_tracks(features: list[np.ndarray], names: tuple[str, ...], max_tracks: int, where: str,
                rows: np.ndarray) -> np.ndarray:
    """Ragged per-feature object arrays (B,) -> (B, T, F) float32, real tracks first, zeros after."""
    b, n_feat = len(features[0]), len(features)
    out = np.zeros((b, max_tracks, n_feat), np.float32)
    if b == 0:
        return out
    lengths = np.fromiter((len(e) for e in features[0]), dtype=np.int64, count=b)
    total = int(lengths.sum())
    if total == 0:
        return out
    event = np.repeat(np.arange(b), lengths)
    pos = np.arange(total) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    keep = pos < max_tracks
    event, pos = event[keep], pos[keep]
    for j, feat in enumerate(features):
        if j:
            other = np.fromiter((len(e) for e in feat), dtype=np.int64, count=b)
            if not np.array_equal(other, lengths):
                i = int(np.flatnonzero(other != lengths)[0])
                raise DataError(f"{where}: event {int(rows[i])} has {other[i]} tracks in '{names[j]}' but "
                                f"{lengths[i]} in '{names[0]}'; every track feature needs the same tracks")
        out[event, pos, j] = np.concatenate(feat)[keep]
    return out


class AtlasHDF5Store(LazyStore):
    """The selected events of one set group, read in batches (the ``SampleStore`` protocol).

    Args:
        path: the HDF5 file.
        plan: the checked dataset names (from :func:`open_atlas_hdf5`).
        rows: the selected events' rows in the file, increasing, or None for the first ``n``.
        n: number of selected events.

    Position ``i`` of the store is file row ``rows[i]`` (or ``i``); :meth:`file_rows` maps them.
    The h5py file is opened on first use in each process and dropped when pickled
    (:class:`~deepscope.data.h5read.H5Handle`), so every DataLoader worker opens its own.
    ``rows_read`` counts the event rows fetched from the file per dataset (a measure of how much a
    lazy run reads).
    """

    def __init__(self, path: Path, plan: SetPlan, rows: np.ndarray | None, n: int) -> None:
        self.path = Path(path)
        self.plan = plan
        self.rows = rows
        self._n = int(n)
        self.h5 = H5Handle(self.path, what="data file")
        self.rows_read = 0

    def __repr__(self) -> str:
        return f"AtlasHDF5Store('{self.path}', group '{self.plan.group}', {self._n} events)"

    @property
    def _file(self) -> Any:
        """This process's open handle, or None (none is ever pickled)."""
        return self.h5._file

    def _group(self) -> Any:
        return self.h5.file[self.plan.group]

    def sample_bytes(self) -> int:
        return self.plan.sample_bytes()

    # --- reads -----------------------------------------------------------------------------------------

    def file_rows(self, positions: np.ndarray) -> np.ndarray:
        """File rows of store positions."""
        positions = np.asarray(positions, dtype=np.int64)
        return positions if self.rows is None else self.rows[positions]

    def _where(self, name: str) -> str:
        return f"data file '{self.path}', dataset '{self.plan.group}/{name}'"

    def _take(self, group: Any, name: str, rows: np.ndarray) -> np.ndarray:
        """Rows (increasing, unique) of one dataset: a slice when they are close together, else fancy indexing."""
        ds = group[name]
        n = len(rows)
        try:
            if n == 0:
                return ds[0:0]
            lo, hi = int(rows[0]), int(rows[-1]) + 1
            span = hi - lo
            ragged = ds.dtype.kind == "O"
            row_bytes = max(1, int(np.prod(ds.shape[1:])) * ds.dtype.itemsize)
            if span == n:
                out = ds[lo:hi]
                self.rows_read += span
            elif span <= (2 if ragged else 8) * n and span * row_bytes <= _CHUNK_BYTES:
                out = ds[lo:hi][rows - lo]
                self.rows_read += span
            else:
                out = ds[rows]
                self.rows_read += n
        except (OSError, RuntimeError, ValueError, TypeError) as exc:
            raise DataError(f"{self._where(name)}: cannot be read ({exc})") from None
        return out

    def _read_sorted(self, positions: np.ndarray) -> dict[str, Any]:
        return self._read_rows(self.file_rows(positions))

    def _read_rows(self, rows: np.ndarray) -> dict[str, Any]:
        plan = self.plan
        g = self._group()
        b = len(rows)
        batch: dict[str, Any] = {}
        if plan.images:
            batch["images"] = {
                name: np.stack([self._take(g, d, rows) for d in layers], axis=1).astype(np.float32, copy=False)
                for name, layers in plan.images.items()
            }
        if plan.scalars:
            batch["scalars"] = np.stack([self._take(g, d, rows).reshape(b) for d in plan.scalars],
                                        axis=1).astype(np.float32, copy=False)
        if plan.tracks:
            feats = [self._take(g, d, rows) for d in plan.tracks]
            if plan.ragged:
                batch["tracks"] = _pad_tracks(feats, plan.tracks, plan.max_tracks,
                                              f"data file '{self.path}', group '{plan.group}'", rows)
            else:
                t = np.zeros((b, plan.max_tracks, len(feats)), np.float32)
                for j, feat in enumerate(feats):
                    k = min(plan.max_tracks, feat.shape[1])
                    t[:, :k, j] = feat[:, :k]
                batch["tracks"] = t
        batch["targets"] = self._targets(g, rows)
        for key in ("multiply_output_with", "sample_weights"):
            name = getattr(plan, key)
            if name is not None:
                batch[key] = self._take(g, name, rows).reshape(b).astype(np.float32, copy=False)
        return batch

    def _targets(self, g: Any, rows: np.ndarray) -> np.ndarray:
        plan = self.plan
        first = self._take(g, plan.target[0], rows)
        if len(plan.target) == 2:
            den = self._take(g, plan.target[1], rows)
            with np.errstate(divide="ignore", invalid="ignore"):  # inf/NaN are reported by data.check_finite
                return (first.astype(np.float64) / den.astype(np.float64)).astype(np.float32)
        if plan.target_integer:
            return first.astype(np.int64, copy=False)
        return first.astype(np.float32, copy=False)

    def read_targets(self, positions: np.ndarray) -> np.ndarray:
        """Only the targets of ``positions`` (in chunks), without reading the inputs."""
        out = []
        positions = self._positions(positions)
        for start in range(0, len(positions), 1 << 16):
            uniq, inverse = np.unique(positions[start:start + (1 << 16)], return_inverse=True)
            out.append(self._targets(self._group(), self.file_rows(uniq))[inverse])
        if not out:
            return self._targets(self._group(), np.zeros(0, np.int64))
        return np.concatenate(out)

    # --- whole-set passes --------------------------------------------------------------------------------

    def check_finite(self, where: str) -> None:
        """Raise :class:`DataError` naming the first dataset (and event) with NaN or inf; streams the set."""
        plan = self.plan
        for positions, batch in self.chunks():
            named: list[tuple[str, np.ndarray, Any]] = []
            for name, img in batch.get("images", {}).items():
                named.append((f"images/{name}", img, plan.images[name]))
            for key, names in (("scalars", plan.scalars), ("tracks", plan.tracks)):
                if key in batch:
                    named.append((key, batch[key], names))
            target_name = " / ".join(f"{plan.group}/{t}" for t in plan.target)
            for key in ("targets", "multiply_output_with", "sample_weights"):
                if key in batch:
                    named.append((key, batch[key], None))
            for key, arr, names in named:
                if not np.issubdtype(arr.dtype, np.floating):
                    continue
                bad = ~np.isfinite(arr)
                if not bad.any():
                    continue
                first = np.argwhere(bad)[0]
                row = int(self.file_rows(positions[first[0]:first[0] + 1])[0])
                if key == "targets":
                    dataset = ("the ratio " if len(plan.target) == 2 else "") + f"'{target_name}'"
                elif names is None:
                    dataset = f"'{plan.group}/{getattr(plan, key)}'"
                else:
                    axis = 1 if key.startswith("images/") else arr.ndim - 1  # channel / scalar / track feature
                    dataset = f"'{plan.group}/{names[int(first[axis])]}'"
                raise DataError(
                    f"{where}['{key}']: data file '{self.path}', dataset {dataset} holds NaN/inf "
                    f"({int(bad.sum())} value(s) in events {int(self.file_rows(positions[:1])[0])}.."
                    f"{int(self.file_rows(positions[-1:])[0])}, first in event {row}); "
                    "clean the data or set data.check_finite: false"
                )
