"""The ``data`` section: where samples come from, how they are split and standardized.

One model per source, told apart by ``data.source`` (a discriminated union). Options shared by all
sources live in :class:`DataCommon`; sources that read user arrays of either channel order add
``channels`` (:class:`DataBase`).
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal, Union

from pydantic import Field, TypeAdapter, ValidationError, field_validator, model_validator

from deepscope.config.augment import AugmentConfig
from deepscope.config.common import AbsolutePath, StrictModel, fail
from deepscope.errors import did_you_mean

__all__ = [
    "ArraysData",
    "AtlasHDF5Data",
    "CalorimeterData",
    "DataConfig",
    "DigitsData",
    "NpzData",
    "SplitConfig",
    "StandardizeConfig",
]

_RANGE = re.compile(r"^\s*(\d*)\s*:\s*(\d*)\s*$")


def _index_spec(value: Any) -> Any:
    """A split part: a fraction in [0, 1), a list of indices, or a ``"start:stop"`` range."""
    expected = "expected a fraction, a list of indices or a 'start:stop' range"
    if value is None:
        return None
    if isinstance(value, bool):
        raise fail("split_part", f"found {value!r}; {expected}")
    if isinstance(value, (int, float)):
        if not 0.0 <= float(value) < 1.0:
            raise fail("split_part", f"found {value!r}; a fraction must be in [0, 1) "
                                     "(use a list or 'start:stop' for indices)")
        return float(value)
    if isinstance(value, str):
        m = _RANGE.match(value)
        if not m:
            raise fail("split_part", f"found {value!r}; expected a range like '0:1000' or '1000:'")
        start, stop = m.group(1), m.group(2)
        if start and stop and int(stop) <= int(start):
            raise fail("split_part", f"range {value!r} is empty (stop <= start)")
        return value.replace(" ", "")
    if isinstance(value, (list, tuple)):
        if not value:
            raise fail("split_part", "found an empty list; expected at least one index")
        if not all(isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in value):
            raise fail("split_part", f"found {list(value)[:5]!r}; indices must be non-negative integers")
        if len(set(value)) != len(value):
            raise fail("split_part", "the index list repeats indices")
        return list(value)
    raise fail("split_part", f"found {value!r}; {expected}")


class SplitConfig(StrictModel):
    """How one pool of samples is split into train / val / test.

    Either fractions (``val: 0.15, test: 0.15``; train gets the rest unless given) drawn after a
    seeded shuffle, or explicit index lists / ``"start:stop"`` ranges for every part. Sources that
    already come split (a DeepCalo data dict with ``train``/``val``/``test``) take no ``split``.
    """

    train: Any = None
    val: Any = 0.15
    test: Any = 0.15
    shuffle: bool = True

    _check_parts = field_validator("train", "val", "test", mode="before")(lambda v: _index_spec(v))

    @model_validator(mode="after")
    def _consistent(self) -> "SplitConfig":
        given = {k for k in ("train", "val", "test") if k in self.model_fields_set and getattr(self, k) is not None}
        if any(not isinstance(getattr(self, k), float) for k in given):
            # explicit indices: the default fractions of parts left out do not apply
            for k in ("val", "test"):
                if k not in self.model_fields_set:
                    setattr(self, k, None)
        parts = {k: getattr(self, k) for k in ("train", "val", "test") if getattr(self, k) is not None}
        kinds = {("fraction" if isinstance(v, float) else "indices") for v in parts.values()}
        if len(kinds) > 1:
            shown = ", ".join(f"{k}={v!r}" for k, v in parts.items())
            raise fail("split_mixed", f"mixes fractions and index lists ({shown}); "
                                      "use fractions for every part or indices for every part")
        if kinds == {"fraction"}:
            total = sum(parts.values())
            if total >= 1.0 + 1e-9 or ("train" not in parts and total >= 1.0):
                raise fail("split_sum", f"fractions add up to {total:.3g}; "
                                        "they must leave samples for training (sum < 1)")
        if kinds == {"indices"} and "train" not in parts:
            raise fail("split_train", "with explicit indices, 'train' must be given too")
        return self

    @property
    def uses_fractions(self) -> bool:
        return any(isinstance(getattr(self, k), float) for k in ("train", "val", "test"))


class StandardizeConfig(StrictModel):
    """Standardization, fitted on the training split only and saved with the run.

    Attributes:
        images: ``per_channel`` (mean/std per image channel), ``global`` (one mean/std per image),
            or ``none``.
        scalars: standardize each scalar feature.
        tracks: standardize each track feature over real (not all-zero, padded) tracks.
        targets: standardize regression targets (predictions are transformed back).
    """

    images: Literal["per_channel", "global", "none"] = "per_channel"
    scalars: bool = True
    tracks: bool = True
    targets: bool = False


class DataCommon(StrictModel):
    """Options every source shares."""

    split: SplitConfig | None = None
    standardize: StandardizeConfig = Field(default_factory=StandardizeConfig)
    num_workers: int = Field(0, ge=0, description="background processes that load batches")
    check_finite: bool = Field(True, description="refuse data with NaN or inf before training")
    augment: AugmentConfig = Field(default_factory=AugmentConfig,
                                   description="random augmentation of training batches (all off by default)")
    on_device: Literal["auto"] | bool = Field(
        "auto", description="hold each split's standardized samples in the training device's memory and draw "
                            "batches there by index (no per-step copy from the host, no collate); auto: when "
                            "training on one GPU with in-memory data, no augmentation, and the split takes less "
                            "than a quarter of the GPU's free memory; true: always (on a CPU too); false: never "
                            "(pinned memory and non-blocking copies on a GPU)")
    prefetch: int = Field(2, ge=1, description="batches each loader worker reads ahead (with num_workers > 0)")

    @model_validator(mode="after")
    def _on_device_needs_no_augmentation(self) -> "DataCommon":
        if self.on_device is True and self.augment.enabled:
            raise fail("on_device", "data.on_device: true holds the samples on the device, but data.augment "
                                    "changes each batch on the host; turn one of them off (auto picks for you)")
        return self


class DataBase(DataCommon):
    """Options of the sources that read user arrays (either channel order)."""

    channels: Literal["last", "first"] = Field(
        "last",
        description="where the channel axis of image arrays is: 'last' (N, H, W, C) as in DeepCalo "
        "and Keras, or 'first' (N, C, H, W) as in PyTorch. (N, H, W) images get one channel.",
    )


class ArraysData(DataBase):
    """In-memory arrays given to ``deepscope.train(cfg, data=...)`` in the DeepCalo layout."""

    source: Literal["arrays"] = "arrays"


class NpzData(DataBase):
    """A NumPy ``.npz`` file with keys ``images/<name>``, ``scalars``, ``tracks``, ``targets``,
    ``sample_weights``, ``multiply_output_with`` — optionally prefixed ``train/``, ``val/``, ``test/``."""

    source: Literal["npz"]
    path: AbsolutePath = Field(description="the .npz file; a relative path is taken from the current folder and "
                                   "stored absolute, so evaluate/predict work from anywhere")



class DigitsData(DataBase):
    """scikit-learn's bundled 8×8 handwritten digits (1797 images of 10 classes; no download)."""

    source: Literal["sklearn_digits"]
    n_samples: int | None = Field(None, ge=20, le=1797, description="use only the first n samples")
    one_hot: bool = Field(False, description="targets as one-hot vectors instead of integer labels")


