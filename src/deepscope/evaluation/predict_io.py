"""``deepscope predict`` by file format: a run's inputs read from ``.npz``, HDF5, ROOT or FITS, and its
predictions written in the input's format (or the one the output's suffix names).

The input's format comes from its suffix, or from its first bytes when the suffix says nothing. A run
reads ``.npz`` files, and the files of its own data source in that source's layout: each entry of
:data:`deepscope.components.SOURCES` names its file format (``predict_input``) and how such a file is
predicted: ``predict_reader`` (the samples, read with the run's own ``data`` section: same datasets,
branches, views; targets optional), ``predict_file`` (a source-specific file in, file out:
registration) or ``predict`` (a folder of FITS cubes). The whole input is predicted; split settings
are not used.

Outputs: ``.npz`` (any input), HDF5 (one dataset per result key, provenance as attributes), ROOT (a
TTree ``predictions`` with one entry per event, provenance as a ``provenance`` string), FITS (folder
inputs, :mod:`deepscope.data.fits_predict`). Files are written to a temporary name and moved into
place; an existing output is never replaced.
"""

from __future__ import annotations

import contextlib
import datetime
import importlib
import json
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from deepscope.data.arrays import ArraySet
from deepscope.errors import DataError, did_you_mean

__all__ = ["FORMATS", "check_inputs", "input_format", "output_format", "predict_path", "read_hdf5_input",
           "read_root_input", "run_formats", "write_predictions"]

log = logging.getLogger("deepscope")

FORMATS = {"npz": "an .npz file", "hdf5": "an HDF5 file (.h5, .hdf5)", "root": "a ROOT file (.root)",
           "fits": "a folder of FITS files"}
_SUFFIXES = {".npz": "npz", ".h5": "hdf5", ".hdf5": "hdf5", ".hdf": "hdf5", ".he5": "hdf5", ".root": "root",
             ".fits": "fits", ".fit": "fits", ".fts": "fits"}
_MAGIC = ((b"\x89HDF\r\n\x1a\n", "hdf5"), (b"PK\x03\x04", "npz"), (b"PK\x05\x06", "npz"), (b"root", "root"),
          (b"SIMPLE  =", "fits"))
ROOT_TREE = "predictions"


# --- formats -----------------------------------------------------------------------------------------


def _suffix(path: Path) -> str:
    suffixes = [s.lower() for s in path.suffixes]
    if len(suffixes) > 1 and suffixes[-1] in (".gz", ".fz") and suffixes[-2] in _SUFFIXES:
        return suffixes[-2]  # cube.fits.gz
    return suffixes[-1] if suffixes else ""


def input_format(path: Path) -> str:
    """The format of an ``--input``: ``fits`` for a folder, else from the suffix, else from the first bytes.

    Raises:
        DataError: the path does not exist, or neither its suffix nor its content tells a known format.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"--input '{path}' not found")
    if path.is_dir():
        return "fits"
    fmt = _SUFFIXES.get(_suffix(path))
    if fmt is not None:
        return fmt
    try:
        with open(path, "rb") as f:
            head = f.read(16)
    except OSError as exc:
        raise DataError(f"--input '{path}' cannot be read ({exc.strerror or exc})") from None
    for magic, fmt in _MAGIC:
        if head.startswith(magic):
            return fmt
    raise DataError(f"--input '{path}': neither its suffix '{_suffix(path)}' nor its content is a format predict "
                    f"reads (.npz, .h5/.hdf5, .root, a folder of .fits)")


def output_format(path: Path, input_fmt: str) -> str:
    """The format an ``--output`` is written in: the one its suffix names, else the input's."""
    return _SUFFIXES.get(_suffix(Path(path)), input_fmt)


def run_formats(entry: Any) -> list[str]:
    """The input formats a run on the source ``entry`` (a SOURCES entry) reads: ``npz`` and its own."""
    own = entry.meta.get("predict_input")
    return ["npz"] + ([own] if own and own != "npz" else [])


def _import(target: str) -> Callable[..., Any]:
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


# --- the dispatch --------------------------------------------------------------------------------------


