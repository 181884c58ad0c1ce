"""The ``fits_dirs`` and ``radio_cubes`` sources: DeepFocus's folders of FITS cubes with CSV catalogues.

Reading goes in two steps. :func:`plan_fits_dirs` reads only the CSVs and the FITS headers and
decides every sample (which file, which crop, which targets), making every check that needs no
pixels; :func:`load_fits_dirs` then reads the pixels, and :func:`describe_fits_dirs` builds
stand-in sets from the plan alone. Predictions are written by :mod:`deepscope.data.fits_predict`.

Cubes are (z, y, x) numpy arrays (NAXIS3, NAXIS2, NAXIS1), optionally with leading degenerate
axes such as Stokes (1, z, y, x), which are dropped. Samples are channels first, one channel:
images ``{"cube": (N, 1, *spatial)}``.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from deepscope.data.arrays import ArraySet
from deepscope.data.sources import Description
from deepscope.errors import ConfigError, DataError, did_you_mean

__all__ = ["FitsPlan", "FitsSample", "SplitPlan", "describe_fits_dirs", "describe_radio_cubes", "header_shape",
           "load_fits_dirs", "load_radio_cubes", "plan_fits_dirs", "read_cube", "tile_starts"]

IMAGE_NAME = "cube"
PREDICTIONS_CSV = "predictions.csv"  # the cubes mode's prediction table
Shapes = dict[Path, tuple[int, int, int]]  # (z, y, x) of every cube whose header was read


@dataclass(frozen=True)
class FitsSample:
    """Where one sample comes from.

    Attributes:
        file: the input cube.
        id: its ID (the CSV's ID column).
        target_file: the target cube (deconvolution).
        row: the CSV data row (0-based; line ``row + 2`` of the file) of a source crop.
        channel: the channel z of a 2D sample (a slice, or a 2D crop around a source).
        origin: the start of the crop or tile in the sample's axes, (z, y, x) or (y, x); negative
            or past the cube where it is zero-padded. ``None``: the whole cube (or channel).
    """

    file: Path
    id: str
    target_file: Path | None = None
    row: int | None = None
    channel: int | None = None
    origin: tuple[int, ...] | None = None


@dataclass
class SplitPlan:
    """The samples of one split: files, crops and (sources, cubes) targets from the CSV."""

    folder: Path
    csv: Path
    samples: list[FitsSample]
    targets: np.ndarray | None  # (N, K) float32 or (N,) int64; None for deconvolution


@dataclass
class FitsPlan:
    """Every split's samples, the per-sample spatial shape and the target names."""

    splits: dict[str, SplitPlan]
    sample_shape: tuple[int, ...]
    tiled: bool
    target_names: tuple[str, ...]


# --- FITS files ------------------------------------------------------------------------------------


def _image_hdu(hdul: Any, path: Path) -> int:
    """The index of the first HDU holding an image."""
    for i, hdu in enumerate(hdul):
        if getattr(hdu, "is_image", False) and int(hdu.header.get("NAXIS", 0)) > 0:
            return i
    raise DataError(f"'{path}': holds no image (no HDU with data)")


def _cube_shape(shape: tuple[int, ...], path: Path) -> tuple[int, int, int]:
    """(z, y, x) of data of ``shape`` (numpy order), dropping leading axes of length 1 (Stokes)."""
    while len(shape) > 3 and shape[0] == 1:
        shape = shape[1:]
    if len(shape) != 3:
        raise DataError(f"'{path}': holds data of shape {tuple(shape)} (numpy order); expected a 3D cube (z, y, x), "
                        "optionally with leading axes of length 1 such as Stokes (1, z, y, x)")
    return tuple(int(s) for s in shape)  # type: ignore[return-value]


def _fits_error(path: Path, exc: Exception) -> DataError:
    return DataError(f"'{path}': not a readable FITS file ({type(exc).__name__}: {exc})")


def header_shape(path: str | Path) -> tuple[int, int, int]:
    """(z, y, x) of a cube from its header (NAXISn) alone; a truncated data part is refused too.

    Raises:
        DataError: missing, unreadable or truncated file, a header without NAXISn, or not 3D.
    """
    from astropy.io import fits

    path = Path(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with fits.open(path, memmap=False) as hdul:
                index = _image_hdu(hdul, path)
                hdu = hdul[index]
                naxis = int(hdu.header["NAXIS"])
                shape = tuple(int(hdu.header[f"NAXIS{k}"]) for k in range(naxis, 0, -1))
                need = 0  # compressed images keep their data in a table: no size to check
                if not isinstance(hdu, fits.CompImageHDU):
                    need = hdul.fileinfo(index)["datLoc"] + abs(int(hdu.header["BITPIX"])) // 8 * int(np.prod(shape))
    except DataError:
        raise
    except (OSError, ValueError, KeyError, TypeError, IndexError) as exc:
        raise _fits_error(path, exc) from None
    if path.stat().st_size < need:
        raise DataError(f"'{path}': truncated FITS file ({path.stat().st_size} bytes; its header announces "
                        f"{need} bytes of header and data)")
    return _cube_shape(shape, path)


def _read(path: Path, nan: str) -> tuple[np.ndarray, Any, tuple[int, ...]]:
    """The cube (z, y, x) float32, its header, and the stored data shape."""
    from astropy.io import fits

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with fits.open(path, memmap=False) as hdul:
                hdu = hdul[_image_hdu(hdul, path)]
                data, header = hdu.data, hdu.header.copy()
                stored = tuple(data.shape)
                cube = np.array(data, dtype=np.float32).reshape(_cube_shape(stored, path))
    except DataError:
        raise
    except (OSError, ValueError, KeyError, TypeError, IndexError) as exc:
        raise _fits_error(path, exc) from None
    bad = np.isnan(cube)
    if bad.any():
        if nan == "error":
            raise DataError(f"'{path}': {int(bad.sum())} NaN pixel(s); set data.nan: zero to read them as 0, "
                            "or replace them in the file")
        cube[bad] = 0.0
    return cube, header, stored


def read_cube(path: str | Path, nan: str = "zero") -> np.ndarray:
    """A cube as (z, y, x) float32, leading degenerate axes dropped.

    Args:
        path: the FITS file (the first HDU holding an image is read).
        nan: ``zero`` turns NaN pixels into 0; ``error`` refuses them.

    Raises:
        DataError: unreadable or corrupt file, not 3D, or NaN pixels with ``nan='error'``.
    """
    return _read(Path(path), nan)[0]


def _scale(cube: np.ndarray) -> float:
    """The per-cube scale: the largest |value| (1 for an all-zero cube)."""
    peak = float(np.abs(cube).max()) if cube.size else 0.0
    return peak if peak > 0 and np.isfinite(peak) else 1.0


# --- crops and tiles -------------------------------------------------------------------------------


def tile_starts(n: int, size: int) -> list[int]:
    """Starts of the tiles of ``size`` along an axis of ``n`` pixels: steps of ``size`` from 0, the
    last tile ending at the axis' end (overlapping the one before); one tile, zero-padded at its
    end, when the axis is shorter than ``size``."""
    if n <= size:
        return [0]
    starts = list(range(0, n - size + 1, size))
    return starts if starts[-1] + size == n else [*starts, n - size]


def _extract(arr: np.ndarray, start: tuple[int, ...], size: tuple[int, ...]) -> np.ndarray:
    """``arr[start:start + size]`` with zeros where the window leaves the array."""
    out = np.zeros(size, np.float32)
    src = tuple(slice(max(s, 0), min(s + c, n)) for s, c, n in zip(start, size, arr.shape))
    if all(sl.stop > sl.start for sl in src):
        out[tuple(slice(sl.start - s, sl.stop - s) for sl, s in zip(src, start))] = arr[src]
    return out


def _sample(cube: np.ndarray, s: FitsSample, shape: tuple[int, ...]) -> np.ndarray:
    plane = cube if s.channel is None else cube[s.channel]
    return plane if s.origin is None else _extract(plane, s.origin, shape)


# --- the plan: CSVs and headers --------------------------------------------------------------------


def _row(csv: Path, i: int) -> str:
    return f"'{csv}' row {i + 1} (line {i + 2})"


def _split_folders(cfg: Any) -> dict[str, Path]:
    root = Path(cfg.path)
    if not root.is_dir():
        what = "is not a folder" if root.exists() else "not found"
        raise DataError(f"data.path: '{root}' {what}; expected the folder holding the split folders "
                        f"({', '.join(cfg.split_folders().values())})")
    present = sorted(p.name for p in root.iterdir() if p.is_dir())
    out = {}
    for split, name in cfg.split_folders().items():
        if (root / name).is_dir():
            out[split] = root / name
        elif split in cfg.required_splits:
            raise DataError(f"data.path: '{root}' has no folder '{name}' for the {split} split"
                            f"{did_you_mean(name, present)} (folders: {', '.join(present) or 'none'}); "
                            "data.sets names the split folders")
    return out


def _read_csv(path: Path, cfg: Any, split: str, needed: list[str]) -> Any:
    import pandas as pd

    if not path.is_file():
        found = sorted(p.name for p in path.parent.glob("*.csv"))
        raise DataError(f"'{path}' not found: the {split} split's catalogue (data.csv.{split})"
                        f"{did_you_mean(path.name, found)} (CSV files there: {', '.join(found) or 'none'})")
    try:
        table = pd.read_csv(path, dtype={cfg.id_column: str}, skipinitialspace=True)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, OSError, ValueError) as exc:
        raise DataError(f"'{path}': not a readable CSV file ({exc})") from None
    table.columns = [str(c).strip() for c in table.columns]
    for name in needed:
        if name not in table.columns:
            cols = list(table.columns)
            raise DataError(f"'{path}': no column '{name}'{did_you_mean(name, cols)} (columns: {', '.join(cols)})")
    if len(table) == 0:
        raise DataError(f"'{path}' holds no rows: the {split} split is empty")
    for i, value in enumerate(table[cfg.id_column]):
        if not isinstance(value, str) or not value.strip():
            raise DataError(f"{_row(path, i)}: empty {cfg.id_column}; every row names its cube")
    table[cfg.id_column] = table[cfg.id_column].str.strip()
    return table


def _numbers(table: Any, column: str, csv: Path) -> np.ndarray:
    """A column as float64, every value a finite number."""
    import pandas as pd

    values = pd.to_numeric(table[column], errors="coerce").to_numpy(np.float64)
    bad = np.flatnonzero(~np.isfinite(values))
    if bad.size:
        i = int(bad[0])
        raise DataError(f"{_row(csv, i)}: column '{column}' holds {table[column].iloc[i]!r}; expected a number")
    return values


def _is_integer(table: Any, column: str) -> bool:
    import pandas as pd

    return bool(pd.api.types.is_integer_dtype(table[column]) or pd.api.types.is_bool_dtype(table[column]))


def _cube_files(folder: Path, csv: Path, table: Any, cfg: Any, shapes: Shapes) -> dict[str, Path]:
    """ID -> input cube (in the order the CSV first names them), each existing and 3D (and paired
    with a target cube of its shape in deconvolution)."""
    files: dict[str, Path] = {}
    for i, cube_id in enumerate(table[cfg.id_column]):
        if cube_id in files:
            continue
        file = folder / cfg.input.replace("{id}", cube_id)
        if not file.is_file():
            raise DataError(f"{_row(csv, i)}: {cfg.id_column} {cube_id} names '{file.name}', which is not in "
                            f"'{folder}' (data.input is '{cfg.input}')")
        shapes.setdefault(file, header_shape(file))
        if cfg.target_pattern is not None:
            target = folder / cfg.target_pattern.replace("{id}", cube_id)
            if not target.is_file():
                raise DataError(f"'{file}' has no target cube '{target.name}' in '{folder}' ({cfg.id_column} "
                                f"{cube_id}, {_row(csv, i)}); every input needs its target (data.target)")
            shapes.setdefault(target, header_shape(target))
            if shapes[target] != shapes[file]:
                raise DataError(f"'{file}' has shape {shapes[file]} but its target '{target}' has {shapes[target]}; "
                                "a pair needs one shape (z, y, x)")
        files[cube_id] = file
    return files


def _targets(table: Any, cfg: Any, csv: Path, rows: list[list[int]], labels: bool) -> np.ndarray:
    """Targets of samples made of CSV ``rows`` (one list per sample): (N, K) float32 or (N,) int64."""
    cols = np.stack([_numbers(table, c, csv) for c in cfg.columns], axis=1)  # (rows, K)
    out = np.empty((len(rows), len(cfg.columns)))
    for n, idx in enumerate(rows):
        values = cols[idx]
        if cfg.aggregate in ("none", "first"):
            if cfg.aggregate == "none" and len(idx) > 1:
                differ = np.flatnonzero((values != values[0]).any(axis=0))
                if differ.size:
                    k = int(differ[0])
                    col, j = cfg.columns[k], int(np.flatnonzero(values[:, k] != values[0, k])[0])
                    raise DataError(f"'{csv}': {cfg.id_column} {table[cfg.id_column].iloc[idx[0]]} has {len(idx)} rows "
                                    f"that differ in column '{col}' (rows {idx[0] + 1} and {idx[j] + 1}); set "
                                    "data.aggregate (first, sum, mean, min or max) to make one target per cube")
            out[n] = values[0]
        else:
            out[n] = getattr(np, cfg.aggregate)(values, axis=0)
    if not labels:
        return out.astype(np.float32)
    flat = out[:, 0]
    bad = np.flatnonzero(flat != np.round(flat))
    if bad.size:
        raise DataError(f"'{csv}': column '{cfg.columns[0]}' holds {flat[bad[0]]:g} ({_row(csv, rows[bad[0]][0])}); "
                        "class labels are integers (data.targets_as: values to regress it)")
    return flat.astype(np.int64)


def _plan_split(cfg: Any, folder: Path, csv: Path, table: Any, labels: bool,
                shapes: Shapes) -> SplitPlan:
    files = _cube_files(folder, csv, table, cfg, shapes)
    ids = list(table[cfg.id_column])
    if cfg.mode == "deconvolution":
        target = cfg.target_pattern
        samples = [FitsSample(f, i, target_file=folder / target.replace("{id}", i)) for i, f in files.items()]
        return SplitPlan(folder, csv, samples, None)
    if cfg.mode == "cubes":
        groups: dict[str, list[int]] = {}
        for r, cube_id in enumerate(ids):
            groups.setdefault(cube_id, []).append(r)
        samples = [FitsSample(f, i) for i, f in files.items()]
        return SplitPlan(folder, csv, samples, _targets(table, cfg, csv, [groups[i] for i in files], labels))
    samples = _source_samples(cfg, csv, table, files, shapes)
    return SplitPlan(folder, csv, samples, _targets(table, cfg, csv, [[r] for r in range(len(ids))], labels))


def _source_samples(cfg: Any, csv: Path, table: Any, files: dict[str, Path],
                    shapes: Shapes) -> list[FitsSample]:
    """A crop of ``data.crop`` centred on every row's position (rounded to the nearest pixel)."""
    pos = np.stack([_numbers(table, c, csv) for c in cfg.position_columns], axis=1) - cfg.position_origin
    samples = []
    for r, cube_id in enumerate(table[cfg.id_column]):
        file = files[cube_id]
        x, y, z = (math.floor(v + 0.5) for v in pos[r])  # the nearest pixel; halves go up
        for name, value, n in zip(cfg.position_columns, (x, y, z), shapes[file][::-1]):
            if not 0 <= value < n:
                raise DataError(f"{_row(csv, r)}: {name} = {table[name].iloc[r]} is outside '{file.name}' "
                                f"({n} pixels along {name}; positions count from {cfg.position_origin}, "
                                "data.position_origin)")
        centre = (z, y, x) if len(cfg.crop) == 3 else (y, x)
        origin = tuple(c - s // 2 for c, s in zip(centre, cfg.crop))
        samples.append(FitsSample(file, cube_id, row=r, channel=None if len(cfg.crop) == 3 else z, origin=origin))
    return samples


def _arrange_cubes(cfg: Any, plans: dict[str, SplitPlan], shapes: Shapes) -> tuple[tuple[int, ...], bool]:
    """Whole cubes (or channels) when they share a shape; else ``crop``-sized tiles (deconvolution).
    Rewrites the plans' samples into slices and tiles."""
    def plane(file: Path) -> tuple[int, ...]:
        return shapes[file][1:] if cfg.slices else shapes[file]

    first: dict[tuple[int, ...], Path] = {}
    for plan in plans.values():
        for s in plan.samples:
            first.setdefault(plane(s.file), s.file)
    tiled = len(first) > 1
    if tiled:
        (sa, fa), (sb, fb) = list(first.items())[:2]
        if cfg.mode == "cubes":
            raise DataError(f"'{fa}' has shape {sa} but '{fb}' has {sb}; data.mode cubes needs cubes of one shape"
                            f"{'' if cfg.slices else ' (or data.slices: true when only the channel counts differ)'}")
        if cfg.crop is None:
            raise DataError(f"'{fa}' has shape {sa} but '{fb}' has {sb}; set data.crop to cut cubes of different "
                            "shapes into tiles of one size")
    shape = tuple(cfg.crop) if tiled else next(iter(first))
    for plan in plans.values():
        samples, targets = [], []
        for n, s in enumerate(plan.samples):
            channels = range(shapes[s.file][0]) if cfg.slices else [None]
            for c in channels:
                starts = [()]
                if tiled:
                    for n_ax, size in zip(plane(s.file), shape):
                        starts = [(*o, t) for o in starts for t in tile_starts(n_ax, size)]
                for o in starts:
                    samples.append(FitsSample(s.file, s.id, s.target_file, channel=c, origin=o if tiled else None))
                    targets.append(n)
        if plan.targets is not None:
            plan.targets = plan.targets[np.asarray(targets, np.int64)]
        plan.samples = samples
    return shape, tiled


def plan_fits_dirs(cfg: Any) -> FitsPlan:
    """Every sample of every split, from the CSVs and the FITS headers (no pixels).

    Args:
        cfg: a validated ``fits_dirs`` (or ``radio_cubes``) data section.

    Returns:
        The plan: per split its samples (file, ID, CSV row, channel, crop or tile origin, in the
        order the loader stacks them) and targets from the CSV; the per-sample spatial shape.

    Raises:
        DataError: a missing folder, CSV, column, cube or target cube; unreadable files; shapes
            that do not pair; positions outside their cube; empty splits.
    """
    folders = _split_folders(cfg)
    needed = [cfg.id_column, *(cfg.position_columns if cfg.mode == "sources" else []), *cfg.columns]
    tables = {split: _read_csv(folder / cfg.csv[split], cfg, split, needed) for split, folder in folders.items()}
    labels = cfg.mode != "deconvolution" and (cfg.targets_as == "labels" or (
        cfg.targets_as == "auto" and len(cfg.columns) == 1 and cfg.aggregate != "mean"
        and all(_is_integer(t, cfg.columns[0]) for t in tables.values())))
    shapes: Shapes = {}
    plans = {split: _plan_split(cfg, folders[split], folders[split] / cfg.csv[split], table, labels, shapes)
             for split, table in tables.items()}
    if cfg.mode == "sources":
        return FitsPlan(plans, tuple(cfg.crop), False, tuple(cfg.columns))
    shape, tiled = _arrange_cubes(cfg, plans, shapes)
    return FitsPlan(plans, shape, tiled, tuple(cfg.columns))


# --- loading and describing ------------------------------------------------------------------------


def _load_split(cfg: Any, plan: FitsPlan, split: SplitPlan) -> ArraySet:
    n, shape = len(split.samples), plan.sample_shape
    images = np.empty((n, 1, *shape), np.float32)
    targets = np.empty((n, 1, *shape), np.float32) if cfg.mode == "deconvolution" else split.targets
    factors = np.ones(n, np.float32)
    by_file: dict[Path, list[int]] = {}
    for i, s in enumerate(split.samples):
        by_file.setdefault(s.file, []).append(i)
    for file, idx in by_file.items():  # every cube is read once
        cube = read_cube(file, cfg.nan)
        factor = _scale(cube) if cfg.scaling == "per_cube" else 1.0
        cube /= factor
        target = None
        if cfg.mode == "deconvolution":
            # targets stay in data units: the model's output is multiplied by the factor
            # (multiply_output_with) before the loss, so predictions come out in data units
            target = read_cube(split.samples[idx[0]].target_file, cfg.nan)
        for i in idx:
            images[i, 0] = _sample(cube, split.samples[i], shape)
            if target is not None:
                targets[i, 0] = _sample(target, split.samples[i], shape)
        factors[idx] = factor
    per_cube_output = cfg.mode == "deconvolution" and cfg.scaling == "per_cube"
    return ArraySet(images={IMAGE_NAME: images}, targets=targets,
                    multiply_output_with=factors if per_cube_output else None, target_names=plan.target_names)


def load_fits_dirs(cfg: Any, data: Any = None) -> dict[str, ArraySet]:
    """The ``fits_dirs`` source: the train set and, when present, the val and test sets.

    Returns:
        ``{"train": ..., "val": ..., "test": ...}`` (the splits found) of sets with images
        ``{"cube": (N, 1, z, y, x)}`` float32 (``(N, 1, y, x)`` for slices and 2D crops), and targets
        (N, 1, *spatial) float32 (deconvolution), (N, K) float32 (columns) or (N,) int64 (one
        integer column); ``multiply_output_with`` (N,) the per-cube scales (deconvolution with
        ``scaling: per_cube``); ``target_names`` the columns.

    Raises:
        DataError: what :func:`plan_fits_dirs` raises, unreadable pixels, or NaN with ``nan: error``.
    """
    plan = plan_fits_dirs(cfg)
    return {name: _load_split(cfg, plan, split) for name, split in plan.splits.items()}


def _stand_in_rows(targets: np.ndarray | None, n: int) -> np.ndarray:
    """Samples that keep the targets' range: the smallest and the largest of every column."""
    if targets is None:
        return np.arange(min(n, 2))
    t = targets.reshape(len(targets), -1)
    return np.unique(np.concatenate([t.argmin(axis=0), t.argmax(axis=0)]))


def describe_fits_dirs(cfg: Any, task: str) -> Description | None:
    """Stand-in sets with the real per-sample shapes, from the CSVs and FITS headers alone.

    ``None`` for deconvolution with a binary loss, whose check needs every target pixel.

    Raises:
        DataError: what :func:`plan_fits_dirs` raises.
    """
    plan = plan_fits_dirs(cfg)
    if cfg.mode == "deconvolution" and task == "binary":
        return None
    sets = {}
    for name, split in plan.splits.items():
        rows = _stand_in_rows(split.targets, len(split.samples))
        sets[name] = _stand_in(cfg, plan.sample_shape, len(rows),
                               None if split.targets is None else split.targets[rows], plan.target_names)
    return Description(sets)


def _stand_in(cfg: Any, shape: tuple[int, ...], n: int, targets: np.ndarray | None,
              names: tuple[str, ...]) -> ArraySet:
    deconvolution = cfg.mode == "deconvolution"
    per_cube = deconvolution and cfg.scaling == "per_cube"
    return ArraySet(images={IMAGE_NAME: np.zeros((n, 1, *shape), np.float32)},
                    targets=np.zeros((n, 1, *shape), np.float32) if deconvolution else targets,
                    multiply_output_with=np.ones(n, np.float32) if per_cube else None, target_names=names)


# --- the simulated folders -------------------------------------------------------------------------


def _radio(cfg: Any) -> tuple[Any, Any, str]:
    """The simulator's options, the folder layout and the settings JSON of a ``radio_cubes`` section."""
    from deepscope.config.fits import DEFAULT_TARGET
    from deepscope.data.simulators.radio import RadioLayout, RadioOptions, settings_json

    try:
        opts = RadioOptions(**cfg.simulator_options())
    except ValueError as exc:
        raise ConfigError(f"data: the radio simulator refuses these options ({exc})") from None
    folders = cfg.split_folders()
    layout = RadioLayout(sets={k: folders[k] for k in cfg.n_cubes}, csv=dict(cfg.csv), input=cfg.input,
                         target=cfg.target or DEFAULT_TARGET, id_column=cfg.id_column,
                         position_columns=tuple(cfg.position_columns), position_origin=cfg.position_origin)
    return opts, layout, settings_json(cfg.n_cubes, cfg.simulation_seed, opts, layout)


def load_radio_cubes(cfg: Any, data: Any = None) -> dict[str, ArraySet]:
    """The ``radio_cubes`` source: simulate the folder at ``cfg.path`` once, then read it as ``fits_dirs``.

    Raises:
        DataError: ``path`` holds other files or cubes simulated with other settings, cannot be
            written, or (as for ``fits_dirs``) does not hold what the config asks for.
        ConfigError: the simulator refuses an option.
    """
    from deepscope.data.simulators.radio import ensure_radio_folder

    opts, layout, _ = _radio(cfg)
    ensure_radio_folder(cfg.path, cfg.n_cubes, cfg.simulation_seed, opts, layout)
    return load_fits_dirs(cfg)


def describe_radio_cubes(cfg: Any, task: str) -> Description | None:
    """From the folder when it is written already, else from the config alone (the shapes are known);
    ``None`` for a binary loss before the catalogue exists.

    Raises:
        DataError: ``path`` holds something else (as loading would say).
        ConfigError: the simulator refuses an option.
    """
    from deepscope.data.simulators.radio import check_radio_folder

    _, _, settings = _radio(cfg)
    if check_radio_folder(cfg.path, settings):
        return describe_fits_dirs(cfg, task)
    if task == "binary":
        return None
    z, y, x = cfg.cube_shape
    shape = tuple(cfg.crop) if cfg.mode == "sources" else ((y, x) if cfg.slices else (z, y, x))
    targets = None if cfg.mode == "deconvolution" else np.zeros((2, len(cfg.columns)), np.float32)
    return Description({name: _stand_in(cfg, shape, 2, targets, tuple(cfg.columns)) for name in cfg.n_cubes})
