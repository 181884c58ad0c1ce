"""Differentiable operators on displacement fields, 2D and 3D, in atlalign's convention.

A displacement field (DVF) of a batch is a tensor (B, nd, *spatial) in **pixel units** whose channels
run along the axes in x-first order: channel 0 = Δx (along the last axis, the columns), channel 1 =
Δy (the rows), channel 2 = Δz (the depth, 3D only). Warping is backward:

    out(x, y) = img(x + Δx(x, y), y + Δy(x, y))

bilinear (trilinear in 3D) or nearest-neighbour, zero outside the image (SEED-FACTS §5).

Everything here is written on ``torch.nn.functional.grid_sample``. MONAI's ``Warp`` does the same
sampling but takes its fields with the channels in array-axis order (Δy first) and rebuilds and
renormalises its reference grid on every call; here the normalised identity grid is cached per shape
and device, so a warp costs one multiply-add on top of ``grid_sample`` (bench/registration.py).
:func:`to_array_order` is the one place the two conventions meet (the tests check :func:`warp`
against MONAI's ``Warp`` and against ``scipy.ndimage.map_coordinates``).
"""

from __future__ import annotations

import threading
from functools import lru_cache

import torch
import torch.nn.functional as F

__all__ = [
    "affine_to_field",
    "centered_affine_to_pixels",
    "compose",
    "fold_fraction",
    "identity_theta",
    "invert_field",
    "inverse_residual",
    "jacobian_determinant",
    "sample_field",
    "to_array_order",
    "warp",
]

MODES = ("bilinear", "nearest")


def _check_field(field: torch.Tensor, spatial: tuple[int, ...] | None = None, what: str = "field") -> int:
    nd = field.ndim - 2
    if nd not in (2, 3) or field.shape[1] != nd:
        raise ValueError(f"{what}: expected (B, nd, *spatial) with nd = 2 or 3 channels for as many spatial axes; "
                         f"found shape {tuple(field.shape)}")
    if spatial is not None and tuple(field.shape[2:]) != tuple(spatial):
        raise ValueError(f"{what}: spatial size {tuple(field.shape[2:])} does not match the image's {tuple(spatial)}")
    return nd


