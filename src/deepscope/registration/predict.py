"""``deepscope predict`` on a registration file: moving sections in atlalign's layout in, the registered
sections and the predicted fields out, in the same layout.

The input needs ``img`` (n, H, W) uint8 and ``p`` (n,) (unless the run's reference is a single image);
``image_id`` and ``dataset_id`` are copied when present, and ``deltas_xy`` (true fields), when present,
gives the vector distance of the predictions. The output holds ``img`` = the registered images (uint8),
``deltas_xy`` = the predicted forward fields and, for a model with ``compute_inv``, ``inv_deltas_xy``
(float16, (n, H, W, 2), channel 0 = Δx), with ``p``, ``image_id``, ``dataset_id`` and the provenance as
attributes.
"""

from __future__ import annotations

import datetime
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from deepscope.errors import DataError

__all__ = ["predict_registration_file"]

log = logging.getLogger("deepscope")


def _read_input(path: Path, spatial: tuple[int, ...]) -> dict[str, np.ndarray]:
    import h5py

    from deepscope.data.h5read import open_h5

    with open_h5(path, "--input") as f:
        if not isinstance(f.get("img"), h5py.Dataset):
            names = [n for n in f if isinstance(f[n], h5py.Dataset)]
            raise DataError(f"--input '{path}': no dataset 'img' (the moving sections, (n, H, W) uint8); found "
                            f"{', '.join(names) or 'no datasets'}")
        img = np.asarray(f["img"][()])
        if img.ndim != 3 or tuple(img.shape[1:]) != tuple(spatial):
            raise DataError(f"--input '{path}': dataset 'img' has shape {img.shape}; the model registers (n, "
                            f"{', '.join(map(str, spatial))}) images")
        n = len(img)
        out = {"img": img}
        for name in ("p", "image_id", "dataset_id"):
            if name in f:
                values = np.asarray(f[name][()]).reshape(-1)
                if len(values) != n:
                    raise DataError(f"--input '{path}': dataset '{name}' has {len(values)} entries for {n} images")
                out[name] = values
        if "deltas_xy" in f:
            deltas = f["deltas_xy"]
            if tuple(deltas.shape) != (n, *spatial, 2):
                raise DataError(f"--input '{path}': dataset 'deltas_xy' has shape {tuple(deltas.shape)}; expected "
                                f"{(n, *spatial, 2)} like img")
            out["deltas_xy"] = np.asarray(deltas[()], np.float32)
    return out


def predict_registration_file(loaded: Any, input_path: Path, output_path: Path, batch_size: int,
                              checkpoint: Path) -> dict[str, Any]:
    """Register every section of ``input_path`` with the run's model and write ``output_path``.

    Args:
        loaded: the run (``deepscope.training.experiment._Loaded``).

    Returns:
        ``registered`` (n, 1, H, W), ``field`` (n, nd, H, W) (and ``inverse``), and ``vector_distance``
        (n,) when the input holds true fields.

    Raises:
        DataError: the input is not a registration file the model fits, or ``p`` lies outside the reference.
    """
    from deepscope import __version__
    from deepscope.data.registration import Volume, _sections
    from deepscope.data.simulators.registration import write_registration_hdf5

    cfg, spec, task, net = loaded.cfg, loaded.spec, loaded.task, loaded.net
    data = cfg.data.as_hdf5() if hasattr(cfg.data, "as_hdf5") else cfg.data
    spatial = tuple(spec.spatial)
    raw = _read_input(Path(input_path), spatial)
    n = len(raw["img"])
    reference = Volume(data.reference, data.reference_dataset, "data.reference")
    volume = reference.array
    if volume.shape[0] == 1:
        sections = np.zeros(n, np.int64)
    elif "p" not in raw:
        raise DataError(f"--input '{input_path}': no dataset 'p' (coronal position, µm): the run's reference "
                        f"'{data.reference}' has {volume.shape[0]} sections to choose from")
    else:
        sections = _sections(raw["p"], data, volume.shape[0], Path(input_path))
    if tuple(volume.shape[1:]) != spatial:
        raise DataError(f"data.reference '{data.reference}' has sections {volume.shape[1:]}; the model registers "
                        f"{spatial}")
    net.eval()
    layout = task.layout
    parts: dict[str, list[np.ndarray]] = {name: [] for name in layout.output_names}
    with torch.inference_mode():
        for start in range(0, n, batch_size):
            stop = min(start + batch_size, n)
            moving = torch.from_numpy(raw["img"][start:stop].astype(np.float32)[:, None] / 255.0)
            ref = torch.from_numpy(np.asarray(volume[sections[start:stop]], np.float32)[:, None])
            out = task.shape_output(net(images={"reference": ref, "moving": moving}))
            for name, value in layout.outputs(out).items():
                parts[name].append(value.float().numpy())
    result = {name: np.concatenate(values) for name, values in parts.items()}
    result["index"] = np.arange(n)
    if "deltas_xy" in raw:
        truth = np.moveaxis(raw["deltas_xy"], -1, 1)
        result["vector_distance"] = np.sqrt(((result["field"] - truth) ** 2).sum(1)).reshape(n, -1).mean(1)
        log.info("mean vector distance to the input's deltas_xy: %.3f px (identity field: %.3f px)",
                 float(result["vector_distance"].mean()),
                 float(np.sqrt((truth ** 2).sum(1)).reshape(n, -1).mean()))
    provenance = {"run": str(loaded.run.path), "checkpoint": str(checkpoint), "version": f"deepscope {__version__}",
                  "input": str(input_path),
                  "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                  "img": "the registered moving images", "deltas_xy": "predicted forward fields (mov2reg), pixels"}
    write_registration_hdf5(
        output_path, np.clip(result["registered"][:, 0], 0.0, 1.0),
        np.moveaxis(result["field"], 1, -1),
        np.moveaxis(result["inverse"], 1, -1) if "inverse" in result else None,
        raw.get("p", np.zeros(n, np.int64)), raw.get("image_id", np.arange(n)),
        raw.get("dataset_id", np.zeros(n, np.int64)), attrs=provenance, key="--output")
    log.info("wrote %d registered sections and their fields to %s", n, output_path)
    return result