def predict_path(loaded: Any, input_path: Path, output_path: Path, weights: Path, *, channels: str | None,
                 batch_size: int, loss: Any = None) -> dict[str, Any]:
    """Predict every sample of ``input_path`` with a loaded run and write ``output_path``.

    Args:
        loaded: the run (``deepscope.training.experiment._Loaded``: cfg, run, spec, standardizer, net, task).
        input_path: an ``.npz`` file, a file of the run's source format, or a folder of FITS cubes.
        output_path: the file (a folder for a folder input) to write; its suffix may choose the format.
        weights: the checkpoint the net's weights came from (recorded as provenance).
        channels: the image layout of an ``.npz`` or HDF5 input (default: the run's ``data.channels``).
        batch_size: samples per forward pass.
        loss: the per-sample loss, computed when the input has targets.

    Returns:
        The result of :func:`deepscope.evaluation.predict.predict_store` (``predictions``, ``index``,
        ...), the registration writer's result, or ``{"files": [...]}`` for a folder.

    Raises:
        DataError: a missing or unreadable input, a format the run does not read, missing datasets or
            branches, inputs that do not fit the model, or an existing output file.
    """
    from deepscope.components import SOURCES
    from deepscope.data.sources import read_npz_set
    from deepscope.evaluation.predict import predict_store

    cfg = loaded.cfg
    entry = SOURCES.entry(cfg.data.source)
    input_path, output_path = Path(input_path), Path(output_path)
    fmt = input_format(input_path)
    readable = run_formats(entry)
    if fmt not in readable:
        what = "a folder" if input_path.is_dir() else "a FITS file" if fmt == "fits" else FORMATS[fmt].split(" (")[0]
        raise DataError(f"--input '{input_path}' is {what}, but a run on data.source '{cfg.data.source}' predicts "
                        f"from {' or '.join(FORMATS[f] for f in readable)}")
    provenance = _provenance(loaded, weights, input_path)
    if fmt == "fits":
        if not input_path.is_dir():
            raise DataError(f"--input '{input_path}' is one FITS file; give the folder that holds it (every cube "
                            f"named like data.input '{cfg.data.input}' is predicted)")
        return _predict_fits_folder(loaded, input_path, output_path, provenance)
    if "predict_file" in entry.meta and fmt != "npz":  # the source's own file in, its own layout out
        _refuse_existing(output_path)
        return _import(entry.meta["predict_file"])(loaded, input_path, output_path, batch_size, weights)
    out_fmt = output_format(output_path, fmt)
    if out_fmt not in WRITERS:
        raise DataError(f"--output '{output_path}': predictions of samples are written as .npz, .h5 or .root, "
                        f"not {FORMATS[out_fmt]}")
    _refuse_existing(output_path)
    if fmt == "npz":
        store = read_npz_set(input_path, channels or cfg.data.channels, require_targets=False)
        if isinstance(store, dict):
            raise DataError(f"{input_path}: holds split sets ({', '.join(store)}); give one set of samples to predict")
    else:
        data_cfg = cfg.data
        if channels is not None and "channels" in type(data_cfg).model_fields:  # images with a channel axis
            data_cfg = data_cfg.model_copy(update={"channels": channels})
        store = _import(entry.meta["predict_reader"])(data_cfg, input_path)
    try:
        check_inputs(store if isinstance(store, ArraySet) else ArraySet.from_batch(store.read(np.array([0]))),
                     loaded.spec, str(input_path))
        if isinstance(store, ArraySet) and loaded.spec.target_kind == "label" and store.targets is not None \
                and not np.issubdtype(store.targets.dtype, np.integer):
            store.targets = store.targets.astype(np.int64)
        result = predict_store(loaded.net, loaded.task, store, np.arange(len(store)), loaded.standardizer,
                               batch_size=batch_size, loss=loss)
    finally:
        close = getattr(store, "close", None)
        if close is not None:
            close()
    written = write_predictions(result, output_path, out_fmt, provenance)
    log.info("wrote %d predictions to %s", len(result["index"]), written)
    return result


def _provenance(loaded: Any, weights: Path, input_path: Path) -> dict[str, str]:
    from deepscope import __version__

    return {"run": str(loaded.run.path), "checkpoint": str(weights), "version": f"deepscope {__version__}",
            "config": str(loaded.run.config), "input": str(input_path),
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}


def check_inputs(sample: ArraySet, spec: Any, where: str) -> None:
    """``sample`` (a set, or one sample of it) holds every input the model takes, in its shapes.

    Raises:
        DataError: a missing image or input, or per-sample shapes other than the trained ones.
    """
    for name, image in spec.images.items():
        if name not in sample.images:
            raise DataError(f"{where}: image '{name}' is missing{did_you_mean(name, list(sample.images))} (the model "
                            f"takes: {', '.join(spec.images)})")
        got = sample.images[name].shape[1:]
        want = (image.channels, *image.spatial)
        if tuple(got) != want:
            raise DataError(f"{where}: image '{name}' has per-sample shape (C, ...) = {tuple(got)} but the model "
                            f"was trained on {want}; check --channels (first/last)")
    for key, want in (("scalars", spec.scalars), ("tracks", spec.tracks)):
        have = getattr(sample, key)
        if want and have is None:
            raise DataError(f"{where}: '{key}' is missing; the model was trained with {key}")
        if key == "scalars" and want and have.shape[1] != want:
            raise DataError(f"{where}: scalars have {have.shape[1]} features; the model takes {want}")
        if key == "tracks" and want and have.shape[2] != want[1]:
            raise DataError(f"{where}: tracks have {have.shape[2]} features; the model takes {want[1]}")
    if spec.multiply_output_with and sample.multiply_output_with is None:
        raise DataError(f"{where}: 'multiply_output_with' is missing; the model's output is multiplied by it")


