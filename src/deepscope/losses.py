"""Loss functions. Each returns one loss per sample, shape (B,), so sample weights apply exactly.

Names, aliases and what output each expects (values, logits or probabilities) are declared in
:mod:`deepscope.components`. Keras' definitions are followed where the name is Keras' (``mape`` is
in percent, ``categorical_crossentropy`` takes probabilities clipped at 1e-7). ``ssim`` follows
scikit-image's ``structural_similarity`` with Gaussian weights (see :func:`ssim`).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

from deepscope.components import LOSSES
from deepscope.config.common import Component
from deepscope.errors import ConfigError, DataError
from deepscope.registry import check_kwargs

__all__ = ["make_loss", "make_weighted_loss"]

_EPS = 1e-7


def _per_sample(x: torch.Tensor) -> torch.Tensor:
    return x.reshape(x.shape[0], -1).mean(1) if x.ndim > 1 else x


def mse(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return _per_sample((pred - target) ** 2)


def mae(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return _per_sample((pred - target).abs())


def huber(pred: torch.Tensor, target: torch.Tensor, delta: float = 1.0) -> torch.Tensor:
    return _per_sample(F.huber_loss(pred, target, reduction="none", delta=delta))


def logcosh(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    x = pred - target  # log(cosh(x)) = x + softplus(-2x) - log 2, stable for large |x|
    return _per_sample(x + F.softplus(-2.0 * x) - math.log(2.0))


def mape(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return _per_sample(100.0 * (pred - target).abs() / target.abs().clamp_min(_EPS))


def msle(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return _per_sample((torch.log1p(pred.clamp_min(0.0)) - torch.log1p(target.clamp_min(0.0))) ** 2)


def poisson(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return _per_sample(pred - target * torch.log(pred + _EPS))


def bce(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    target = target.to(pred.dtype)  # integer 0/1 labels (the cube_hdf5 source) are probabilities too
    p = pred.clamp(_EPS, 1.0 - _EPS)
    return _per_sample(-(target * torch.log(p) + (1.0 - target) * torch.log(1.0 - p)))


def bce_with_logits(pred: torch.Tensor, target: torch.Tensor, pos_weight: float | None = None) -> torch.Tensor:
    w = None if pos_weight is None else torch.as_tensor(pos_weight, dtype=pred.dtype, device=pred.device)
    target = target.to(pred.dtype)  # integer 0/1 labels (the cube_hdf5 source) are probabilities too
    return _per_sample(F.binary_cross_entropy_with_logits(pred, target, reduction="none", pos_weight=w))


def cross_entropy(pred: torch.Tensor, target: torch.Tensor, label_smoothing: float = 0.0) -> torch.Tensor:
    """Softmax cross entropy on logits (B, K); targets are labels (B,) or probabilities (B, K)."""
    return F.cross_entropy(pred, target, reduction="none", label_smoothing=label_smoothing)


def softmax_multi_hot(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Multi-label classification with one softmax over the labels (Mahajan et al. 2018, "Exploring the
    limits of weakly supervised pretraining"): the cross entropy between the softmax of the logits and
    the multi-hot target divided by its sum, ``-sum_j (y_j / sum_k y_k) log softmax(z)_j``.

    Unlike a sigmoid per label (:func:`bce_with_logits`), the labels compete for one unit of
    probability: a sample with m labels is fit best by 1/m on each of them. Soft targets in [0, 1]
    are normalised the same way.

    Args:
        pred: logits (B, K), one per label.
        target: multi-hot targets (B, K), 0/1 (or soft, in [0, 1]).

    Returns:
        (B,) loss. A sample with an all-zero target has no label to put probability on: its loss is 0
        and it gives no gradient (it still counts in the batch mean's denominator).
    """
    target = target.to(pred.dtype)
    total = target.sum(-1, keepdim=True)  # (B, 1)
    share = target / torch.where(total > 0, total, torch.ones_like(total))  # (B, K); all-zero rows stay 0
    return (share * -F.log_softmax(pred, dim=-1)).sum(-1)


