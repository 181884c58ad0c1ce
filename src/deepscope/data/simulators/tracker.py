"""Simulated SuperNEMO-like tracker events (the ``track_detector`` simulator): ROOT hit trees for track
counting, calorimeter-hit labels and track clustering.

Detector model (lengths in mm; every number is a field of :class:`TrackerOptions`)
    A thin source foil stands in the plane x = 0 between two tracker sides: side 0 at x < 0, side 1
    at x > 0. Each side holds ``n_layers`` (9) layers of square drift cells of pitch ``cell_size``
    (44) with ``n_columns`` (113) cells along y; layer 0 is nearest the foil and starts
    ``foil_gap`` from it. Wires run along z over [-half_length, half_length] ([-1500, 1500]). A
    calorimeter wall stands ``calo_gap`` behind layer ``n_layers - 1`` of each side: a grid of
    ``calo_rows`` (z) x ``calo_columns`` (y) blocks covering the tracker's y and z span. The grid
    is 15 x 22 *per side* (the seed's multi-hot labels have 15 rows and 22 columns, with the side
    a separate branch); the real main wall has 13 x 20 blocks per side, plus veto rows and X-wall
    columns, which this model folds into one uniform grid.
Events
    ``1 + k`` tracks with probability ``track_probabilities[k]``, from one vertex on the foil
    (y, z uniform, ``vertex_margin`` inside the tracker's edges). Each track goes into a random
    side, at an angle to the foil normal up to ``max_angle_deg`` (isotropic: cos uniform), with a
    curvature in the x-y plane uniform in [-max_curvature, max_curvature] 1/mm (the magnetic field
    is along the wires). It ends when it leaves the tracker's y or z span, turns back to the foil,
    or reaches the calorimeter, where it hits the one block its (y, z) falls in (a curved track that
    has not reached it after 1.5 times its straight path ends there too).
Hits
    Every cell the trajectory passes through (sampled every ``step`` mm of x-y path) fires once
    per event; a cell crossed by two tracks belongs to the one passing nearer its wire. A hit's z
    is the track's z where it passes nearest the wire inside the cell, smeared by ``z_resolution`` (Gaussian,
    clipped to the wire). A fired cell is lost with probability ``inefficiency``. Then
    Poisson(``noise_mean``) noise hits fall in cells of either side that have not fired, with z
    uniform along the wire (track id -1).
Simplifications
    No drift radius (only the cell and z), no energy loss, multiple scattering, delta rays or
    alpha tracks, no gammas, one block per track, a flat foil of zero thickness.

:func:`simulate_events` returns an awkward Array, one record per event; :func:`write_root` writes it
as a TTree of ``std::vector`` branches (no counter branches: uproot 5 writes a dict of jagged arrays
that way) with the settings as a TObjString ``deepscope_settings`` in the same file, so the settings
cannot be separated from the file. :func:`ensure_tracker_file` writes a file once, atomically, and
refuses one written with other settings.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

import numpy as np

from deepscope.data.simulators.settings import written_atomically
from deepscope.errors import DataError, did_you_mean

__all__ = ["FIELDS", "SETTINGS_KEY", "TrackerOptions", "check_tracker_file", "ensure_tracker_file",
           "settings", "simulate_events", "write_root"]

SETTINGS_KEY = "deepscope_settings"  # TObjString beside the tree: the settings, canonical JSON
FORMAT = 1
# name -> dtype of every branch; jagged: tracker_* per hit, calo_* per block hit, track_* per track
FIELDS = {"tracker_layer": np.int32, "tracker_column": np.int32, "tracker_side": np.int32,
          "tracker_z": np.float32, "tracker_track": np.int32,
          "calo_row": np.int32, "calo_column": np.int32, "calo_side": np.int32, "calo_track": np.int32,
          "track_side": np.int32, "track_dx": np.float32, "track_dy": np.float32, "track_dz": np.float32,
          "n_tracks": np.int32, "vertex_y": np.float32, "vertex_z": np.float32}
_SCALARS = ("n_tracks", "vertex_y", "vertex_z")


@dataclass(frozen=True)
class TrackerOptions:
    """The detector and event model (lengths in mm; see the module docstring)."""

    n_layers: int = 9
    n_columns: int = 113
    cell_size: float = 44.0
    foil_gap: float = 30.0              # foil to the inner edge of layer 0
    half_length: float = 1500.0         # wires span z in [-half_length, half_length]
    calo_rows: int = 15                 # along z, per side
    calo_columns: int = 22              # along y, per side
    calo_gap: float = 30.0              # outer edge of the last layer to the calorimeter face
    track_probabilities: tuple[float, ...] = (0.25, 0.25, 0.25, 0.25)  # P(1 track), P(2), ...
    vertex_margin: float = 100.0        # vertex at least this far inside the tracker's y and z edges
    max_angle_deg: float = 75.0         # largest angle of a track to the foil normal
    max_curvature: float = 2e-4         # 1/mm in x-y (radius >= 5 m)
    z_resolution: float = 10.0
    inefficiency: float = 0.02          # probability that a crossed cell gives no hit
    noise_mean: float = 1.0             # Poisson mean of noise hits per event
    step: float = 1.0                   # trajectory sampling, mm of x-y path

    def __post_init__(self) -> None:
        object.__setattr__(self, "track_probabilities", tuple(float(p) for p in self.track_probabilities))
        for name in ("n_layers", "n_columns", "calo_rows", "calo_columns"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"{name}: found {getattr(self, name)!r}; expected an integer >= 1")
        for name in ("cell_size", "half_length", "step"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name}: found {getattr(self, name)!r}; expected a length > 0")
        for name in ("foil_gap", "calo_gap", "vertex_margin", "max_curvature", "z_resolution", "noise_mean"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name}: found {getattr(self, name)!r}; expected a value >= 0")
        p = self.track_probabilities
        if not p or min(p) < 0 or abs(sum(p) - 1) > 1e-6:
            raise ValueError(f"track_probabilities: found {p}; expected probabilities of 1, 2, ... tracks summing to 1")
        if not 0 <= self.inefficiency <= 1:
            raise ValueError(f"inefficiency: found {self.inefficiency}; expected a probability in [0, 1]")
        if not 0 <= self.max_angle_deg < 90:
            raise ValueError(f"max_angle_deg: found {self.max_angle_deg}; expected an angle in [0, 90)")
        if not (2 * self.vertex_margin < min(self.width, 2 * self.half_length)):
            raise ValueError(f"vertex_margin: found {self.vertex_margin}; expected less than half the tracker's "
                             f"width ({self.width}) and length ({2 * self.half_length})")

    @property
    def width(self) -> float:
        """The tracker's extent along y, centred on y = 0."""
        return self.n_columns * self.cell_size

    @property
    def calo_x(self) -> float:
        """|x| of the calorimeter face."""
        return self.foil_gap + self.n_layers * self.cell_size + self.calo_gap


