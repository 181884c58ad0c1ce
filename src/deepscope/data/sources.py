"""Data sources: each turns its config (and, for ``arrays``, the user's dict) into sample sets.

A source returns either one pool of samples (split later by ``data.split``) or a dict of
``train``/``val``/``test`` sets. Sources are registered in :mod:`deepscope.components`.

A source may also *describe* what it holds without reading its arrays (:func:`describe`, for the
pre-flight checks of ``deepscope validate``): a :class:`Description` holds stand-in sets of a few
samples with the real per-sample shapes and dtypes, and target values that give
``prepare.derive_spec`` the same verdict as the real data (for labels: the smallest and the largest).
A source names its describer in its registry entry (``describe=`` in :mod:`deepscope.components`); a
describer returns ``None`` when it cannot promise that, and sources without one are not described.
"""

from __future__ import annotations

import importlib
import json
import os
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from deepscope.data.arrays import SPLIT_NAMES, ArraySet, split_sets
from deepscope.errors import ConfigError, DataError, did_you_mean

__all__ = ["Description", "describe", "digits_set", "load_arrays", "load_calorimeter", "load_npz",
           "load_sklearn_digits", "read_npz_set"]

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


def _npz_file(path: str | Path) -> Path:
    """``path``, once it is known to exist and to be a zip archive (what ``numpy.savez`` writes)."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"data file '{path}' not found")
    if path.is_file() and not zipfile.is_zipfile(path):
        raise DataError(f"data file '{path}' is not a .npz archive (not a zip file; write it with numpy.savez)")
    return path


def read_npz_set(path: str | Path, channels: str, require_targets: bool = True) -> Loaded:
    """Read a ``.npz`` file in the data contract's layout.

    Raises:
        DataError: missing, unreadable or corrupt file, or wrong layout.
    """
    path = _npz_file(path)
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
    return digits_set(bunch.images[:n], bunch.target[:n], cfg.one_hot)


def digits_set(images: np.ndarray, labels: np.ndarray, one_hot: bool) -> ArraySet:
    """The digits source's set from (N, 8, 8) images and labels 0..9: (N, 1, 8, 8) float32 images and
    int64 labels, or one-hot float32 targets (N, 10)."""
    labels = np.asarray(labels).astype(np.int64)
    targets = np.eye(10, dtype=np.float32)[labels] if one_hot else labels
    return ArraySet(images={"digits": np.asarray(images)[:, None].astype(np.float32)}, targets=targets)


# --- the simulated calorimeter -------------------------------------------------------------------

CALORIMETER_ATTR = "deepscope_calorimeter"  # the simulation settings a cached HDF5 file was written with


def _calorimeter_counts(cfg: Any) -> dict[str, int]:
    counts = {"train": cfg.n_train, "val": cfg.n_val, "test": cfg.n_test}
    return {k: int(v) for k, v in counts.items() if v > 0}


def _calorimeter_settings(cfg: Any) -> str:
    """The settings that decide the simulated events, as canonical JSON."""
    settings = {"counts": _calorimeter_counts(cfg), "simulation_seed": cfg.simulation_seed,
                "options": cfg.simulator_options()}
    return json.dumps(json.loads(json.dumps(settings)), sort_keys=True)


def _simulate_calorimeter(cfg: Any) -> dict[str, Any]:
    """The sets, from independent streams of ``simulation_seed`` (as ``simulate_splits``)."""
    from deepscope.data.simulators.calorimeter import simulate_electrons

    streams = dict(zip(("train", "val", "test"), np.random.SeedSequence(cfg.simulation_seed).spawn(3)))
    try:
        return {name: simulate_electrons(n, streams[name], **cfg.simulator_options())
                for name, n in _calorimeter_counts(cfg).items()}
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"data.options: the simulator refuses them ({exc})") from None


def _calorimeter_set(cfg: Any, sim: Any, name: str) -> ArraySet:
    """The inputs the config asks for, from one simulated set (same arrays as the HDF5 route)."""
    info = sim.info
    images = {}
    for img in cfg.images:
        images[img] = sim["images"][img]
        if cfg.gate_images:
            images[f"gate_{img}"] = sim["images"][f"gate_{img}"]
    raw: dict[str, Any] = {"images": images}
    if cfg.scalars:
        raw["scalars"] = sim["scalars"][:, [info["scalar_names"].index(s) for s in cfg.scalars]]
    if cfg.tracks:
        raw["tracks"] = sim["tracks"][:, :, [info["track_names"].index(t) for t in cfg.tracks]]
    targets, e_acc = sim["targets"], sim["multiply_output_with"]
    if cfg.target == "correction":
        targets = (targets.astype(np.float64) / e_acc.astype(np.float64)).astype(np.float32)
    raw["targets"] = targets
    if cfg.multiply_output_with:
        raw["multiply_output_with"] = e_acc
    return ArraySet.from_mapping(raw, f"data['{name}']", channels="last")


def _write_calorimeter_file(cfg: Any, path: Path) -> None:
    """Simulate and write the ATLAS HDF5 file atomically (a temporary file renamed into place)."""
    import h5py

    from deepscope.data.simulators.calorimeter import write_atlas_hdf5

    sets = _simulate_calorimeter(cfg)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write_atlas_hdf5(tmp, sets)
        with h5py.File(tmp, "a") as f:
            f.attrs[CALORIMETER_ATTR] = _calorimeter_settings(cfg)
        os.replace(tmp, path)
    except OSError as exc:
        raise DataError(f"data.hdf5_path: cannot write '{path}' ({exc})") from None
    finally:
        tmp.unlink(missing_ok=True)


def _check_calorimeter_file(cfg: Any, path: Path) -> None:
    """An existing file must hold the events these settings simulate."""
    from deepscope.data.atlas import _open

    with _open(path) as f:
        found = f.attrs.get(CALORIMETER_ATTR)
    if isinstance(found, bytes):
        found = found.decode()
    wanted = _calorimeter_settings(cfg)
    if found != wanted:
        what = "was not written by the calorimeter source" if found is None else \
            f"holds events simulated with other settings ({found}; now {wanted})"
        raise DataError(f"data.hdf5_path: '{path}' {what}; delete it to simulate again, or point "
                        "data.hdf5_path at another file")


def load_calorimeter(cfg: Any, data: Any = None) -> Loaded:
    """The ``calorimeter`` source: simulated electrons, in memory or through the ``atlas_hdf5`` loader.

    With ``hdf5_path`` the events are written once in the ATLAS HDF5 layout (when the file does not
    exist yet) and read back lazily by the ``atlas_hdf5`` loader, as a real ATLAS file would be.

    Raises:
        DataError: ``hdf5_path`` exists but holds other events, or cannot be written.
        ConfigError: the simulator refuses an option value.
    """
    if cfg.hdf5_path is None:
        return {name: _calorimeter_set(cfg, sim, name) for name, sim in _simulate_calorimeter(cfg).items()}
    from deepscope.config.data import AtlasHDF5Data
    from deepscope.data.atlas import load_atlas_hdf5
    from deepscope.data.simulators.calorimeter import ACCORDION_NAME, TRUTH_NAME, CalorimeterOptions

    path = Path(cfg.hdf5_path)
    if path.exists():
        _check_calorimeter_file(cfg, path)
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        _write_calorimeter_file(cfg, path)
    atlas = AtlasHDF5Data(
        source="atlas_hdf5", path=path, sets={k: k for k in _calorimeter_counts(cfg)},
        images=list(cfg.images), gate_images=cfg.gate_images, scalars=list(cfg.scalars),
        tracks=[f"tracks_{t}" for t in cfg.tracks],
        max_tracks=int(cfg.options.get("max_tracks", CalorimeterOptions.max_tracks)),
        target=TRUTH_NAME if cfg.target == "energy" else [TRUTH_NAME, ACCORDION_NAME],
        multiply_output_with=ACCORDION_NAME if cfg.multiply_output_with else None,
        lazy=True, check_finite=cfg.check_finite,
    )
    return load_atlas_hdf5(atlas)


# --- descriptions without reading the arrays (pre-flight checks) ----------------------------------


@dataclass
class Description:
    """What a source holds, told without reading its arrays.

    Attributes:
        stand_in: a set (a pool) or ``train``/``val``/``test`` sets of a few samples each, with the
            real per-sample shapes and dtypes and target values whose range is the real one.
        pool_size: the real number of samples of a pool (``data.split`` is checked against it).
    """

    stand_in: Loaded
    pool_size: int | None = None


def describe_sklearn_digits(cfg: Any, task: str) -> Description:
    """Always 8x8 one-channel images; every digit 0..9 is among the first 20 samples, and
    ``n_samples`` is at least 20, so the labels are 0..9 whatever the count."""
    stand_in = digits_set(np.zeros((10, 8, 8)), np.arange(10), cfg.one_hot)
    return Description(stand_in, cfg.n_samples or 1797)


def describe_calorimeter(cfg: Any, task: str) -> Description | None:
    """One simulated event per set: shapes follow from the options. The accordion calibration (20 000
    reference events) is fixed, which changes values, not shapes. ``None`` for a binary loss, whose
    check reads the range of every target."""
    if task == "binary":
        return None
    one = cfg.model_copy(update={"n_train": 1, "n_val": min(cfg.n_val, 1), "n_test": min(cfg.n_test, 1),
                                 "options": {"accordion_calibration": 1.0, **cfg.options}})
    return Description({name: _calorimeter_set(cfg, sim, name) for name, sim in _simulate_calorimeter(one).items()})


_NPY_HEADERS = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}


def describe_npz(cfg: Any, task: str) -> Description | None:
    """From the ``.npy`` headers inside the archive (shapes and dtypes) and the target arrays alone.

    ``None`` for what the headers cannot settle: members that are not plain ``.npy`` arrays, and
    arrays of one set with different sample counts (the loader names them).

    Raises:
        DataError: the file is missing, is not a zip archive, or cannot be read.
    """
    path = _npz_file(cfg.path)
    headers: dict[str, tuple[tuple[int, ...], np.dtype]] = {}
    try:
        with zipfile.ZipFile(path) as archive:
            for member in archive.namelist():
                with archive.open(member) as f:
                    read = _NPY_HEADERS.get(np.lib.format.read_magic(f)) if member.endswith(".npy") else None
                    if read is None:
                        return None
                    shape, _, dtype = read(f)
                if dtype.hasobject:
                    return None
                headers[member[:-4]] = (tuple(shape), dtype)
        with np.load(path, allow_pickle=False) as npz:
            targets = {k: npz[k] for k in headers if k in ("targets", *(f"{n}/targets" for n in SPLIT_NAMES))}
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as exc:
        raise DataError(f"data file '{path}' is not a readable .npz archive ({exc})") from None
    counts: dict[str, set[int]] = {}
    for key, (shape, _) in headers.items():
        if shape:
            counts.setdefault(key.split("/")[0] if key.split("/")[0] in SPLIT_NAMES else "", set()).add(shape[0])
    if any(len(n) > 1 for n in counts.values()):
        return None
    stand_ins = {key: _npz_stand_in(shape, dtype, targets.get(key)) for key, (shape, dtype) in headers.items()}
    loaded = _from_dict(_npz_mapping(stand_ins, path), str(path), cfg.channels)
    pool_size = None if isinstance(loaded, dict) else next(iter(counts.get("", {len(loaded)})))
    return Description(loaded, pool_size)


def _npz_stand_in(shape: tuple[int, ...], dtype: np.dtype, targets: np.ndarray | None) -> np.ndarray:
    """Two samples of zeros shaped like one array (none for an empty one); targets keep the samples
    that hold their smallest and largest value."""
    if not shape:
        return np.zeros(shape, dtype)
    if targets is not None and targets.size:
        rows = [np.unravel_index(f(targets), targets.shape)[0] for f in (np.argmin, np.argmax)]
        return targets[rows[:min(shape[0], 2)]]
    return np.zeros((min(shape[0], 2), *shape[1:]), dtype)


def describe(cfg: Any, task: str) -> Description | None:
    """Describe the data ``cfg`` (the ``data`` section) names without reading its arrays.

    Args:
        cfg: the validated ``data`` section.
        task: the loss's task (``regression``, ``binary``, ``multiclass``): which target values matter.

    Returns:
        ``None`` when the source has no describer or its description cannot settle what the
        data checks would find.

    Raises:
        DataError, ConfigError: what loading the source would raise first (a missing file, options
            the simulator refuses).
    """
    from deepscope.components import SOURCES

    target = SOURCES.entry(cfg.source).meta.get("describe")
    if target is None:
        return None
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)(cfg, task)
