"""The ``data`` section: where samples come from, how they are split and standardized.

One model per source, told apart by ``data.source`` (a discriminated union). Options shared by all
sources live in :class:`DataBase`.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import Field, field_validator, model_validator

from deepscope.config.common import StrictModel, fail

__all__ = ["ArraysData", "DataConfig", "DigitsData", "NpzData", "SplitConfig", "StandardizeConfig"]

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


class DataBase(StrictModel):
    """Options every source shares."""

    split: SplitConfig | None = None
    standardize: StandardizeConfig = Field(default_factory=StandardizeConfig)
    channels: Literal["last", "first"] = Field(
        "last",
        description="where the channel axis of image arrays is: 'last' (N, H, W, C) as in DeepCalo "
        "and Keras, or 'first' (N, C, H, W) as in PyTorch. (N, H, W) images get one channel.",
    )
    num_workers: int = Field(0, ge=0, description="background processes that load batches")
    check_finite: bool = Field(True, description="refuse data with NaN or inf before training")


class ArraysData(DataBase):
    """In-memory arrays given to ``deepscope.train(cfg, data=...)`` in the DeepCalo layout."""

    source: Literal["arrays"] = "arrays"


class NpzData(DataBase):
    """A NumPy ``.npz`` file with keys ``images/<name>``, ``scalars``, ``tracks``, ``targets``,
    ``sample_weights``, ``multiply_output_with`` — optionally prefixed ``train/``, ``val/``, ``test/``."""

    source: Literal["npz"]
    path: Path = Field(description="the .npz file; a relative path is taken from the current folder and "
                                   "stored absolute, so evaluate/predict work from anywhere")

    @field_validator("path")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        return value.expanduser().absolute()


class DigitsData(DataBase):
    """scikit-learn's bundled 8×8 handwritten digits (1797 images of 10 classes; no download)."""

    source: Literal["sklearn_digits"]
    n_samples: int | None = Field(None, ge=20, le=1797, description="use only the first n samples")
    one_hot: bool = Field(False, description="targets as one-hot vectors instead of integer labels")


DataConfig = Annotated[Union[ArraysData, NpzData, DigitsData], Field(discriminator="source")]