# --- readers: the run's own source layout ----------------------------------------------------------------


def _hdf5_store_class() -> type:
    from deepscope.data.hdf5 import HDF5Store

    class InputStore(HDF5Store):
        """An ``hdf5`` store whose targets are optional (a plan without target datasets reads none)."""

        def _read_sorted(self, rows: np.ndarray) -> dict[str, Any]:
            batch = super()._read_sorted(rows)
            if batch["targets"] is None:
                del batch["targets"]
            return batch

        def _targets(self, rows: np.ndarray) -> np.ndarray | None:
            return super()._targets(rows) if self.plan.targets else None

    return InputStore


def read_hdf5_input(data_cfg: Any, path: Path) -> Any:
    """The samples of an HDF5 file read as the run's ``hdf5`` source reads its file: the same dataset
    names, at the file's root; the targets (and weights) when the file has them.

    Returns:
        A lazy store of every sample (close it when done).

    Raises:
        DataError: not an HDF5 file, the datasets in split groups, a missing input dataset (the
            closest name suggested), or datasets that do not fit the config's layout.
    """
    import h5py

    from deepscope.data.h5read import open_h5
    from deepscope.data.hdf5 import plan_split

    path = Path(path)
    with open_h5(path, "--input") as f:
        def present(name: str) -> bool:
            return isinstance(f.get(name), h5py.Dataset)

        targets = [data_cfg.targets] if isinstance(data_cfg.targets, str) else list(data_cfg.targets)
        with_targets = all(present(t) for t in targets)
        groups = [g for g in (data_cfg.sets or {}).values() if isinstance(f.get(g), h5py.Group)]
        first = data_cfg.input_datasets()[0]
        if groups and not present(first):
            raise DataError(f"--input '{path}': holds the datasets in split groups ({', '.join(groups)}); give one "
                            f"set of samples with its datasets at the file's root ('{first}', ...)")
        update = {"path": path, "sets": None, "targets": targets if with_targets else [],
                  "weights": data_cfg.weights if with_targets and data_cfg.weights and present(data_cfg.weights)
                  else None}
        plan = plan_split(f, data_cfg.model_copy(update=update), "", "pool")
    if not with_targets:
        log.info("--input '%s': no target dataset %s; predicting without targets", path, ", ".join(targets))
    return _hdf5_store_class()(plan)


def read_root_input(data_cfg: Any, path: Path) -> ArraySet:
    """The events of a ROOT file read as the run's ``root`` source reads its files: the same tree,
    views and target (when the file has the target's branches).

    Raises:
        DataError: not a ROOT file, no such tree, a missing view branch (the closest name
            suggested), no events, or hits that do not fit the views.
    """
    import uproot

    from deepscope.data.root import RootFile, _Chunk, _fill_view, _open_tree, _read

    path = Path(path)
    cfg = data_cfg.model_copy(update={"path": path, "files": None})
    tree = _open_tree(path, cfg.tree)
    names = list(tree.keys())
    for name, view in cfg.views.items():
        for branch in view.branches():
            if branch not in names:
                shown = ", ".join(names[:30]) + (", ..." if len(names) > 30 else "")
                raise DataError(f"--input '{path}', tree '{cfg.tree}': no branch '{branch}' (data.views.{name})"
                                f"{did_you_mean(branch, names)} (branches: {shown})")
    files = [RootFile(path, int(tree.num_entries))]
    if not files[0].entries:
        raise DataError(f"--input '{path}': tree '{cfg.tree}' holds no events")
    if all(b in names for b in cfg.target.branches()):
        return _read(cfg, files)
    log.info("--input '%s': no target branch %s; predicting without targets", path, ", ".join(cfg.target.branches()))
    images = {name: np.zeros((files[0].entries, 1, *view.shape), np.float32) for name, view in cfg.views.items()}
    branches = list(dict.fromkeys(b for view in cfg.views.values() for b in view.branches()))
    for arrays, report in uproot.iterate({str(path): cfg.tree}, branches, step_size=cfg.step_size, library="ak",
                                         report=True):
        start = int(report.tree_entry_start)
        chunk = _Chunk(arrays, path, cfg.tree, start, {}, {})
        for name, view in cfg.views.items():
            _fill_view(images[name][start:start + len(arrays)], view, name, chunk, {})
    return ArraySet(images=images)


