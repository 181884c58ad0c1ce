"""Sliding-window inference: predict images larger than the model's window, tile by tile.

A dense model trained on crops (``data.augment.crop``) predicts a whole cube by running on
overlapping windows of the crop size and blending the window outputs; near a window's edge a
convolutional net sees zero padding instead of the neighbouring pixels, so ``"gaussian"`` blending
gives those pixels little weight. This wraps MONAI's ``sliding_window_inference`` (imported on first
use: importing MONAI takes seconds).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch.nn.functional as F
from torch import Tensor

from deepscope.errors import did_you_mean

__all__ = ["BLEND_MODES", "needs_sliding_window", "sliding_window_predict"]

BLEND_MODES = ("gaussian", "constant")
"""How overlapping windows are blended: by a Gaussian weight peaking at the window centre, or equally."""


def needs_sliding_window(spatial: Sequence[int], roi_size: Sequence[int]) -> bool:
    """Whether an image of size ``spatial`` is larger than the window along some axis.

    Raises:
        ValueError: ``roi_size`` has another number of axes than ``spatial``.
    """
    _check_roi(spatial, roi_size)
    return any(s > r for s, r in zip(spatial, roi_size))


def sliding_window_predict(
    predictor: Callable[[Tensor], Tensor],
    image: Tensor,
    roi_size: Sequence[int],
    overlap: float = 0.25,
    mode: str = "gaussian",
    sw_batch_size: int = 4,
) -> Tensor:
    """Predict ``image`` window by window and blend the windows' outputs.

    An image no larger than ``roi_size`` along every axis takes one pass: it is zero-padded
    (centred) to ``roi_size`` where smaller, and the output is cropped back, so an image of exactly
    ``roi_size`` gives ``predictor(image)`` bit for bit. Larger images are cut into windows of
    ``roi_size`` that overlap by ``overlap`` (axes smaller than the window are padded the same way).
    Call it under ``torch.no_grad()`` (or ``inference_mode``) as any inference.

    Args:
        predictor: maps windows (N, C, *roi_size) to outputs (N, C_out, *roi_size); C_out may
            differ from C, the spatial size may not.
        image: (B, C, H, W) or (B, C, D, H, W).
        roi_size: the window size, one entry per spatial axis.
        overlap: fraction of a window shared with its neighbour along each axis, in [0, 1).
        mode: ``"gaussian"`` or ``"constant"`` blending (see :data:`BLEND_MODES`).
        sw_batch_size: windows per ``predictor`` call.

    Returns:
        (B, C_out, *spatial): the blended prediction, the size of ``image``.

    Raises:
        ValueError: a bad argument, or a predictor whose output has another spatial size than its input.
    """
    spatial = tuple(image.shape[2:])
    if image.ndim not in (4, 5):
        raise ValueError(f"image has shape {tuple(image.shape)}; expected (B, C, H, W) or (B, C, D, H, W)")
    roi = _check_roi(spatial, roi_size)
    if not 0.0 <= overlap < 1.0:
        raise ValueError(f"overlap is {overlap}; expected a fraction in [0, 1)")
    if mode not in BLEND_MODES:
        raise ValueError(f"unknown blend mode '{mode}'{did_you_mean(mode, BLEND_MODES)} "
                         f"(available: {', '.join(BLEND_MODES)})")
    if sw_batch_size < 1:
        raise ValueError(f"sw_batch_size is {sw_batch_size}; expected at least 1")

    if not needs_sliding_window(spatial, roi):
        # one window: skip the blending, whose weighting and division would round the output
        pad, crop = _centred_padding(spatial, roi)
        window = F.pad(image, pad) if any(pad) else image
        out = _check_output(predictor(window), window, roi)
        return out[(slice(None), slice(None), *crop)]

    from monai.inferers import sliding_window_inference  # seconds to import; only here

    out = sliding_window_inference(image, roi, sw_batch_size, lambda w: _check_output(predictor(w), w, roi),
                                   overlap=overlap, mode=mode, padding_mode="constant", cval=0.0)
    out = out.as_tensor() if hasattr(out, "as_tensor") else out  # a MetaTensor only for MetaTensor inputs
    # MONAI crops its padding off again; make sure, whatever the version
    return out[(slice(None), slice(None), *(slice(0, s) for s in spatial))]


def _check_roi(spatial: Sequence[int], roi_size: Sequence[int]) -> tuple[int, ...]:
    roi = tuple(int(r) for r in roi_size)
    if len(roi) != len(spatial):
        raise ValueError(f"roi_size {tuple(roi_size)} has {len(roi)} entries but the image has {len(spatial)} "
                         f"spatial axes (spatial size {tuple(spatial)})")
    if any(r < 1 for r in roi):
        raise ValueError(f"roi_size {tuple(roi_size)}: every entry must be a positive number of pixels")
    return roi


def _centred_padding(spatial: Sequence[int], roi: Sequence[int]) -> tuple[list[int], list[slice]]:
    """``F.pad`` widths (last axis first) to reach ``roi``, and the slices that undo them."""
    pad: list[int] = []
    crop: list[slice] = []
    for s, r in zip(spatial, roi):
        lo = max(r - s, 0) // 2
        crop.append(slice(lo, lo + s))
        pad[:0] = [lo, max(r - s, 0) - lo]  # F.pad wants the last axis first
    return pad, crop


def _check_output(out: Tensor, window: Tensor, roi: Sequence[int]) -> Tensor:
    if not isinstance(out, Tensor) or out.ndim != window.ndim or out.shape[0] != window.shape[0]:
        shown = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
        raise ValueError(f"the predictor returned {shown} for windows {tuple(window.shape)}; expected one tensor "
                         "(N, C_out, *window)")
    if tuple(out.shape[2:]) != tuple(window.shape[2:]):
        raise ValueError(f"the predictor returned spatial size {tuple(out.shape[2:])} for windows of "
                         f"{tuple(window.shape[2:])} (roi_size {tuple(roi)}); sliding-window inference needs a "
                         "dense output of the window's size")
    return out
