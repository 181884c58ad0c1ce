"""Registration metrics per sample, in torch, on the device the outputs are on.

Every metric is ``fn(out, target) -> (B,)`` on two dicts of tensors:

- ``out``: ``registered`` (B, 1, *S) the warped moving image, ``field`` (B, nd, *S) the predicted forward
  field, optional ``inverse`` (B, nd, *S) the predicted inverse field;
- ``target``: ``registered`` (B, 1, *S) the reference image, ``field`` the true forward field, optional
  ``inverse`` the true inverse, optional ``reference_labels`` and ``moving_labels`` (B, 1, *S) integer-valued
  label images (0 = background).

A metric whose inputs are missing returns NaN for every sample (skipped in epoch means).
The registry (``METRICS``, task ``registration``) names them and says which are maximized. Fields follow
:mod:`deepscope.registration.ops` (pixels, channel 0 = Δx, backward warp).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from deepscope import metrics_torch
from deepscope.registration import ops

__all__ = [
    "dice",
    "fold_fraction",
    "inverse_residual",
    "iou",
    "mutual_information",
    "ncc",
    "psnr",
    "ssim",
    "vector_distance",
    "vector_distance_p50",
    "vector_distance_p90",
    "vector_distance_p99",
]

Tensors = dict[str, torch.Tensor]
MI_BINS = 32


def _batch(*dicts: Tensors) -> tuple[int, torch.device]:
    for d in dicts:
        for v in d.values():
            if isinstance(v, torch.Tensor) and v.ndim:
                return v.shape[0], v.device
    return 0, torch.device("cpu")


def _missing(out: Tensors, target: Tensors) -> torch.Tensor:
    b, device = _batch(out, target)
    return torch.full((b,), float("nan"), device=device)


def _has(d: Tensors, *keys: str) -> bool:
    return all(d.get(k) is not None for k in keys)


def _cached(out: Tensors, key: str, compute: Callable[[], Any]) -> Any:
    """``compute()``, once per batch when ``out`` carries a ``_cache`` dict: the metrics of one batch share
    their distances and label overlaps (``RegistrationOutputs`` gives each batch a fresh one)."""
    cache = out.get("_cache")
    if cache is None:
        return compute()
    if key not in cache:
        cache[key] = compute()
    return cache[key]


def _point_distance(out: Tensors, target: Tensors) -> torch.Tensor:
    """Per-pixel Euclidean distance of the predicted and true fields, flattened: (B, P)."""
    def compute() -> torch.Tensor:
        diff = out["field"].float() - target["field"].float()
        return diff.square().sum(1).sqrt().flatten(1)

    return _cached(out, "_distance", compute)


def vector_distance(out: Tensors, target: Tensors) -> torch.Tensor:
    """Mean over pixels of |field_pred(p) - field_true(p)| in pixels (no ε, unlike the loss)."""
    if not (_has(out, "field") and _has(target, "field")):
        return _missing(out, target)
    return _point_distance(out, target).mean(1)


def _quantile(values: torch.Tensor, q: float) -> torch.Tensor:
    """Per-row quantile of (B, P) with numpy's default linear interpolation (no size limit, unlike
    ``torch.quantile``)."""
    pos = q * (values.shape[1] - 1)
    lo, frac = int(pos), pos - int(pos)
    hi = min(lo + 1, values.shape[1] - 1)
    low = values.kthvalue(lo + 1, dim=1).values
    if frac == 0 or hi == lo:
        return low
    return low + frac * (values.kthvalue(hi + 1, dim=1).values - low)


def _vd_percentile(q: float) -> Callable[[Tensors, Tensors], torch.Tensor]:
    def metric(out: Tensors, target: Tensors) -> torch.Tensor:
        if not (_has(out, "field") and _has(target, "field")):
            return _missing(out, target)
        return _quantile(_point_distance(out, target), q / 100.0)

    metric.__name__ = metric.__qualname__ = f"vector_distance_p{q:g}"
    metric.__doc__ = f"The {q:g}th percentile over pixels of |field_pred(p) - field_true(p)|, per sample."
    return metric


vector_distance_p50 = _vd_percentile(50)
vector_distance_p90 = _vd_percentile(90)
vector_distance_p99 = _vd_percentile(99)


def fold_fraction(out: Tensors, target: Tensors) -> torch.Tensor:
    """Fraction of pixels where the predicted field folds, det(I + ∇Δ) <= 0."""
    if not _has(out, "field"):
        return _missing(out, target)
    return ops.fold_fraction(out["field"].float())


def inverse_residual(out: Tensors, target: Tensors) -> torch.Tensor:
    """Mean over pixels of |inv(p) + fwd(p + inv(p))| of the predicted forward/inverse pair, in pixels."""
    if not _has(out, "field", "inverse"):
        return _missing(out, target)
    return ops.inverse_residual(out["field"].float(), out["inverse"].float()).flatten(1).mean(1)


def psnr(out: Tensors, target: Tensors) -> torch.Tensor:
    """PSNR in dB of the registered image against the reference (:func:`deepscope.metrics_torch.psnr`:
    peak = the reference's max - min)."""
    if not (_has(out, "registered") and _has(target, "registered")):
        return _missing(out, target)
    return metrics_torch.psnr(out["registered"], target["registered"])


def ssim(out: Tensors, target: Tensors) -> torch.Tensor:
    """SSIM of the registered image against the reference (:func:`deepscope.metrics_torch.ssim`)."""
    if not (_has(out, "registered") and _has(target, "registered")):
        return _missing(out, target)
    return metrics_torch.ssim(out["registered"], target["registered"])


def ncc(out: Tensors, target: Tensors) -> torch.Tensor:
    """Global normalised cross-correlation (the Pearson correlation) of the registered image and the
    reference; NaN where either is constant."""
    if not (_has(out, "registered") and _has(target, "registered")):
        return _missing(out, target)
    x = out["registered"].float().flatten(1)
    y = target["registered"].float().flatten(1)
    x = x - x.mean(1, keepdim=True)
    y = y - y.mean(1, keepdim=True)
    return (x * y).sum(1) / torch.sqrt((x * x).sum(1) * (y * y).sum(1))


def _bins(x: torch.Tensor) -> torch.Tensor:
    """Bin index in [0, MI_BINS) of values on [0, 1] (outside values land in the edge bins), (B, P)."""
    return (x.float().flatten(1) * MI_BINS).floor().clamp(0, MI_BINS - 1).long()


def mutual_information(out: Tensors, target: Tensors) -> torch.Tensor:
    """Mutual information in nats of the registered image and the reference, from their joint histogram
    of 32 × 32 equal bins on [0, 1] (hard binning).

        MI = Σ_ij p_ij log(p_ij / (p_i p_j))
    """
    if not (_has(out, "registered") and _has(target, "registered")):
        return _missing(out, target)
    a, b = _bins(out["registered"]), _bins(target["registered"])
    n, p = a.shape
    offset = torch.arange(n, device=a.device).unsqueeze(1) * MI_BINS * MI_BINS
    joint = torch.bincount((offset + a * MI_BINS + b).flatten(), minlength=n * MI_BINS * MI_BINS)
    joint = joint.reshape(n, MI_BINS, MI_BINS).float() / p  # (B, bins_a, bins_b)
    pa, pb = joint.sum(2, keepdim=True), joint.sum(1, keepdim=True)
    ratio = torch.where(joint > 0, joint / (pa * pb), torch.ones_like(joint))
    return (joint * ratio.log()).sum((1, 2)).float()


def _overlaps(out: Tensors, target: Tensors) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] | None:
    """Per sample: (intersection, warped moving count, reference count) per structure present in either
    image (labels > 0), the moving labels warped by the predicted field with nearest neighbour."""
    if not (_has(out, "field") and _has(target, "reference_labels", "moving_labels")):
        return None
    return _cached(out, "_overlaps", lambda: _count_overlaps(out, target))