def margin(pred: torch.Tensor, target: torch.Tensor, m_plus: float = 0.9, m_minus: float = 0.1,
           lam: float = 0.5) -> torch.Tensor:
    """The capsule margin loss on class-capsule lengths (B, K): ``T_k max(0, m+ - |v_k|)^2 +
    lam (1 - T_k) max(0, |v_k| - m-)^2`` summed over the classes; labels (B,) are one-hot encoded."""
    if target.ndim == 1:
        target = F.one_hot(target.long(), pred.shape[-1])
    target = target.to(pred.dtype)
    present = target * F.relu(m_plus - pred) ** 2
    absent = lam * (1.0 - target) * F.relu(pred - m_minus) ** 2
    return (present + absent).sum(-1)


def categorical_crossentropy(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Keras' categorical cross entropy on probabilities (B, K); labels (B,) are one-hot encoded."""
    if target.ndim == 1:
        target = F.one_hot(target.long(), pred.shape[-1]).to(pred.dtype)
    p = pred / pred.sum(-1, keepdim=True)
    return -(target * torch.log(p.clamp(_EPS, 1.0 - _EPS))).sum(-1)


def _gaussian_window(size: int, sigma: float, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    x = torch.arange(size, dtype=dtype, device=device) - (size - 1) / 2
    w = torch.exp(-0.5 * (x / sigma) ** 2)
    return w / w.sum()


def _window_size(dim: int, win_size: int) -> int:
    # a dim smaller than the window gets the largest odd window that fits (scikit-image refuses instead)
    return min(win_size, dim if dim % 2 else dim - 1)


_CONV = {2: F.conv2d, 3: F.conv3d}


def _gaussian_valid(x: torch.Tensor, win_size: int, sigma: float) -> torch.Tensor:
    """Separable Gaussian filter over the spatial dims of (N, 1, *S), without padding: (N, 1, *S')."""
    conv = _CONV[x.ndim - 2]
    for axis, dim in enumerate(x.shape[2:]):
        size = _window_size(dim, win_size)
        if size == 1:
            continue
        shape = [1, 1] + [1] * (x.ndim - 2)
        shape[2 + axis] = size
        x = conv(x, _gaussian_window(size, sigma, x.dtype, x.device).reshape(shape))
    return x


def ssim(
    pred: torch.Tensor,
    target: torch.Tensor,
    win_size: int = 7,
    sigma: float = 1.5,
    k1: float = 0.01,
    k2: float = 0.03,
    data_range: float | None = None,
) -> torch.Tensor:
    """1 - SSIM per sample, for images (B, C, H, W) or cubes (B, C, D, H, W).

    SSIM is Wang et al. (2004) as scikit-image computes it with ``gaussian_weights=True,
    use_sample_covariance=False``: local means, variances and covariance under a normalised Gaussian
    window (``sigma`` pixels, ``win_size`` taps per dim, applied separably), the SSIM map kept only
    where the window fits inside the image (scikit-image's crop of ``(win_size - 1) // 2``), then
    averaged over channels and pixels. scikit-image's Gaussian has 11 taps for sigma 1.5 (its
    ``truncate=3.5``): ``win_size=11`` reproduces it; the default 7 cuts the Gaussian at 2 sigma.

    A spatial dim smaller than ``win_size`` gets the largest odd window that fits it (a dim of 4
    gets 3 taps, a dim of 1 none). Computed in float32 (float64 inputs stay float64), also under
    autocast.

    Args:
        pred: predictions (B, C, *S), S two or three spatial dims.
        target: targets of the same shape.
        win_size: odd number of window taps per spatial dim.
        sigma: standard deviation of the Gaussian window in pixels.
        k1: stabiliser of the luminance term, C1 = (k1 * data_range)^2.
        k2: stabiliser of the contrast-structure term, C2 = (k2 * data_range)^2.
        data_range: value range of the data. ``None``: per sample, the target's max - min; where that
            is 0, its max |value|; where that is 0 too, 1.

    Returns:
        (B,) loss, 0 where pred equals target.

    Raises:
        ConfigError: ``win_size`` is not a positive odd integer, or ``sigma`` / ``data_range`` is not > 0.
        DataError: the shapes differ or are not (B, C, H, W) / (B, C, D, H, W).
    """
    if isinstance(win_size, bool) or not isinstance(win_size, int) or win_size < 1 or win_size % 2 == 0:
        raise ConfigError(f"loss ssim: config.win_size must be an odd integer >= 1; found {win_size!r}")
    if not sigma > 0:
        raise ConfigError(f"loss ssim: config.sigma must be > 0; found {sigma!r}")
    if data_range is not None and not data_range > 0:
        raise ConfigError(f"loss ssim: config.data_range must be > 0 or null; found {data_range!r}")
    if pred.shape != target.shape or pred.ndim - 2 not in _CONV:
        raise DataError(
            f"loss ssim: pred {tuple(pred.shape)} and target {tuple(target.shape)} must have one shape, "
            "(B, C, H, W) or (B, C, D, H, W)"
        )
    dtype = torch.promote_types(pred.dtype, torch.float32)
    with torch.autocast(device_type=pred.device.type, enabled=False):
        x, y = pred.to(dtype), target.to(dtype)
        b, c = x.shape[:2]
        if data_range is None:
            flat = y.detach().reshape(b, -1)
            r = flat.amax(1) - flat.amin(1)
            r = torch.where(r > 0, r, flat.abs().amax(1))
            r = torch.where(r > 0, r, torch.ones_like(r))
        else:
            r = torch.full((b,), float(data_range), dtype=dtype, device=x.device)
        c1 = (k1 * r) ** 2
        c2 = (k2 * r) ** 2
        maps = torch.stack([x, y, x * x, y * y, x * y])  # (5, B, C, *S)
        mu_x, mu_y, m_xx, m_yy, m_xy = _gaussian_valid(
            maps.reshape(-1, 1, *x.shape[2:]), win_size, sigma
        ).reshape(5, b, c, -1)  # each (B, C, P), P pixels where the window fits
        var_x = m_xx - mu_x ** 2
        var_y = m_yy - mu_y ** 2
        cov = m_xy - mu_x * mu_y
        c1, c2 = c1[:, None, None], c2[:, None, None]
        s = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x ** 2 + mu_y ** 2 + c1) * (var_x + var_y + c2))
        return 1.0 - s.mean((1, 2))


