"""Simulated ALMA-like spectral cubes: a sparse sky of line emitters, a Gaussian beam and correlated noise.

A cube is (z, y, x) = (frequency channel, pixel row, pixel column). Every number is a modelling
choice and a field of :class:`RadioOptions`.

Sky model (the *clean* cube, Jy/pixel, not convolved with the beam)
    ``N ~ U{n_sources}`` sources per cube. Each is an elliptical 2D Gaussian of unit integral with
    FWHM ``fwhm_x`` and ``fwhm_y`` (pixels) along its own axes; its ``fwhm_x`` axis is turned ``pa``
    degrees from the +x pixel axis towards +y. Its spectrum is a Gaussian line of FWHM
    ``line_width`` (channels) centred on channel ``z``, holding the integrated line flux ``flux``
    (Jy km/s; a channel is ``dv = c * CDELT3 / CRVAL3`` km/s wide), on top of a continuum
    ``continuum * (nu / nu0) ** spectral_index`` (Jy; ``nu0`` = CRVAL3). Profiles are sampled at
    pixel and channel centres; the catalogue gives what the cube holds: ``flux`` is ``dv`` times the
    sum of the source's line voxels, ``continuum`` its spatial sum at ``nu0``.
Observation (the *dirty* cube, Jy/beam)
    Every channel is convolved with an elliptical Gaussian beam of unit peak (FWHM ``bmaj_pix`` x
    ``bmin_pix`` pixels, position angle ``bpa_deg`` east of north: north is +y, east is -x, as in an
    image with RA growing to the left), so a point source of S Jy peaks at S Jy/beam. Noise is white
    noise convolved with the same beam and scaled to rms ``noise_rms`` Jy/beam. The beam is the same
    in every channel and has no sidelobes (a restored-beam view of the observation, not a dirty
    beam with sidelobes).

Folders follow DeepFocus's layout (``Train/``, ``Validation/``, ``Test/`` with ``dirty_cube_{id}.fits``,
``clean_cube_{id}.fits`` and a catalogue CSV each; see docs/radio-simulator.md), with the celestial
(RA---SIN, DEC--SIN) and spectral (FREQ) WCS, BUNIT, and BMAJ/BMIN/BPA in degrees.
"""

from __future__ import annotations

import errno
import json
import math
import os
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from deepscope.errors import DataError

__all__ = ["CATALOGUE_COLUMNS", "SETTINGS_FILE", "RadioCube", "RadioLayout", "RadioOptions", "beam_kernel",
           "channel_frequencies", "channel_width_kms", "check_radio_folder", "convolve_beam", "cube_header",
           "ensure_radio_folder", "settings_json", "simulate_cube", "write_radio_folder"]

FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))
C_KMS = 299_792.458
SETTINGS_FILE = ".deepscope_radio.json"  # the settings a folder was simulated with, beside the split folders
CATALOGUE_COLUMNS = ("flux", "continuum", "fwhm_x", "fwhm_y", "pa", "line_width", "spectral_index")
_SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class RadioOptions:
    """What one simulated cube looks like (units in the field comments)."""

    cube_shape: tuple[int, int, int] = (16, 32, 32)   # (z, y, x)
    n_sources: tuple[int, int] = (1, 4)               # per cube, uniform in [low, high]
    flux_range: tuple[float, float] = (0.5, 5.0)      # integrated line flux, Jy km/s, log-uniform
    continuum_range: tuple[float, float] = (0.0, 0.002)  # Jy at nu0, uniform
    spectral_index_range: tuple[float, float] = (-1.0, 1.0)
    fwhm_range: tuple[float, float] = (1.5, 4.0)      # pixels, each source axis
    line_width_range: tuple[float, float] = (1.5, 4.0)  # line FWHM, channels
    noise_rms: float = 0.001                           # Jy/beam
    bmaj_pix: float = 3.0                              # beam FWHM, pixels
    bmin_pix: float = 2.0
    bpa_deg: float = 30.0                              # east of north
    pixel_arcsec: float = 0.1
    ref_frequency_ghz: float = 100.0                   # nu0, the central channel (CRVAL3 at CRPIX3)
    channel_width_mhz: float = 10.0
    stokes_axis: bool = False                          # write (1, z, y, x)
    ra_deg: float = 150.1                              # pointing centre (CRVAL1, CRVAL2)
    dec_deg: float = 2.2

    def __post_init__(self) -> None:
        for name in ("cube_shape", "n_sources", "flux_range", "continuum_range", "spectral_index_range",
                     "fwhm_range", "line_width_range"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        if len(self.cube_shape) != 3 or min(self.cube_shape) < 1:
            raise ValueError(f"cube_shape {self.cube_shape}: expected (z, y, x), each >= 1")
        if not 1 <= self.n_sources[0] <= self.n_sources[1]:
            raise ValueError(f"n_sources {self.n_sources}: expected 1 <= low <= high")
        for name in ("flux_range", "fwhm_range", "line_width_range"):
            lo, hi = getattr(self, name)
            if not 0 < lo <= hi:
                raise ValueError(f"{name} {(lo, hi)}: expected 0 < low <= high")
        if not 0 <= self.continuum_range[0] <= self.continuum_range[1]:
            raise ValueError(f"continuum_range {self.continuum_range}: expected 0 <= low <= high")
        if not 0 < self.bmin_pix <= self.bmaj_pix:
            raise ValueError(f"beam {self.bmaj_pix} x {self.bmin_pix}: expected 0 < bmin_pix <= bmaj_pix")
        if self.noise_rms < 0 or self.pixel_arcsec <= 0 or self.channel_width_mhz <= 0 or self.ref_frequency_ghz <= 0:
            raise ValueError("noise_rms must be >= 0; pixel_arcsec, channel_width_mhz, ref_frequency_ghz > 0")


@dataclass(frozen=True)
class RadioLayout:
    """The names a simulated folder is written with (those the ``fits_dirs`` reader is told)."""

    sets: Mapping[str, str] = field(default_factory=lambda: {"train": "Train", "val": "Validation", "test": "Test"})
    csv: Mapping[str, str] = field(default_factory=lambda: {"train": "train_params.csv", "val": "valid_params.csv",
                                                            "test": "test_params.csv"})
    input: str = "dirty_cube_{id}.fits"
    target: str = "clean_cube_{id}.fits"
    id_column: str = "ID"
    position_columns: tuple[str, str, str] = ("x", "y", "z")
    position_origin: int = 0


@dataclass
class RadioCube:
    """One simulated cube.

    Attributes:
        dirty: (z, y, x) float32, Jy/beam: the sky convolved with the beam, plus noise.
        clean: (z, y, x) float32, Jy/pixel: the sky.
        catalogue: one dict per source with x, y, z (0-based pixel and channel of its centre) and
            :data:`CATALOGUE_COLUMNS`.
    """

    dirty: np.ndarray
    clean: np.ndarray
    catalogue: list[dict[str, float]]


# --- axes and beam ---------------------------------------------------------------------------------


def channel_frequencies(opts: RadioOptions) -> np.ndarray:
    """(z,) frequency of each channel in Hz: ``nu0`` at the central channel (CRPIX3 = (z + 1) / 2)."""
    nz = opts.cube_shape[0]
    return opts.ref_frequency_ghz * 1e9 + (np.arange(nz) - (nz - 1) / 2) * opts.channel_width_mhz * 1e6


def channel_width_kms(opts: RadioOptions) -> float:
    """The channel width in km/s at ``nu0`` (radio convention): ``c * dnu / nu0``."""
    return C_KMS * opts.channel_width_mhz * 1e6 / (opts.ref_frequency_ghz * 1e9)


def _gaussian(ny: int, nx: int, x0: float, y0: float, fwhm_a: float, fwhm_b: float, angle: float) -> np.ndarray:
    """(ny, nx) elliptical Gaussian of unit integral over the plane, sampled at pixel centres; the
    ``fwhm_a`` axis points ``angle`` radians from +x towards +y."""
    y, x = np.mgrid[0:ny, 0:nx].astype(np.float64)
    dx, dy = x - x0, y - y0
    u = dx * math.cos(angle) + dy * math.sin(angle)
    v = -dx * math.sin(angle) + dy * math.cos(angle)
    sa, sb = fwhm_a / FWHM_PER_SIGMA, fwhm_b / FWHM_PER_SIGMA
    return np.exp(-0.5 * ((u / sa) ** 2 + (v / sb) ** 2)) / (2 * math.pi * sa * sb)


def beam_kernel(bmaj_pix: float, bmin_pix: float, bpa_deg: float) -> np.ndarray:
    """(ky, kx) elliptical Gaussian beam of unit peak, odd-sized (it reaches 4 sigma of the major axis).

    Args:
        bmaj_pix, bmin_pix: FWHM of the major and minor axis, pixels.
        bpa_deg: position angle of the major axis, degrees east of north (north = +y, east = -x).
    """
    half = int(math.ceil(4 * bmaj_pix / FWHM_PER_SIGMA))
    angle = math.radians(90.0 + bpa_deg)  # east of north -> from +x towards +y
    k = _gaussian(2 * half + 1, 2 * half + 1, half, half, bmaj_pix, bmin_pix, angle)
    return k / k[half, half]


def convolve_beam(sky: np.ndarray, bmaj_pix: float, bmin_pix: float, bpa_deg: float) -> np.ndarray:
    """Every channel of a (z, y, x) cube convolved with the unit-peak beam (Jy/pixel -> Jy/beam); the
    sky outside the cube is empty."""
    from scipy.signal import fftconvolve

    kernel = beam_kernel(bmaj_pix, bmin_pix, bpa_deg)
    return fftconvolve(np.asarray(sky, np.float64), kernel[None], mode="same", axes=(1, 2))


def _noise(rng: np.random.Generator, opts: RadioOptions) -> np.ndarray:
    """(z, y, x) white noise convolved with the beam (over a margin, so it is the same everywhere),
    scaled to rms ``noise_rms``."""
    from scipy.signal import fftconvolve

    nz, ny, nx = opts.cube_shape
    kernel = beam_kernel(opts.bmaj_pix, opts.bmin_pix, opts.bpa_deg)
    ky, kx = kernel.shape
    white = rng.standard_normal((nz, ny + ky - 1, nx + kx - 1))
    smooth = fftconvolve(white, kernel[None], mode="valid", axes=(1, 2))
    return smooth * (opts.noise_rms / math.sqrt(float((kernel ** 2).sum())))


# --- one cube --------------------------------------------------------------------------------------


def simulate_cube(seed: int | np.random.SeedSequence | np.random.Generator, opts: RadioOptions) -> RadioCube:
    """Simulate one cube: its sources, the clean sky, and the dirty observation.

    Args:
        seed: a seed, seed sequence or generator; the same seed gives the same cube.
        opts: the simulation's options.

    Returns:
        The cube, with the catalogue of its sources.
    """
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    nz, ny, nx = opts.cube_shape
    nu = channel_frequencies(opts)
    nu0, dv = opts.ref_frequency_ghz * 1e9, channel_width_kms(opts)
    channels = np.arange(nz, dtype=np.float64)
    clean = np.zeros(opts.cube_shape)
    catalogue = []
    for _ in range(int(rng.integers(opts.n_sources[0], opts.n_sources[1] + 1))):
        # keep the centres half the largest FWHM inside the cube, so most of each source is in it
        mxy = [min(opts.fwhm_range[1] / 2, (n - 1) / 2) for n in (nx, ny)]
        mz = min(opts.line_width_range[1] / 2, (nz - 1) / 2)
        x0 = round(float(rng.uniform(mxy[0], nx - 1 - mxy[0])), 3)
        y0 = round(float(rng.uniform(mxy[1], ny - 1 - mxy[1])), 3)
        z0 = round(float(rng.uniform(mz, nz - 1 - mz)), 3)
        fwhm_x, fwhm_y = (round(float(rng.uniform(*opts.fwhm_range)), 3) for _ in range(2))
        pa = round(float(rng.uniform(0.0, 180.0)), 2)
        width = round(float(rng.uniform(*opts.line_width_range)), 3)
        flux = float(np.exp(rng.uniform(np.log(opts.flux_range[0]), np.log(opts.flux_range[1]))))
        cont = float(rng.uniform(*opts.continuum_range))
        alpha = round(float(rng.uniform(*opts.spectral_index_range)), 3)

        spatial = _gaussian(ny, nx, x0, y0, fwhm_x, fwhm_y, math.radians(pa))        # (y, x), integral 1
        sigma_z = width / FWHM_PER_SIGMA
        line = np.exp(-0.5 * ((channels - z0) / sigma_z) ** 2) / (math.sqrt(2 * math.pi) * sigma_z)
        spectrum = (flux / dv) * line + cont * (nu / nu0) ** alpha                   # (z,) Jy
        clean += spectrum[:, None, None] * spatial[None]
        catalogue.append({"x": x0, "y": y0, "z": z0,
                          "flux": float(flux * line.sum() * spatial.sum()),           # what the cube holds
                          "continuum": float(cont * spatial.sum()),
                          "fwhm_x": fwhm_x, "fwhm_y": fwhm_y, "pa": pa, "line_width": width,
                          "spectral_index": alpha})
    dirty = convolve_beam(clean, opts.bmaj_pix, opts.bmin_pix, opts.bpa_deg)
    if opts.noise_rms > 0:
        dirty += _noise(rng, opts)
    return RadioCube(dirty.astype(np.float32), clean.astype(np.float32), catalogue)


def cube_header(opts: RadioOptions, kind: str) -> Any:
    """The FITS header of a ``dirty`` (Jy/beam, with BMAJ/BMIN/BPA) or ``clean`` (Jy/pixel) cube:
    RA---SIN / DEC--SIN / FREQ axes (and STOKES with ``stokes_axis``), angles in degrees."""
    from astropy.io import fits

    nz, ny, nx = opts.cube_shape
    pixel_deg = opts.pixel_arcsec / 3600.0
    h = fits.Header()
    h["BUNIT"] = ("Jy/beam", "sky convolved with the beam, plus noise") if kind == "dirty" else \
        ("Jy/pixel", "the sky model, not beam-convolved")
    if kind == "dirty":
        h["BMAJ"] = (opts.bmaj_pix * pixel_deg, "beam major axis FWHM [deg]")
        h["BMIN"] = (opts.bmin_pix * pixel_deg, "beam minor axis FWHM [deg]")
        h["BPA"] = (opts.bpa_deg, "beam position angle, east of north [deg]")
    axes = [("RA---SIN", nx / 2 + 1, opts.ra_deg, -pixel_deg, "deg"),
            ("DEC--SIN", ny / 2 + 1, opts.dec_deg, pixel_deg, "deg"),
            ("FREQ", (nz + 1) / 2, opts.ref_frequency_ghz * 1e9, opts.channel_width_mhz * 1e6, "Hz")]
    if opts.stokes_axis:
        axes.append(("STOKES", 1.0, 1.0, 1.0, ""))
    for i, (ctype, crpix, crval, cdelt, cunit) in enumerate(axes, start=1):
        h[f"CTYPE{i}"], h[f"CRPIX{i}"], h[f"CRVAL{i}"] = ctype, float(crpix), float(crval)
        h[f"CDELT{i}"], h[f"CUNIT{i}"] = float(cdelt), cunit
    h["RADESYS"], h["EQUINOX"] = "ICRS", 2000.0
    h["SPECSYS"], h["RESTFRQ"] = "LSRK", opts.ref_frequency_ghz * 1e9
    h["TELESCOP"], h["OBJECT"] = "ALMA", "deepscope radio simulation"
    h["ORIGIN"] = "deepscope"
    h.add_history("simulated by deepscope.data.simulators.radio")
    return h


# --- folders ---------------------------------------------------------------------------------------


def settings_json(counts: Mapping[str, int], seed: int, opts: RadioOptions, layout: RadioLayout) -> str:
    """The settings that decide a folder's files, as canonical JSON."""
    settings = {"format": 1, "counts": {k: int(counts[k]) for k in _SPLITS if counts.get(k, 0) > 0},
                "simulation_seed": int(seed), "options": asdict(opts),
                "layout": {**asdict(layout), "sets": dict(layout.sets), "csv": dict(layout.csv)}}
    return json.dumps(json.loads(json.dumps(settings)), sort_keys=True)


def write_radio_folder(path: str | Path, counts: Mapping[str, int], seed: int, opts: RadioOptions,
                       layout: RadioLayout | None = None) -> None:
    """Simulate every split and write its folder (cubes and catalogue) under ``path`` (no checks, not
    atomic: :func:`ensure_radio_folder` is the safe entry point).

    Split ``k`` uses stream ``k`` of ``SeedSequence(seed)`` (train, val, test) and cube ``i`` its
    ``i``-th child, so a cube does not change when other splits or later cubes are added. IDs count
    from 0 in every split.
    """
    import pandas as pd
    from astropy.io import fits

    layout = layout or RadioLayout()
    root = Path(path)
    streams = dict(zip(_SPLITS, np.random.SeedSequence(seed).spawn(len(_SPLITS))))
    headers = {kind: cube_header(opts, kind) for kind in ("dirty", "clean")}
    xc, yc, zc = layout.position_columns
    for split in _SPLITS:
        n = int(counts.get(split, 0))
        if n <= 0:
            continue
        folder = root / layout.sets[split]
        folder.mkdir(parents=True, exist_ok=True)
        rows = []
        for cube_id, child in enumerate(streams[split].spawn(n)):
            cube = simulate_cube(child, opts)
            for kind, data, pattern in (("dirty", cube.dirty, layout.input), ("clean", cube.clean, layout.target)):
                data = data[None] if opts.stokes_axis else data
                fits.PrimaryHDU(data, headers[kind]).writeto(folder / pattern.replace("{id}", str(cube_id)))
            for src in cube.catalogue:
                shift = layout.position_origin
                rows.append({layout.id_column: cube_id, xc: src["x"] + shift, yc: src["y"] + shift,
                             zc: src["z"] + shift, **{c: src[c] for c in CATALOGUE_COLUMNS}})
        pd.DataFrame(rows).to_csv(folder / layout.csv[split], index=False)


def _differences(found: dict[str, Any], wanted: dict[str, Any], prefix: str = "") -> list[str]:
    out = []
    for key in sorted(set(found) | set(wanted)):
        a, b = found.get(key), wanted.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += _differences(a, b, f"{prefix}{key}.")
        elif a != b:
            out.append(f"{prefix}{key} {json.dumps(a)} (now {json.dumps(b)})")
    return out


def check_radio_folder(path: str | Path, wanted: str) -> bool:
    """Whether ``path`` already holds the folder these settings simulate (False: absent or empty).

    Args:
        path: the folder.
        wanted: the settings, as :func:`settings_json` writes them.

    Raises:
        DataError: it holds something else.
    """
    path = Path(path)
    if not path.exists():
        return False
    if not path.is_dir():
        raise DataError(f"data.path: '{path}' is a file; the radio simulator writes a folder there")
    marker = path / SETTINGS_FILE
    if not marker.is_file():
        if not any(path.iterdir()):
            return False
        raise DataError(f"data.path: '{path}' holds other files (it has no {SETTINGS_FILE}, so the radio "
                        "simulator did not write it); point data.path at a new or empty folder")
    try:
        found = json.loads(marker.read_text())
    except (OSError, ValueError) as exc:
        raise DataError(f"data.path: '{marker}' is not readable ({exc}); delete '{path}' to simulate again") from None
    if json.dumps(found, sort_keys=True) != wanted:
        diff = "; ".join(_differences(found, json.loads(wanted))[:6])
        raise DataError(f"data.path: '{path}' holds cubes simulated with other settings ({diff}); delete the folder "
                        "to simulate again, or point data.path at another folder")
    return True


def ensure_radio_folder(path: str | Path, counts: Mapping[str, int], seed: int, opts: RadioOptions,
                        layout: RadioLayout | None = None) -> Path:
    """The simulated folder at ``path``: written once, atomically, and checked afterwards.

    The folder is simulated into a temporary folder beside ``path`` and renamed into place, so no
    reader sees a half-written folder. When two processes start at once, both simulate, one rename
    wins, and the other checks the winner's settings and discards its own copy.

    Returns:
        ``path``.

    Raises:
        DataError: ``path`` holds other files or cubes simulated with other settings, or cannot be
            written.
    """
    layout = layout or RadioLayout()
    path = Path(path)
    wanted = settings_json(counts, seed, opts, layout)
    if check_radio_folder(path, wanted):
        return path
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    except OSError as exc:
        raise DataError(f"data.path: cannot write '{path}' ({exc})") from None
    try:
        write_radio_folder(tmp, counts, seed, opts, layout)
        (tmp / SETTINGS_FILE).write_text(wanted)
        try:
            os.rename(tmp, path)  # atomic; replaces an empty folder, fails on a filled one
        except OSError as exc:
            if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                raise
            check_radio_folder(path, wanted)  # another process was first: its folder must be ours
    except OSError as exc:
        raise DataError(f"data.path: cannot write '{path}' ({exc})") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return path

