"""The displacement-field operators of ``deepscope.registration.ops`` against independent references:
``scipy.ndimage.map_coordinates``, MONAI's ``Warp``, numpy formulas and hand computations.

Convention under test (SEED-FACTS §5): fields (B, nd, *spatial) in pixels, channel 0 = Δx (the last
axis), backward warp out(p) = img(p + Δ(p)), zero outside.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from scipy import ndimage

from deepscope.registration import ops

SHAPES = {2: (12, 17), 3: (6, 9, 11)}


def _smooth_field(shape: tuple[int, ...], amplitude: float, seed: int = 0, batch: int = 2) -> torch.Tensor:
    """A smooth random field (batch, nd, *shape), float64, of about ``amplitude`` pixels."""
    rng = np.random.default_rng(seed)
    nd = len(shape)
    raw = rng.normal(size=(batch, nd, *shape))
    sigma = [0, 0] + [max(n / 6, 1.0) for n in shape]
    smooth = ndimage.gaussian_filter(raw, sigma=sigma)
    smooth *= amplitude / np.abs(smooth).max()
    return torch.from_numpy(smooth)


def _coords(field: np.ndarray) -> list[np.ndarray]:
    """Array-order sampling coordinates [(z + Δz,) y + Δy, x + Δx] of one sample's field (nd, *spatial)."""
    nd = field.shape[0]
    mesh = np.meshgrid(*[np.arange(n, dtype=np.float64) for n in field.shape[1:]], indexing="ij")
    return [mesh[a] + field[nd - 1 - a] for a in range(nd)]  # array axis a <-> channel nd-1-a


def _scipy_warp(image: np.ndarray, field: np.ndarray, order: int) -> np.ndarray:
    """(B, C, *spatial) warped with scipy, zero padding as grid_sample's (``grid-constant``)."""
    out = np.empty(image.shape, dtype=np.float64)
    for b in range(image.shape[0]):
        coords = _coords(field[b])
        for c in range(image.shape[1]):
            out[b, c] = ndimage.map_coordinates(image[b, c].astype(np.float64), coords, order=order,
                                                mode="grid-constant", cval=0.0)
    return out


def _affine(nd: int, batch: int = 2, seed: int = 0) -> torch.Tensor:
    """Random, mildly non-identity affine maps (batch, nd, nd + 1), float64."""
    rng = np.random.default_rng(seed)
    theta = np.tile(np.eye(nd, nd + 1), (batch, 1, 1))
    theta[:, :, :nd] += rng.uniform(-0.08, 0.08, (batch, nd, nd))
    theta[:, :, nd] = rng.uniform(-1.5, 1.5, (batch, nd))
    return torch.from_numpy(theta)


def _interior(spatial: tuple[int, ...], margin: int) -> tuple[slice, ...]:
    return (slice(None),) + tuple(slice(margin, n - margin) for n in spatial)


# --- warp -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("nd", [2, 3])
@pytest.mark.parametrize("mode, order", [("bilinear", 1), ("nearest", 0)])
def test_warp_matches_scipy(nd, mode, order):
    spatial = SHAPES[nd]
    rng = np.random.default_rng(1)
    image = torch.from_numpy(rng.uniform(0, 1, (2, 2, *spatial)))
    # reaches past the border, so the zero padding is tested too
    field = _smooth_field(spatial, amplitude=4.0, seed=nd)
    out = ops.warp(image, field, mode=mode)
    expected = _scipy_warp(image.numpy(), field.numpy(), order)
    assert out.shape == image.shape and out.dtype == image.dtype
    np.testing.assert_allclose(out.numpy(), expected, atol=1e-10)
    assert (expected == 0).any(), "the field should send some pixels outside the image"


def test_warp_float32_close_to_scipy():
    spatial = SHAPES[2]
    image = torch.rand(1, 1, *spatial, generator=torch.Generator().manual_seed(0))
    field = _smooth_field(spatial, amplitude=3.0, batch=1)
    out = ops.warp(image, field.float())
    assert out.dtype == torch.float32
    expected = _scipy_warp(image.double().numpy(), field.numpy(), 1)
    np.testing.assert_allclose(out.numpy(), expected, atol=1e-5)


