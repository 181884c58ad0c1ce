"""The ``cube_hdf5`` source: RACCOON/PENGUIN's HDF5 file of simulation cubes, one dataset per seed and class.

:func:`plan_cube_hdf5` reads only the file's metadata (keys, dataset shapes and dtypes) and decides
every sample, making every check that needs no cube data; :func:`load_cube_hdf5` then reads the
cubes and :func:`describe_cube_hdf5` builds stand-in sets from the plan alone.

Cubes are stored (D, H, W) or (C, D, H, W) (a key may also name a group holding exactly one such
dataset). Samples are channels first: images ``{"cube": (N, C, D, H, W)}``, or with
``data.slices`` every 2D slice along the chosen cube axes, ``(N, C, *plane)``. Targets are the
integer label of the class whose key pattern names the cube, (N,) int64.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from deepscope.data.arrays import ArraySet
from deepscope.data.h5read import H5Handle, LazyStore, lazy_or_loaded
from deepscope.data.sources import Description
from deepscope.errors import DataError, did_you_mean

__all__ = ["CubePlan", "CubeSample", "CubeStore", "describe_cube_hdf5", "load_cube_hdf5", "plan_cube_hdf5"]

IMAGE_NAME = "cube"
_SHOWN_KEYS = 5  # keys listed when none matches a pattern


@dataclass(frozen=True)
class CubeSample:
    """One cube of a split: its dataset, seed and class label (a cube gives several slice samples)."""

    key: str  # the dataset's path in the file
    seed: int
    label: int


@dataclass
class CubePlan:
    """Every split's cubes in the loader's order, and the shapes they give.

    Attributes:
        path: the HDF5 file.
        splits: split -> its cubes, by seed, then in the order of ``data.classes``.
        cube_shape: (C, D, H, W) of every cube (C = 1 for cubes stored (D, H, W)).
        sample_shape: (C, D, H, W) for whole cubes, (C, *plane) for slices.
        slices_per_cube: samples one cube gives (1 for whole cubes).
    """

    path: Path
    splits: dict[str, list[CubeSample]]
    cube_shape: tuple[int, int, int, int]
    sample_shape: tuple[int, ...]
    slices_per_cube: int


# --- the plan: keys and shapes ---------------------------------------------------------------------


def _open(path: Path) -> Any:
    """The file opened read-only, once it is known to exist and to be HDF5."""
    import h5py

    if not path.exists():
        raise DataError(f"data.path: '{path}' not found; expected RACCOON/PENGUIN's HDF5 cube file")
    if not path.is_file() or not h5py.is_hdf5(path):
        raise DataError(f"data.path: '{path}' is not an HDF5 file; expected one dataset per cube "
                        "(keys such as 'gr_seed0001')")
    try:
        return h5py.File(path, "r")
    except OSError as exc:
        raise DataError(f"data.path: '{path}' cannot be read as HDF5 ({exc})") from None


def _key_regex(pattern: str) -> re.Pattern[str]:
    """What the keys of a pattern look like: its text around a (signed, padded) number."""
    from deepscope.config.cube_hdf5 import pattern_parts

    before, _, after = pattern_parts(pattern)
    return re.compile(re.escape(before) + r"\s*[+-]?\d+" + re.escape(after))


def _dataset_names(f: Any) -> list[str]:
    """The paths of every dataset in the file."""
    import h5py

    names: list[str] = []
    f.visititems(lambda name, obj: names.append(name) if isinstance(obj, h5py.Dataset) else None)
    return names


def _check_some_key_matches(f: Any, path: Path, cfg: Any) -> None:
    """Keys matching no pattern are ignored, but a file where none matches is the wrong file (or patterns)."""
    names = _dataset_names(f)
    regexes = [_key_regex(p) for p in cfg.classes]
    if any(r.fullmatch(n) or r.fullmatch(n.rsplit("/", 1)[0]) for n in names for r in regexes):
        return
    first_seed = next(iter(cfg.split_seeds().values())).start
    wanted = [p.format(seed=first_seed) for p in cfg.classes]
    hint = did_you_mean(wanted[0], names)
    shown = ", ".join(f"'{n}'" for n in names[:_SHOWN_KEYS]) + (", ..." if len(names) > _SHOWN_KEYS else "")
    patterns = ", ".join(f"'{p}'" for p in cfg.classes)
    raise DataError(f"'{path}': no dataset matches the key patterns of data.classes ({patterns}), e.g. "
                    f"'{wanted[0]}'; the file holds {len(names)} dataset(s): {shown or 'none'}{hint}")


def _dataset(f: Any, key: str, path: Path) -> Any:
    """The dataset named ``key``, or the one dataset of the group named ``key``."""
    import h5py

    obj = f[key]
    if isinstance(obj, h5py.Group):
        members = [obj[name] for name in obj]
        datasets = [m for m in members if isinstance(m, h5py.Dataset)]
        if len(members) != 1 or len(datasets) != 1:
            raise DataError(f"'{path}': '{key}' is a group of {len(members)} member(s); expected a cube dataset, "
                            "or a group holding exactly one")
        return datasets[0]
    return obj


def _cube_shape(ds: Any, key: str, path: Path) -> tuple[int, int, int, int]:
    """(C, D, H, W) of a numeric 3D or 4D dataset."""
    if not (np.issubdtype(ds.dtype, np.number) or ds.dtype == bool):
        raise DataError(f"'{path}': dataset '{key}' has dtype {ds.dtype}; expected numbers (a cube)")
    if ds.ndim not in (3, 4):
        raise DataError(f"'{path}': dataset '{key}' has shape {tuple(ds.shape)}; expected a cube (D, H, W) or "
                        "(C, D, H, W)")
    shape = tuple(int(s) for s in ds.shape)
    return (1, *shape) if len(shape) == 3 else shape  # type: ignore[return-value]


def _sample_shape(cfg: Any, cube: tuple[int, int, int, int], path: Path) -> tuple[tuple[int, ...], int]:
    """The per-sample shape and the samples of one cube; slices along several axes must agree."""
    if cfg.slices is None:
        return cube, 1
    c, spatial = cube[0], cube[1:]
    planes = {axis: tuple(s for i, s in enumerate(spatial) if i != axis) for axis in cfg.slices.axes}
    first = cfg.slices.axes[0]
    for axis, plane in planes.items():
        if plane != planes[first]:
            raise DataError(f"'{path}': cubes of shape {spatial} give slices of shape {planes[first]} along axis "
                            f"{first} but {plane} along axis {axis}; data.slices.axes must give slices of one "
                            "shape")
    return (c, *planes[first]), sum(spatial[axis] for axis in cfg.slices.axes)


def plan_cube_hdf5(cfg: Any) -> CubePlan:
    """Every split's cubes, from the file's metadata (keys, shapes, dtypes; no cube data).

    Args:
        cfg: a validated ``cube_hdf5`` data section.

    Returns:
        The plan: per split its cubes (key, seed, label) by seed, then in the order of
        ``data.classes``; the cube shape and the per-sample shape.

    Raises:
        DataError: the file is missing or not HDF5; no key matches a pattern; a seed of a range
            lacks the key of a class; a dataset is not a numeric 3D or 4D cube; cubes of different
            shapes; slices along ``data.slices.axes`` of different shapes.
    """
    path = Path(cfg.path)
    with _open(path) as f:
        _check_some_key_matches(f, path, cfg)
        splits: dict[str, list[CubeSample]] = {}
        first: tuple[str, tuple[int, ...], tuple[int, int, int, int]] | None = None
        for split, seeds in cfg.split_seeds().items():
            cubes = []
            for seed in seeds:
                owner: dict[str, str] = {}
                for pattern, label in cfg.classes.items():
                    key = pattern.format(seed=seed)
                    if key in owner:
                        raise DataError(f"'{path}': the patterns '{owner[key]}' and '{pattern}' of data.classes "
                                        f"both name '{key}' (seed {seed}); every class needs its own keys")
                    owner[key] = pattern
                    if key not in f:
                        raise DataError(f"'{path}': no dataset '{key}' for seed {seed} of data.seeds.{split} "
                                        f"(class {label}, pattern '{pattern}'); every seed of a range needs a cube "
                                        "of every class")
                    ds = _dataset(f, key, path)
                    shape = _cube_shape(ds, key, path)
                    if first is None:
                        first = (key, tuple(ds.shape), shape)
                    elif shape != first[2]:
                        raise DataError(f"'{path}': dataset '{key}' has shape {tuple(ds.shape)} but '{first[0]}' "
                                        f"has {first[1]}; every cube needs one shape")
                    cubes.append(CubeSample(ds.name.lstrip("/"), seed, label))
            splits[split] = cubes
    if first is None:  # the config's checks make train hold at least one seed and one class
        raise DataError(f"'{path}': data.seeds and data.classes name no cube")
    sample_shape, per_cube = _sample_shape(cfg, first[2], path)
    return CubePlan(path, splits, first[2], sample_shape, per_cube)


# --- the store: cubes read as they are asked for ---------------------------------------------------


class CubeStore(LazyStore):
    """The samples of one split, read from the file batch by batch (the ``SampleStore`` protocol), as
    the seed's ``WholeCubeDataset`` reads its cubes.

    Position ``p`` is slice ``p % slices_per_cube`` of cube ``p // slices_per_cube`` (the cube itself
    without slices). A batch reads, per cube it touches, only the slices it needs: one hyperslab per
    slice axis (a plain slice when the indices are consecutive). Labels come from the plan, without
    reading the file.

    Args:
        cfg: the validated ``cube_hdf5`` data section (slices, amplitude).
        plan: the checked plan (:func:`plan_cube_hdf5`).
        cubes: this split's cubes.
    """

    def __init__(self, cfg: Any, plan: CubePlan, cubes: list[CubeSample]) -> None:
        self.plan, self.cubes = plan, cubes
        self.axes: tuple[int, ...] = tuple(cfg.slices.axes) if cfg.slices is not None else ()
        self.amplitude = {int(k): float(v) for k, v in cfg.amplitude.items() if v != 1.0}
        self.labels = np.asarray([c.label for c in cubes], np.int64)
        self._n = len(cubes) * plan.slices_per_cube
        self.h5 = H5Handle(plan.path)
        self.rows_read = 0  # slices (or cubes) read from the file

    def __repr__(self) -> str:
        return f"CubeStore('{self.plan.path}', {len(self.cubes)} cubes, {self._n} samples)"

    def sample_bytes(self) -> int:
        return int(np.prod(self.plan.sample_shape)) * 4 + 8

    def _dataset(self, cube: CubeSample) -> Any:
        return self.h5.file[cube.key]

    def _read_cube(self, cube: CubeSample, within: np.ndarray) -> np.ndarray:
        """Samples ``within`` (increasing) of one cube, (k, C, ...) float32 before the amplitude."""
        ds = self._dataset(cube)
        offset = ds.ndim - 3  # a stored channel axis comes first
        if not self.axes:
            self.rows_read += 1
            return np.asarray(ds[()], dtype=np.float32).reshape(1, *self.plan.cube_shape)
        spatial = self.plan.cube_shape[1:]
        bounds = np.cumsum([0] + [spatial[a] for a in self.axes])
        parts = []
        for k, axis in enumerate(self.axes):
            sel = within[(within >= bounds[k]) & (within < bounds[k + 1])] - bounds[k]
            if not len(sel):
                continue
            index: list[Any] = [slice(None)] * ds.ndim
            consecutive = int(sel[-1]) - int(sel[0]) + 1 == len(sel)
            index[offset + axis] = slice(int(sel[0]), int(sel[-1]) + 1) if consecutive else sel.tolist()
            block = np.asarray(ds[tuple(index)], dtype=np.float32)
            block = np.moveaxis(block, offset + axis, 0)  # (k, [C,] plane)
            parts.append(block if offset else block[:, None])
            self.rows_read += len(sel)
        return np.concatenate(parts)

    def _read_sorted(self, positions: np.ndarray) -> dict[str, Any]:
        per = self.plan.slices_per_cube
        images = np.empty((len(positions), *self.plan.sample_shape), np.float32)
        which = positions // per
        bounds = np.flatnonzero(np.diff(which)) + 1
        for group in np.split(np.arange(len(positions)), bounds):
            if not len(group):
                continue
            cube = self.cubes[int(which[group[0]])]
            try:
                block = self._read_cube(cube, positions[group] % per)
            except (OSError, RuntimeError, ValueError, TypeError, KeyError) as exc:
                raise DataError(f"'{self.plan.path}': dataset '{cube.key}' cannot be read ({exc})") from None
            factor = self.amplitude.get(cube.label)
            if factor is not None:
                block *= np.float32(factor)
            images[group] = block
        return {"images": {IMAGE_NAME: images}, "targets": self.labels[which]}

    def read_targets(self, positions: np.ndarray) -> np.ndarray:
        """The class labels of ``positions``, from the plan (no cube is read)."""
        return self.labels[self._positions(positions) // self.plan.slices_per_cube]

    def describe_sample(self, key: str, position: int) -> str:
        per = self.plan.slices_per_cube
        cube = self.cubes[position // per]
        where = f", slice {position % per}" if self.axes else ""
        return f"'{self.plan.path}', dataset '{cube.key}'{where}"


def load_cube_hdf5(cfg: Any, data: Any = None) -> dict[str, CubeStore | ArraySet]:
    """The ``cube_hdf5`` source: the train set and, when their seeds are given, the val and test sets.

    Each split is a :class:`CubeStore` that reads its cubes batch by batch, or, as ``data.lazy``
    says, an in-memory set filled by the same reads once.

    Args:
        cfg: a validated ``cube_hdf5`` data section.
        data: unused (the source reads its file).

    Returns:
        ``{"train": ..., "val": ..., "test": ...}`` (the splits given in ``data.seeds``) of stores
        whose samples are images ``{"cube": (C, D, H, W)}`` float32, or ``(C, *plane)`` for slices,
        each class's cubes multiplied by its ``data.amplitude``, and targets the int64 class labels.
        Samples are ordered by seed, then class (the order of ``data.classes``), then slice axis and
        index.

    Raises:
        DataError: what :func:`plan_cube_hdf5` raises, or a cube that cannot be read.
    """
    plan = plan_cube_hdf5(cfg)
    stores = {name: CubeStore(cfg, plan, cubes) for name, cubes in plan.splits.items()}
    return lazy_or_loaded(stores, cfg.lazy, f"cube_hdf5 '{plan.path}'")


def describe_cube_hdf5(cfg: Any, task: str) -> Description | None:
    """Stand-in sets with the real per-sample shapes and one sample per class label of each split,
    from the file's metadata alone.

    Raises:
        DataError: what :func:`plan_cube_hdf5` raises.
    """
    plan = plan_cube_hdf5(cfg)
    sets = {}
    for name, cubes in plan.splits.items():
        labels = np.asarray(sorted({c.label for c in cubes}), np.int64)
        sets[name] = ArraySet(images={IMAGE_NAME: np.zeros((len(labels), *plan.sample_shape), np.float32)},
                              targets=labels)
    return Description(sets)
