"""A synthetic brain-atlas registration set in atlalign's HDF5 layout (numpy and scipy only).

**The reference.** A volume (D, H, W) in [0, 1] of coronal sections of a brain-like phantom: an
elliptic outline (label 1) holding several inner structures (labels 2, 3, ...: ellipses of distinct
intensities), on a smooth noise texture. Outline and structures change smoothly with depth, so
neighbouring sections look alike. The labels form an int32 annotation volume (0 = background).

**A pair.** A section index d is drawn (``p = d * section_thickness`` µm) and a forward field
``deltas_xy`` (mov2reg): affine (rotation, scale, shear, translation about the centre) or, for
``elastic``, an elastic field e (Gaussian-smoothed noise scaled to ``elastic_amplitude``) composed
with the affine a as ``Δ(p) = e(p) + a(p + e(p))``. Its exact inverse ``inv_deltas_xy`` (reg2mov)
is analytic for an affine field and otherwise the fixed point of ``inv(p) = -Δ(p + inv(p))``,
iterated until the residual is below :data:`INVERSE_TOLERANCE` px everywhere (checked). The moving
image is ``mov(q) = ref(q + inv(q))`` (bilinear, zero outside), stored as uint8 after a mild
intensity change.

**Conventions** (atlalign's, which deepscope keeps): fields are in pixels, the last axis holds
channel 0 = Δx (columns, the W axis) and channel 1 = Δy (rows); the backward warp is
``out(x, y) = img(x + Δx, y + Δy)``, bilinear, zero outside (:func:`warp`). So
``warp(moving, deltas_xy)`` is the reference section (up to interpolation and the intensity change)
and ``warp(reference section, inv_deltas_xy)`` is the moving image.

:func:`ensure_registration_demo` writes the file once (atomically, under a lock) with the
volume and labels as ``<stem>_reference.npy`` / ``<stem>_annotation.npy`` beside it, and refuses
files written with other settings; :func:`write_registration_hdf5` writes the layout for any data.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from deepscope.data.simulators.settings import advice, differences, read_settings, written_atomically
from deepscope.errors import DataError

__all__ = ["INVERSE_TOLERANCE", "SETTINGS_ATTR", "RegistrationOptions", "affine_field", "check_registration_demo",
           "compose", "ensure_registration_demo", "invert_field", "jacobian_determinant", "simulate_pair",
           "simulate_pairs", "simulate_reference", "warp", "write_registration_hdf5"]

log = logging.getLogger("deepscope")

SETTINGS_ATTR = "deepscope_registration_settings"  # the demo's settings, canonical JSON
FORMAT = 1
INVERSE_TOLERANCE = 1e-3  # px: the largest residual |inv(p) + Δ(p + inv(p))| of a computed inverse
_MAX_ITERATIONS = 500
_MIN_DET = 0.1  # the elastic part is shrunk until det J of the field is at least this everywhere


@dataclass(frozen=True)
class RegistrationOptions:
    """What decides the demo's files (``deepscope.config.registration.RegistrationDemoData`` keys)."""

    n_pairs: int = 256
    shape: tuple[int, int] = (80, 114)
    n_sections: int = 24
    section_thickness: float = 25.0
    deformation: str = "elastic"
    rotation: float = 10.0
    scale: float = 0.08
    shear: float = 0.05
    translation: float = 0.05
    elastic_amplitude: float = 3.0
    elastic_smoothness: float = 8.0
    n_datasets: int = 4
    simulation_seed: int = 0

    def __post_init__(self) -> None:
        if self.n_pairs < 1 or self.n_sections < 1 or self.n_datasets < 1:
            raise ValueError(f"n_pairs {self.n_pairs}, n_sections {self.n_sections} and n_datasets "
                             f"{self.n_datasets} must be at least 1")
        if len(self.shape) != 2 or min(self.shape) < 8:
            raise ValueError(f"shape: found {self.shape}; expected (H, W) with H, W >= 8")
        if self.deformation not in ("affine", "elastic"):
            raise ValueError(f"deformation: found {self.deformation!r}; expected 'affine' or 'elastic'")
        if not (0 <= self.scale < 0.5 and 0 <= self.shear < 0.5 and 0 <= self.translation < 0.5):
            raise ValueError("scale, shear and translation must be in [0, 0.5)")
        if self.section_thickness <= 0 or self.elastic_smoothness <= 0 or self.elastic_amplitude < 0:
            raise ValueError("section_thickness and elastic_smoothness must be > 0, elastic_amplitude >= 0")