def _predict_fits_folder(loaded: Any, input_dir: Path, output_dir: Path, provenance: dict[str, str]) -> dict[str, Any]:
    """Predict every cube of a folder with the run's source writer (FITS cubes in, FITS cubes or a
    parameters CSV out, headers kept)."""
    from deepscope.components import SOURCES
    from deepscope.evaluation.predict import forward_whole

    write = _import(SOURCES.entry(loaded.cfg.data.source).meta["predict"])
    net, task, spec, standardizer = loaded.net, loaded.task, loaded.spec, loaded.standardizer
    name = next(iter(spec.images))
    net.eval()

    @torch.inference_mode()
    def predict_fn(images: np.ndarray) -> np.ndarray:
        batch = standardizer.transform({"images": {name: np.asarray(images, np.float32)}})
        inputs = {"images": {name: torch.from_numpy(np.ascontiguousarray(batch["images"][name]))}}
        out = task.shape_output(forward_whole(net, spec, inputs))
        return task.predictions(out.float().numpy())["predictions"]

    fits_provenance = {k: v for k, v in provenance.items() if k != "input"}  # the FITS cards it knows
    paths = write(loaded.cfg.data, input_dir, output_dir, predict_fn, fits_provenance)
    return {"files": [str(p) for p in paths]}


# --- writers -------------------------------------------------------------------------------------------


def _refuse_existing(path: Path) -> None:
    if Path(path).exists():
        raise DataError(f"--output '{path}' exists; predictions never overwrite a file (remove it, or choose "
                        "another --output)")


def _publish(tmp: Path, dest: Path) -> None:
    """Move a finished temporary file into place, atomically; an existing ``dest`` is kept."""
    try:
        try:
            os.link(tmp, dest)  # atomic, and fails when dest exists
        except FileExistsError:
            _refuse_existing(dest)
        except OSError:  # a file system without hard links
            _refuse_existing(dest)
            os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


def _tmp(dest: Path) -> Path:
    dest.parent.mkdir(parents=True, exist_ok=True)
    return dest.with_name(f".{dest.name}.{os.getpid()}.tmp")


def _write_atomically(dest: Path, write: Callable[[Path], None]) -> Path:
    """``write`` a temporary file beside ``dest``, then move it into place (an existing ``dest`` is kept)."""
    tmp = _tmp(dest)
    try:
        write(tmp)
        _publish(tmp, dest)
    except OSError as exc:
        raise DataError(f"--output '{dest}' cannot be written ({exc})") from None
    finally:
        with contextlib.suppress(OSError):  # e.g. its folder could not be made
            tmp.unlink(missing_ok=True)
    return dest


def _write_npz(result: dict[str, np.ndarray], dest: Path, provenance: dict[str, str]) -> Path:
    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            np.savez(f, **result)

    return _write_atomically(dest, write)


def _write_hdf5(result: dict[str, np.ndarray], dest: Path, provenance: dict[str, str]) -> Path:
    import h5py

    def write(tmp: Path) -> None:
        with h5py.File(tmp, "w") as f:
            for key, value in result.items():
                f.create_dataset(key, data=np.asarray(value))
            f.attrs.update(provenance)

    return _write_atomically(dest, write)


def _write_root(result: dict[str, np.ndarray], dest: Path, provenance: dict[str, str]) -> Path:
    """A TTree ``predictions`` of one entry per event, each key a branch (fixed-size arrays for
    per-event vectors and images); an ``.npz`` beside ``dest`` when uproot cannot write a key's type."""
    import uproot

    unwritable = [k for k, v in result.items() if np.asarray(v).dtype.kind not in "biuf"]
    if unwritable:
        beside = dest.with_suffix(".npz")
        log.warning("--output '%s': uproot cannot write %s as ROOT branches (dtype %s); writing %s instead", dest,
                    ", ".join(unwritable), np.asarray(result[unwritable[0]]).dtype, beside)
        _refuse_existing(beside)
        return _write_npz(result, beside, provenance)
    def write(tmp: Path) -> None:
        with uproot.recreate(tmp) as f:
            f[ROOT_TREE] = {k: np.ascontiguousarray(v) for k, v in result.items()}
            f["provenance"] = json.dumps(provenance)

    return _write_atomically(dest, write)


WRITERS: dict[str, Callable[[dict[str, np.ndarray], Path, dict[str, str]], Path]] = {
    "npz": _write_npz, "hdf5": _write_hdf5, "root": _write_root}


def write_predictions(result: dict[str, np.ndarray], dest: Path, fmt: str, provenance: dict[str, str]) -> Path:
    """Write a prediction result in ``fmt`` (``npz``, ``hdf5``, ``root``) to ``dest``, never over a file.

    Returns:
        The path written (for ``root``, an ``.npz`` beside it when a key's type cannot be a branch).

    Raises:
        DataError: ``dest`` exists or cannot be written.
    """
    return WRITERS[fmt](result, Path(dest), provenance)
