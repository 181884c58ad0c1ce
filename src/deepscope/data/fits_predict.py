"""Predictions of a FITS-folder run (``fits_dirs``, ``radio_cubes``) written as files: one FITS cube
per input cube, with the input's header (WCS intact) and provenance cards, or a CSV catalogue.

``deepscope predict RUN --input FOLDER --output FOLDER`` calls :func:`predict_folder` (the ``predict=``
of the sources' registry entries) with a function that applies the trained model.
"""

from __future__ import annotations

import datetime
import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from deepscope.data.fits import (
    PREDICTIONS_CSV,
    Shapes,
    _cube_files,
    _extract,
    _read,
    _read_csv,
    _sample,
    _scale,
    _source_samples,
    read_cube,
    tile_starts,
)
from deepscope.errors import DataError

__all__ = ["PredictFn", "predict_folder"]

PredictFn = Callable[[np.ndarray], np.ndarray]
_CARDS = {"run": "DSRUN", "checkpoint": "DSCKPT", "date": "DSDATE", "version": "DSVERS", "config": "DSCONF"}


def _matching(input_dir: Path, pattern: str) -> list[tuple[str, Path]]:
    """(ID, file) of every file in ``input_dir`` matching ``pattern`` ('{id}' as a wildcard), by name."""
    if not input_dir.is_dir():
        raise DataError(f"'{input_dir}' is not a folder; expected a folder of cubes named like '{pattern}'")
    head, tail = pattern.split("{id}")
    regex = re.compile(re.escape(head) + "(.+)" + re.escape(tail) + r"\Z")
    found = sorted((m.group(1), p) for p in input_dir.iterdir() if p.is_file() and (m := regex.match(p.name)))
    if not found:
        raise DataError(f"'{input_dir}' holds no file named like '{pattern}' (data.input)")
    return found


def _publish(tmp: Path, dest: Path, overwrite: bool) -> None:
    """Move a finished temporary file into place; without ``overwrite`` an existing file is kept."""
    try:
        if overwrite:
            os.replace(tmp, dest)
            return
        try:
            os.link(tmp, dest)  # atomic, and fails when dest exists
        except FileExistsError:
            raise DataError(f"'{dest}' exists; predictions never overwrite a file (remove it, or pass "
                            "overwrite=True)") from None
        except OSError:  # a file system without hard links
            if dest.exists():
                raise DataError(f"'{dest}' exists; predictions never overwrite a file") from None
            os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


def _target_unit(data_cfg: Any) -> str | None:
    """BUNIT of the training target cubes (deconvolution), read from the first one's header; ``None``
    when the training folder is not there or its targets carry no unit."""
    try:
        folder = Path(data_cfg.path) / data_cfg.split_folders()["train"]
        targets = sorted(folder.glob(data_cfg.target_pattern.replace("{id}", "*")))
        if not targets:
            return None
        from astropy.io import fits

        unit = fits.getheader(targets[0]).get("BUNIT")
        return str(unit) if unit else None
    except (OSError, KeyError, ValueError):
        return None


def _provenance_header(header: Any, provenance: Mapping[str, str], factor: float, unit: str | None = None) -> Any:
    out = header.copy()
    if unit is not None and out.get("BUNIT") != unit:  # a deconvolved cube is in its targets' unit
        out.add_history(f"deepscope: BUNIT {out.get('BUNIT')} -> {unit} (the training targets' unit)")
        out["BUNIT"] = unit
    for key in ("XTENSION", "PCOUNT", "GCOUNT", "EXTNAME", "BSCALE", "BZERO", "BLANK", "DATAMIN", "DATAMAX",
                "CHECKSUM", "DATASUM"):
        out.remove(key, ignore_missing=True, remove_all=True)
    items = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"), **provenance}
    for key, value in items.items():
        text = str(value).encode("ascii", "replace").decode()
        text = "".join(ch if ch.isprintable() else "?" for ch in text)
        if key.lower() in _CARDS:  # long values continue over several cards, without a comment
            out[_CARDS[key.lower()]] = (text, f"deepscope {key.lower()}") if len(text) <= 40 else text
        out.add_history(f"deepscope {key}: {text}")
    out["DSSCALE"] = (float(factor), "input scale; output = model output * it")
    return out