def test_warp_integer_shift_moves_image():
    image = torch.arange(5 * 7, dtype=torch.float64).reshape(1, 1, 5, 7)
    field = torch.zeros(1, 2, 5, 7, dtype=torch.float64)
    field[:, 0] = 2.0  # Δx = 2: out(x, y) = img(x + 2, y)
    out = ops.warp(image, field)
    np.testing.assert_allclose(out[0, 0, :, :5].numpy(), image[0, 0, :, 2:].numpy())
    assert (out[0, 0, :, 5:] == 0).all()
    field = torch.zeros(1, 2, 5, 7, dtype=torch.float64)
    field[:, 1] = -1.0  # Δy = -1: out(x, y) = img(x, y - 1)
    out = ops.warp(image, field)
    np.testing.assert_allclose(out[0, 0, 1:].numpy(), image[0, 0, :-1].numpy())
    assert (out[0, 0, 0] == 0).all()


@pytest.mark.parametrize("nd", [2, 3])
def test_warp_matches_monai(nd):
    from monai.networks.blocks import Warp

    spatial = SHAPES[nd]
    image = torch.rand(2, 3, *spatial, generator=torch.Generator().manual_seed(nd), dtype=torch.float64)
    field = _smooth_field(spatial, amplitude=4.0, seed=10 + nd)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Using PyTorch native grid_sample"
        monai_warp = Warp(mode="bilinear", padding_mode="zeros")
        expected = monai_warp(image, ops.to_array_order(field))
    np.testing.assert_allclose(ops.warp(image, field).numpy(), expected.numpy(), atol=1e-10)


def test_to_array_order_round_trip():
    field = _smooth_field(SHAPES[3], 1.0)
    flipped = ops.to_array_order(field)
    assert torch.equal(flipped[:, 0], field[:, 2]) and torch.equal(flipped[:, 2], field[:, 0])
    assert torch.equal(ops.to_array_order(flipped), field)


@pytest.mark.parametrize("nd", [2, 3])
@pytest.mark.parametrize("dtype", [torch.int64, torch.uint8, torch.int32])
def test_nearest_keeps_integer_labels(nd, dtype):
    spatial = SHAPES[nd]
    rng = np.random.default_rng(2)
    labels = torch.from_numpy(rng.integers(0, 200, (2, 1, *spatial))).to(dtype)
    field = _smooth_field(spatial, amplitude=3.0, seed=20 + nd)
    out = ops.warp(labels, field, mode="nearest")
    assert out.dtype == dtype
    expected = _scipy_warp(labels.numpy(), field.numpy(), 0)
    np.testing.assert_array_equal(out.numpy(), expected.astype(np.int64))
    assert set(np.unique(out.numpy())) <= set(np.unique(labels.numpy())) | {0}


# --- compose ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("nd", [2, 3])
def test_compose_equals_warping_twice_integer_inner(nd):
    """With an integer-valued inner field, p + inner(p) lands on pixels and the identity is exact for any
    image and any outer field."""
    spatial = SHAPES[nd]
    rng = np.random.default_rng(3)
    image = torch.from_numpy(rng.uniform(0, 1, (2, 1, *spatial)))
    outer = _smooth_field(spatial, amplitude=3.0, seed=30 + nd)
    inner = torch.from_numpy(rng.integers(-2, 3, (2, nd, *spatial)).astype(np.float64))
    # keep p + inner(p) at least one pixel inside the image
    coords = ops._pixel_grid(spatial, inner.device, inner.dtype).unsqueeze(0)
    sizes = torch.tensor(list(reversed(spatial)), dtype=inner.dtype).reshape(1, nd, *([1] * nd))
    inner = torch.clamp(coords + inner, torch.ones_like(sizes), sizes - 2) - coords
    twice = ops.warp(ops.warp(image, outer), inner)
    once = ops.warp(image, ops.compose(inner, outer))
    np.testing.assert_allclose(once.numpy(), twice.numpy(), atol=1e-10)


