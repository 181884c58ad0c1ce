"""Data sources: each turns its config (and, for ``arrays``, the user's dict) into sample sets.

A source returns either one pool of samples (split later by ``data.split``) or a dict of
``train``/``val``/``test`` sets. Sources are registered in :mod:`deepscope.components`.
"""

from __future__ import annotations

import json
import os
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from deepscope.data.arrays import SPLIT_NAMES, ArraySet, split_sets
from deepscope.errors import ConfigError, DataError, did_you_mean

__all__ = ["load_arrays", "load_calorimeter", "load_npz", "load_sklearn_digits", "read_npz_set"]

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
    if path.is_file() and not zipfile.is_zipfile(path):
        raise DataError(f"data file '{path}' is not a .npz archive (not a zip file; write it with numpy.savez)")
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
