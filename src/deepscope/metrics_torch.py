"""Per-sample image metrics in torch, on the device the outputs are on.

The epoch metrics of image targets are means over samples (:meth:`deepscope.training.task.Task.sample_scores`);
scoring each batch's samples here keeps the outputs on the GPU (no copy to the host, which would make
the CPU wait for the GPU every step). Each function matches its numpy reference in
:mod:`deepscope.metrics` (``tests/test_metrics_torch.py``) and returns one value per sample (B,).
"""

from __future__ import annotations

import torch

from deepscope import losses

__all__ = ["mae", "mse", "psnr", "ssim"]


def _flat(pred: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return pred.reshape(len(pred), -1).float(), target.reshape(len(target), -1).float()


def mse(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    p, t = _flat(pred, target)
    return ((p - t) ** 2).mean(1)


def mae(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    p, t = _flat(pred, target)
    return (p - t).abs().mean(1)


def psnr(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """10 log10(peak² / mse) per sample, peak = the target's max - min (max |value| when constant);
    NaN for an all-zero target (skipped in the mean), +inf for an exact prediction."""
    p, t = _flat(pred, target)
    peak = t.amax(1) - t.amin(1)
    peak = torch.where(peak > 0, peak, t.abs().amax(1))
    err = ((p - t) ** 2).mean(1)
    value = 10.0 * torch.log10(peak ** 2 / err)
    return torch.where(peak > 0, value, torch.full_like(value, float("nan")))


def ssim(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """SSIM per sample with the metric's defaults (Gaussian window of 7 taps, sigma 1.5)."""
    return 1.0 - losses.ssim(pred.float(), target.float())