def test_compose_equals_warping_twice_smooth():
    """A real-valued inner field, an affine outer field and a linear ramp image: bilinear interpolation
    of the once-warped image is then exact, so the identity holds to rounding wherever every point
    involved stays inside."""
    spatial = (24, 31)
    h, w = spatial
    y, x = np.meshgrid(np.arange(h, dtype=np.float64), np.arange(w, dtype=np.float64), indexing="ij")
    image = torch.from_numpy((0.3 * x - 0.7 * y + 5.0)[None, None].repeat(2, 0))
    theta = torch.tensor([[[1.03, 0.02, -0.6], [-0.01, 0.97, 0.4]]] * 2, dtype=torch.float64)
    outer = ops.affine_to_field(theta, spatial)
    inner = _smooth_field(spatial, amplitude=1.5, seed=4)
    twice = ops.warp(ops.warp(image, outer), inner)
    once = ops.warp(image, ops.compose(inner, outer))
    inside = _interior(spatial, 4)
    np.testing.assert_allclose(once[inside].numpy(), twice[inside].numpy(), atol=1e-9)
    # and the composed field is inner(p) + outer(p + inner(p)) with outer's formula
    q = ops._pixel_grid(spatial, inner.device, inner.dtype).unsqueeze(0) + inner
    expected = inner + (torch.einsum("bij,bj...->bi...", theta[:, :, :2], q)
                        + theta[:, :, 2].reshape(2, 2, 1, 1) - q)
    np.testing.assert_allclose(ops.compose(inner, outer)[inside].numpy(), expected[inside].numpy(), atol=1e-9)


def test_compose_with_zero_is_identity():
    field = _smooth_field(SHAPES[2], 2.0)
    zero = torch.zeros_like(field)
    np.testing.assert_allclose(ops.compose(zero, field).numpy(), field.numpy(), atol=1e-12)
    np.testing.assert_allclose(ops.compose(field, zero).numpy(), field.numpy(), atol=1e-12)


# --- affine maps ------------------------------------------------------------------------------------


@pytest.mark.parametrize("nd", [2, 3])
def test_affine_to_field_matches_numpy(nd):
    spatial = SHAPES[nd]
    theta = _affine(nd)
    field = ops.affine_to_field(theta, spatial)
    assert field.shape == (2, nd, *spatial)
    mesh = np.meshgrid(*[np.arange(n, dtype=np.float64) for n in spatial], indexing="ij")
    p = np.stack(list(reversed(mesh)))  # (nd, *spatial), x first
    for b in range(2):
        a = theta[b].numpy()
        mapped = np.einsum("ij,j...->i...", a[:, :nd], p) + a[:, nd].reshape(nd, *([1] * nd))
        np.testing.assert_allclose(field[b].numpy(), mapped - p, atol=1e-10)


def test_affine_to_field_2d_explicit_pixel():
    theta = torch.tensor([[[1.1, 0.2, 3.0], [-0.3, 0.9, -1.0]]], dtype=torch.float64)
    field = ops.affine_to_field(theta, (5, 8))
    x, y = 6, 2  # column 6, row 2
    np.testing.assert_allclose(field[0, :, y, x].numpy(),
                               [1.1 * x + 0.2 * y + 3.0 - x, -0.3 * x + 0.9 * y - 1.0 - y])


@pytest.mark.parametrize("nd", [2, 3])
def test_identity_theta_gives_zero_field(nd):
    theta = ops.identity_theta(nd)
    assert theta.shape == (nd, nd + 1)
    field = ops.affine_to_field(theta.unsqueeze(0), SHAPES[nd])
    assert torch.count_nonzero(field) == 0
    if nd == 2:
        assert theta.flatten().tolist() == [1, 0, 0, 0, 1, 0]  # atlalign's head initialisation


def test_centered_affine_identity_and_centre():
    spatial = (9, 14)
    ident = ops.centered_affine_to_pixels(ops.identity_theta(2).unsqueeze(0).double(), spatial)
    np.testing.assert_allclose(ident[0].numpy(), np.eye(2, 3), atol=1e-12)
    c = math.radians(37.0)
    theta = torch.tensor([[[math.cos(c), -math.sin(c), 0.0], [math.sin(c), math.cos(c), 0.0]]], dtype=torch.float64)
    pix = ops.centered_affine_to_pixels(theta, spatial)[0].numpy()
    centre = np.array([(14 - 1) / 2, (9 - 1) / 2, 1.0])
    np.testing.assert_allclose(pix @ centre, centre[:2], atol=1e-12)


