"""The ``data.augment`` section: random flips, quarter turns, shifts, crops, noise and intensity scale.

Every key defaults to off, so an empty section (or none) trains on the data as it is. Whether the
keys fit the data (``crop`` has one entry per spatial axis, ``rot90`` needs square (y, x) planes,
``flips`` names axes the images have) is checked when the data is seen, by
:class:`deepscope.data.augment.Augmenter`.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BeforeValidator, Field

from deepscope.config.common import StrictModel, fail

__all__ = ["AXES", "AugmentConfig"]

AXES = ("z", "y", "x")
"""Names of the spatial axes, outermost first: 2D images are (y, x) = (H, W), 3D ones (z, y, x) = (D, H, W)."""


def _flips(value: Any) -> Any:
    expected = "expected true (every spatial axis), false, or a list of axes from z, y, x"
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        raise fail("augment_flips", f"found {value!r}; {expected} (write [{value}] for one axis)")
    if not isinstance(value, (list, tuple)):
        raise fail("augment_flips", f"found {value!r}; {expected}")
    names = [str(a).lower() if isinstance(a, str) else a for a in value]
    bad = [a for a in names if a not in AXES]
    if bad:
        raise fail("augment_flips", f"found axis {bad[0]!r}; {expected}")
    if len(set(names)) != len(names):
        raise fail("augment_flips", f"found {list(value)!r}; each axis may be named once")
    return [a for a in AXES if a in names]  # canonical order: z, y, x


def _crop(value: Any) -> Any:
    """None, or a list of 2 or 3 positive integers (YAML's ``64.0`` is taken as 64)."""
    expected = "expected a list of 2 (y, x) or 3 (z, y, x) positive integers: the crop size"
    if value is None:
        return None
    if not isinstance(value, (list, tuple)):
        raise fail("augment_crop", f"found {value!r}; {expected}")
    out = []
    for v in value:
        if isinstance(v, float) and v.is_integer():
            v = int(v)
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise fail("augment_crop", f"found {list(value)!r}; {expected}")
        out.append(v)
    if len(out) not in (2, 3):
        raise fail("augment_crop", f"found {list(value)!r} ({len(out)} {'entry' if len(out) == 1 else 'entries'}); {expected}")
    return out


def _scale(value: Any) -> Any:
    expected = "expected [lo, hi] with 0 < lo <= hi (the range of the random intensity factor)"
    if value is None:
        return None
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        raise fail("augment_scale", f"found {value!r}; {expected}")
    if any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in value):
        raise fail("augment_scale", f"found {list(value)!r}; {expected}")
    lo, hi = float(value[0]), float(value[1])
    if not 0.0 < lo <= hi:
        raise fail("augment_scale", f"found [{value[0]}, {value[1]}]; {expected}")
    return (lo, hi)


class AugmentConfig(StrictModel):
    """Random augmentation of training batches (never of validation, test or predict data).

    The geometric transforms (``flips``, ``rot90``, ``shift``, ``crop``) move every image of a sample
    and its dense targets (targets shaped like the images) together; ``noise`` touches the inputs
    only; ``scale`` multiplies inputs and dense targets alike. Each sample draws its own transform.

    Attributes:
        flips: spatial axes to flip at random, each with probability ``p``: a list from ``z``,
            ``y``, ``x``, or ``true`` for every spatial axis of the data.
        rot90: turn the (y, x) plane by a random multiple of 90 degrees (a turn with probability
            ``p``, then 90, 180 or 270 degrees alike); needs images with as many rows as columns.
        shift: largest random shift in pixels, drawn per spatial axis from ``-shift..shift``; the
            pixels moved in are zero (in data units), nothing wraps around.
        crop: random crop of this spatial size, (y, x) or (z, y, x), from every sample; a sample
            smaller than the crop along an axis is zero-padded there, centred.
        noise: standard deviation of Gaussian noise added to the inputs, in their standardized units.
        scale: ``[lo, hi]``: every sample's inputs and dense targets are multiplied by one factor
            drawn uniformly from this range.
        p: probability of each flip and of a quarter turn.
    """

    flips: Annotated[bool | list[str], BeforeValidator(_flips)] = Field(
        False, description="axes to flip at random: a list from z, y, x, or true for every spatial axis")
    rot90: bool = Field(False, description="random multiples of 90 degrees in the (y, x) plane (square planes only)")
    shift: int = Field(0, ge=0, description="largest random shift per spatial axis, in pixels; zeros move in")
    crop: Annotated[list[int] | None, BeforeValidator(_crop)] = Field(
        None, description="random crop size per sample, (y, x) or (z, y, x); smaller samples are zero-padded")
    noise: float = Field(0.0, ge=0.0, description="std of Gaussian noise added to the inputs (standardized units)")
    scale: Annotated[tuple[float, float] | None, BeforeValidator(_scale)] = Field(
        None, description="[lo, hi]: one random factor per sample for inputs and dense targets")
    p: float = Field(0.5, ge=0.0, le=1.0, description="probability of each flip and of a quarter turn")

    @property
    def geometric(self) -> bool:
        """Whether any transform moves pixels (so dense targets must move with the images)."""
        return bool(self.flips) or self.rot90 or self.shift > 0 or self.crop is not None

    @property
    def enabled(self) -> bool:
        """Whether any augmentation is configured."""
        return self.geometric or self.noise > 0 or self.scale is not None
