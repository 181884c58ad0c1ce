"""The ``root`` source: events of a ROOT TTree, read with uproot in chunks (no ROOT install).

Each event's hits are jagged branches (one value per hit: ``tracker_layer``, ``tracker_column``,
``tracker_z``, ...). A view histograms every event's hits over two of them into a (1, R, C) image:
integer branches are cell indices, float branches are binned over a configured range. The
histograms are filled per chunk with flat indices ``(event * R + row) * C + col``, never by a loop
over events. Targets are a scalar branch mapped to class labels, or jagged index branches turned into
multi-hot vectors. See docs/root-data.md.
"""

from __future__ import annotations

import glob
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from deepscope.data.arrays import ArraySet
from deepscope.errors import DataError, did_you_mean

__all__ = ["RootFile", "describe_root", "load_root", "plan_root"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RootFile:
    """One input file: its path and its tree's number of events."""

    path: Path
    entries: int


def _expand(pattern: str, key: str) -> list[Path]:
    """The files a path or glob names, in sorted order."""
    if glob.has_magic(pattern):
        paths = sorted(glob.glob(pattern, recursive=True))
        if not paths:
            raise DataError(f"{key}: no file matches '{pattern}'")
        return [Path(p) for p in paths]
    path = Path(pattern)
    if not path.is_file():
        raise DataError(f"{key}: data file '{path}' not found")
    return [path]


def _uses(cfg: Any) -> dict[str, str]:
    """Branch -> the first config key that names it (for the messages)."""
    uses: dict[str, str] = {}
    for name, view in cfg.views.items():
        uses.setdefault(view.rows.branch, f"data.views.{name}.rows")
        uses.setdefault(view.cols.branch, f"data.views.{name}.cols")
        for branch in view.select:
            uses.setdefault(branch, f"data.views.{name}.select")
    key = ("data.target.branch" if cfg.target.branch is not None else
           "data.target.mask" if cfg.target.mask is not None else "data.target.multi_hot")
    for branch in cfg.target.branches():
        uses.setdefault(branch, key)
    return uses


def _open_tree(path: Path, tree: str) -> Any:
    """The tree ``tree`` of the file at ``path``.

    Raises:
        DataError: the file is not a readable ROOT file or has no such tree (the closest named).
    """
    import uproot

    try:
        with open(path, "rb") as raw:
            magic = raw.read(4)
    except OSError as exc:
        raise DataError(f"data file '{path}' cannot be read ({exc.strerror or exc})") from None
    if magic != b"root":
        raise DataError(f"data file '{path}' is not a ROOT file (it does not start with ROOT's signature 'root')")
    try:
        f = uproot.open(path)
        trees = [k for k, c in f.classnames(cycle=False).items() if c in ("TTree", "TNtuple", "ROOT::RNTuple")]
    except Exception as exc:  # a damaged file: uproot raises OSError, ValueError or its own errors
        reason = " ".join(str(exc).split())
        raise DataError(f"data file '{path}' is not a readable ROOT file ({type(exc).__name__}: {reason})") from None
    if tree not in trees:
        raise DataError(f"data file '{path}': no tree '{tree}' (data.tree){did_you_mean(tree, trees)} "
                        f"(trees in the file: {', '.join(trees) or 'none'})")
    return f[tree]


def plan_root(cfg: Any) -> dict[str, list[RootFile]]:
    """Every file of every split (``pool`` for ``data.path``), checked from its metadata alone: the
    tree exists and holds every branch the config names.

    Raises:
        DataError: a missing file or glob without matches, a file that is not ROOT, a missing tree
            or branch (the closest name suggested), or a split without events.
    """
    uses = _uses(cfg)
    plans: dict[str, list[RootFile]] = {}
    for split, pattern in cfg.file_patterns().items():
        key = "data.path" if split == "pool" else f"data.files.{split}"
        files = []
        for path in _expand(pattern, key):
            tree = _open_tree(path, cfg.tree)
            names = list(tree.keys())
            for branch, where in uses.items():
                if branch not in names:
                    shown = ", ".join(names[:30]) + (", ..." if len(names) > 30 else "")
                    raise DataError(f"data file '{path}', tree '{cfg.tree}': no branch '{branch}' ({where})"
                                    f"{did_you_mean(branch, names)} (branches: {shown})")
            files.append(RootFile(path, int(tree.num_entries)))
        if not sum(f.entries for f in files):
            raise DataError(f"{key}: tree '{cfg.tree}' holds no events in {pattern}")
        plans[split] = files
    return plans


# --- filling one chunk --------------------------------------------------------------------------


@dataclass
class _Chunk:
    """One chunk of events of one file: where it goes and how to name it in a message."""

    arrays: Any  # awkward record array of the read branches
    path: Path
    tree: str
    start: int  # the chunk's first entry in its file
    flat: dict[str, np.ndarray]  # per-hit branch -> its values, flattened over the chunk's events
    counts: dict[str, np.ndarray]  # per-hit branch -> hits per event

    def where(self, branch: str) -> str:
        return f"data file '{self.path}', tree '{self.tree}', branch '{branch}'"

    def hits(self, branch: str, key: str) -> tuple[np.ndarray, np.ndarray]:
        """(values flattened over events, hits per event) of a per-hit branch.

        Raises:
            DataError: the branch holds one value per event, or nested lists.
        """
        if branch not in self.flat:
            import awkward as ak

            array = self.arrays[branch]
            if array.ndim != 2:
                kind = "one value per event" if array.ndim == 1 else f"{array.ndim - 1} levels of lists"
                raise DataError(f"{self.where(branch)} ({key}): holds {kind}; expected a jagged branch with one "
                                "value per hit")
            self.counts[branch] = ak.to_numpy(ak.num(array, axis=1)).astype(np.int64)
            self.flat[branch] = ak.to_numpy(ak.flatten(array, axis=1))
        return self.flat[branch], self.counts[branch]

    def same_lengths(self, branches: list[str], key: str) -> np.ndarray:
        """Hits per event, the same for every branch of ``branches``.

        Raises:
            DataError: two branches with different numbers of values in one event.
        """
        _, ref = self.hits(branches[0], key)
        for branch in branches[1:]:
            _, counts = self.hits(branch, key)
            if not np.array_equal(counts, ref):
                i = int(np.flatnonzero(counts != ref)[0])
                raise DataError(f"data file '{self.path}', tree '{self.tree}': branches '{branches[0]}' and "
                                f"'{branch}' ({key}) have {ref[i]} and {counts[i]} values in entry {self.start + i}; "
                                "the branches of one view hold one value per hit, so their lengths must match")
        return ref


def _cells(values: np.ndarray, axis: Any, size: int, chunk: _Chunk, key: str, keep: np.ndarray,
           ev: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(cell index along the axis, whether the hit falls in a cell) of every hit.

    Integer axes take the values as cells and refuse values outside 0..size-1; ranged axes bin the
    values uniformly (as ``np.histogram``: the high edge falls in the last bin) and drop the rest.
    """
    if axis.range is None:
        if values.dtype.kind not in "iub":
            raise DataError(f"{chunk.where(axis.branch)} ({key}): holds {values.dtype} values, not cell indices; "
                            f"give {{branch: {axis.branch}, range: [low, high]}} to bin them")
        bad = keep & ((values < 0) | (values >= size))
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise DataError(f"{chunk.where(axis.branch)} ({key}): value {values[i]} in entry "
                            f"{chunk.start + int(ev[i])} is outside the {size} cells 0..{size - 1} of the view's "
                            "shape")
        return values.astype(np.int64), np.ones(len(values), bool)
    lo, hi = axis.range
    x = values.astype(np.float64)
    inside = (x >= lo) & (x <= hi)  # NaN is outside
    cell = np.clip(((np.where(inside, x, lo) - lo) * (size / (hi - lo))).astype(np.int64), 0, size - 1)
    # rounding can put a value next to an edge in the neighbouring bin: compare with the edges, as np.histogram
    edges = np.linspace(lo, hi, size + 1)
    cell -= (x < edges[cell]) & (cell > 0)
    cell += (x >= edges[cell + 1]) & (cell < size - 1)
    return cell, inside


def _fill_view(out: np.ndarray, view: Any, name: str, chunk: _Chunk, dropped: dict[str, int],
               mask: Any = None) -> None:
    """Histogram the chunk's events into ``out`` (its (n, 1, R, C) slice of the view's images); with
    ``mask`` (a mask target) only the hits of each event's chosen track, as 0/1."""
    key = f"data.views.{name}"
    branches = view.branches() + ([mask.mask] if mask is not None and mask.mask not in view.branches() else [])
    counts = chunk.same_lengths(branches, key if mask is None else f"{key} and data.target.mask")
    ev = np.repeat(np.arange(len(counts)), counts)
    keep = np.ones(len(ev), bool)
    for branch, value in view.select.items():
        keep &= chunk.hits(branch, key)[0] == value
    n_rows, n_cols = view.shape
    rows, in_rows = _cells(chunk.flat[view.rows.branch], view.rows, n_rows, chunk, f"{key}.rows", keep, ev)
    cols, in_cols = _cells(chunk.flat[view.cols.branch], view.cols, n_cols, chunk, f"{key}.cols", keep, ev)
    for axis, inside in (("rows", in_rows), ("cols", in_cols)):
        lost = int((keep & ~inside).sum())
        if lost:
            dropped[f"{key}.{axis}"] = dropped.get(f"{key}.{axis}", 0) + lost
    keep &= in_rows & in_cols
    if mask is not None:
        keep &= _track_hits(chunk, mask, ev, keep, len(counts))
    flat = (ev[keep] * n_rows + rows[keep]) * n_cols + cols[keep]
    cells = out.reshape(-1)  # a view of the contiguous slice
    if view.mode == "binary" or mask is not None:
        cells[flat] = 1.0
    else:
        np.add.at(cells, flat, 1.0)


def _track_hits(chunk: _Chunk, mask: Any, ev: np.ndarray, keep: np.ndarray, n_events: int) -> np.ndarray:
    """Per hit: whether it belongs to its event's chosen track (``data.target.track``: a number, or the
    track with the most of the view's hits, ties to the lowest number). Noise hits (-1) never do."""
    ids, _ = chunk.hits(mask.mask, "data.target.mask")
    if ids.dtype.kind not in "iub":
        raise DataError(f"{chunk.where(mask.mask)} (data.target.mask): holds {ids.dtype} values; expected integer "
                        "track numbers (-1 for noise)")
    ids = ids.astype(np.int64)
    valid = keep & (ids >= 0)
    if mask.track != "longest":
        return valid & (ids == int(mask.track))
    if not valid.any():
        return valid
    k = int(ids[valid].max()) + 1
    counts = np.bincount(ev[valid] * k + ids[valid], minlength=n_events * k).reshape(n_events, k)
    chosen = counts.argmax(1)  # the first maximum: the lowest track number among equals
    return valid & (ids == chosen[ev])


def _labels(chunk: _Chunk, branch: str, classes: list[int]) -> np.ndarray:
    """Class labels 0..K-1 of the chunk's events: the index of each value in ``classes``."""
    import awkward as ak

    array = chunk.arrays[branch]
    if array.ndim != 1:
        raise DataError(f"{chunk.where(branch)} (data.target.branch): holds a list per event; expected one value "
                        "per event (for per-hit indices use data.target.multi_hot)")
    values = ak.to_numpy(array)
    order = np.argsort(classes)
    known = np.asarray(classes)[order]
    pos = np.clip(np.searchsorted(known, values), 0, len(known) - 1)
    bad = known[pos] != values
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DataError(f"{chunk.where(branch)} (data.target.branch): value {values[i]} in entry {chunk.start + i} "
                        f"is not in data.target.classes {classes}")
    return order[pos].astype(np.int64)


def _multi_hot(out: np.ndarray, target: Any, chunk: _Chunk) -> None:
    """Set the chunk's multi-hot vectors in ``out`` (its (n, K) slice)."""
    key = "data.target.multi_hot"
    pairs = target.multi_hot_branches()
    counts = chunk.same_lengths([b for b, _ in pairs], key)
    ev = np.repeat(np.arange(len(counts)), counts)
    index = np.zeros(len(ev), np.int64)
    for branch, size in pairs:
        values, _ = chunk.hits(branch, key)
        if values.dtype.kind not in "iub":
            raise DataError(f"{chunk.where(branch)} ({key}): holds {values.dtype} values; expected integer indices")
        bad = (values < 0) | (values >= size)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise DataError(f"{chunk.where(branch)} ({key}): value {values[i]} in entry {chunk.start + int(ev[i])} "
                            f"is outside 0..{size - 1} (data.target.size {size})")
        index = index * size + values.astype(np.int64)
    out[ev, index] = 1.0


def _target_names(target: Any) -> tuple[str, ...]:
    pairs = target.multi_hot_branches()
    if len(pairs) == 1:
        (branch, size), = pairs
        return tuple(f"{branch}_{i}" for i in range(size))
    if len(pairs) == 2:
        (a, size_a), (b, size_b) = pairs
        return tuple(f"{a}_{i}_{b}_{j}" for i in range(size_a) for j in range(size_b))
    return ()


def _n_labels(target: Any) -> int:
    return int(np.prod([size for _, size in target.multi_hot_branches()]))


def _read(cfg: Any, files: list[RootFile]) -> ArraySet:
    """Every event of ``files``, in order, histogrammed into the views."""
    import uproot

    n = sum(f.entries for f in files)
    images = {name: np.zeros((n, 1, *view.shape), np.float32) for name, view in cfg.views.items()}
    labels, mask = cfg.target.branch is not None, cfg.target.mask is not None
    if mask:
        targets = np.zeros((n, 1, *cfg.views[cfg.target.view].shape), np.float32)
    else:
        targets = np.zeros(n, np.int64) if labels else np.zeros((n, _n_labels(cfg.target)), np.float32)
    dropped: dict[str, int] = {}
    offset = 0
    for f in files:
        for arrays, report in uproot.iterate({str(f.path): cfg.tree}, cfg.branches(), step_size=cfg.step_size,
                                             library="ak", report=True):
            start = int(report.tree_entry_start)
            chunk = _Chunk(arrays, f.path, cfg.tree, start, {}, {})
            rows = slice(offset + start, offset + start + len(arrays))
            for name, view in cfg.views.items():
                _fill_view(images[name][rows], view, name, chunk, dropped)
            if mask:
                _fill_view(targets[rows], cfg.views[cfg.target.view], cfg.target.view, chunk, {}, cfg.target)
            elif labels:
                targets[rows] = _labels(chunk, cfg.target.branch, cfg.target.classes)
            else:
                _multi_hot(targets[rows], cfg.target, chunk)
        offset += f.entries
    for key, lost in dropped.items():
        log.info("%s: %d hits outside the binned range were dropped", key, lost)
    return ArraySet(images=images, targets=targets, target_names=() if labels or mask else _target_names(cfg.target))


def load_root(cfg: Any, data: Any = None) -> ArraySet | dict[str, ArraySet]:
    """The ``root`` source: one pool of events for ``data.path`` (split by ``data.split``), or one set
    per split of ``data.files``.

    Returns:
        Sets with images ``{view: (N, 1, R, C)}`` float32 and targets: (N,) int64 class labels or
        (N, K) float32 multi-hot vectors (columns named ``<branch>_<i>``).

    Raises:
        DataError: what :func:`plan_root` raises; a view's branches with different lengths in one
            event; a cell index outside the view's shape; a target value not in the classes or an
            index outside the multi-hot size. Each names the file, the tree and the branch.
    """
    plans = plan_root(cfg)
    sets = {split: _read(cfg, files) for split, files in plans.items()}
    return sets["pool"] if "pool" in sets else sets


def describe_root(cfg: Any, task: str) -> Any:
    """From the files' metadata (tree, branch names, entry counts), without reading the hits: two
    stand-in events per set with the views' shapes, and labels 0 and K-1 (classes are given in the
    config) or an empty and a full multi-hot vector.

    Raises:
        DataError: what :func:`plan_root` raises.
    """
    from deepscope.data.sources import Description

    plans = plan_root(cfg)
    images = {name: np.zeros((2, 1, *view.shape), np.float32) for name, view in cfg.views.items()}
    if cfg.target.mask is not None:
        targets = np.stack([np.zeros((1, *cfg.views[cfg.target.view].shape), np.float32),
                            np.ones((1, *cfg.views[cfg.target.view].shape), np.float32)])
    elif cfg.target.branch is not None:
        targets = np.array([0, len(cfg.target.classes) - 1], np.int64)
    else:
        k = _n_labels(cfg.target)
        targets = np.stack([np.zeros(k, np.float32), np.ones(k, np.float32)])
    stand_in = ArraySet(images=images, targets=targets, target_names=_target_names(cfg.target))
    if "pool" in plans:
        return Description(stand_in, sum(f.entries for f in plans["pool"]))
    return Description({split: stand_in for split in plans})