def test_centered_affine_quarter_turn_maps_corners_to_corners():
    """A quarter turn in normalised units u = (p - c) / h sends u = (-1, -1) to (1, -1): the top-left
    corner to the top-right one, whatever the aspect ratio (by hand: p = c + h * R u)."""
    h, w = 9, 14
    theta = torch.tensor([[[0.0, -1.0, 0.0], [1.0, 0.0, 0.0]]], dtype=torch.float64)
    pix = ops.centered_affine_to_pixels(theta, (h, w))[0].numpy()
    corners = {(0, 0): (w - 1, 0), (w - 1, 0): (w - 1, h - 1), (w - 1, h - 1): (0, h - 1), (0, h - 1): (0, 0)}
    for (x, y), target in corners.items():
        np.testing.assert_allclose(pix @ np.array([x, y, 1.0]), target, atol=1e-12)


def test_centered_affine_translation_and_scale():
    h, w = 9, 14
    # a translation of one normalised unit in x moves by the half width, (w - 1) / 2 pixels
    theta = torch.tensor([[[1.0, 0.0, 1.0], [0.0, 1.0, -0.5]]], dtype=torch.float64)
    pix = ops.centered_affine_to_pixels(theta, (h, w))[0].numpy()
    np.testing.assert_allclose(pix, [[1, 0, (w - 1) / 2], [0, 1, -0.5 * (h - 1) / 2]], atol=1e-12)
    # a scale by 2 about the centre
    theta = torch.tensor([[[2.0, 0.0, 0.0], [0.0, 2.0, 0.0]]], dtype=torch.float64)
    pix = ops.centered_affine_to_pixels(theta, (h, w))[0].numpy()
    c = np.array([(w - 1) / 2, (h - 1) / 2])
    np.testing.assert_allclose(pix[:, 2], c - 2 * c, atol=1e-12)


# --- inverse ----------------------------------------------------------------------------------------


def test_invert_smooth_field():
    spatial = (40, 52)
    field = _smooth_field(spatial, amplitude=2.5, seed=5)
    assert ops.fold_fraction(field).max() == 0
    inv = ops.invert_field(field, iterations=40)
    residual = ops.inverse_residual(field, inv)
    assert residual.shape == (2, *spatial)
    assert residual[_interior(spatial, 4)].max() < 1e-3
    # and warping by the field then its inverse gives the image back inside
    image = torch.from_numpy(ndimage.gaussian_filter(np.random.default_rng(6).uniform(size=(2, 1, *spatial)),
                                                     (0, 0, 2, 2)))
    back = ops.warp(ops.warp(image, field), inv)
    inside = (slice(None), slice(None)) + _interior(spatial, 6)[1:]
    np.testing.assert_allclose(back[inside].numpy(), image[inside].numpy(), atol=0.02)


@pytest.mark.parametrize("nd", [2, 3])
def test_invert_affine_field_is_inverse_matrix(nd):
    spatial = {2: (40, 52), 3: (14, 16, 18)}[nd]
    theta = _affine(nd, seed=7)
    theta[:, :, nd] *= 0.5
    field = ops.affine_to_field(theta, spatial)
    inv = ops.invert_field(field, iterations=60)
    a = theta[:, :, :nd]
    a_inv = torch.linalg.inv(a)
    theta_inv = torch.cat([a_inv, -(a_inv @ theta[:, :, nd:])], dim=2)
    expected = ops.affine_to_field(theta_inv, spatial)
    inside = _interior(spatial, 5)
    np.testing.assert_allclose(inv[inside].numpy(), expected[inside].numpy(), atol=1e-3)


# --- Jacobian and folds -----------------------------------------------------------------------------