@lru_cache(maxsize=32)
def _grid(spatial: tuple[int, ...], device: torch.device, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """The identity sampling grid (1, nd, *spatial), channels first like a field, normalised to [-1, 1]
    (x first, align_corners), and the per-channel scale (1, nd, 1, ...) that turns a pixel displacement
    into a normalised one. Adding a field in its own layout and handing ``grid_sample`` a channels-last
    view is one contiguous pass (a strided ``movedim`` of the field first costs half a warp)."""
    nd = len(spatial)
    axes = [torch.linspace(-1.0, 1.0, n, device=device, dtype=dtype) if n > 1
            else torch.zeros(1, device=device, dtype=dtype) for n in spatial]
    mesh = torch.meshgrid(*axes, indexing="ij")  # array order: (z,) y, x
    grid = torch.stack(list(reversed(mesh)), dim=0).unsqueeze(0)
    scale = torch.tensor([2.0 / max(n - 1, 1) for n in reversed(spatial)], device=device, dtype=dtype)
    return grid, scale.reshape(1, nd, *([1] * nd))


_LOCAL = threading.local()


def _workspace(field: torch.Tensor) -> torch.Tensor:
    """A buffer of the field's shape for the sampling grid, kept per thread (the grid is read by
    ``grid_sample`` at once and never returned, so one buffer per shape serves every call)."""
    # a buffer made under inference_mode cannot be written outside it (and the other way round)
    key = (tuple(field.shape), field.device, field.dtype, torch.is_inference_mode_enabled())
    cache = getattr(_LOCAL, "buffers", None)
    if cache is None:
        cache = _LOCAL.buffers = {}
    buffer = cache.get(key)
    if buffer is None:
        if len(cache) >= 8:  # a few shapes at a time; drop the oldest
            cache.pop(next(iter(cache)))
        buffer = cache[key] = torch.empty(tuple(field.shape), device=field.device, dtype=field.dtype)
    return buffer


def _pixel_grid(spatial: tuple[int, ...], device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """Pixel coordinates (nd, *spatial), x first."""
    axes = [torch.arange(n, device=device, dtype=dtype) for n in spatial]
    mesh = torch.meshgrid(*axes, indexing="ij")
    return torch.stack(list(reversed(mesh)), dim=0)


def _sample(values: torch.Tensor, field: torch.Tensor, mode: str, padding: str) -> torch.Tensor:
    if mode not in MODES:
        raise ValueError(f"mode: expected one of {', '.join(MODES)}; found '{mode}'")
    _check_field(field, tuple(values.shape[2:]))
    if values.shape[0] != field.shape[0]:
        raise ValueError(f"batch sizes differ: {values.shape[0]} images, {field.shape[0]} fields")
    base, scale = _grid(tuple(int(s) for s in field.shape[2:]), field.device, field.dtype)
    if torch.is_grad_enabled() and (field.requires_grad or values.requires_grad):
        # autograd keeps the grid for the backward of either input: a grid of its own
        grid = torch.addcmul(base, field, scale).movedim(1, -1)
    else:  # no autograd: into a reused buffer (a fresh 10 MB one costs more in page faults than the add)
        grid = torch.addcmul(base, field, scale, out=_workspace(field)).movedim(1, -1)
    out = F.grid_sample(values.to(field.dtype), grid, mode=mode, padding_mode=padding, align_corners=True)
    if values.is_floating_point():
        return out.to(values.dtype)
    return out.round().to(values.dtype) if mode == "nearest" else out


def warp(image: torch.Tensor, field: torch.Tensor, mode: str = "bilinear") -> torch.Tensor:
    """``image`` (B, C, *spatial) warped backward by ``field`` (B, nd, *spatial): out(p) = image(p + field(p)).

    Args:
        mode: ``bilinear`` (images) or ``nearest`` (label images: an integer image comes back integer).

    Zero outside the image.
    """
    return _sample(image, field, mode, "zeros")


def sample_field(values: torch.Tensor, field: torch.Tensor) -> torch.Tensor:
    """A field (or any smooth map) ``values`` read at p + field(p), bilinear, the edge value outside
    (a smooth field continues past the border better than it drops to zero)."""
    return _sample(values, field, "bilinear", "border")


def compose(inner: torch.Tensor, outer: torch.Tensor) -> torch.Tensor:
    """The field of warping by ``outer`` first and then by ``inner``: Δ(p) = inner(p) + outer(p + inner(p)).

    ``warp(warp(img, outer), inner) == warp(img, compose(inner, outer))`` wherever p + inner(p) lies inside
    the image. A global-then-local model composes (local, global): the local field is predicted on the
    globally warped image.
    """
    return inner + sample_field(outer, inner)


def affine_to_field(theta: torch.Tensor, spatial: tuple[int, ...]) -> torch.Tensor:
    """The field of affine maps ``theta`` (B, nd, nd + 1) on homogeneous pixel coordinates (x first):
    Δ(p) = A·[p, 1] − p, (B, nd, *spatial). Identity: ``identity_theta``."""
    nd = len(spatial)
    if theta.ndim != 3 or tuple(theta.shape[1:]) != (nd, nd + 1):
        raise ValueError(f"theta: expected (B, {nd}, {nd + 1}) for {nd}D images; found shape {tuple(theta.shape)}")
    coords = _pixel_grid(tuple(spatial), theta.device, theta.dtype).reshape(nd, -1)  # (nd, P)
    mapped = theta[:, :, :nd] @ coords + theta[:, :, nd:]  # (B, nd, P)
    return (mapped - coords).reshape(theta.shape[0], nd, *spatial)


def identity_theta(nd: int = 2) -> torch.Tensor:
    """The identity affine map (nd, nd + 1): atlalign's head initialisation b = [1, 0, 0, 0, 1, 0] in 2D."""
    return torch.cat([torch.eye(nd), torch.zeros(nd, 1)], dim=1)


def centered_affine_to_pixels(theta: torch.Tensor, spatial: tuple[int, ...]) -> torch.Tensor:
    """An affine map acting on centred, normalised coordinates u = (p − c) / h (c the image centre, h its
    half-size per axis, x first) as the same map on pixel coordinates (for :func:`affine_to_field`).

    A regressor that predicts ``theta`` in these units sees a rotation about the centre as a rotation,
    whatever the image size; the identity is the same matrix in both.
    """
    nd = len(spatial)
    sizes = torch.tensor([float(n) for n in reversed(spatial)], device=theta.device, dtype=theta.dtype)
    centre, half = (sizes - 1) / 2, torch.clamp((sizes - 1) / 2, min=1.0)
    linear = theta[:, :, :nd] / half.reshape(1, 1, nd) * half.reshape(1, nd, 1)  # D⁻¹ M D
    shift = half.reshape(1, nd) * theta[:, :, nd] + centre - (linear @ centre.reshape(nd, 1)).squeeze(-1)
    return torch.cat([linear, shift.unsqueeze(-1)], dim=2)


def invert_field(field: torch.Tensor, iterations: int = 30) -> torch.Tensor:
    """The inverse of a field by fixed-point iteration: inv(p) = −field(p + inv(p)).

    Converges where the field is a contraction (|∇Δ| < 1: no folds); check with :func:`inverse_residual`.
    """
    _check_field(field)
    inv = -field
    for _ in range(int(iterations)):
        inv = -sample_field(field, inv)
    return inv


def inverse_residual(forward: torch.Tensor, inverse: torch.Tensor) -> torch.Tensor:
    """|inv(p) + fwd(p + inv(p))| per pixel (B, *spatial): zero for an exact inverse."""
    return (inverse + sample_field(forward, inverse)).norm(dim=1)


def jacobian_determinant(field: torch.Tensor) -> torch.Tensor:
    """det(I + ∇Δ) per pixel (B, *spatial), with central differences (one-sided at the edges, as
    ``numpy.gradient``). Negative or zero where the map folds."""
    nd = _check_field(field)
    # grads[i][j] = ∂Δ_i / ∂x_j, x first: x_j is the spatial axis nd - 1 - j of the (B, *spatial) channel
    dims = tuple(range(1, nd + 1))
    grads = [list(reversed(torch.gradient(field[:, i], dim=dims))) for i in range(nd)]
    if nd == 2:
        return (1 + grads[0][0]) * (1 + grads[1][1]) - grads[0][1] * grads[1][0]
    jac = torch.stack([torch.stack([grads[i][j] + (1.0 if i == j else 0.0) for j in range(nd)], -1)
                       for i in range(nd)], -2)
    return torch.linalg.det(jac)


def fold_fraction(field: torch.Tensor) -> torch.Tensor:
    """Fraction of pixels with det J <= 0, per sample (B,)."""
    det = jacobian_determinant(field)
    return (det <= 0).flatten(1).float().mean(1)


def to_array_order(field: torch.Tensor) -> torch.Tensor:
    """A field with its channels in array-axis order (Δy, Δx in 2D; Δz, Δy, Δx in 3D), as MONAI's
    ``Warp`` and ``DVF2DDF`` take them; the same function converts back."""
    return field.flip(1)