# --- one event -------------------------------------------------------------------------------------


def _trajectory(o: TrackerOptions, vy: float, vz: float, u: np.ndarray, kappa: float) -> np.ndarray:
    """(S, 3) points (|x|, y, z) every ``step`` mm of x-y path from the vertex, along a helix with axis
    z, curvature ``kappa`` and unit direction ``u`` (u[0] > 0: away from the foil) at the vertex."""
    hxy = math.hypot(u[0], u[1])
    # 1.5 x the straight path to the calorimeter leaves room for the curvature
    s = np.arange(0.0, 1.5 * o.calo_x * hxy / u[0] + o.step, o.step)
    phi0 = math.atan2(u[1], u[0])
    if kappa == 0:
        x, y = s * math.cos(phi0), s * math.sin(phi0)
    else:
        x = (np.sin(phi0 + kappa * s) - math.sin(phi0)) / kappa
        y = (math.cos(phi0) - np.cos(phi0 + kappa * s)) / kappa
    return np.stack([x, vy + y, vz + s * u[2] / hxy], axis=1)


def _simulate_event(rng: np.random.Generator, o: TrackerOptions) -> dict[str, np.ndarray]:
    n_cells = o.n_layers * o.n_columns
    n_tracks = 1 + int(rng.choice(len(o.track_probabilities), p=o.track_probabilities))
    vy = float(rng.uniform(-o.width / 2 + o.vertex_margin, o.width / 2 - o.vertex_margin))
    vz = float(rng.uniform(-o.half_length + o.vertex_margin, o.half_length - o.vertex_margin))
    fired: dict[tuple[int, int], tuple[float, float, int]] = {}  # (side, cell) -> (distance to wire, z, track)
    calo, tracks = [], []
    cos_max = math.cos(math.radians(o.max_angle_deg))
    for t in range(n_tracks):
        side = int(rng.integers(2))
        cos_t, phi = float(rng.uniform(cos_max, 1.0)), float(rng.uniform(0, 2 * math.pi))
        sin_t = math.sqrt(1 - cos_t ** 2)
        u = np.array([cos_t, sin_t * math.cos(phi), sin_t * math.sin(phi)])  # (|x|, y, z)
        kappa = float(rng.uniform(-o.max_curvature, o.max_curvature))
        tracks.append((side, (2 * side - 1) * u[0], u[1], u[2]))
        p = _trajectory(o, vy, vz, u, kappa)  # (S, 3)
        inside = (np.abs(p[:, 1]) <= o.width / 2) & (np.abs(p[:, 2]) <= o.half_length) & (p[:, 0] >= 0)
        stop = np.flatnonzero(~inside | (p[:, 0] >= o.calo_x))
        end = int(stop[0]) if len(stop) else len(p)
        if end < len(p) and inside[end]:  # reached the calorimeter face inside the wall: where exactly
            face = p[end - 1] + (p[end] - p[end - 1]) * (o.calo_x - p[end - 1, 0]) / (p[end, 0] - p[end - 1, 0])
            row = min(int((face[2] + o.half_length) / (2 * o.half_length / o.calo_rows)), o.calo_rows - 1)
            col = min(int((face[1] + o.width / 2) / (o.width / o.calo_columns)), o.calo_columns - 1)
            calo.append((row, col, side, t))
        p = p[:end]
        layer = np.floor((p[:, 0] - o.foil_gap) / o.cell_size).astype(np.int64)
        p, layer = p[(layer >= 0) & (layer < o.n_layers)], layer[(layer >= 0) & (layer < o.n_layers)]
        column = np.minimum(((p[:, 1] + o.width / 2) / o.cell_size).astype(np.int64), o.n_columns - 1)
        dist = np.hypot(p[:, 0] - (o.foil_gap + (layer + 0.5) * o.cell_size),
                        p[:, 1] - (-o.width / 2 + (column + 0.5) * o.cell_size))
        cell = layer * o.n_columns + column
        order = np.lexsort((dist, cell))  # by cell, nearest the wire first
        first = order[np.r_[True, cell[order][1:] != cell[order][:-1]]]
        for c, i in zip(cell[first].tolist(), first.tolist()):
            if (side, c) not in fired or dist[i] < fired[(side, c)][0]:
                fired[(side, c)] = (float(dist[i]), float(p[i, 2]), t)

    keys = sorted(fired)
    z_true = np.array([fired[k][1] for k in keys])
    # drawn for every fired cell whatever the settings, so an event's other hits do not depend on them
    z = np.clip(z_true + o.z_resolution * rng.standard_normal(len(keys)), -o.half_length, o.half_length)
    kept = rng.random(len(keys)) >= o.inefficiency
    side = np.array([k[0] for k in keys], np.int64)[kept]
    cell = np.array([k[1] for k in keys], np.int64)[kept]
    track = np.array([fired[k][2] for k in keys], np.int64)[kept]
    z = z[kept]
    silent = np.ones(2 * n_cells, bool)
    silent[side * n_cells + cell] = False  # noise only in cells without a hit
    n_noise = min(int(rng.poisson(o.noise_mean)), int(silent.sum()))
    noise = rng.choice(np.flatnonzero(silent), size=n_noise, replace=False) if n_noise else np.zeros(0, np.int64)
    side = np.concatenate([side, noise // n_cells])
    cell = np.concatenate([cell, noise % n_cells])
    z = np.concatenate([z, rng.uniform(-o.half_length, o.half_length, len(noise))])
    track = np.concatenate([track, np.full(len(noise), -1)])
    order = np.lexsort((cell, side))
    calo_arr = np.array(calo, np.int64).reshape(-1, 4)
    track_arr = np.array(tracks, np.float64).reshape(-1, 4)
    return {"tracker_layer": cell[order] // o.n_columns, "tracker_column": cell[order] % o.n_columns,
            "tracker_side": side[order], "tracker_z": z[order], "tracker_track": track[order],
            "calo_row": calo_arr[:, 0], "calo_column": calo_arr[:, 1], "calo_side": calo_arr[:, 2],
            "calo_track": calo_arr[:, 3], "track_side": track_arr[:, 0], "track_dx": track_arr[:, 1],
            "track_dy": track_arr[:, 2], "track_dz": track_arr[:, 3],
            "n_tracks": n_tracks, "vertex_y": vy, "vertex_z": vz}


def simulate_events(n: int, seed: int, opts: TrackerOptions | None = None, **options: Any) -> Any:
    """Simulate ``n`` events.

    Event ``i`` uses child ``i`` of ``SeedSequence(seed)``, so it does not change when more events
    are simulated.

    Args:
        n: number of events (>= 0).
        seed: the simulation seed (>= 0).
        opts: the detector and event model; ``options`` override its fields
            (``simulate_events(100, 0, noise_mean=2.0)``).

    Returns:
        An awkward Array of ``n`` records with the fields of :data:`FIELDS`: jagged ``tracker_*``
        (one entry per hit; ``tracker_track`` is the track index in the event, -1 for noise),
        ``calo_*`` (one per track reaching the calorimeter), ``track_*`` (one per track: its side
        and unit direction at the vertex in detector coordinates), and scalars ``n_tracks``,
        ``vertex_y``, ``vertex_z``.
    """
    import awkward as ak

    known = [f.name for f in fields(TrackerOptions)]
    for name in options:
        if name not in known:
            raise ValueError(f"unknown option '{name}'{did_you_mean(name, known)} available: {known}")
    opts = replace(opts or TrackerOptions(), **options)
    if n < 0 or seed < 0:
        raise ValueError(f"n {n}, seed {seed}: expected integers >= 0")
    events = [_simulate_event(np.random.default_rng(child), opts) for child in np.random.SeedSequence(seed).spawn(n)]
    columns = {}
    for name, dtype in FIELDS.items():
        if name in _SCALARS:
            columns[name] = ak.Array(np.array([e[name] for e in events], dtype))
        else:
            flat = np.concatenate([np.asarray(e[name], dtype) for e in events] or [np.zeros(0, dtype)])
            columns[name] = ak.unflatten(flat, np.array([len(e[name]) for e in events], np.int64))
    return ak.zip(columns, depth_limit=1)


# --- the file --------------------------------------------------------------------------------------


def settings(n: int, seed: int, opts: TrackerOptions, tree: str = "hit_tree") -> dict[str, Any]:
    """The settings that decide a file's content (stored in it as JSON)."""
    return json.loads(json.dumps({"format": FORMAT, "n_events": int(n), "seed": int(seed), "tree": tree,
                                  "options": asdict(opts)}))


def write_root(path: str | Path, events: Any, tree: str = "hit_tree", settings: Mapping[str, Any] | None = None,
               key: str = "data.path") -> Path:
    """Write events to a ROOT file atomically (a temporary file beside it, renamed into place).

    Args:
        path: the file; replaced if present (:func:`ensure_tracker_file` is the safe entry point).
        events: what :func:`simulate_events` returns.
        tree: the TTree's name; one ``std::vector`` branch per jagged field, one plain branch per
            scalar.
        settings: stored as the TObjString :data:`SETTINGS_KEY` (canonical JSON) when given.
        key: the setting that gave ``path``, for error messages.

    Raises:
        DataError: the file cannot be written.
    """
    import uproot

    path = Path(path)
    with written_atomically(path, key) as tmp, uproot.recreate(tmp) as f:
        f[tree] = {name: events[name] for name in FIELDS}
        if settings is not None:
            f[SETTINGS_KEY] = json.dumps(settings, sort_keys=True)
    return path


def _differences(found: Mapping[str, Any], wanted: Mapping[str, Any], prefix: str = "") -> list[str]:
    out = []
    for k in sorted(set(found) | set(wanted)):
        a, b = found.get(k, "absent"), wanted.get(k, "absent")
        if isinstance(a, dict) and isinstance(b, dict):
            out += _differences(a, b, f"{prefix}{k}.")
        elif a != b:
            out.append(f"{prefix}{k} {json.dumps(a)} (now {json.dumps(b)})")
    return out


def check_tracker_file(path: str | Path, n: int, seed: int, opts: TrackerOptions, tree: str = "hit_tree",
                       key: str = "data.path") -> bool:
    """Whether ``path`` already holds the events these settings simulate (False: there is no file).

    Raises:
        DataError: ``path`` is not a file this simulator wrote or holds events simulated with other
            settings; the message names the file and says to delete it or to change ``key``.
    """
    import uproot

    path = Path(path)
    if not path.exists():
        return False
    advice = f"delete it to simulate again, or point {key} at another file"
    try:
        with uproot.open(path) as f:
            raw = str(f[SETTINGS_KEY]) if SETTINGS_KEY in f else None
    except Exception as exc:  # uproot raises many types on a file that is not ROOT
        raise DataError(f"{key}: '{path}' is not a ROOT file this simulator can read ({exc}); {advice}") from None
    if raw is None:
        raise DataError(f"{key}: '{path}' was not written by the track_detector simulator (it has no "
                        f"'{SETTINGS_KEY}'); {advice}")
    try:
        found = json.loads(raw)
    except ValueError:
        found = None
    if not isinstance(found, dict):
        raise DataError(f"{key}: '{path}' has an unreadable '{SETTINGS_KEY}'; {advice}")
    diff = _differences(found, settings(n, seed, opts, tree))
    if diff:
        raise DataError(f"{key}: '{path}' holds events simulated with other settings ({'; '.join(diff[:6])}); {advice}")
    return True


def ensure_tracker_file(path: str | Path, n: int, seed: int, opts: TrackerOptions | None = None,
                        tree: str = "hit_tree", key: str = "data.path") -> Path:
    """The ROOT file at ``path`` holding ``n`` events of ``seed``: simulated and written when absent,
    checked when present (two processes starting at once both write the same events; one rename wins).

    Raises:
        DataError: what :func:`check_tracker_file` and :func:`write_root` raise.
    """
    opts = opts or TrackerOptions()
    if not check_tracker_file(path, n, seed, opts, tree, key):
        write_root(path, simulate_events(n, seed, opts), tree, settings(n, seed, opts, tree), key)
    return Path(path)