def _predict_planes(planes: np.ndarray, predict_fn: PredictFn, shape: tuple[int, ...] | None,
                    batch_size: int) -> np.ndarray:
    """Predict (P, *plane) planes: whole, or in tiles of ``shape`` when it differs (overlaps averaged)."""
    plane = planes.shape[1:]
    size = plane if shape is None else tuple(shape)
    if len(size) != len(plane):
        raise DataError(f"the model takes samples of shape {size} but the cubes give {plane}")
    starts: list[tuple[int, ...]] = [()]
    for n, c in zip(plane, size):
        starts = [(*o, t) for o in starts for t in tile_starts(n, c)]
    pieces = [(p, o) for p in range(len(planes)) for o in starts]
    total, count = np.zeros(planes.shape, np.float64), np.zeros(planes.shape, np.float64)
    for b in range(0, len(pieces), batch_size):
        batch = pieces[b:b + batch_size]
        x = np.stack([_extract(planes[p], o, size) for p, o in batch])[:, None]  # (B, 1, *size)
        y = np.asarray(predict_fn(x), np.float64)
        if y.shape != x.shape:
            raise DataError(f"the model returned shape {y.shape} for inputs {x.shape}; a deconvolution gives one "
                            "output channel of the input's size")
        for (p, o), out in zip(batch, y[:, 0]):
            src = tuple(slice(max(s, 0), min(s + c, n)) for s, c, n in zip(o, size, plane))
            total[(p, *src)] += out[tuple(slice(sl.start - s, sl.stop - s) for sl, s in zip(src, o))]
            count[(p, *src)] += 1
    return total / np.maximum(count, 1)


def _values_table(out: np.ndarray, columns: list[str]) -> dict[str, np.ndarray]:
    """Predicted columns from (N, K) values or, for one column, (N, classes) class scores."""
    out = out.reshape(len(out), -1)
    if out.shape[1] == len(columns):
        return {c: out[:, j] for j, c in enumerate(columns)}
    if len(columns) == 1:
        return {columns[0]: out.argmax(axis=1), **{f"{columns[0]}_score{k}": out[:, k] for k in range(out.shape[1])}}
    raise DataError(f"the model returned {out.shape[1]} values per sample for the {len(columns)} columns "
                    f"{', '.join(columns)}")


def _write_csv(table: Any, dest: Path, overwrite: bool) -> Path:
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
    table.to_csv(tmp, index=False)
    _publish(tmp, dest, overwrite)
    return dest


def _prediction_csv(input_dir: Path, cfg: Any) -> Path:
    named = sorted({input_dir / n for n in cfg.csv.values() if (input_dir / n).is_file()})
    if len(named) == 1:
        return named[0]
    found = named or sorted(input_dir.glob("*params*.csv"))
    if len(found) != 1:
        shown = ", ".join(p.name for p in found) or "none"
        raise DataError(f"'{input_dir}': expected one catalogue CSV (one of data.csv, or one *params*.csv) naming the "
                        f"sources to predict; found {shown}")
    return found[0]


def _predict_sources(cfg: Any, input_dir: Path, output_dir: Path, predict_fn: PredictFn, overwrite: bool,
                     batch_size: int) -> list[Path]:
    csv = _prediction_csv(input_dir, cfg)
    dest = output_dir / csv.name
    if dest.exists() and not overwrite:
        raise DataError(f"'{dest}' exists; predictions never overwrite a file (remove it, or pass overwrite=True)")
    table = _read_csv(csv, cfg, "predicted", [cfg.id_column, *cfg.position_columns])
    shapes: Shapes = {}
    samples = _source_samples(cfg, csv, table, _cube_files(input_dir, csv, table, cfg, shapes), shapes)
    x = np.empty((len(samples), 1, *cfg.crop), np.float32)
    by_file: dict[Path, list[int]] = {}
    for i, s in enumerate(samples):
        by_file.setdefault(s.file, []).append(i)
    for file, idx in by_file.items():  # every cube is read once
        cube = read_cube(file, cfg.nan)
        cube /= _scale(cube) if cfg.scaling == "per_cube" else 1.0
        for i in idx:
            x[i, 0] = _sample(cube, samples[i], tuple(cfg.crop))
    outputs = [np.asarray(predict_fn(x[b:b + batch_size])) for b in range(0, len(x), batch_size)]
    predicted = _values_table(np.concatenate(outputs), list(cfg.columns))
    for column, values in predicted.items():
        if column in table.columns:
            table.insert(table.columns.get_loc(column) + 1, f"{column}_true", table[column])
            table[column] = values
        else:
            table[column] = values
    output_dir.mkdir(parents=True, exist_ok=True)
    return [_write_csv(table, dest, overwrite)]