_SET_NAMES = ("train", "val", "test")


def _no_split(value: Any, source: str, instead: str) -> Any:
    if value is not None:
        raise fail("split_given", f"data.source '{source}' comes split into train/val/test; remove data.split "
                                  f"({instead})")
    return value


def _names(value: list[str], what: str, where: str | None = None) -> list[str]:
    """Non-empty names, none repeated; ``where`` (the key holding them) starts the messages."""
    start = f"{where}: " if where else ""
    seen: set[str] = set()
    for name in value:
        if not name:
            raise fail("empty_name", f"{start}found an empty {what} name")
        if name in seen:
            raise fail("repeated_name", f"{start}{what} '{name}' is listed twice" if where else
                       f"'{name}' is listed twice")
        seen.add(name)
    return value


GATE_PREFIX = "gate_"  # the data contract's name of an image's gate partner (deepscope.models.nets.combined)


def _channel_list(datasets: list[str], where: str) -> list[str]:
    """The datasets of one image (or gate image), one channel each."""
    if not datasets:
        raise fail("empty_image", f"{where}: found an empty list; expected its datasets, one per channel")
    return _names(datasets, "dataset", where)


def _check_gates(images: list[str] | dict[str, list[str]], gates: bool | dict[str, list[str]],
                 prefix: str | None) -> None:
    """The gate keys against each other and against data.images (both keys named on a conflict)."""
    if prefix is not None:
        if gates is False:
            raise fail("gate_conflict", f"data.gate_prefix is '{prefix}' but data.gate_images is false; remove "
                                        "data.gate_prefix, or set data.gate_images: true to load the gate images")
        if isinstance(gates, dict):
            raise fail("gate_conflict", f"data.gate_prefix is '{prefix}' and data.gate_images is a mapping: use one "
                                        "of them (the mapping names every gate dataset; the prefix derives them "
                                        "with data.gate_images: true)")
        if not images:
            raise fail("gate_conflict", f"data.gate_prefix is '{prefix}' but data.images is empty; gate images "
                                        "belong to images")
    if not isinstance(gates, dict):
        return
    names = list(images)
    for name, datasets in gates.items():
        if name.startswith(GATE_PREFIX) and name in names:
            raise fail("gate_image", f"data.gate_images.{name}: '{name}' is itself a gate image")
        if name not in names:
            shown = ", ".join(names) or "none"
            raise fail("gate_image", f"data.gate_images.{name}: '{name}' is not an image in data.images"
                                     f"{did_you_mean(name, names)} (images: {shown})")
        if GATE_PREFIX + name in names:
            raise fail("gate_image", f"data.gate_images.{name}: data.images already lists '{GATE_PREFIX}{name}' "
                                     "as an image; give the gate in one place")
        if isinstance(images, dict) and len(images[name]) != len(datasets):
            raise fail("gate_image", f"data.gate_images.{name} lists {len(datasets)} dataset(s) but "
                                     f"data.images.{name} has {len(images[name])} channel(s); a gate image has one "
                                     "dataset per channel of its image")