def make_loss(spec: Component, path: str = "train.loss") -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The per-sample loss function for a spec, with its config bound."""
    fn = LOSSES.get(spec.class_name)
    check_kwargs(fn, spec.config, f"{path}.config", ignore=("pred", "target"))
    if not spec.config:
        return fn
    kwargs = dict(spec.config)
    return lambda pred, target: fn(pred, target, **kwargs)


def make_weighted_loss(
    terms: list[tuple[Component, float]], path: str = "train.loss"
) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The per-sample weighted sum of several losses, each built with :func:`make_loss`.

    Args:
        terms: (spec, weight) pairs; every weight finite and >= 0.
        path: dotted config path of the list; term ``i`` is reported as ``{path}[i]``.

    Returns:
        ``fn(pred, target) -> (B,)`` = sum of weight * term(pred, target).

    Raises:
        ConfigError: no terms, a weight that is negative or not finite, or an unknown term option.
    """
    if not terms:
        raise ConfigError(f"{path}: found no loss terms; expected at least one (spec, weight) pair")
    built = []
    for i, (spec, weight) in enumerate(terms):
        if not math.isfinite(weight) or weight < 0:
            raise ConfigError(f"{path}[{i}].weight: found {weight!r}; expected a finite number >= 0")
        built.append((make_loss(spec, f"{path}[{i}]"), float(weight)))

    def weighted(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        total = built[0][1] * built[0][0](pred, target)
        for fn, weight in built[1:]:
            total = total + weight * fn(pred, target)
        return total

    return weighted
