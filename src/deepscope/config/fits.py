"""The ``data`` sections of FITS cube folders: ``fits_dirs`` (DeepFocus's layout) and ``radio_cubes``
(the same folders, simulated by :mod:`deepscope.data.simulators.radio`).

A folder holds one sub-folder per split (``Train/``, ``Validation/``, ``Test/``), each with FITS cubes
named by a pattern with an ``{id}`` field and a CSV catalogue (``train_params.csv`` ...) whose ID
column names the cubes. ``mode`` says what a sample is:

- ``deconvolution``: an input cube and its target cube (same ID), whole or tiled into ``crop``;
- ``sources``: a fixed-size crop around each catalogue row, with that row's ``columns`` as targets;
- ``cubes``: a whole cube (or each of its channels, ``slices``) with per-cube ``columns`` as targets.

Kept torch-, numpy- and astropy-free so that validating a config stays fast.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from deepscope.config.common import AbsolutePath, StrictModel, fail
from deepscope.config.data import DataCommon
from deepscope.errors import did_you_mean

__all__ = ["DEFAULT_CSV", "DEFAULT_SETS", "DEFAULT_TARGET", "FitsDirsData", "RADIO_COLUMNS", "RadioBeam",
           "RadioCubesData"]

_SPLITS = ("train", "val", "test")
DEFAULT_SETS = {"train": "Train", "val": "Validation", "test": "Test"}
DEFAULT_CSV = {"train": "train_params.csv", "val": "valid_params.csv", "test": "test_params.csv"}
DEFAULT_TARGET = "clean_cube_{id}.fits"

# The radio simulator's catalogue columns besides ID and position (deepscope.data.simulators.radio,
# kept here so validating a config does not import numpy; a test checks they match).
RADIO_COLUMNS = ("flux", "continuum", "fwhm_x", "fwhm_y", "pa", "line_width", "spectral_index")


def _split_keys(value: dict[str, Any], what: str) -> None:
    for key in value:
        if key not in _SPLITS:
            raise fail("set_name", f"unknown split '{key}'{did_you_mean(key, _SPLITS)} (allowed: train, val, test; "
                                   f"each maps to {what})")


def _file_name(value: str, what: str) -> str:
    if not value or value.strip() != value:
        raise fail("file_name", f"found {value!r}; expected a {what} name without surrounding spaces")
    if "/" in value or "\\" in value:
        raise fail("file_name", f"found {value!r}; expected a {what} name inside the split folder, without '/'")
    return value


def _pattern(value: str) -> str:
    _file_name(value, "file")
    if value.count("{id}") != 1:
        raise fail("file_pattern", f"found {value!r}; expected a file name with the field '{{id}}' once, "
                                   "e.g. 'dirty_cube_{id}.fits' (the CSV's ID fills it)")
    if "{" in value.replace("{id}", "") or "}" in value.replace("{id}", ""):
        raise fail("file_pattern", f"found {value!r}; '{{id}}' is the only field a file pattern may hold")
    return value


def _unique_names(value: list[str], what: str) -> list[str]:
    seen: set[str] = set()
    for name in value:
        if not name:
            raise fail("empty_name", f"found an empty {what} name")
        if name in seen:
            raise fail("repeated_name", f"{what} '{name}' is listed twice")
        seen.add(name)
    return value


def _range(value: tuple[float, float], what: str, low: float | None = 0.0, strict: bool = False) -> tuple[float, float]:
    lo, hi = value
    if lo > hi:
        raise fail("range", f"found {list(value)}; expected [low, high] with low <= high ({what})")
    if low is not None and (lo <= low if strict else lo < low):
        bound = f"> {low:g}" if strict else f">= {low:g}"
        raise fail("range", f"found {list(value)}; values must be {bound} ({what})")
    return value


class FitsDirsData(DataCommon):
    """DeepFocus's folders of FITS cubes with a CSV catalogue per split (see docs/fits-data.md).

    Cubes are stored (z, y, x) (frequency, y, x) or with leading degenerate axes such as Stokes
    (1, z, y, x); samples are channels first: images ``{"cube": (N, 1, *spatial)}``.
    """

    source: Literal["fits_dirs"]
    path: AbsolutePath = Field(description="the folder holding the split folders; a relative path is taken from "
                                           "the current folder and stored absolute")
    mode: Literal["deconvolution", "sources", "cubes"] = Field(
        "deconvolution", description="deconvolution: input cube -> target cube; sources: a crop around each CSV "
                                     "row -> its columns; cubes: a whole cube (or its channels) -> per-cube columns")
    input: str = Field("dirty_cube_{id}.fits", description="file name of the input cubes; '{id}' is the CSV's ID")
    target: str | None = Field(None, description="deconvolution: file name of the target cubes ('{id}' as in "
                                                 "input); null there means 'clean_cube_{id}.fits'. Other modes: null")
    crop: list[int] | None = Field(
        None, description="sources: the crop size around each row, (z, y, x) for 3D crops or (y, x) for 2D crops "
                          "from the row's channel z (required). deconvolution: the training crop size (random crops "
                          "per batch; cubes of different shapes are tiled into pieces of this size)")
    columns: list[str] = Field(default_factory=list,
                               description="sources and cubes: the CSV columns to predict, in this order")
    targets_as: Literal["auto", "values", "labels"] = Field(
        "auto", description="auto: one integer column gives class labels (N,), anything else float values (N, K); "
                            "values: always (N, K) floats; labels: one column of integer labels")
    aggregate: Literal["none", "first", "sum", "mean", "min", "max"] = Field(
        "none", description="cubes: how the CSV rows of one cube ID become its targets; none: rows of an ID must "
                            "agree on the columns")
    slices: bool = Field(False, description="deconvolution and cubes: every channel z of a cube is a 2D (y, x) sample")
    scaling: Literal["per_cube", "none"] | None = Field(
        None, description="per_cube: divide each input cube by its largest |value| (deconvolution: the output is "
                          "multiplied back before the loss, so targets and predictions stay in data units); none (the "
                          "default): deconvolution then standardizes inputs and targets globally unless "
                          "data.standardize is given")
    nan: Literal["zero", "error"] = Field("zero", description="NaN pixels (blanked FITS pixels): zero sets them "
                                                              "to 0; error refuses the cube")
    sets: dict[str, str | None] | None = Field(
        None, description="split -> folder name; null: Train, Validation, Test, where Validation and Test are used "
                          "when present. A mapping: exactly these folders, each required (null to leave one out)")
    csv: dict[str, str] = Field(default_factory=lambda: dict(DEFAULT_CSV),
                                description="split -> CSV file inside its folder (missing splits keep the defaults "
                                            "train_params.csv, valid_params.csv, test_params.csv)")
    id_column: str = Field("ID", description="the CSV column naming a cube: its value fills '{id}'")
    position_columns: list[str] = Field(default_factory=lambda: ["x", "y", "z"],
                                        description="the CSV columns of a source's pixel position, in the order "
                                                    "x, y, z (x along NAXIS1, z along NAXIS3)")
    position_origin: Literal[0, 1] = Field(0, description="0: positions count pixels from 0 (numpy); 1: from 1 "
                                                          "(FITS, DS9)")

    @field_validator("split")
    @classmethod
    def _no_split(cls, value: Any) -> Any:
        if value is not None:
            raise fail("split_given", "FITS folders come split into train/val/test folders; remove data.split "
                                      "(data.sets names the folders)")
        return value

    _input = field_validator("input")(lambda v: _pattern(v))

    @field_validator("target")
    @classmethod
    def _target(cls, value: str | None) -> str | None:
        return None if value is None else _pattern(value)

    @field_validator("crop")
    @classmethod
    def _crop(cls, value: list[int] | None) -> list[int] | None:
        if value is None:
            return None
        if len(value) not in (2, 3) or any(int(s) < 1 for s in value):
            raise fail("crop", f"found {value!r}; expected [z, y, x] (a 3D crop) or [y, x] (a 2D crop), sizes >= 1")
        return [int(s) for s in value]

    _columns = field_validator("columns")(lambda v: _unique_names(v, "column"))

    @field_validator("sets")
    @classmethod
    def _sets(cls, value: dict[str, str | None] | None) -> dict[str, str | None] | None:
        if value is None:
            return None
        _split_keys(value, "a folder name")
        for folder in value.values():
            if folder is not None:
                _file_name(folder, "folder")
        if value.get("train") is None:
            raise fail("set_name", "needs 'train' (the folder to train on)")
        return {k: value[k] for k in _SPLITS if value.get(k) is not None}

    @field_validator("csv")
    @classmethod
    def _csv(cls, value: dict[str, str]) -> dict[str, str]:
        _split_keys(value, "a CSV file name")
        for name in value.values():
            _file_name(name, "CSV file")
        return {**DEFAULT_CSV, **value}

    @field_validator("position_columns")
    @classmethod
    def _positions(cls, value: list[str]) -> list[str]:
        if len(value) != 3:
            raise fail("position_columns", f"found {value!r}; expected three column names, in the order x, y, z")
        return _unique_names(value, "position column")

    @field_validator("id_column")
    @classmethod
    def _id_column(cls, value: str) -> str:
        if not value:
            raise fail("empty_name", "found an empty column name")
        return value

    @model_validator(mode="after")
    def _mode_keys(self) -> "FitsDirsData":
        _check_mode_keys(self)
        if self.scaling is None:
            self.scaling = "none"
        if self.mode == "deconvolution" and self.scaling == "none" and "standardize" not in self.model_fields_set:
            # global scaling of dirty and clean cubes alike (statistics of the training split, stored with the
            # run): on the simulated cubes it learns far better than per-cube scaling (docs/deconvolution.md)
            self.standardize = self.standardize.model_copy(update={"images": "global", "targets": True})
        if self.scaling == "per_cube" and "images" not in self.standardize.model_fields_set:
            # the cubes are already brought to [-1, 1]; global standardization stays one key away
            self.standardize = self.standardize.model_copy(update={"images": "none"})
        if self.mode == "deconvolution" and self.scaling == "per_cube" and self.standardize.targets:
            raise fail("mode_keys", "data.standardize.targets must be false with data.scaling per_cube: the output "
                                    "is multiplied by each cube's scale (use data.scaling: none to standardize "
                                    "the target cubes)")
        return self

    def split_folders(self) -> dict[str, str]:
        """Split -> folder name: ``sets``, or the defaults (Train, Validation, Test)."""
        return dict(self.sets) if self.sets is not None else dict(DEFAULT_SETS)

    @property
    def required_splits(self) -> tuple[str, ...]:
        """The splits whose folder must exist: train, or every split of an explicit ``sets``."""
        return tuple(self.sets) if self.sets is not None else ("train",)

    @property
    def target_pattern(self) -> str | None:
        """The target cubes' file name (deconvolution), else None."""
        if self.mode != "deconvolution":
            return None
        return self.target or DEFAULT_TARGET

    @property
    def channels(self) -> str:
        """Images are channels first: ``{"cube": (N, 1, *spatial)}``."""
        return "first"


