"""Fixed windows of image batches: the centre crop that validation uses when training takes random crops,
and the spec of a model trained on crops.

A model trained on ``data.augment.crop`` windows sees inputs of the crop size; validation scores the
centre window of each sample (the same every epoch), and evaluation and prediction run the model
over whole images with a sliding window (:mod:`deepscope.evaluation.sliding`).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from deepscope.data.spec import ImageSpec, InputSpec

__all__ = ["CenterCrop", "cropped_spec"]


def _window(size: tuple[int, ...], crop: tuple[int, ...]) -> tuple[tuple[slice, ...], list[tuple[int, int]]]:
    """Slices of the centre window of ``size`` and the zero padding (before, after) that samples
    smaller than ``crop`` need, per spatial axis."""
    slices, pads = [], []
    for n, c in zip(size, crop):
        if n >= c:
            start = (n - c) // 2
            slices.append(slice(start, start + c))
            pads.append((0, 0))
        else:
            slices.append(slice(0, n))
            pads.append(((c - n) // 2, c - n - (c - n) // 2))
    return tuple(slices), pads


def _crop(array: np.ndarray, crop: tuple[int, ...]) -> np.ndarray:
    spatial = array.shape[-len(crop):]
    slices, pads = _window(spatial, crop)
    out = array[(Ellipsis, *slices)]
    if any(p != (0, 0) for p in pads):
        out = np.pad(out, [(0, 0)] * (array.ndim - len(crop)) + pads)
    return out


class CenterCrop:
    """The centre ``crop`` window of every image and of image targets; samples smaller than it are
    zero-padded, centred (as the random crops of training are)."""

    def __init__(self, crop: list[int] | tuple[int, ...]) -> None:
        self.crop = tuple(int(c) for c in crop)

    def __call__(self, batch: dict[str, Any], epoch: int | None = None) -> dict[str, Any]:
        out = dict(batch)
        images = batch.get("images", {})
        spatial = {v.shape[2:] for v in images.values()}
        out["images"] = {k: _crop(v, self.crop) for k, v in images.items()}
        targets = batch.get("targets")
        if targets is not None and targets.ndim >= 3 and targets.shape[2:] in spatial:
            out["targets"] = _crop(targets, self.crop)
        return out


def cropped_spec(spec: InputSpec, crop: list[int] | tuple[int, ...] | None) -> InputSpec:
    """The spec of the windows a model trained on ``crop`` windows sees (``spec`` itself without a crop).

    Images and image targets take the crop's spatial size; other targets are unchanged.
    """
    if not crop:
        return spec
    crop = tuple(int(c) for c in crop)
    images = {k: ImageSpec(v.channels, crop) for k, v in spec.images.items()}
    target_shape = (spec.target_shape[0], *crop) if spec.dense else spec.target_shape
    return replace(spec, images=images, target_shape=target_shape)