def test_jacobian_determinant_matches_numpy_gradient():
    field = _smooth_field((15, 21), amplitude=3.0, seed=8)
    det = ops.jacobian_determinant(field)
    for b in range(2):
        dx, dy = field[b].numpy()
        ddx_dy, ddx_dx = np.gradient(dx)  # axis 0 = y (rows), axis 1 = x (columns)
        ddy_dy, ddy_dx = np.gradient(dy)
        expected = (1 + ddx_dx) * (1 + ddy_dy) - ddx_dy * ddy_dx
        np.testing.assert_allclose(det[b].numpy(), expected, atol=1e-12)


def test_jacobian_determinant_3d_matches_numpy_gradient():
    field = _smooth_field(SHAPES[3], amplitude=2.0, seed=9, batch=1)
    det = ops.jacobian_determinant(field)[0].numpy()
    f = field[0].numpy()
    # J[i, j] = δij + ∂Δ_i / ∂x_j with x_j the array axis nd - 1 - j
    jac = np.empty((*SHAPES[3], 3, 3))
    for i in range(3):
        grads = np.gradient(f[i])
        for j in range(3):
            jac[..., i, j] = grads[2 - j] + (i == j)
    np.testing.assert_allclose(det, np.linalg.det(jac), atol=1e-10)


@pytest.mark.parametrize("nd", [2, 3])
def test_jacobian_of_affine_field_is_det_a(nd):
    theta = _affine(nd, seed=11)
    det = ops.jacobian_determinant(ops.affine_to_field(theta, SHAPES[nd]))
    for b in range(2):
        expected = float(np.linalg.det(theta[b, :, :nd].numpy()))
        np.testing.assert_allclose(det[b].numpy(), np.full(SHAPES[nd], expected), atol=1e-10)


def test_fold_fraction_of_a_known_fold():
    """Δx = -2x on rows 8-15 (Δy = 0): det J = 1 + ∂Δx/∂x = -1 there and 1 elsewhere."""
    h, w = 32, 20
    field = torch.zeros(2, 2, h, w, dtype=torch.float64)
    field[0, 0, 8:16] = -2.0 * torch.arange(w, dtype=torch.float64)
    det = ops.jacobian_determinant(field)
    np.testing.assert_allclose(det[0, 8:16].numpy(), -1.0)
    np.testing.assert_allclose(det[0, :8].numpy(), 1.0)
    np.testing.assert_allclose(det[0, 16:].numpy(), 1.0)
    np.testing.assert_allclose(ops.fold_fraction(field).numpy(), [8 / h, 0.0])


def test_fold_fraction_counts_zero_determinant():
    field = torch.zeros(1, 2, 6, 6, dtype=torch.float64)
    field[0, 0] = -torch.arange(6, dtype=torch.float64)  # x collapses onto one column: det J = 0
    assert ops.fold_fraction(field).item() == 1.0


# --- bad input --------------------------------------------------------------------------------------


@pytest.mark.parametrize("call, message", [
    (lambda: ops.warp(torch.zeros(1, 1, 5, 6), torch.zeros(1, 3, 5, 6)), r"expected \(B, nd, \*spatial\)"),
    (lambda: ops.warp(torch.zeros(1, 1, 5, 6), torch.zeros(1, 2, 5, 7)), r"spatial size \(5, 7\) .*\(5, 6\)"),
    (lambda: ops.warp(torch.zeros(2, 1, 5, 6), torch.zeros(3, 2, 5, 6)), "batch sizes differ: 2 images, 3 fields"),
    (lambda: ops.warp(torch.zeros(1, 1, 5, 6), torch.zeros(1, 2, 5, 6), mode="bicubic"),
     "mode: expected one of bilinear, nearest; found 'bicubic'"),
    (lambda: ops.warp(torch.zeros(1, 1, 4, 5, 6), torch.zeros(1, 2, 4, 5, 6)), r"found shape \(1, 2, 4, 5, 6\)"),
    (lambda: ops.compose(torch.zeros(1, 2, 5, 6), torch.zeros(1, 2, 5, 5)), "spatial size"),
    (lambda: ops.affine_to_field(torch.zeros(1, 2, 2), (5, 6)),
     r"theta: expected \(B, 2, 3\) .*found shape \(1, 2, 2\)"),
    (lambda: ops.affine_to_field(torch.zeros(2, 3), (5, 6)), r"theta: expected \(B, 2, 3\)"),
    (lambda: ops.affine_to_field(torch.zeros(1, 2, 3), (4, 5, 6)), r"theta: expected \(B, 3, 4\) for 3D"),
    (lambda: ops.jacobian_determinant(torch.zeros(1, 1, 7)), "nd = 2 or 3"),
    (lambda: ops.fold_fraction(torch.zeros(2, 5, 6)), "found shape"),
    (lambda: ops.invert_field(torch.zeros(1, 3, 5, 6)), "found shape"),
], ids=["channels", "spatial", "batch", "mode", "nd-vs-channels", "compose-spatial", "theta-shape",
        "theta-unbatched", "theta-3d", "jacobian-1d", "fold-unbatched", "invert-channels"])