def predict_folder(data_cfg: Any, input_dir: str | Path, output_dir: str | Path, predict_fn: PredictFn,
                   provenance: Mapping[str, str], overwrite: bool = False, sample_shape: tuple[int, ...] | None = None,
                   batch_size: int = 16) -> list[Path]:
    """Write a model's predictions for a folder of cubes, as the source reads such a folder.

    - deconvolution: every file of ``input_dir`` named like ``data.input`` is scaled as in training
      (per_cube: divided by its largest |value|), predicted, multiplied back, and written as
      ``output_dir/<its name>`` with its own header (WCS and BUNIT kept) plus provenance cards:
      ``DSRUN``, ``DSCKPT``, ``DSDATE``, ``DSVERS``, ``DSCONF`` for the provenance keys run,
      checkpoint, date, version, config, ``DSSCALE`` (the scale) and a HISTORY line per key.
    - cubes: the same files, one table ``output_dir/predictions.csv`` (ID, file, channel with
      slices, the predicted columns).
    - sources: the catalogue in ``input_dir`` (the one of the data.csv names there, else the only
      ``*params*.csv``) with each row's crop predicted: ``output_dir/<its name>`` with the CSV's own
      columns, predicted columns in place of the catalogue's, which are kept as ``<col>_true``.

    Args:
        data_cfg: the run's ``data`` section (``fits_dirs`` or ``radio_cubes``).
        input_dir: the folder of cubes (and catalogue, for sources).
        output_dir: where to write; created when missing.
        predict_fn: (B, 1, *sample) float32 inputs, scaled as in training -> the model's outputs:
            (B, 1, *sample) for deconvolution, in the scaled units (this function multiplies by the
            scale); (B, K) values or (B, classes) class scores of one label column otherwise, in data
            units.
        provenance: what to record (keys such as run, checkpoint, version).
        overwrite: replace existing output files; by default they are refused before anything is
            written.
        sample_shape: the spatial shape the model was trained on; cubes (or slices) of another shape
            are predicted in tiles of it (the last tile of an axis ends at its end; overlaps
            averaged). ``None``: whole cubes.
        batch_size: samples or tiles per call of ``predict_fn``.

    Returns:
        The paths written.

    Raises:
        DataError: no matching files, unreadable cubes, an existing output file, or model outputs
            of the wrong shape.
    """
    input_dir, output_dir = Path(input_dir), Path(output_dir)
    if data_cfg.mode == "sources":
        return _predict_sources(data_cfg, input_dir, output_dir, predict_fn, overwrite, batch_size)
    files = _matching(input_dir, data_cfg.input)
    dests = [output_dir / (PREDICTIONS_CSV if data_cfg.mode == "cubes" else f.name) for _, f in files]
    existing = next((d for d in dests if d.exists()), None)
    if existing is not None and not overwrite:
        raise DataError(f"'{existing}' exists; predictions never overwrite a file (remove it, or pass overwrite=True)")
    output_dir.mkdir(parents=True, exist_ok=True)
    written, rows = [], []
    unit = _target_unit(data_cfg) if data_cfg.mode == "deconvolution" else None
    for (cube_id, file), dest in zip(files, dests):
        cube, header, stored = _read(file, data_cfg.nan)
        factor = _scale(cube) if data_cfg.scaling == "per_cube" else 1.0
        planes = (cube if data_cfg.slices else cube[None]) / np.float32(factor)  # (P, *plane)
        if data_cfg.mode == "cubes":
            if sample_shape is not None and tuple(sample_shape) != planes.shape[1:]:
                raise DataError(f"'{file}' gives samples of shape {planes.shape[1:]} but the model takes "
                                f"{tuple(sample_shape)}; data.mode cubes predicts whole cubes")
            out = np.concatenate([np.asarray(predict_fn(planes[b:b + batch_size, None].astype(np.float32)))
                                  for b in range(0, len(planes), batch_size)])
            values = _values_table(out, list(data_cfg.columns))
            for c in range(len(planes)):
                rows.append({data_cfg.id_column: cube_id, "file": file.name,
                             **({"channel": c} if data_cfg.slices else {}), **{k: v[c] for k, v in values.items()}})
            continue
        pred = _predict_planes(planes, predict_fn, sample_shape, batch_size) * factor
        tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
        from astropy.io import fits

        fits.PrimaryHDU(pred.astype(np.float32).reshape(stored), _provenance_header(header, provenance, factor, unit)) \
            .writeto(tmp, overwrite=True)
        _publish(tmp, dest, overwrite)
        written.append(dest)
    if data_cfg.mode == "cubes":
        import pandas as pd

        written.append(_write_csv(pd.DataFrame(rows), dests[0], overwrite))
    return written
