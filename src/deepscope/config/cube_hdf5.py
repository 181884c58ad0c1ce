"""The ``data`` section of RACCOON/PENGUIN's HDF5 cube file (``source: cube_hdf5``).

One HDF5 file holds one dataset per simulation cube, named by a pattern with the simulation's seed
(``gr_seed0001``, ``newton_seed0001``); the pattern names the class. Splits are seed ranges, so the
cubes (and the slices) of one seed stay in one split. See docs/cube-hdf5.md.

Kept torch-, numpy- and h5py-free so that validating a config stays fast.
"""

from __future__ import annotations

import string
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from deepscope.config.common import AbsolutePath, StrictModel, fail
from deepscope.config.data import DataCommon
from deepscope.errors import did_you_mean

__all__ = ["CubeHDF5Data", "CubeSlices", "DEFAULT_CLASSES", "pattern_parts"]

_SPLITS = ("train", "val", "test")
DEFAULT_CLASSES = {"gr_seed{seed:04d}": 1, "newton_seed{seed:04d}": 0}
_EXAMPLE = "e.g. 'gr_seed{seed:04d}'"


def pattern_parts(pattern: str) -> tuple[str, str, str]:
    """``(before, format_spec, after)`` of a key pattern with one ``{seed...}`` field.

    Raises:
        ValueError: the pattern does not hold exactly one ``{seed}`` field (with an optional format
            spec for an integer), or holds other fields.
    """
    try:
        parts = list(string.Formatter().parse(pattern))
    except ValueError as exc:
        raise ValueError(f"found {pattern!r}, which is not a valid format string ({exc}); {_EXAMPLE}") from None
    fields = [(name, spec, conv) for _, name, spec, conv in parts if name is not None]
    if len(fields) != 1 or fields[0][0] != "seed":
        shown = ", ".join(f"{{{name}}}" for name, _, _ in fields) or "none"
        raise ValueError(f"found {pattern!r} (fields: {shown}); expected a key with the field '{{seed}}' exactly "
                         f"once, optionally with a format spec, {_EXAMPLE}")
    name, spec, conv = fields[0]
    if conv:
        raise ValueError(f"found {pattern!r}; the '{{seed}}' field takes a format spec (':04d'), not a conversion "
                         f"('!{conv}')")
    try:
        format(0, spec or "")
    except ValueError as exc:
        raise ValueError(f"found {pattern!r}; ':{spec}' is not a format spec for an integer seed ({exc})") from None
    index = next(i for i, (_, n, _, _) in enumerate(parts) if n is not None)
    before = "".join(lit for lit, _, _, _ in parts[:index + 1])
    after = "".join(lit for lit, _, _, _ in parts[index + 1:])
    return before, spec or "", after


class CubeSlices(StrictModel):
    """2D samples cut from the cubes: every slice along each of ``axes``."""

    axes: list[int] = Field(description="cube axes to slice along (0, 1, 2 = D, H, W of a (D, H, W) cube): every "
                                        "index along each axis is a 2D sample (C, the other two axes)")

    @field_validator("axes")
    @classmethod
    def _axes(cls, value: list[int]) -> list[int]:
        if not value:
            raise fail("slice_axes", "found an empty list; expected cube axes among 0, 1, 2 (e.g. [0])")
        for axis in value:
            if not 0 <= axis <= 2:
                raise fail("slice_axes", f"found axis {axis}; cube axes are 0, 1, 2 (D, H, W; the channel axis "
                                         "of a (C, D, H, W) cube is not counted)")
        if len(set(value)) != len(value):
            raise fail("slice_axes", f"found {value}; an axis is listed twice")
        return value