def test_bad_shapes_raise(call, message):
    with pytest.raises(ValueError, match=message):
        call()


# --- gradients --------------------------------------------------------------------------------------


@pytest.mark.parametrize("nd", [2, 3])
def test_warp_gradients_wrt_image_and_field(nd):
    spatial = {2: (4, 5), 3: (3, 3, 4)}[nd]
    gen = torch.Generator().manual_seed(12)
    image = torch.rand(1, 1, *spatial, generator=gen, dtype=torch.float64, requires_grad=True)
    # fractional parts away from 0 and 1: bilinear interpolation is smooth there
    whole = torch.randint(-1, 1, (1, nd, *spatial), generator=gen).double()
    frac = 0.2 + 0.6 * torch.rand(1, nd, *spatial, generator=gen, dtype=torch.float64)
    field = (whole + frac).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda i, f: ops.warp(i, f), (image, field), eps=1e-6, atol=1e-5)
    out = ops.warp(image, field).sum()
    gi, gf = torch.autograd.grad(out, (image, field))
    assert gi.abs().sum() > 0 and gf.abs().sum() > 0


def test_compose_and_affine_gradients():
    gen = torch.Generator().manual_seed(13)
    theta = (ops.identity_theta(2).double() + 0.05 * torch.rand(2, 3, generator=gen, dtype=torch.float64))
    theta = theta.unsqueeze(0).requires_grad_(True)
    inner = (0.2 + 0.6 * torch.rand(1, 2, 4, 5, generator=gen, dtype=torch.float64)).requires_grad_(True)
    assert torch.autograd.gradcheck(
        lambda t, i: ops.compose(i, ops.affine_to_field(ops.centered_affine_to_pixels(t, (4, 5)), (4, 5))),
        (theta, inner), eps=1e-6, atol=1e-5)


def test_warps_without_autograd_reuse_a_buffer_safely():
    """The no-grad path samples through a reused grid buffer: calls in a row, in and out of inference
    mode, give what a fresh grid gives."""
    gen = torch.Generator().manual_seed(3)
    images = torch.rand(2, 1, 12, 16, generator=gen)
    fields = [torch.randn(2, 2, 12, 16, generator=gen) * 2 for _ in range(3)]
    with torch.enable_grad():
        expected = [ops.warp(images, f.clone().requires_grad_(True)).detach() for f in fields]
    with torch.inference_mode():
        got = [ops.warp(images, f) for f in fields]
    with torch.no_grad():
        got_again = [ops.warp(images, f) for f in fields]
    for e, a, b in zip(expected, got, got_again):
        assert torch.equal(e, a) and torch.equal(e, b)


def test_a_grid_kept_for_the_backward_of_the_image_is_not_reused():
    """An image that needs gradients warped by a constant field (a frozen global net's): its backward
    reads the grid after later warps have run."""
    gen = torch.Generator().manual_seed(4)
    image = torch.rand(1, 1, 10, 12, generator=gen, dtype=torch.float64, requires_grad=True)
    field = torch.randn(1, 2, 10, 12, generator=gen, dtype=torch.float64)
    out = ops.warp(image, field)
    ops.warp(torch.rand(1, 1, 10, 12, dtype=torch.float64), torch.randn(1, 2, 10, 12, dtype=torch.float64))
    out.sum().backward()
    reference = image.detach().clone().requires_grad_(True)
    ops.warp(reference, field).sum().backward()
    assert torch.equal(image.grad, reference.grad)
