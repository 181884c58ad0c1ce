"""Cheap baselines for deconvolution: the beam, Wiener deconvolution, and the all-zeros prediction.

Conventions (the simulator follows them too):

- Images are arrays ``(y, x)`` (cubes ``(z, y, x)``): row index y increases to the north (DEC, when
  CDELT2 > 0), column index x increases to the west (RA decreases, CDELT1 < 0), so east is -x. This
  is the standard RA---/DEC-- orientation shown with ``origin="lower"``.
- The beam (PSF) has peak 1 (radio convention: the dirty image is in Jy/beam). A point source of
  flux F Jy in the sky (Jy/pixel) gives a dirty-image peak of F: ``dirty = sky ⊛ psf + noise``.
- The PSF's centre is pixel ``(ny // 2, nx // 2)``: the pixel ``np.fft.ifftshift`` moves to the
  origin and the one ``scipy.ndimage.convolve`` treats as the centre. (``scipy.signal.fftconvolve``
  with ``mode="same"`` takes ``((n - 1) // 2)`` instead: one pixel off for even sizes.) Convolution
  here is circular (FFT).
- BPA is the position angle of the major axis from north (+y) through east (-x): BPA = 0 puts the
  major axis along y, BPA = 90 along x, BPA = 45 along the (-x, +y) diagonal (north-east).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import scipy.fft

from deepscope.errors import DataError
from deepscope.metrics import psnr

__all__ = ["beam_from_header", "beam_kernel", "best_wiener", "wiener_deconvolve", "zeros_psnr"]

log = logging.getLogger(__name__)

_FWHM_PER_SIGMA = 2.0 * np.sqrt(2.0 * np.log(2.0))


def beam_kernel(bmaj_pix: float, bmin_pix: float, bpa_deg: float, shape: tuple[int, int]) -> np.ndarray:
    """An elliptical Gaussian beam with peak 1 at pixel ``(ny // 2, nx // 2)``.

    Args:
        bmaj_pix: FWHM of the major axis in pixels.
        bmin_pix: FWHM of the minor axis in pixels (<= ``bmaj_pix``).
        bpa_deg: position angle of the major axis in degrees from north (+y) through east (-x):
            0 = major axis along y, 90 = along x; its direction is (x, y) = (-sin BPA, cos BPA).
        shape: ``(ny, nx)`` of the kernel.

    Returns:
        (ny, nx) float64 kernel, 1 at its centre (Jy/beam normalisation, not unit sum: its sum is the
        beam area in pixels, about 1.1331 * bmaj_pix * bmin_pix).

    Raises:
        ValueError: a FWHM is not > 0, ``bmin_pix > bmaj_pix``, or ``shape`` is not two positive sizes.
    """
    if not (bmin_pix > 0 and bmaj_pix > 0):
        raise ValueError(f"beam_kernel: FWHMs must be > 0; found bmaj_pix={bmaj_pix}, bmin_pix={bmin_pix}")
    if bmin_pix > bmaj_pix:
        raise ValueError(f"beam_kernel: bmin_pix={bmin_pix} exceeds bmaj_pix={bmaj_pix}; the major axis is the longer")
    if len(shape) != 2 or min(shape) < 1:
        raise ValueError(f"beam_kernel: shape must be (ny, nx) with sizes >= 1; found {shape}")
    ny, nx = shape
    y = (np.arange(ny) - ny // 2)[:, None]
    x = (np.arange(nx) - nx // 2)[None, :]
    pa = np.deg2rad(bpa_deg)
    along = -x * np.sin(pa) + y * np.cos(pa)  # coordinate along the major axis
    across = x * np.cos(pa) + y * np.sin(pa)
    s_maj, s_min = bmaj_pix / _FWHM_PER_SIGMA, bmin_pix / _FWHM_PER_SIGMA
    return np.exp(-0.5 * ((along / s_maj) ** 2 + (across / s_min) ** 2))


def _card(header: Mapping[str, Any], *names: str) -> float:
    for name in names:
        if name in header:
            try:
                return float(header[name])
            except (TypeError, ValueError):
                raise DataError(f"FITS header card {name}: found {header[name]!r}; expected a number") from None
    raise DataError(f"FITS header has no {' or '.join(names)} card; the beam needs it")


def beam_from_header(header: Mapping[str, Any]) -> tuple[float, float, float]:
    """The beam of a FITS header in pixels, for :func:`beam_kernel`.

    BMAJ and BMIN (degrees) are divided by |CDELT2| (or |CD2_2|), so pixels are assumed square. BPA
    is returned as written for the standard orientation (east = -x, north = +y: CDELT1 < 0 < CDELT2);
    for a mirrored image (CDELT1 and CDELT2, or CD1_1 and CD2_2, of one sign) it is negated so that
    the kernel still lines up with the sky. Rotated CD matrices are not supported.

    Args:
        header: an ``astropy.io.fits.Header`` or any mapping of card names to values.

    Returns:
        ``(bmaj_pix, bmin_pix, bpa_deg)``.

    Raises:
        DataError: BMAJ, BMIN, BPA or the pixel scale is missing, not a number, or zero.
    """
    bmaj, bmin, bpa = _card(header, "BMAJ"), _card(header, "BMIN"), _card(header, "BPA")
    scale_y = _card(header, "CDELT2", "CD2_2")
    if scale_y == 0:
        raise DataError("FITS header: the pixel scale CDELT2 (or CD2_2) is 0")
    try:
        scale_x = _card(header, "CDELT1", "CD1_1")
    except DataError:
        scale_x = -1.0  # no x scale: assume the standard east-left orientation
    if scale_x * scale_y > 0:
        bpa = -bpa
    return bmaj / abs(scale_y), bmin / abs(scale_y), bpa


def _transfer(psf: np.ndarray, plane: tuple[int, int], dtype: np.dtype) -> np.ndarray:
    """rFFT of the PSF with its centre ``(py // 2, px // 2)`` moved to the origin of a plane (ny, nx)."""
    py, px = psf.shape
    ny, nx = plane
    if py > ny or px > nx:
        raise ValueError(f"psf {psf.shape} is larger than the image planes {plane}")
    kernel = np.zeros(plane, dtype=dtype)
    kernel[np.ix_((np.arange(py) - py // 2) % ny, (np.arange(px) - px // 2) % nx)] = psf
    return scipy.fft.rfft2(kernel)


def _wiener_filter(h: np.ndarray, balance: float) -> np.ndarray:
    return np.conj(h) / (np.abs(h) ** 2 + balance)


def _check(dirty: np.ndarray, psf: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    dirty = np.asarray(dirty)
    dirty = dirty.astype(dirty.dtype if dirty.dtype in (np.float32, np.float64) else np.float64, copy=False)
    psf = np.asarray(psf, dtype=dirty.dtype)
    if dirty.ndim not in (2, 3) or psf.ndim != 2:
        raise ValueError(f"dirty must be (y, x) or (z, y, x) and psf (y, x); found {dirty.shape} and {psf.shape}")
    return dirty, psf


def wiener_deconvolve(dirty: np.ndarray, psf: np.ndarray, balance: float) -> np.ndarray:
    """Wiener deconvolution of each spectral plane: X = conj(H) Y / (|H|^2 + balance).

    H is the FFT of the peak-1 PSF centred at ``(py // 2, px // 2)`` (see the module docstring), so a
    noiseless ``dirty = sky ⊛ psf`` (circular) comes back as ``sky`` as ``balance`` goes to 0. |H(0)|
    is the beam area in pixels, so ``balance`` compares with its square.

    Args:
        dirty: dirty image (y, x) or cube (z, y, x), Jy/beam.
        psf: the beam (py, px), py <= y and px <= x, peak 1 (e.g. :func:`beam_kernel`).
        balance: regularisation > 0; larger trades resolution for less noise.

    Returns:
        The sky estimate, the shape of ``dirty`` (float32 for float32 input, else float64).

    Raises:
        ValueError: bad shapes, or ``balance`` not > 0.
    """
    if not balance > 0:
        raise ValueError(f"wiener_deconvolve: balance must be > 0; found {balance}")
    dirty, psf = _check(dirty, psf)
    plane = dirty.shape[-2:]
    g = _wiener_filter(_transfer(psf, plane, dirty.dtype), balance)
    return scipy.fft.irfft2(g * scipy.fft.rfft2(dirty), s=plane).astype(dirty.dtype, copy=False)


def _cube_psnr(pred: np.ndarray, clean: np.ndarray) -> float:
    return psnr(pred[None], np.asarray(clean)[None])


def best_wiener(
    dirty_cubes: Sequence[np.ndarray] | np.ndarray,
    clean_cubes: Sequence[np.ndarray] | np.ndarray,
    psf: np.ndarray,
    balances: np.ndarray = np.logspace(-4, 4, 33),
) -> tuple[float, np.ndarray | list[np.ndarray]]:
    """Wiener deconvolution with the balance of highest mean PSNR on the cubes given.

    Fit on the split it is scored on, this is an optimistic baseline: the strongest a network has to
    beat. PSNR is :func:`deepscope.metrics.psnr` per cube, averaged over cubes (all-zero clean
    cubes skipped). A warning is logged when the best balance is at an end of the grid.

    Args:
        dirty_cubes: dirty cubes, a sequence of (z, y, x) / (y, x) arrays or one array (N, ...).
        clean_cubes: the true skies, matching ``dirty_cubes``.
        psf: the beam (py, px), peak 1.
        balances: candidate balances, each > 0.

    Returns:
        ``(best_balance, predictions)``: predictions in the container of ``dirty_cubes`` (an array
        (N, ...) for an array, else a list).

    Raises:
        ValueError: different numbers of dirty and clean cubes, or no balances.
        DataError: every clean cube is all zero (PSNR has no peak).
    """
    balances = np.asarray(balances, dtype=np.float64).reshape(-1)
    if len(balances) == 0 or not (balances > 0).all():
        raise ValueError(f"best_wiener: balances must be one or more values > 0; found {balances}")
    if len(dirty_cubes) != len(clean_cubes):
        raise ValueError(f"best_wiener: {len(dirty_cubes)} dirty cubes but {len(clean_cubes)} clean cubes")
    scores = np.full((len(dirty_cubes), len(balances)), np.nan)
    for i, (dirty, clean) in enumerate(zip(dirty_cubes, clean_cubes)):
        dirty, kernel = _check(dirty, psf)
        plane = dirty.shape[-2:]
        h = _transfer(kernel, plane, dirty.dtype)
        y = scipy.fft.rfft2(dirty)  # once per cube, reused for every balance
        for j, balance in enumerate(balances):
            pred = scipy.fft.irfft2(_wiener_filter(h, balance) * y, s=plane)
            scores[i, j] = _cube_psnr(pred, clean)
    scored = ~np.isnan(scores).all(1)
    if not scored.any():
        raise DataError("best_wiener: every clean cube is all zero; PSNR needs a nonzero peak")
    mean = scores[scored].mean(0)  # inf (an exact fit) wins, as it should
    best = int(np.argmax(mean))
    if len(balances) > 1 and best in (0, len(balances) - 1):
        log.warning("best Wiener balance %.3g is at the end of the grid [%.3g, %.3g]; widen it",
                    balances[best], balances[0], balances[-1])
    predictions = [wiener_deconvolve(d, psf, float(balances[best])) for d in dirty_cubes]
    return float(balances[best]), (np.stack(predictions) if isinstance(dirty_cubes, np.ndarray) else predictions)


def zeros_psnr(clean_cubes: Sequence[np.ndarray] | np.ndarray) -> float:
    """Mean PSNR (:func:`deepscope.metrics.psnr`, per cube) of predicting all zeros.

    Args:
        clean_cubes: the true skies, a sequence of arrays or one array (N, ...).

    Returns:
        The mean over cubes, all-zero cubes skipped (NaN when all are).
    """
    values = [_cube_psnr(np.zeros(np.shape(c)), c) for c in clean_cubes]
    values = [v for v in values if not np.isnan(v)]
    return float(np.mean(values)) if values else float("nan")
