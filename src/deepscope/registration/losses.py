"""Registration losses (atlalign's ``ALL_IMAGE_LOSSES`` and ``ALL_DVF_LOSSES``), per sample, 2D and 3D.

Every loss is ``fn(pred, target, **options) -> (B,)``, differentiable and lower-is-better, like the
losses of :mod:`deepscope.losses` (whose ``mse``, ``mae`` and ``ssim`` the image losses reuse).

Image losses take images (B, C, *S) in [0, 1]; field losses take displacement fields (B, nd, *S) in
pixels, channel 0 = Δx (:mod:`deepscope.registration.ops`). atlalign averages each loss over the batch;
here the batch mean of the per-sample values is the same number for every loss except ``vdclip``,
which powers each sample's distance (atlalign powers the batch's distance).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from deepscope.errors import CheckpointError, ConfigError, DataError, did_you_mean
from deepscope.losses import mae, mse, ssim
from deepscope.registration.ops import jacobian_determinant

__all__ = [
    "dvf2img",
    "grad",
    "jacobian",
    "mae",
    "mse",
    "ncc",
    "ncc_5",
    "ncc_9",
    "ncc_12",
    "ncc_20",
    "pearson",
    "perceptual",
    "psnr",
    "ssim",
    "vdclip",
    "vdclip2",
    "vdclip3",
    "vector_distance",
]

_NCC_EPS = 1e-5  # voxelmorph's and atlalign's
_VD_EPS = 1e-3  # atlalign's vector_distance: sqrt(dx² + dy² + 1e-3) keeps the gradient finite at 0
_PSNR_MIN_MSE = 1e-10  # caps -PSNR at -100 dB, so an exact prediction gives a finite loss


def _check_pair(pred: torch.Tensor, target: torch.Tensor, name: str, what: str = "images") -> None:
    if pred.shape != target.shape or pred.ndim not in (4, 5):
        raise DataError(f"loss {name}: pred {tuple(pred.shape)} and target {tuple(target.shape)} must be {what} "
                        "of one shape, (B, C, H, W) or (B, C, D, H, W)")


def _check_fields(pred: torch.Tensor, target: torch.Tensor | None, name: str) -> None:
    if pred.ndim not in (4, 5) or pred.shape[1] != pred.ndim - 2:
        raise DataError(f"loss {name}: expected a field (B, nd, *spatial) with nd = 2 or 3 channels for as many "
                        f"spatial axes; found pred of shape {tuple(pred.shape)}")
    if target is not None and target.shape != pred.shape:
        raise DataError(f"loss {name}: pred {tuple(pred.shape)} and target {tuple(target.shape)} must have one shape")


def _float(x: torch.Tensor) -> torch.Tensor:
    return x.to(torch.promote_types(x.dtype, torch.float32))


# --- image losses --------------------------------------------------------------------------------


def _box_sum(x: torch.Tensor, window: int) -> torch.Tensor:
    """Sum of (N, 1, *S) over a window^nd box at every pixel, zeros outside, same size out.

    TensorFlow's 'SAME' padding (voxelmorph, atlalign): (window - 1) // 2 zeros before and the rest after
    each axis, so even windows reach one pixel further forward than back. The box is separable: one
    average pool per axis (window taps instead of window^nd; a 20^3 box costs 60, not 8000, taps per voxel);
    cumulative sums would cost the same but lose float32 precision over a large image.
    """
    nd = x.ndim - 2
    pool = (F.avg_pool2d, F.avg_pool3d)[nd - 2]
    before, after = (window - 1) // 2, window // 2
    for axis in range(nd):
        pad = [0, 0] * nd  # F.pad lists the last axis first
        pad[2 * (nd - 1 - axis)], pad[2 * (nd - 1 - axis) + 1] = before, after
        kernel = [1] * nd
        kernel[axis] = window
        x = pool(F.pad(x, pad), kernel_size=kernel, stride=1) * window
    return x


def ncc(pred: torch.Tensor, target: torch.Tensor, window: int = 9) -> torch.Tensor:
    """1 - local normalised cross-correlation (voxelmorph's and atlalign's NCC), per sample.

    With I = pred, J = target, n = window^nd and the sums Σ over the window box at each pixel (zeros
    outside the image, TensorFlow's 'SAME' placement for even windows):

        cross = Σ IJ - Σ I Σ J / n
        var_I = Σ I² - (Σ I)² / n,  var_J = Σ J² - (Σ J)² / n
        cc = cross² / (var_I var_J + 1e-5)
        loss = 1 - mean over channels and pixels of cc

    so 0 is a perfect match wherever the window holds some contrast (a flat window has cc = 0, as in
    atlalign, whose loss is -mean cc). Channels are scored separately. Computed in float32.

    Args:
        pred: images (B, C, *S), S two or three spatial dims.
        target: images of the same shape.
        window: box size in pixels per spatial axis, >= 1 (even sizes work).

    Returns:
        (B,) loss in [0, 1].

    Raises:
        ConfigError: ``window`` is not a positive integer.
        DataError: the shapes differ or are not (B, C, H, W) / (B, C, D, H, W).
    """
    if isinstance(window, bool) or not isinstance(window, int) or window < 1:
        raise ConfigError(f"loss ncc: config.window must be an integer >= 1; found {window!r}")
    _check_pair(pred, target, "ncc")
    with torch.autocast(device_type=pred.device.type, enabled=False):
        i = _float(pred)
        j = target.to(i.dtype)
        b, c = i.shape[:2]
        n = float(window ** (i.ndim - 2))
        maps = torch.stack([i, j, i * i, j * j, i * j])  # (5, B, C, *S)
        s_i, s_j, s_ii, s_jj, s_ij = _box_sum(maps.reshape(-1, 1, *i.shape[2:]), window).reshape(5, b, c, -1)
        cross = s_ij - s_i * s_j / n
        var_i = s_ii - s_i * s_i / n
        var_j = s_jj - s_j * s_j / n
        cc = cross * cross / (var_i * var_j + _NCC_EPS)
        return 1.0 - cc.mean((1, 2))


def ncc_5(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """1 - local NCC in a 5^nd window; see :func:`ncc`."""
    return ncc(pred, target, window=5)


def ncc_9(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """1 - local NCC in a 9^nd window; see :func:`ncc`."""
    return ncc(pred, target, window=9)


def ncc_12(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """1 - local NCC in a 12^nd window; see :func:`ncc`."""
    return ncc(pred, target, window=12)


def ncc_20(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """1 - local NCC in a 20^nd window; see :func:`ncc`."""
    return ncc(pred, target, window=20)


def pearson(pred: torch.Tensor, target: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """1 - Pearson correlation of all pixels and channels of each sample.

        r = mean(x̃ ỹ) / sqrt(mean(x̃²) mean(ỹ²) + eps),  x̃ = x - mean(x), ỹ = y - mean(y)
        loss = 1 - r

    Args:
        pred: images (B, C, *S) (any shape with a batch axis works).
        target: images of the same shape.
        eps: keeps the loss and its gradient finite for a constant image (where r = 0).

    Returns:
        (B,) loss in [0, 2], 0 for a prediction that is an increasing affine map of the target.
    """
    if pred.shape != target.shape:
        raise DataError(f"loss pearson: pred {tuple(pred.shape)} and target {tuple(target.shape)} must have one shape")
    x = _float(pred).reshape(len(pred), -1)
    y = _float(target).reshape(len(target), -1).to(x.dtype)
    x = x - x.mean(1, keepdim=True)
    y = y - y.mean(1, keepdim=True)
    r = (x * y).mean(1) / torch.sqrt((x * x).mean(1) * (y * y).mean(1) + eps)
    return 1.0 - r


def psnr(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """-PSNR in dB with a data range of 1 (images in [0, 1]), per sample.

        loss = -10 log10(1 / max(mse, 1e-10))

    Returns:
        (B,) loss in [-100, inf): -100 for an exact prediction (the cap keeps it finite).
    """
    if pred.shape != target.shape:
        raise DataError(f"loss psnr: pred {tuple(pred.shape)} and target {tuple(target.shape)} must have one shape")
    err = mse(_float(pred), _float(target)).clamp_min(_PSNR_MIN_MSE)
    return 10.0 * torch.log10(err)


# --- field losses --------------------------------------------------------------------------------


def vector_distance(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean end-point distance of two fields (atlalign's ``vector_distance``), per sample.

        loss = mean over pixels of sqrt(Σ_c (pred_c - target_c)² + 1e-3)

    Args:
        pred: fields (B, nd, *S) in pixels.
        target: fields of the same shape.

    Returns:
        (B,) loss in pixels; sqrt(1e-3) ≈ 0.032 for a perfect prediction.
    """
    _check_fields(pred, target, "vector_distance")
    diff = _float(pred) - _float(target)
    return torch.sqrt((diff * diff).sum(1) + _VD_EPS).flatten(1).mean(1)


def vdclip(pred: torch.Tensor, target: torch.Tensor, threshold: float = 20.0, power: float = 2.0) -> torch.Tensor:
    """The clipped vector distance (atlalign's ``VDClipper``), per sample.

        loss = (vector_distance / threshold) ** power

    With power > 1 a distance under ``threshold`` pixels costs little and one above it a lot.

    Raises:
        ConfigError: ``threshold`` or ``power`` is not > 0.
    """
    if not threshold > 0 or not power > 0:
        raise ConfigError(f"loss vdclip: config.threshold and config.power must be > 0; found {threshold!r}, {power!r}")
    return (vector_distance(pred, target) / threshold) ** power


def vdclip2(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """(vector_distance / 20) ** 2; see :func:`vdclip`."""
    return vdclip(pred, target, threshold=20.0, power=2.0)


def vdclip3(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """(vector_distance / 20) ** 3; see :func:`vdclip`."""
    return vdclip(pred, target, threshold=20.0, power=3.0)


def grad(pred: torch.Tensor, target: torch.Tensor | None = None) -> torch.Tensor:
    """Smoothness of the predicted field (voxelmorph's ``Grad('l2')``); ``target`` is ignored.

        loss = Σ_axes mean over channels and pixels of (Δ(p + e_axis) - Δ(p))²

    (forward differences along every spatial axis; voxelmorph divides the sum by nd).

    Returns:
        (B,) loss, 0 for a constant field (a translation).
    """
    _check_fields(pred, None, "grad")
    f = _float(pred)
    return sum(torch.diff(f, dim=axis).pow(2).flatten(1).mean(1) for axis in range(2, f.ndim))


def jacobian(pred: torch.Tensor, target: torch.Tensor | None = None) -> torch.Tensor:
    """A differentiable fold penalty of the predicted field; ``target`` is ignored.

        loss = mean over pixels of relu(-det(I + ∇Δ))

    (central differences, as :func:`deepscope.registration.ops.jacobian_determinant`). atlalign's
    ``jacobian`` loss counts the pixels with det J <= 0, which has no gradient; that fraction is the
    ``fold_fraction`` metric (:mod:`deepscope.registration.metrics`). This penalty is 0 when nothing folds.

    Returns:
        (B,) loss >= 0.
    """
    _check_fields(pred, None, "jacobian")
    return F.relu(-jacobian_determinant(_float(pred))).flatten(1).mean(1)


def dvf2img(pred: torch.Tensor, target: torch.Tensor, loss: str | Callable[..., torch.Tensor] = "ncc_9",
            scale: float = 10.0) -> torch.Tensor:
    """An image loss on the channels of two fields (atlalign's ``DVF2IMG``), per sample.

        loss = mean over channels c of image_loss(pred[:, c] / scale, target[:, c] / scale)

    each channel (Δx, Δy, Δz) scored as a one-channel image.

    Args:
        pred: fields (B, nd, *S) in pixels.
        target: fields of the same shape.
        loss: the name of an image loss of the registry (ncc_9, mse, ssim, ...) or a per-sample loss function.
        scale: the displacement that maps to 1 in the image.

    Raises:
        ConfigError: unknown loss name, or ``scale`` not > 0.
    """
    if not scale > 0:
        raise ConfigError(f"loss dvf2img: config.scale must be > 0; found {scale!r}")
    fn = loss if callable(loss) else _image_loss(loss, "loss dvf2img: config.loss")
    _check_fields(pred, target, "dvf2img")
    per_channel = [fn(pred[:, c:c + 1] / scale, target[:, c:c + 1] / scale) for c in range(pred.shape[1])]
    return torch.stack(per_channel, 0).mean(0)


def _image_loss(name: str, path: str) -> Callable[..., torch.Tensor]:
    """A regression loss of the registry that compares images (not a field loss), by name or alias."""
    from deepscope.components import LOSSES

    options = [n for n in LOSSES.names() if LOSSES.entry(n).meta.get("task") == "regression"
               and LOSSES.entry(n).meta.get("registration") != "field"
               and not LOSSES.entry(n).meta.get("required_config")]
    canonical = LOSSES.canonical(name) if name in LOSSES else name
    if canonical not in options:
        raise ConfigError(f"{path}: unknown image loss '{name}'{did_you_mean(name, options)} "
                          f"(available: {', '.join(options)})")
    return LOSSES.get(canonical)


# --- perceptual loss -----------------------------------------------------------------------------


class _Stop(Exception):
    """Raised by the last hooked layer so the rest of the net never runs."""


_NETS: dict[tuple[str, str], tuple[nn.Module, str, int, int, Any]] = {}


def _run_net(path: str | Path, device: torch.device) -> tuple[nn.Module, str, int, int, Any]:
    """(frozen net, first image name, its channels, its spatial dims, the run's InputSpec), loaded once
    per device."""
    p = Path(path).expanduser().resolve()
    key = (str(p), str(device))
    if key not in _NETS:
        from deepscope.training.experiment import _load_run

        if p.is_file():  # <run>/checkpoints/<name>.ckpt
            run_dir, checkpoint = p.parent.parent, p
        else:
            run_dir, checkpoint = p, None
        try:
            loaded = _load_run(run_dir, checkpoint)
        except CheckpointError as err:
            raise DataError(f"loss perceptual: config.run '{path}' holds no deepscope run; give a run folder or "
                            f"a checkpoint <run>/checkpoints/*.ckpt ({err})") from err
        if not loaded.spec.images:
            raise DataError(f"loss perceptual: the run '{run_dir}' takes no images")
        name, image = next(iter(loaded.spec.images.items()))
        net = loaded.net.to(device).eval()
        for param in net.parameters():
            param.requires_grad_(False)
        _NETS[key] = (net, name, image.channels, image.spatial_dims, loaded.spec)
    return _NETS[key]


def perceptual(pred: torch.Tensor, target: torch.Tensor, run: str | Path = "", layers: int = 3,
               eps: float = 1e-10) -> torch.Tensor:
    """An LPIPS-style distance on the features of a trained deepscope net (Zhang et al. 2018), per sample.

    The run's net (frozen, eval mode) sees pred and target as its first image input; the outputs f^l
    (B, K_l, *S_l) of its first ``layers`` convolutions (in module order) are normalised to unit length
    along the channels, f̂ = f / (|f|_K + eps), and

        loss = Σ_l mean over channels and pixels of (f̂^l(pred) - f̂^l(target))²

    The forward stops at the last of those layers, so the net's later (dense) layers never run and the
    images may have any spatial size the convolutions accept. No weights are downloaded: the features
    are those of a net you trained. The net is loaded once per (path, device). The images go in as they
    are (the run's saved standardization is not applied); a run that also takes scalars or tracks gets
    zeros for them, and a run with several images gets only its first.

    Args:
        pred: images (B, C, *S); one channel is repeated to the run's image channels.
        target: images of the same shape.
        run: a deepscope run folder, or a checkpoint file in one (``<run>/checkpoints/*.ckpt``; default:
            the run's evaluation checkpoint).
        layers: how many convolutions to compare, >= 1.

    Returns:
        (B,) loss >= 0, 0 for identical images.

    Raises:
        ConfigError: ``run`` empty or ``layers`` not a positive integer.
        DataError: ``run`` holds no run, its net has fewer convolutions, or its image has another number
            of spatial dims or channels.
    """
    if not run:
        raise ConfigError("loss perceptual: config.run must name a deepscope run folder or checkpoint; found none")
    if isinstance(layers, bool) or not isinstance(layers, int) or layers < 1:
        raise ConfigError(f"loss perceptual: config.layers must be an integer >= 1; found {layers!r}")
    _check_pair(pred, target, "perceptual")
    net, name, channels, nd, spec = _run_net(run, pred.device)
    if pred.ndim - 2 != nd:
        raise DataError(f"loss perceptual: the run '{run}' takes {nd}D images ('{name}'); "
                        f"found {pred.ndim - 2}D images of shape {tuple(pred.shape)}")
    x = torch.cat([pred, target], 0)  # one forward for both: eval-mode layers treat samples apart
    if x.shape[1] != channels:
        if x.shape[1] != 1:
            raise DataError(f"loss perceptual: the run '{run}' takes {channels}-channel images ('{name}'); "
                            f"found {x.shape[1]} channels")
        x = x.expand(-1, channels, *x.shape[2:])
    convs = [m for m in net.modules() if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d))]
    if len(convs) < layers:
        raise DataError(f"loss perceptual: config.layers is {layers} but the net of run '{run}' has "
                        f"{len(convs)} convolutions")
    features: list[torch.Tensor] = []

    def hook(module: nn.Module, args: Any, output: torch.Tensor) -> None:
        features.append(output)
        if len(features) == layers:  # counted, not matched: robust to a net that runs its modules out of order
            raise _Stop

    dtype = next(net.parameters()).dtype
    inputs: dict[str, Any] = {"images": {name: x.to(dtype)}}
    # a net that also takes scalars or tracks runs those submodels first: they get zeros
    if spec.scalars:
        inputs["scalars"] = x.new_zeros(len(x), spec.scalars, dtype=dtype)
    if spec.tracks:
        inputs["tracks"] = x.new_zeros(len(x), *spec.tracks, dtype=dtype)
    handles = [m.register_forward_hook(hook) for m in convs[:layers]]
    try:
        net(**inputs)
    except _Stop:
        pass
    finally:
        for h in handles:
            h.remove()
    if len(features) < layers:
        raise DataError(f"loss perceptual: only {len(features)} of the first {layers} convolutions of run "
                        f"'{run}' ran on its image '{name}'")
    total = pred.new_zeros(len(pred), dtype=torch.promote_types(pred.dtype, torch.float32))
    for f in features:
        f = f.float()
        f = f / (f.norm(dim=1, keepdim=True) + eps)
        a, b = f[: len(pred)], f[len(pred):]
        total = total + (a - b).pow(2).flatten(1).mean(1)
    return total