def _check_mode_keys(cfg: FitsDirsData) -> None:
    """The keys that belong to some modes only, named with the mode that refuses them."""
    mode = cfg.mode
    if mode == "deconvolution":
        if cfg.columns:
            raise fail("mode_keys", "data.columns is for data.mode sources and cubes; in data.mode deconvolution the "
                                    "targets are the target cubes (data.target)")
        if cfg.target is not None and cfg.target == cfg.input:
            raise fail("mode_keys", f"data.target is the same file pattern as data.input ('{cfg.input}'); the target "
                                    "cubes need their own names")
        if cfg.crop is not None and len(cfg.crop) != (2 if cfg.slices else 3):
            want = "[y, x] with data.slices: true" if cfg.slices else "[z, y, x] (or [y, x] with data.slices: true)"
            raise fail("mode_keys", f"data.crop is {cfg.crop} but data.mode deconvolution takes {want}")
    else:
        if cfg.target is not None:
            raise fail("mode_keys", f"data.target is for data.mode deconvolution; data.mode {mode} takes its targets "
                                    "from the CSV columns in data.columns")
        if not cfg.columns:
            raise fail("mode_keys", f"data.mode {mode} needs data.columns: the CSV columns to predict "
                                    "(e.g. [flux, fwhm_x])")
        if cfg.id_column in cfg.columns:
            raise fail("mode_keys", f"data.columns lists '{cfg.id_column}', the ID column (data.id_column)")
    if mode == "sources":
        if cfg.crop is None:
            raise fail("mode_keys", "data.mode sources needs data.crop: the crop size around each source, [z, y, x] "
                                    "or [y, x] for 2D crops from the source's channel")
        if cfg.slices:
            raise fail("mode_keys", "data.slices is for data.mode deconvolution and cubes; in data.mode sources a "
                                    "2-entry data.crop takes 2D crops")
    if mode == "cubes" and cfg.crop is not None:
        raise fail("mode_keys", "data.crop is for data.mode deconvolution and sources; data.mode cubes reads whole "
                                "cubes (use data.mode sources for crops around catalogued sources)")
    if mode != "cubes" and cfg.aggregate != "none":
        raise fail("mode_keys", f"data.aggregate is for data.mode cubes; data.mode {mode} has one target per sample")
    if cfg.targets_as == "labels" and len(cfg.columns) != 1:
        raise fail("mode_keys", f"data.targets_as labels needs exactly one column in data.columns "
                                f"(found {len(cfg.columns)}); use values for several columns")
    if mode == "deconvolution" and cfg.targets_as != "auto":
        raise fail("mode_keys", "data.targets_as is for data.mode sources and cubes (CSV columns)")