class CubeHDF5Data(DataCommon):
    """RACCOON/PENGUIN's HDF5 file of simulation cubes, one dataset per cube and class (docs/cube-hdf5.md).

    Cubes are stored (D, H, W) or (C, D, H, W); samples are channels first: images
    ``{"cube": (N, C, D, H, W)}``, or ``(N, C, *plane)`` with ``slices``; targets are the classes'
    integer labels (N,).
    """

    source: Literal["cube_hdf5"]
    path: AbsolutePath = Field(description="the HDF5 file; a relative path is taken from the current folder and "
                                           "stored absolute")
    classes: dict[str, int] = Field(
        default_factory=lambda: dict(DEFAULT_CLASSES),
        description="dataset key pattern -> integer class label; the pattern holds the field '{seed}' once, "
                    "with an optional format spec ('{seed:04d}' gives gr_seed0007)")
    seeds: dict[str, list[int] | None] = Field(
        description="split -> [start, stop) seed range; train is required, val and test optional (null or left "
                    "out: none). Ranges must not overlap")
    slices: CubeSlices | None = Field(None, description="null: whole cubes (N, C, D, H, W); {axes: [...]}: every 2D "
                                                        "slice along those cube axes is a sample")
    amplitude: dict[int, float] = Field(
        default_factory=lambda: {0: 1.0},
        description="class label -> factor its cubes are multiplied by (RACCOON's newton_augmentation; 1.0: off)")
    standardized_on_disk: bool = Field(
        True, description="true: the cubes are stored standardized, so data.standardize.images defaults to none; "
                          "false: it defaults to global (the training cubes' mean and std, stored with the run)")
    lazy: Literal["auto"] | bool = Field(
        "auto", description="read the cubes batch by batch as training goes (true, the seed's WholeCubeDataset) "
                            "or into memory once (false); auto: in memory when the samples take less than 1 GiB")

    @field_validator("split")
    @classmethod
    def _no_split(cls, value: Any) -> Any:
        if value is not None:
            raise fail("split_given", "the cube file is split by seed ranges; remove data.split (data.seeds gives "
                                      "the seeds of train, val and test)")
        return value

    @field_validator("classes")
    @classmethod
    def _classes(cls, value: dict[str, int]) -> dict[str, int]:
        if not value:
            raise fail("classes", f"found an empty mapping; expected key pattern -> class label, {_EXAMPLE}: 1")
        for pattern, label in value.items():
            try:
                pattern_parts(pattern)
            except ValueError as exc:
                raise fail("key_pattern", f"'{pattern}': {exc}") from None
            if label < 0:
                raise fail("classes", f"'{pattern}': found label {label}; class labels are integers >= 0")
        return value

    @field_validator("seeds")
    @classmethod
    def _seeds(cls, value: dict[str, list[int] | None]) -> dict[str, list[int] | None]:
        for key, bounds in value.items():
            if key not in _SPLITS:
                raise fail("set_name", f"unknown split '{key}'{did_you_mean(key, _SPLITS)} (allowed: train, val, "
                                       "test; each maps to a [start, stop) seed range)")
            if bounds is None:
                continue
            if len(bounds) != 2:
                raise fail("seed_range", f"'{key}': found {bounds}; expected [start, stop), e.g. [0, 150]")
            start, stop = bounds
            if start < 0 or stop <= start:
                raise fail("seed_range", f"'{key}': found [{start}, {stop}]; expected [start, stop) with "
                                         "0 <= start < stop")
        if value.get("train") is None:
            raise fail("set_name", "needs 'train' (the [start, stop) seeds to train on)")
        ranges = {k: value[k] for k in _SPLITS if value.get(k) is not None}
        names = list(ranges)
        for i, a in enumerate(names):
            for b in names[i + 1:]:
                (sa, ea), (sb, eb) = ranges[a], ranges[b]
                if sa < eb and sb < ea:
                    raise fail("seed_overlap", f"{a} [{sa}, {ea}) and {b} [{sb}, {eb}) overlap (seeds "
                                               f"{max(sa, sb)}..{min(ea, eb) - 1}); the cubes of one seed belong "
                                               "to one split")
        return ranges

    @field_validator("amplitude")
    @classmethod
    def _amplitude(cls, value: dict[int, float]) -> dict[int, float]:
        for label, factor in value.items():
            if not factor > 0 or factor == float("inf"):
                raise fail("amplitude", f"label {label}: found {factor}; expected a finite factor > 0 (1.0: off)")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> "CubeHDF5Data":
        labels = sorted(set(self.classes.values()))
        for label in self.amplitude:
            if label not in labels and self.amplitude[label] != 1.0:
                raise fail("amplitude", f"data.amplitude has label {label} but no pattern of data.classes has it "
                                        f"(labels: {', '.join(map(str, labels))})")
        if "images" not in self.standardize.model_fields_set:
            # the seed's WholeCubeDataset reads cubes standardized over all seeds; WholeCubeDataset2 standardizes
            # with the loaded cubes' statistics, which is global standardization fitted on the training cubes
            images = "none" if self.standardized_on_disk else "global"
            self.standardize = self.standardize.model_copy(update={"images": images})
        return self

    def split_seeds(self) -> dict[str, range]:
        """Split -> its seeds, for the splits given (train first)."""
        return {name: range(*bounds) for name, bounds in self.seeds.items() if bounds is not None}

    @property
    def channels(self) -> str:
        """Images are channels first: ``{"cube": (N, C, ...)}``."""
        return "first"