def _n_points_part(value: Any, where: str) -> Any:
    expected = "expected null (all events), a number n (the first n events) or a list of event indices"
    if value is None:
        return None
    if isinstance(value, bool):
        raise fail("n_points", f"{where}: found {value!r}; {expected}")
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # 1e3 in YAML
    if isinstance(value, int):
        if value < 1:
            raise fail("n_points", f"{where}: found {value}; the number of events must be at least 1")
        return value
    if isinstance(value, (list, tuple)):
        if not value:
            raise fail("n_points", f"{where}: found an empty list; {expected}")
        if not all(isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in value):
            raise fail("n_points", f"{where}: found {list(value)[:5]!r}; indices must be non-negative integers")
        if len(set(value)) != len(value):
            raise fail("n_points", f"{where}: the index list repeats indices")
        return list(value)
    raise fail("n_points", f"{where}: found {value!r}; {expected}")


class AtlasHDF5Data(DataCommon):
    """DeepCalo's ATLAS HDF5 layout: one group per set, one dataset per image layer, scalar or track
    feature, read in whole batches (lazily for data larger than memory).

    Keys are ``{set}/{name}``. ``images`` is a list of stack names (image ``img`` is the datasets
    ``{set}/{img}_Lr{k}``, one channel each in increasing k) or a mapping ``name -> [dataset, ...]``
    (one channel per dataset, in that order), so that layers of different granularity, as in real
    ATLAS files (``em_barrel_Lr1`` strips beside the coarser ``em_barrel_Lr0/2/3``), become
    separate images. Each dataset is (N, H, W) or (N, D, H, W); the datasets of one image share a
    size. DeepCalo stacks channels last; deepscope holds them channels first.

    Gate images (for the gate net) are exposed as ``gate_<name>``: ``gate_images: true`` takes the
    datasets named ``gate_`` (or ``gate_prefix``) + each channel dataset, for every image that has
    all of them; a mapping ``{image: [dataset, ...]}`` names them per image; ``false`` loads none.

    Scalars are (N,) datasets; each track feature is a ragged (vlen) (N,) dataset of per-event
    tracks (or an already padded (N, T) one), zero-padded after the real tracks to ``max_tracks``.
    """

    source: Literal["atlas_hdf5"]
    path: AbsolutePath = Field(description="the HDF5 file; a relative path is taken from the current folder and "
                                   "stored absolute, so evaluate/predict work from anywhere")
    sets: dict[str, str | None] = Field(
        default_factory=lambda: {"train": "train", "val": "val", "test": "test"},
        description="split name (train, val, test) -> group name in the file; train is required, "
                    "leave val or test out (or set it to null) to go without them")
    images: list[str] | dict[str, list[str]] = Field(
        default_factory=list,
        description="image names (image 'img' is the datasets '{set}/img_Lr{k}', one channel each, in increasing "
                    "k), or a mapping image name -> its datasets, one channel each, in that order")
    gate_images: bool | dict[str, list[str]] = Field(
        True, description="true: also load the gate image 'gate_<img>' of every image whose gate datasets "
                          "(gate_ or gate_prefix + each of its datasets) are all in the file; a mapping image "
                          "name -> its gate datasets, one per channel; false: none")
    gate_prefix: str | None = Field(None, description="with gate_images: true, the gate datasets of an image are "
                                                      "this prefix + each of its datasets (e.g. 'time_'); "
                                                      "null: 'gate_' + the image's datasets")
    scalars: list[str] = Field(default_factory=list, description="scalar datasets '{set}/name', (N,) each, "
                                                                 "stacked to (N, S) in this order")
    tracks: list[str] = Field(default_factory=list,
                              description="one dataset per track feature: ragged (vlen) (N,) lists of "
                                          "per-event tracks, stacked to (N, T, F) in this order")
    max_tracks: int | None = Field(None, ge=1, description="T: tracks are zero-padded after the real ones to this "
                                                           "many, and an event's tracks beyond it are cut; null = "
                                                           "the most tracks of any event in the configured sets")
    target: str | list[str] = Field(description="the target dataset, or [numerator, denominator]: their ratio")
    multiply_output_with: str | None = Field(None, description="(N,) dataset the model's output is multiplied "
                                                               "with (DeepCalo: the accordion energy)")
    sample_weights: str | None = Field(None, description="(N,) dataset of per-event weights for the loss and metrics")
    n_points: dict[str, Any] = Field(
        default_factory=dict,
        description="events to use per split: null = all, n = the first n, a list = those event indices "
                    "(used in increasing order)")
    lazy: Literal["auto"] | bool = Field(
        "auto", description="read batches from the file as training goes (true) or load the selected events "
                            "into memory once (false); auto: in memory when they take less than 1 GiB")

    @field_validator("split")
    @classmethod
    def _no_split(cls, value: Any) -> Any:
        return _no_split(value, "atlas_hdf5", "data.sets names its groups; use data.n_points to use fewer events")

    @field_validator("sets")
    @classmethod
    def _sets(cls, value: dict[str, str | None]) -> dict[str, str | None]:
        for key, group in value.items():
            if key not in _SET_NAMES:
                raise fail("set_name", f"unknown split '{key}'{did_you_mean(key, _SET_NAMES)} "
                                       "(allowed: train, val, test)")
            if group == "":
                raise fail("set_name", f"'{key}': found an empty group name")
        if value.get("train") is None:
            raise fail("set_name", "needs 'train' (the group to train on)")
        return {k: value[k] for k in _SET_NAMES if value.get(k) is not None}

    @field_validator("scalars", "tracks")
    @classmethod
    def _unique(cls, value: list[str]) -> list[str]:
        return _names(value, "dataset")

    @field_validator("images", "gate_images", mode="before")
    @classmethod
    def _mapping_form(cls, value: Any, info: Any) -> Any:
        images = info.field_name == "images"
        if isinstance(value, dict):
            for name, datasets in value.items():
                if not isinstance(name, str) or not (isinstance(datasets, list)
                                                     and all(isinstance(d, str) for d in datasets)):
                    raise fail("image_form", f"{name!r}: found {datasets!r}; expected a list of dataset names, "
                                             "one per channel")
            return value
        if images and not (isinstance(value, list) and all(isinstance(n, str) for n in value)):
            raise fail("image_form", f"found {value!r}; expected a list of image names ({{set}}/<name>_Lr<k> "
                                     "stacks) or a mapping image name -> [dataset, ...]")
        if not images:
            try:
                return TypeAdapter(bool).validate_python(value)
            except ValidationError:
                raise fail("image_form", f"found {value!r}; expected true, false or a mapping image name -> "
                                         "[gate dataset, ...]") from None
        return value

    @field_validator("images")
    @classmethod
    def _images(cls, value: list[str] | dict[str, list[str]]) -> list[str] | dict[str, list[str]]:
        if isinstance(value, list):
            return _names(value, "image")
        for name, datasets in value.items():
            if not name:
                raise fail("empty_name", "found an empty image name")
            if name.startswith(GATE_PREFIX):
                raise fail("gate_name", f"'{name}': names starting with '{GATE_PREFIX}' are the gate images' "
                                        f"names; give gate datasets in data.gate_images or data.gate_prefix")
            _channel_list(datasets, f"'{name}'")
        return value

    @field_validator("gate_images")
    @classmethod
    def _gate_images(cls, value: bool | dict[str, list[str]]) -> bool | dict[str, list[str]]:
        if isinstance(value, dict):
            if not value:
                raise fail("gate_images", "found an empty mapping; use false for no gate images")
            for name, datasets in value.items():
                _channel_list(datasets, f"'{name}'")
        return value

    @field_validator("gate_prefix")
    @classmethod
    def _gate_prefix(cls, value: str | None) -> str | None:
        if value == "":
            raise fail("gate_prefix", "found an empty prefix; use null for the 'gate_' rule")
        return value

    @field_validator("target")
    @classmethod
    def _target(cls, value: str | list[str]) -> str | list[str]:
        if isinstance(value, list) and (len(value) != 2 or not all(value)):
            raise fail("target", f"found {value!r}; expected a dataset name or a [numerator, denominator] pair")
        if isinstance(value, str) and not value:
            raise fail("target", "found an empty dataset name")
        return value

    @field_validator("n_points")
    @classmethod
    def _n_points(cls, value: dict[str, Any]) -> dict[str, Any]:
        for key in value:
            if key not in _SET_NAMES:
                raise fail("set_name", f"unknown split '{key}'{did_you_mean(key, _SET_NAMES)} "
                                       "(allowed: train, val, test)")
        return {k: _n_points_part(value[k], k) for k in _SET_NAMES if k in value}

    @model_validator(mode="after")
    def _consistent(self) -> "AtlasHDF5Data":
        if not (self.images or self.scalars or self.tracks):
            raise fail("no_inputs", "no inputs: name at least one dataset in data.images, data.scalars or "
                                    "data.tracks")
        extra = [k for k in self.n_points if k not in self.sets]
        if extra:
            raise fail("n_points", f"data.n_points.{extra[0]} is given but data.sets has no '{extra[0]}' "
                                   f"(sets: {', '.join(self.sets)})")
        _check_gates(self.images, self.gate_images, self.gate_prefix)
        return self

    def image_datasets(self) -> dict[str, list[str] | None]:
        """Image name -> its datasets in channel order, or None for a stack name (the ``_Lr{k}`` rule)."""
        if isinstance(self.images, dict):
            return {name: list(datasets) for name, datasets in self.images.items()}
        return {name: None for name in self.images}

    @property
    def channels(self) -> str:
        """Inputs given to ``predict`` for a run on this source are read in DeepCalo's channels-last order."""
        return "last"