# --- warping and fields ----------------------------------------------------------------------------


def _grid(shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Pixel coordinates (x, y), each (H, W) float64: x along columns (W), y along rows (H)."""
    y, x = np.mgrid[0:shape[0], 0:shape[1]].astype(np.float64)
    return x, y


def warp(image: np.ndarray, deltas_xy: np.ndarray, order: int = 1) -> np.ndarray:
    """atlalign's backward warp: ``out(x, y) = image(x + Δx, y + Δy)``, zero outside.

    Args:
        image: (H, W).
        deltas_xy: (H, W, 2) pixels, channel 0 = Δx (columns), 1 = Δy (rows).
        order: 1 bilinear, 0 nearest neighbour (labels).

    Returns:
        (H, W) float64 (or the labels' dtype for ``order=0``).
    """
    from scipy.ndimage import map_coordinates

    x, y = _grid(image.shape)
    coords = [y + deltas_xy[..., 1], x + deltas_xy[..., 0]]
    if order == 0:
        # nearest neighbour by rounding (map_coordinates' order 0 rounds halves inconsistently)
        return map_coordinates(image, np.rint(coords), order=0, cval=0, mode="constant")
    return map_coordinates(np.asarray(image, np.float64), coords, order=order, cval=0.0, mode="constant")


def _sample_field(field: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """A gridded (H, W, 2) field at off-grid points, bilinear, border values continued outside."""
    from scipy.ndimage import map_coordinates

    return np.stack([map_coordinates(field[..., c], [y, x], order=1, mode="nearest") for c in range(2)], -1)


def affine_field(matrix: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """The field of a 2×3 affine map on homogeneous pixel coordinates: ``A·[x, y, 1]ᵀ − [x, y]ᵀ``,
    (H, W, 2) float64 (atlalign's Affine2DVF)."""
    x, y = _grid(shape)
    a = np.asarray(matrix, np.float64)
    return np.stack([a[0, 0] * x + a[0, 1] * y + a[0, 2] - x, a[1, 0] * x + a[1, 1] * y + a[1, 2] - y], -1)


def compose(inner: np.ndarray, outer: np.ndarray) -> np.ndarray:
    """``Δ(p) = inner(p) + outer(p + inner(p))`` (apply inner, then outer), bilinear, (H, W, 2)."""
    x, y = _grid(inner.shape[:2])
    return inner + _sample_field(outer, x + inner[..., 0], y + inner[..., 1])


def jacobian_determinant(deltas_xy: np.ndarray) -> np.ndarray:
    """det J of ``p -> p + Δ(p)`` by central differences, (H, W)."""
    dxx = np.gradient(deltas_xy[..., 0], axis=1)
    dxy = np.gradient(deltas_xy[..., 0], axis=0)
    dyx = np.gradient(deltas_xy[..., 1], axis=1)
    dyy = np.gradient(deltas_xy[..., 1], axis=0)
    return (1 + dxx) * (1 + dyy) - dxy * dyx


def _random_affine(rng: np.random.Generator, opts: RegistrationOptions) -> np.ndarray:
    """A 2×3 matrix: rotation, scale and shear about the image centre, then a translation."""
    h, w = opts.shape
    theta = np.deg2rad(rng.uniform(-opts.rotation, opts.rotation))
    sx, sy = 1 + rng.uniform(-opts.scale, opts.scale, 2)
    sh = rng.uniform(-opts.shear, opts.shear)
    tx, ty = rng.uniform(-opts.translation, opts.translation, 2) * (w, h)
    rot = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    m = rot @ np.array([[1.0, sh], [0.0, 1.0]]) @ np.diag([sx, sy])
    c = np.array([(w - 1) / 2, (h - 1) / 2])
    return np.concatenate([m, (c - m @ c + (tx, ty))[:, None]], 1)


def _affine_inverse(matrix: np.ndarray) -> np.ndarray:
    m, t = matrix[:, :2], matrix[:, 2]
    mi = np.linalg.inv(m)
    return np.concatenate([mi, (-mi @ t)[:, None]], 1)


def _elastic(rng: np.random.Generator, opts: RegistrationOptions) -> np.ndarray:
    """Gaussian-smoothed noise, (H, W, 2), largest displacement ``elastic_amplitude`` px."""
    from scipy.ndimage import gaussian_filter

    noise = rng.standard_normal((*opts.shape, 2))
    smooth = np.stack([gaussian_filter(noise[..., c], opts.elastic_smoothness, mode="reflect") for c in range(2)], -1)
    peak = np.abs(smooth).max()
    return smooth * (opts.elastic_amplitude / peak) if peak > 0 else smooth


def invert_field(forward: Any, shape: tuple[int, int], start: np.ndarray | None = None,
                 tolerance: float = INVERSE_TOLERANCE) -> np.ndarray:
    """The inverse of a field by the fixed point ``inv(p) = -Δ(p + inv(p))``.

    Args:
        forward: ``(x, y) -> Δ(x, y)`` at any (off-grid) points, (H, W, 2).
        shape: (H, W).
        start: the first guess (default: −Δ on the grid).
        tolerance: the largest residual ``|inv(p) + Δ(p + inv(p))|`` accepted, px.

    Returns:
        (H, W, 2) float64.

    Raises:
        RuntimeError: no convergence (the field is not invertible enough).
    """
    x, y = _grid(shape)
    inv = -forward(x, y) if start is None else np.array(start, np.float64)
    for _ in range(_MAX_ITERATIONS):
        new = -forward(x + inv[..., 0], y + inv[..., 1])
        residual = float(np.abs(new - inv).max())
        inv = new
        if residual < tolerance / 4:
            break
    residual = float(np.abs(inv + forward(x + inv[..., 0], y + inv[..., 1])).max())
    if residual >= tolerance:
        raise RuntimeError(f"the inverse field did not converge: residual {residual:.2e} px >= {tolerance:g} px")
    return inv


def simulate_pair(section: np.ndarray, rng: np.random.Generator,
                  opts: RegistrationOptions) -> dict[str, np.ndarray]:
    """One pair from a reference section.

    Args:
        section: (H, W) reference section in [0, 1].
        rng: the pair's generator.
        opts: the settings.

    Returns:
        ``moving`` (H, W) float64 in [0, 1] before the intensity change, ``deltas_xy`` and
        ``inv_deltas_xy`` (H, W, 2) float64, ``residual`` (the inverse's largest residual, px).
    """
    shape = tuple(section.shape)
    matrix = _random_affine(rng, opts)
    affine_inv = _affine_inverse(matrix)
    a = matrix

    def affine_at(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return np.stack([a[0, 0] * x + a[0, 1] * y + a[0, 2] - x, a[1, 0] * x + a[1, 1] * y + a[1, 2] - y], -1)

    x, y = _grid(shape)
    if opts.deformation == "affine" or opts.elastic_amplitude == 0:
        forward = affine_field(matrix, shape)
        inverse = affine_field(affine_inv, shape)
        fwd_at = affine_at
    else:
        elastic = _elastic(rng, opts)
        for _ in range(20):  # shrink the elastic part until the field folds nowhere
            def fwd_at(px: np.ndarray, py: np.ndarray, e: np.ndarray = elastic) -> np.ndarray:
                inner = _sample_field(e, px, py)
                return inner + affine_at(px + inner[..., 0], py + inner[..., 1])

            forward = fwd_at(x, y)
            if jacobian_determinant(forward).min() >= _MIN_DET:
                break
            elastic = elastic * 0.5
        inverse = invert_field(fwd_at, shape, start=affine_field(affine_inv, shape))
    residual = float(np.abs(inverse + fwd_at(x + inverse[..., 0], y + inverse[..., 1])).max())
    if residual >= INVERSE_TOLERANCE or jacobian_determinant(forward).min() <= 0:
        raise RuntimeError(f"simulated field not invertible (residual {residual:.2e} px)")
    moving = warp(section, inverse)
    return {"moving": moving, "deltas_xy": forward, "inv_deltas_xy": inverse, "residual": np.float64(residual)}


# --- the reference volume ---------------------------------------------------------------------------


def simulate_reference(opts: RegistrationOptions) -> tuple[np.ndarray, np.ndarray]:
    """The phantom volume and its labels.

    Returns:
        ``(volume, annotation)``: (D, H, W) float32 in [0, 1] and (D, H, W) int32 (0 background,
        1 outline, 2.. inner structures).
    """
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng([opts.simulation_seed, 0])
    d, (h, w) = opts.n_sections, opts.shape
    t = np.linspace(0.0, 1.0, d)[:, None, None]  # depth, 0..1
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    v = (yy[None] - (h - 1) / 2) / (h / 2)  # -1..1 along rows
    u = (xx[None] - (w - 1) / 2) / (w / 2)  # -1..1 along columns
    # the outline: an ellipse that grows, then shrinks, with depth
    size = 0.7 + 0.2 * np.sin(np.pi * t)
    outline = (u / (0.88 * size)) ** 2 + (v / (0.82 * size)) ** 2
    annotation = np.where(outline < 1, 1, 0).astype(np.int32)
    intensity = np.where(outline < 1, 0.45, 0.0)
    # inner structures: (centre u, centre v, radius u, radius v, depth drift, intensity), mirrored pairs
    structures = [(-0.35, -0.25, 0.22, 0.16, 0.15, 0.85), (0.35, -0.25, 0.22, 0.16, -0.15, 0.75),
                  (0.0, 0.15, 0.28, 0.12, 0.10, 0.25), (-0.3, 0.35, 0.12, 0.12, 0.20, 0.65),
                  (0.3, 0.35, 0.12, 0.12, -0.20, 0.95)]
    for label, (cu, cv, ru, rv, drift, level) in enumerate(structures, start=2):
        grow = 0.6 + 0.5 * np.sin(np.pi * (t * 0.8 + 0.1))
        cu_t, cv_t = cu * size + drift * (t - 0.5), cv * size - 0.5 * drift * (t - 0.5)
        inside = ((u - cu_t) / (ru * grow * size)) ** 2 + ((v - cv_t) / (rv * grow * size)) ** 2 < 1
        inside &= outline < 1
        annotation[inside] = label
        intensity = np.where(inside, level, intensity)
    texture = gaussian_filter(rng.standard_normal((d, h, w)), (1.5, 3.0, 3.0), mode="reflect")
    texture /= max(float(np.abs(texture).max()), 1e-12)
    volume = intensity + 0.08 * texture * (outline < 1.05)
    volume = gaussian_filter(volume, (0.0, 0.8, 0.8), mode="constant")  # soft edges
    return np.clip(volume, 0.0, 1.0).astype(np.float32), annotation


def _intensity_change(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A mild change of contrast, brightness and gamma, as between two stainings."""
    gamma = np.exp(rng.uniform(-0.1, 0.1))
    out = np.clip(image * rng.uniform(0.92, 1.08) + rng.uniform(-0.03, 0.03), 0.0, 1.0) ** gamma
    return np.clip(out, 0.0, 1.0)


def simulate_pairs(opts: RegistrationOptions, volume: np.ndarray) -> dict[str, np.ndarray]:
    """Every pair in atlalign's layout.

    Returns:
        ``img`` uint8 (n, H, W), ``deltas_xy`` / ``inv_deltas_xy`` float16 (n, H, W, 2), ``p``,
        ``image_id``, ``dataset_id`` int64 (n,).
    """
    n, (h, w) = opts.n_pairs, opts.shape
    out = {"img": np.empty((n, h, w), np.uint8), "deltas_xy": np.empty((n, h, w, 2), np.float16),
           "inv_deltas_xy": np.empty((n, h, w, 2), np.float16)}
    sections = np.random.default_rng([opts.simulation_seed, 1]).integers(0, opts.n_sections, n)
    start = last = time.monotonic()
    for i in range(n):
        rng = np.random.default_rng([opts.simulation_seed, 2, i])
        pair = simulate_pair(volume[sections[i]], rng, opts)
        out["img"][i] = np.rint(_intensity_change(pair["moving"], rng) * 255).astype(np.uint8)
        out["deltas_xy"][i] = pair["deltas_xy"]
        out["inv_deltas_xy"][i] = pair["inv_deltas_xy"]
        now = time.monotonic()
        if now - last > 5.0:
            log.info(f"simulating registration pairs: {i + 1}/{n} ({now - start:.0f} s)")
            last = now
    out["p"] = np.rint(sections * opts.section_thickness).astype(np.int64)
    out["image_id"] = np.arange(n, dtype=np.int64)
    out["dataset_id"] = np.arange(n, dtype=np.int64) % opts.n_datasets
    return out


# --- the files --------------------------------------------------------------------------------------


def write_registration_hdf5(path: str | Path, img: np.ndarray, deltas_xy: np.ndarray,
                            inv_deltas_xy: np.ndarray | None, p: np.ndarray, image_id: np.ndarray,
                            dataset_id: np.ndarray, attrs: Mapping[str, Any] | None = None,
                            key: str = "data.path") -> Path:
    """Write atlalign's layout atomically (a temporary file beside ``path``, renamed into place).

    Args:
        path: the file (replaced when it exists).
        img: (n, H, W) moving images, uint8 (or floats in [0, 1], stored ×255 rounded).
        deltas_xy: (n, H, W, 2) forward fields (mov2reg), pixels; stored float16.
        inv_deltas_xy: (n, H, W, 2) inverse fields (reg2mov), or None to leave the dataset out.
        p: (n,) coronal positions, µm; ``image_id``, ``dataset_id``: (n,) integers.
        attrs: file attributes (strings, numbers).
        key: how errors name the setting that gave the path.

    Returns:
        ``path``.

    Raises:
        ValueError: arrays of the wrong shapes.
        DataError: the file cannot be written.
    """
    import h5py

    path = Path(path)
    img = np.asarray(img)
    n = len(img)
    if img.ndim != 3:
        raise ValueError(f"img: found shape {img.shape}; expected (n, H, W)")
    if img.dtype != np.uint8:
        img = np.rint(np.clip(np.asarray(img, np.float64), 0.0, 1.0) * 255).astype(np.uint8)
    fields = {"deltas_xy": deltas_xy, "inv_deltas_xy": inv_deltas_xy}
    for name, value in fields.items():
        if value is not None and np.shape(value) != (*img.shape, 2):
            raise ValueError(f"{name}: found shape {np.shape(value)}; expected {(*img.shape, 2)}")
    ids = {"p": p, "image_id": image_id, "dataset_id": dataset_id}
    for name, value in ids.items():
        if np.shape(value) != (n,):
            raise ValueError(f"{name}: found shape {np.shape(value)}; expected ({n},)")
    with written_atomically(path, key) as tmp, h5py.File(tmp, "w") as f:
        chunk = (1, *img.shape[1:])
        f.create_dataset("img", data=img, chunks=chunk if n else None)
        for name, value in fields.items():
            if value is not None:
                f.create_dataset(name, data=np.asarray(value, np.float16), chunks=(*chunk, 2) if n else None)
        for name, value in ids.items():
            f.create_dataset(name, data=np.rint(np.asarray(value, np.float64)).astype(np.int64))
        for k, v in (attrs or {}).items():
            f.attrs[k] = v
    return path


def _save_npy(path: Path, array: np.ndarray, key: str) -> None:
    with written_atomically(path, key) as tmp, open(tmp, "wb") as fh:
        np.save(fh, array)


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive lock on ``.<name>.lock`` beside ``path`` (POSIX), so two processes never simulate at once."""
    try:
        import fcntl
    except ImportError:  # no flock: the atomic renames alone keep the files whole
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(f".{path.name}.lock"), "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def settings(opts: RegistrationOptions) -> dict[str, Any]:
    """The settings that decide the demo's files (stored as JSON in the file's attributes)."""
    raw = asdict(opts)
    raw["shape"] = [int(s) for s in opts.shape]
    raw["section_thickness"] = float(opts.section_thickness)
    return {"format": FORMAT, **raw}


def check_registration_demo(path: str | Path, opts: RegistrationOptions, key: str = "data.path") -> bool:
    """Whether ``path`` holds the pairs these settings simulate (False: there is no file).

    Raises:
        DataError: ``path`` is not a file the demo wrote, or was written with other settings.
    """
    found = read_settings(Path(path), SETTINGS_ATTR, "the registration demo", key)
    if found is None:
        return False
    others = differences(found, settings(opts))
    if others:
        raise DataError(f"{key}: '{path}' holds pairs simulated with other settings ({'; '.join(others)}); "
                        f"{advice(key)}")
    return True


def _ensure_volume_file(path: Path, array: np.ndarray, key: str) -> None:
    """Write ``array`` to ``path`` unless it is there already; a different array there is refused."""
    if path.exists():
        try:
            found = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise DataError(f"{key}: '{path}' cannot be read ({exc}); {advice(key)}") from None
        if found.shape != array.shape or found.dtype != array.dtype or not np.allclose(found, array, atol=1e-6):
            raise DataError(f"{key}: '{path}' holds another volume ({found.dtype} {found.shape}) than these settings "
                            f"simulate ({array.dtype} {array.shape}); {advice(key)}")
        return
    _save_npy(path, array, key)


def ensure_registration_demo(path: str | Path, opts: RegistrationOptions, reference: str | Path,
                             annotation: str | Path | None = None, key: str = "data.path") -> Path:
    """The demo's files: written when absent (under a lock, each atomically), checked when present.

    Args:
        path: the HDF5 file of pairs.
        opts: the settings.
        reference: where the volume goes (.npy, float32 (D, H, W)).
        annotation: where the labels go (.npy, int32 (D, H, W)), or None for none.
        key: how errors name the setting that gave ``path``.

    Returns:
        ``path``.

    Raises:
        DataError: a file there was written with other settings (nothing is overwritten), or a
            file cannot be written.
    """
    path, reference = Path(path), Path(reference)
    with _locked(path):
        done = check_registration_demo(path, opts, key)
        files_there = reference.exists() and (annotation is None or Path(annotation).exists())
        if done and files_there:
            return path
        start = time.monotonic()
        volume, labels = simulate_reference(opts)
        _ensure_volume_file(reference, volume, key)
        if annotation is not None:
            _ensure_volume_file(Path(annotation), labels, key)
        if not done:
            pairs = simulate_pairs(opts, volume)
            attrs = {SETTINGS_ATTR: json.dumps(settings(opts), sort_keys=True),
                     "section_thickness": float(opts.section_thickness)}
            write_registration_hdf5(path, **pairs, attrs=attrs, key=key)
            log.info(f"wrote {opts.n_pairs} registration pairs {opts.shape} to '{path}' "
                     f"({time.monotonic() - start:.1f} s)")
    return path