def _count_overlaps(out: Tensors, target: Tensors) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    moved = ops.warp(target["moving_labels"].float(), out["field"].float(), mode="nearest").round()
    reference = target["reference_labels"].float().round()
    result = []
    for a, b in zip(moved.flatten(1), reference.flatten(1)):
        values, inverse = torch.unique(torch.cat([a, b]), return_inverse=True)
        ia, ib = inverse[: len(a)], inverse[len(a):]
        k = len(values)
        inter = torch.bincount(ia[ia == ib], minlength=k)
        count_a, count_b = torch.bincount(ia, minlength=k), torch.bincount(ib, minlength=k)
        keep = values > 0
        result.append((inter[keep].float(), count_a[keep].float(), count_b[keep].float()))
    return result


def dice(out: Tensors, target: Tensors) -> torch.Tensor:
    """Mean Dice 2|A∩B| / (|A| + |B|) over the structures (labels > 0) in the warped moving labels or the
    reference labels; NaN where neither has one."""
    overlaps = _overlaps(out, target)
    if overlaps is None:
        return _missing(out, target)
    values = [(2 * i / (a + b)).mean() if len(i) else torch.tensor(float("nan"), dtype=torch.float32, device=i.device)
              for i, a, b in overlaps]
    return torch.stack(values).float()


def iou(out: Tensors, target: Tensors) -> torch.Tensor:
    """Mean intersection over union |A∩B| / |A∪B| over the structures (labels > 0) in the warped moving
    labels or the reference labels; NaN where neither has one."""
    overlaps = _overlaps(out, target)
    if overlaps is None:
        return _missing(out, target)
    values = [(i / (a + b - i)).mean() if len(i) else torch.tensor(float("nan"), dtype=torch.float32, device=i.device)
              for i, a, b in overlaps]
    return torch.stack(values).float()