# The simulator's names (deepscope.data.simulators.calorimeter), kept here so validating a config
# does not import numpy; a test checks they match.
CALORIMETER_IMAGES = ("em_coarse", "em_fine")
CALORIMETER_SCALARS = ("p_eta", "p_phi", "averageInteractionsPerCrossing", "p_e", "p_f0Cluster", "p_Reta", "p_Rphi")
CALORIMETER_TRACKS = ("p", "deta", "dphi", "d0", "dz0", "charge")


def _choices(value: list[str], allowed: tuple[str, ...], what: str) -> list[str]:
    _names(value, what)
    for name in value:
        if name not in allowed:
            raise fail("unknown_name", f"unknown {what} '{name}'{did_you_mean(name, allowed)} "
                                       f"(available: {', '.join(allowed)})")
    return value


class CalorimeterData(DataCommon):
    """Simulated ATLAS calorimeter electrons (deepscope's toy simulator): DeepCalo's energy regression.

    Each event has the images ``em_coarse`` (3 layers, 8x8) and ``em_fine`` (the strips, 32x8) with
    their timing partners ``gate_em_coarse`` / ``gate_em_fine``, 7 scalars, up to 8 tracks with 6
    features, the true energy as target and the accordion energy E_acc to multiply the output with.
    """

    source: Literal["calorimeter"]
    n_train: int = Field(4000, ge=1, description="training events")
    n_val: int = Field(1000, ge=0, description="validation events (0: none)")
    n_test: int = Field(1000, ge=0, description="test events (0: none)")
    simulation_seed: int = Field(0, ge=0, description="seed of the simulation (the run's seed does not change "
                                                      "the events); the sets use independent streams of it")
    energy_range: tuple[float, float] = Field((10.0, 250.0), description="true energies are log-uniform in "
                                                                         "[low, high] GeV")
    options: dict[str, Any] = Field(default_factory=dict,
                                    description="any other simulator option (CalorimeterOptions field), "
                                                "e.g. {eta_max: 1.4, mu_range: [20, 40]}")
    images: list[str] = Field(default_factory=lambda: list(CALORIMETER_IMAGES),
                              description="image inputs: em_coarse, em_fine")
    gate_images: bool = Field(True, description="also give the timing images gate_<img> (for the gate net)")
    scalars: list[str] = Field(default_factory=lambda: list(CALORIMETER_SCALARS),
                               description="scalar inputs, in this order ([] for none)")
    tracks: list[str] = Field(default_factory=lambda: list(CALORIMETER_TRACKS),
                              description="track features, in this order ([] for no tracks)")
    target: Literal["energy", "correction"] = Field(
        "energy", description="energy: the true energy E_true in GeV; correction: E_true / E_acc")
    multiply_output_with: bool = Field(True, description="multiply the model's output with the accordion energy "
                                                         "E_acc, so the network learns a correction factor")
    hdf5_path: AbsolutePath | None = Field(
        None, description="write the events once to this file in the ATLAS HDF5 layout (if it does not exist) "
                          "and read them back lazily through the atlas_hdf5 loader; null: keep them in memory")

    @field_validator("split")
    @classmethod
    def _no_split(cls, value: Any) -> Any:
        return _no_split(value, "calorimeter", "set n_train, n_val and n_test instead")

    @field_validator("energy_range")
    @classmethod
    def _energy(cls, value: tuple[float, float]) -> tuple[float, float]:
        if not 0 < value[0] < value[1]:
            raise fail("energy_range", f"found {list(value)}; expected 0 < low < high (GeV)")
        return value

    @field_validator("options")
    @classmethod
    def _options(cls, value: dict[str, Any]) -> dict[str, Any]:
        if not value:
            return value
        from dataclasses import fields

        from deepscope.data.simulators.calorimeter import CalorimeterOptions

        known = sorted(f.name for f in fields(CalorimeterOptions))
        for key in value:
            if key == "energy_range":
                raise fail("options", "give energy_range as data.energy_range, not in data.options")
            if key not in known:
                raise fail("options", f"unknown simulator option '{key}'{did_you_mean(key, known)} "
                                      f"(see CalorimeterOptions)")
        return value

    _images = field_validator("images")(lambda v: _choices(v, CALORIMETER_IMAGES, "image"))
    _scalars = field_validator("scalars")(lambda v: _choices(v, CALORIMETER_SCALARS, "scalar"))
    _tracks = field_validator("tracks")(lambda v: _choices(v, CALORIMETER_TRACKS, "track feature"))

    @model_validator(mode="after")
    def _consistent(self) -> "CalorimeterData":
        if not (self.images or self.scalars or self.tracks):
            raise fail("no_inputs", "no inputs: keep at least one of data.images, data.scalars, data.tracks")
        if self.target == "correction" and self.multiply_output_with:
            raise fail("correction_target", "data.target 'correction' (E_true / E_acc) is already relative to "
                                            "E_acc: set data.multiply_output_with: false, or data.target: energy")
        return self

    def simulator_options(self) -> dict[str, Any]:
        """Keyword options for ``simulate_electrons``."""
        return {**self.options, "energy_range": tuple(self.energy_range)}

    @property
    def channels(self) -> str:
        """Inputs given to ``predict`` for a run on this source are read in DeepCalo's channels-last order."""
        return "last"


from deepscope.config.cube_hdf5 import CubeHDF5Data  # noqa: E402  (it builds on DataCommon above)
from deepscope.config.fits import FitsDirsData, RadioCubesData  # noqa: E402  (they build on DataCommon above)
from deepscope.config.grf import GRFCubesData  # noqa: E402  (it builds on CubeHDF5Data)
from deepscope.config.hdf5 import HDF5Data  # noqa: E402  (it builds on DataBase above)
from deepscope.config.registration import RegistrationDemoData, RegistrationHDF5Data  # noqa: E402  (DataCommon)
from deepscope.config.root import RootData  # noqa: E402  (it builds on DataCommon above)
from deepscope.config.tracker import TrackDetectorData  # noqa: E402  (it builds on RootData)

DataConfig = Annotated[
    Union[ArraysData, NpzData, DigitsData, AtlasHDF5Data, CalorimeterData, FitsDirsData, RadioCubesData,
          CubeHDF5Data, HDF5Data, GRFCubesData, RootData, TrackDetectorData, RegistrationHDF5Data,
          RegistrationDemoData],
    Field(discriminator="source"),
]
