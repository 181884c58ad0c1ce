"""A deconvolver judged beside the strongest cheap baselines, on the same cubes.

On sparse, noisy radio cubes an all-zeros sky already beats the dirty cube by a wide margin, so a
deconvolver's PSNR means something only next to (1) the all-zeros sky and (2) the best Wiener
deconvolution with the beam of the dirty cubes' headers (BMAJ/BMIN/BPA), its balance chosen for the
highest PSNR on the very cubes scored (an oracle choice: the strongest Wiener filter there is).
"""

from __future__ import annotations

from typing import Any

import logging

import numpy as np

from deepscope.errors import DataError
from deepscope.evaluation.baselines import beam_kernel, best_wiener
from deepscope.metrics import psnr, ssim

log = logging.getLogger("deepscope")

__all__ = ["deconvolution_scores", "header_beam", "report_lines", "split_scores"]


def deconvolution_scores(dirty: np.ndarray, pred: np.ndarray, clean: np.ndarray,
                         beam: tuple[float, float, float]) -> dict[str, float]:
    """PSNR (dB) and SSIM of the prediction beside the dirty cube, an all-zeros sky and the best Wiener
    deconvolution, on cubes in data units.

    Args:
        dirty: the input cubes (N, 1, z, y, x) (or (N, 1, y, x) images), in data units.
        pred: the predicted skies, same shape.
        clean: the true skies, same shape.
        beam: (bmaj, bmin, bpa) of the dirty cubes: FWHMs in pixels, position angle in degrees.

    Returns:
        ``psnr``, ``ssim`` of the prediction; ``psnr_dirty``, ``psnr_zeros``, ``psnr_wiener``,
        ``ssim_wiener``, ``wiener_balance``; ``gain_over_zeros_db`` and ``gain_over_wiener_db``.
    """
    dirty, pred, clean = (np.asarray(a, np.float64) for a in (dirty, pred, clean))
    planes = dirty[:, 0]
    psf = beam_kernel(*beam, shape=planes.shape[-2:])
    balance, wiener = best_wiener(list(planes), list(clean[:, 0]), psf)
    wiener = np.stack(wiener)[:, None]
    scores = {
        "psnr": psnr(pred, clean),
        "ssim": ssim(pred, clean),
        "psnr_dirty": psnr(dirty, clean),
        "psnr_zeros": psnr(np.zeros_like(clean), clean),
        "psnr_wiener": psnr(wiener, clean),
        "ssim_wiener": ssim(wiener, clean),
        "wiener_balance": float(balance),
    }
    scores["gain_over_zeros_db"] = scores["psnr"] - scores["psnr_zeros"]
    scores["gain_over_wiener_db"] = scores["psnr"] - scores["psnr_wiener"]
    return {k: float(v) for k, v in scores.items()}


def report_lines(scores: dict[str, Any]) -> list[str]:
    """The comparison as lines for a log or the terminal."""
    return [
        f"PSNR prediction {scores['psnr']:.2f} dB | all-zeros sky {scores['psnr_zeros']:.2f} dB | "
        f"best Wiener {scores['psnr_wiener']:.2f} dB (balance {scores['wiener_balance']:.3g}) | "
        f"dirty {scores['psnr_dirty']:.2f} dB",
        f"gain over zeros {scores['gain_over_zeros_db']:+.2f} dB, over Wiener {scores['gain_over_wiener_db']:+.2f} dB; "
        f"SSIM prediction {scores['ssim']:.3f}, Wiener {scores['ssim_wiener']:.3f}",
    ]


def header_beam(data_cfg: Any) -> tuple[float, float, float] | None:
    """The beam (BMAJ, BMIN in pixels, BPA in degrees) in the header of the first training input cube of
    a FITS-folder source; ``None`` (with a warning) when there is no such cube or its header has no beam."""
    from pathlib import Path

    from astropy.io import fits

    from deepscope.evaluation.baselines import beam_from_header

    folder = Path(data_cfg.path) / data_cfg.split_folders()["train"]
    files = sorted(folder.glob(data_cfg.input.replace("{id}", "*")))
    if not files:
        return None
    try:
        return beam_from_header(fits.getheader(files[0]))
    except DataError as exc:
        log.warning(f"no baselines beside the deconvolution: {exc} ({files[0]})")
        return None


def split_scores(data_cfg: Any, store: Any, result: dict[str, np.ndarray]) -> dict[str, float] | None:
    """:func:`deconvolution_scores` of a predicted split of a FITS-folder source (inputs read from
    ``store``, scaled back to data units with ``multiply_output_with``); ``None`` without a beam."""
    beam = header_beam(data_cfg)
    if beam is None:
        return None
    batch = store.read(np.asarray(result["index"]))
    dirty = next(iter(batch["images"].values())).astype(np.float64)
    factor = batch.get("multiply_output_with")
    if factor is not None:
        dirty = dirty * np.asarray(factor, np.float64).reshape(-1, *([1] * (dirty.ndim - 1)))
    return deconvolution_scores(dirty, result["predictions"], result["targets"], beam)
