"""Gaussian-random-field matter cubes in RACCOON/PENGUIN's HDF5 layout (a toy of GR vs Newtonian gravity).

Every simulation seed gives one white-noise cube, drawn from ``default_rng([simulation_seed, seed])``.
Each class shapes that same noise in Fourier space by its own power spectrum

    P(k) = A · k^(-slope),   k = |k| in units of the box's fundamental frequency (1, 2, ... along an axis),

so the cubes of one seed are *paired*, as the real GR and Newtonian simulations of one seed start from
the same initial conditions: their Fourier phases are equal and only the amplitudes of the modes
differ. Class label ℓ has the slope ``slope + ℓ · slope_difference``: with the default classes the
Newtonian cubes (label 0) have ``slope`` and the GR cubes (label 1) a slightly steeper spectrum, more
power on large scales and less on small ones (a toy of the relativistic corrections, which grow on
large scales).

- **Low k.** The k = 0 mode is set to zero, so every cube has mean exactly 0. The smallest non-zero
  wavenumber on the grid is 1 (the box's fundamental mode), so the red spectrum has no divergence.
- **Amplitude.** ``A`` is set per class so that its cubes have variance 1 in expectation (the mean
  of P over the Fourier grid is 1), the way simulations are normalised to one σ8: the classes
  differ in the shape of P(k), not in its total, and the cubes are stored standardized.
- **Periodic.** The cubes are periodic boxes (a discrete Fourier transform of white noise); the
  field is Gaussian, so P(k) holds all its information.

:func:`ensure_grf_file` writes the file once (atomically) and refuses a file written with other
settings; :func:`power_spectrum` measures the radially averaged spectrum of a cube or a slice, and
:func:`fit_slope` its log-log slope (what the tests and the baselines measure with).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from deepscope.data.simulators.settings import advice as settings_advice
from deepscope.data.simulators.settings import differences, read_settings, written_atomically
from deepscope.errors import DataError

__all__ = ["DEFAULT_CLASSES", "SETTINGS_ATTR", "GRFOptions", "check_grf_file", "ensure_grf_file", "fit_slope",
           "power_spectrum", "settings", "simulate_seed", "write_grf_file"]

log = logging.getLogger("deepscope")

SETTINGS_ATTR = "deepscope_grf_settings"  # the file's settings, canonical JSON
FORMAT = 1
DEFAULT_CLASSES = {"gr_seed{seed:04d}": 1, "newton_seed{seed:04d}": 0}  # as deepscope.config.cube_hdf5
_PROGRESS_S = 5.0  # log progress at most this often, and only when writing takes longer


@dataclass(frozen=True)
class GRFOptions:
    """What decides the cubes of a file (besides how many seeds it holds).

    Attributes:
        size: cube side N; every cube is (N, N, N) float32.
        slope: spectral slope of class label 0, P(k) ∝ k^(-slope).
        slope_difference: label ℓ has slope ``slope + ℓ * slope_difference``.
        simulation_seed: seed of the white noise (with each simulation seed).
        classes: dataset key pattern (holding ``{seed}``) -> class label.
    """

    size: int = 64
    slope: float = 2.0
    slope_difference: float = 0.1
    simulation_seed: int = 0
    classes: Mapping[str, int] = field(default_factory=lambda: dict(DEFAULT_CLASSES))

    def __post_init__(self) -> None:
        if not isinstance(self.size, int) or self.size < 4:
            raise ValueError(f"size: found {self.size!r}; expected a cube side of at least 4 voxels")
        if not (np.isfinite(self.slope) and np.isfinite(self.slope_difference)):
            raise ValueError(f"slope {self.slope!r} and slope_difference {self.slope_difference!r} must be finite")
        if self.simulation_seed < 0:
            raise ValueError(f"simulation_seed: found {self.simulation_seed}; expected an integer >= 0")
        labels = list(self.classes.values())
        if not labels or len(set(labels)) != len(labels) or min(labels) < 0:
            raise ValueError(f"classes: found {dict(self.classes)}; expected key patterns with distinct labels >= 0")

    def slope_of(self, label: int) -> float:
        """The spectral slope of class ``label``."""
        return float(self.slope + label * self.slope_difference)


# --- the fields ------------------------------------------------------------------------------------


def _wavenumbers(n: int) -> np.ndarray:
    """|k| on the half grid of ``rfftn`` of an (n, n, n) cube, in units of the fundamental frequency."""
    k = np.fft.fftfreq(n) * n
    kz = np.fft.rfftfreq(n) * n
    return np.sqrt(k[:, None, None] ** 2 + k[None, :, None] ** 2 + kz[None, None, :] ** 2)  # (n, n, n//2+1)


def _half_grid_weights(n: int) -> np.ndarray:
    """How often each last-axis column of the rfft half grid occurs in the full grid (its mirror)."""
    w = np.full(n // 2 + 1, 2.0)
    w[0] = 1.0
    if n % 2 == 0:
        w[-1] = 1.0  # the Nyquist plane is its own mirror
    return w


def _filters(opts: GRFOptions) -> dict[int, np.ndarray]:
    """Per class label: sqrt(P(k)) on the rfft half grid, P normalised to mean 1 over the full grid."""
    n = opts.size
    k = _wavenumbers(n)
    safe = np.where(k > 0, k, 1.0)
    weights = _half_grid_weights(n)
    filters = {}
    for label in sorted(set(opts.classes.values())):
        p = np.where(k > 0, safe ** -opts.slope_of(label), 0.0)  # k = 0: zero mean
        p *= n ** 3 / (p * weights).sum()  # mean of P over the n³ modes = 1: unit variance in expectation
        filters[label] = np.sqrt(p)
    return filters


def _simulate(seed: int, opts: GRFOptions, filters: Mapping[int, np.ndarray]) -> dict[int, np.ndarray]:
    n = opts.size
    rng = np.random.default_rng([opts.simulation_seed, seed])
    noise = np.fft.rfftn(rng.standard_normal((n, n, n)))  # (n, n, n//2+1); E|W_k|² = n³
    return {label: np.fft.irfftn(noise * f, s=(n, n, n), axes=(0, 1, 2)).astype(np.float32)
            for label, f in filters.items()}


def simulate_seed(seed: int, opts: GRFOptions) -> dict[int, np.ndarray]:
    """The cubes of one simulation seed, one per class, all from the same white noise.

    Args:
        seed: the simulation seed (>= 0).
        opts: the simulation settings.

    Returns:
        Class label -> cube (N, N, N) float32 with mean 0 and variance 1 in expectation.
    """
    if seed < 0:
        raise ValueError(f"seed: found {seed}; expected an integer >= 0")
    return _simulate(seed, opts, _filters(opts))


# --- measuring the spectrum ------------------------------------------------------------------------


def power_spectrum(field_: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The radially averaged power spectrum of a periodic cube or image, in integer-width shells.

    Args:
        field_: (N, N, N) or (N, N) values.

    Returns:
        ``(k, P)``: the mean |k| of the modes in each shell [m - 0.5, m + 0.5), m = 1 .. N/2 - 1, and
        the mean |F_k|² / N^d of those modes (P of the generating spectrum, in expectation).
    """
    a = np.asarray(field_, np.float64)
    n, d = a.shape[0], a.ndim
    if a.shape != (n,) * d or d not in (2, 3):
        raise ValueError(f"found shape {a.shape}; expected an (N, N) image or an (N, N, N) cube")
    power = np.abs(np.fft.rfftn(a)) ** 2 / n ** d
    freqs = [np.fft.fftfreq(n) * n] * (d - 1) + [np.fft.rfftfreq(n) * n]
    k = np.sqrt(sum(np.meshgrid(*[f ** 2 for f in freqs], indexing="ij")))
    weights = np.broadcast_to(_half_grid_weights(n), k.shape)  # count mirrored modes as the full grid does
    shell = np.rint(k).astype(int).ravel()
    keep = (shell >= 1) & (shell < n // 2)
    shell, w = shell[keep], weights.ravel()[keep]
    count = np.bincount(shell, w, minlength=n // 2)[1:]
    k_mean = np.bincount(shell, w * k.ravel()[keep], minlength=n // 2)[1:] / count
    p_mean = np.bincount(shell, w * power.ravel()[keep], minlength=n // 2)[1:] / count
    return k_mean, p_mean


def fit_slope(k: np.ndarray, p: np.ndarray, k_range: tuple[float, float] | None = None) -> float:
    """The slope n of P ∝ k^(-n): a least-squares line through (log k, log P).

    Args:
        k: wavenumbers of the shells, (S,).
        p: the power in them, (S,); shells without power are left out.
        k_range: (low, high), inclusive; ``None``: every shell.

    Raises:
        ValueError: fewer than two shells to fit.
    """
    k, p = np.asarray(k, np.float64), np.asarray(p, np.float64)
    keep = np.ones(len(k), bool) if k_range is None else (k >= k_range[0]) & (k <= k_range[1])
    keep &= p > 0
    if keep.sum() < 2:
        raise ValueError(f"fit_slope: {int(keep.sum())} shell(s) in k range {k_range}; need 2")
    return float(-np.polyfit(np.log(k[keep]), np.log(p[keep]), 1)[0])


# --- the file --------------------------------------------------------------------------------------


def settings(opts: GRFOptions, n_seeds: int) -> dict[str, Any]:
    """The settings that decide a file's datasets (stored with it as JSON)."""
    return {"format": FORMAT, "size": int(opts.size), "slope": float(opts.slope),
            "slope_difference": float(opts.slope_difference), "simulation_seed": int(opts.simulation_seed),
            "classes": {str(k): int(v) for k, v in opts.classes.items()}, "n_seeds": int(n_seeds)}


def _settings_json(opts: GRFOptions, n_seeds: int) -> str:
    return json.dumps(settings(opts, n_seeds), sort_keys=True)


def write_grf_file(path: str | Path, opts: GRFOptions, n_seeds: int, key: str = "data.path") -> Path:
    """Simulate seeds [0, n_seeds) and write them to ``path`` atomically (a temporary file beside it,
    renamed into place), replacing what is there: :func:`ensure_grf_file` is the safe entry point.

    Datasets ``pattern.format(seed=s)`` for every pattern of ``opts.classes``, float32 (N, N, N),
    chunked one slice along the first axis at a time (what 2D training reads); the settings are
    the file attribute ``deepscope_grf_settings`` (JSON).

    Raises:
        DataError: the file cannot be written (``key`` names the setting that gave the path).
    """
    import h5py

    path = Path(path)
    if n_seeds < 1:
        raise ValueError(f"n_seeds: found {n_seeds}; expected at least 1")
    n = opts.size
    filters = _filters(opts)
    start = last = time.monotonic()
    with written_atomically(path, key) as tmp, h5py.File(tmp, "w") as f:
        f.attrs[SETTINGS_ATTR] = _settings_json(opts, n_seeds)
        for seed in range(n_seeds):
            cubes = _simulate(seed, opts, filters)
            for pattern, label in opts.classes.items():
                f.create_dataset(pattern.format(seed=seed), data=cubes[label], chunks=(1, n, n))
            now = time.monotonic()
            if now - last > _PROGRESS_S:
                log.info(f"simulating '{path.name}': {seed + 1}/{n_seeds} seeds ({now - start:.0f} s)")
                last = now
    log.info(f"wrote {n_seeds} seeds x {len(opts.classes)} classes of {n}³ Gaussian-random-field cubes to '{path}' "
             f"({time.monotonic() - start:.1f} s)")
    return path


def check_grf_file(path: str | Path, opts: GRFOptions, n_seeds: int, key: str = "data.path") -> bool:
    """Whether ``path`` already holds the cubes these settings simulate (False: there is no file).

    A file written with the same settings and more seeds serves too: a cube depends only on the
    settings and its own seed.

    Raises:
        DataError: ``path`` is not a file this simulator wrote, or holds cubes simulated with other
            settings or fewer seeds; the message names the file and says to delete it or to change
            ``key``.
    """
    found = read_settings(Path(path), SETTINGS_ATTR, "the Gaussian-random-field simulator", key)
    if found is None:
        return False
    advice = settings_advice(key)
    wanted = settings(opts, n_seeds)
    others = differences({k: v for k, v in found.items() if k != "n_seeds"},
                          {k: v for k, v in wanted.items() if k != "n_seeds"})
    if others:
        raise DataError(f"{key}: '{path}' holds cubes simulated with other settings ({'; '.join(others)}); {advice}")
    if found.get("n_seeds", 0) < n_seeds:
        raise DataError(f"{key}: '{path}' holds seeds 0..{found.get('n_seeds', 0) - 1} but seeds up to {n_seeds - 1} "
                        f"are needed; {advice}")
    return True


def ensure_grf_file(path: str | Path, opts: GRFOptions, n_seeds: int, key: str = "data.path") -> Path:
    """The file at ``path`` holding seeds [0, n_seeds): written when absent, checked when present.

    Two processes starting at once both simulate; one rename wins, and the file holds the same cubes
    either way.

    Returns:
        ``path``.

    Raises:
        DataError: what :func:`check_grf_file` and :func:`write_grf_file` raise.
    """
    if not check_grf_file(path, opts, n_seeds, key):
        write_grf_file(path, opts, n_seeds, key)
    return Path(path)