class RadioBeam(StrictModel):
    """The elliptical Gaussian beam (the clean beam) the sky is convolved with, in pixels and degrees."""

    bmaj_pix: float = Field(3.0, gt=0, description="FWHM of the major axis, pixels")
    bmin_pix: float = Field(2.0, gt=0, description="FWHM of the minor axis, pixels")
    bpa_deg: float = Field(30.0, ge=-180, le=180, description="position angle of the major axis, degrees east "
                                                              "of north (north = +y, east = -x)")

    @model_validator(mode="after")
    def _axes(self) -> "RadioBeam":
        if self.bmin_pix > self.bmaj_pix:
            raise fail("beam", f"bmin_pix {self.bmin_pix:g} is larger than bmaj_pix {self.bmaj_pix:g}; the major "
                               "axis is the longer one")
        return self


class RadioCubesData(FitsDirsData):
    """Simulated ALMA-like cubes written once as a ``fits_dirs`` folder at ``path`` and read from it.

    Every key of ``fits_dirs`` applies (the simulator writes the file, folder, CSV and column names
    they give); the others set up the simulation (see docs/radio-simulator.md).
    """

    source: Literal["radio_cubes"]  # type: ignore[assignment]
    path: AbsolutePath = Field(description="the folder the cubes are written to (once) and read from")
    n_cubes: dict[str, int] = Field(default_factory=lambda: {"train": 6, "val": 2, "test": 2},
                                    description="cubes per split (0: no such split)")
    cube_shape: tuple[int, int, int] = Field((16, 32, 32), description="(z, y, x): channels, pixels, pixels")
    simulation_seed: int = Field(0, ge=0, description="seed of the simulation (the run's seed does not change "
                                                      "the cubes); the splits use independent streams of it")
    n_sources: tuple[int, int] = Field((1, 4), description="sources per cube, drawn uniformly from [low, high]")
    flux_range: tuple[float, float] = Field((0.5, 5.0), description="integrated line flux, Jy km/s "
                                                                    "(log-uniform in [low, high])")
    continuum_range: tuple[float, float] = Field((0.0, 0.002), description="continuum flux density at the "
                                                                           "reference frequency, Jy (uniform)")
    spectral_index_range: tuple[float, float] = Field((-1.0, 1.0), description="continuum spectral index alpha, "
                                                                               "S ~ nu^alpha (uniform)")
    fwhm_range: tuple[float, float] = Field((1.5, 4.0), description="source FWHM along each of its axes, pixels")
    line_width_range: tuple[float, float] = Field((1.5, 4.0), description="line FWHM, channels")
    noise_rms: float = Field(0.001, ge=0, description="rms of the correlated noise in the dirty cube, Jy/beam")
    beam: RadioBeam = Field(default_factory=RadioBeam)
    pixel_arcsec: float = Field(0.1, gt=0, description="pixel size, arcsec (CDELT2; CDELT1 = minus it)")
    ref_frequency_ghz: float = Field(100.0, gt=0, description="frequency of the central channel, GHz (CRVAL3)")
    channel_width_mhz: float = Field(10.0, gt=0, description="channel width, MHz (CDELT3)")
    stokes_axis: bool = Field(False, description="write cubes with a fourth, degenerate Stokes axis (1, z, y, x), "
                                                 "as CASA exports do")

    @field_validator("n_cubes")
    @classmethod
    def _n_cubes(cls, value: dict[str, int]) -> dict[str, int]:
        _split_keys(value, "a number of cubes")
        for key, n in value.items():
            if not isinstance(n, int) or n < 0:
                raise fail("n_cubes", f"'{key}': found {n!r}; expected a number of cubes >= 0")
        if value.get("train", 0) < 1:
            raise fail("n_cubes", "needs 'train' >= 1 (the cubes to train on)")
        return {k: value[k] for k in _SPLITS if value.get(k, 0) > 0}

    @field_validator("cube_shape")
    @classmethod
    def _shape(cls, value: tuple[int, int, int]) -> tuple[int, int, int]:
        if any(s < 4 for s in value):
            raise fail("cube_shape", f"found {list(value)}; every axis needs at least 4 pixels (z, y, x)")
        return value

    @field_validator("n_sources")
    @classmethod
    def _n_sources(cls, value: tuple[int, int]) -> tuple[int, int]:
        if not 1 <= value[0] <= value[1]:
            raise fail("n_sources", f"found {list(value)}; expected [low, high] with 1 <= low <= high (every cube "
                                    "needs a catalogue row to be listed)")
        return value

    _flux = field_validator("flux_range")(lambda v: _range(v, "Jy km/s", strict=True))
    _continuum = field_validator("continuum_range")(lambda v: _range(v, "Jy"))
    _alpha = field_validator("spectral_index_range")(lambda v: _range(v, "spectral index", low=None))
    _fwhm = field_validator("fwhm_range")(lambda v: _range(v, "pixels", strict=True))
    _line = field_validator("line_width_range")(lambda v: _range(v, "channels", strict=True))

    @model_validator(mode="after")
    def _radio(self) -> "RadioCubesData":
        if self.sets is not None and set(self.sets) != set(self.n_cubes):
            raise fail("sets", f"data.sets names the splits {', '.join(self.sets)} but data.n_cubes simulates "
                               f"{', '.join(self.n_cubes)}; give data.sets the same splits, or leave it out")
        if self.mode != "deconvolution":
            known = (*RADIO_COLUMNS, *self.position_columns)
            for name in self.columns:
                if name not in known:
                    raise fail("unknown_name", f"data.columns: the simulated catalogue has no column '{name}'"
                                               f"{did_you_mean(name, known)} (columns: {', '.join(known)})")
            if self.targets_as == "labels":
                raise fail("mode_keys", "data.targets_as labels: the simulated catalogue's columns are floats; use "
                                        "auto or values")
        if self.mode == "cubes" and self.aggregate == "none" and self.n_sources[1] > 1:
            raise fail("mode_keys", f"data.mode cubes: a cube holds up to {self.n_sources[1]} sources "
                                    "(data.n_sources), one catalogue row each; set data.aggregate (sum, mean, min, "
                                    "max or first) to make one target per cube")
        return self

    def simulator_options(self) -> dict[str, Any]:
        """Keyword options of ``deepscope.data.simulators.radio.RadioOptions``."""
        return {
            "cube_shape": tuple(self.cube_shape), "n_sources": tuple(self.n_sources),
            "flux_range": tuple(self.flux_range), "continuum_range": tuple(self.continuum_range),
            "spectral_index_range": tuple(self.spectral_index_range), "fwhm_range": tuple(self.fwhm_range),
            "line_width_range": tuple(self.line_width_range), "noise_rms": self.noise_rms,
            "bmaj_pix": self.beam.bmaj_pix, "bmin_pix": self.beam.bmin_pix, "bpa_deg": self.beam.bpa_deg,
            "pixel_arcsec": self.pixel_arcsec, "ref_frequency_ghz": self.ref_frequency_ghz,
            "channel_width_mhz": self.channel_width_mhz, "stokes_axis": self.stokes_axis,
        }
