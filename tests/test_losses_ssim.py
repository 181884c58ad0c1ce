"""The SSIM loss against the numpy SSIM metric (and scikit-image), and the weighted loss sum."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from deepscope import losses
from deepscope import metrics as M
from deepscope.components import LOSSES
from deepscope.config.common import Component
from deepscope.errors import ConfigError, DataError
from deepscope.losses import make_loss, make_weighted_loss

RNG = np.random.default_rng(0)
SHAPES = {2: (3, 2, 12, 11), 3: (2, 2, 9, 10, 8)}


def _pair(shape, scale=0.4):
    t = RNG.normal(size=shape)
    return t + scale * RNG.normal(size=shape), t


def _t(x, dtype=torch.float64):
    return torch.tensor(x, dtype=dtype)


@pytest.mark.parametrize("spatial_dims", [2, 3])
@pytest.mark.parametrize("win_size, sigma", [(7, 1.5), (5, 1.0), (11, 1.5)])
def test_loss_is_one_minus_the_metric_per_sample(spatial_dims, win_size, sigma):
    p, t = _pair(SHAPES[spatial_dims])
    out = losses.ssim(_t(p), _t(t), win_size=win_size, sigma=sigma)
    assert out.shape == (len(p),)
    ref = [1 - M.ssim(p[i:i + 1], t[i:i + 1], win_size=win_size, sigma=sigma) for i in range(len(p))]
    np.testing.assert_allclose(out.numpy(), ref, rtol=1e-10)


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_identical_inputs_have_zero_loss(spatial_dims):
    t = _t(RNG.normal(size=SHAPES[spatial_dims]))
    np.testing.assert_allclose(losses.ssim(t, t.clone()).numpy(), 0.0, atol=1e-12)


@pytest.mark.parametrize("shape", [(2, 1, 4, 12), (2, 1, 4, 9, 10), (2, 1, 1, 8, 8)], ids=["2d", "3d", "depth_1"])
def test_window_shrinks_on_small_dims(shape):
    p, t = _pair(shape)
    ref = [1 - M.ssim(p[i:i + 1], t[i:i + 1]) for i in range(2)]
    np.testing.assert_allclose(losses.ssim(_t(p), _t(t)).numpy(), ref, rtol=1e-10)


def test_shrunk_window_against_skimage():
    skmetrics = pytest.importorskip("skimage.metrics")
    p, t = _pair((1, 1, 4, 4))
    # every dim 4 -> 3 taps; scikit-image's Gaussian of sigma 0.4 has 3 taps (int(3.5 * 0.4 + 0.5) = 1 a side)
    ref = skmetrics.structural_similarity(t[0, 0], p[0, 0], gaussian_weights=True, sigma=0.4,
                                          use_sample_covariance=False, data_range=np.ptp(t))
    assert float(losses.ssim(_t(p), _t(t), sigma=0.4)[0]) == pytest.approx(1 - ref, rel=1e-10)


def test_data_range_defaults_per_sample_and_falls_back():
    p, t = _pair((2, 1, 8, 8))
    t[1] = 3.0  # constant target: range from max |t|
    out = losses.ssim(_t(p), _t(t))
    by_range = losses.ssim(_t(p[:1]), _t(t[:1]), data_range=float(np.ptp(t[0])))
    np.testing.assert_allclose(out[0].item(), by_range[0].item())
    np.testing.assert_allclose(out[1].item(), losses.ssim(_t(p[1:]), _t(t[1:]), data_range=3.0)[0].item())
    zero = losses.ssim(_t(p[:1]), torch.zeros(1, 1, 8, 8, dtype=torch.float64))  # all zero: range 1
    assert torch.isfinite(zero).all()


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_gradients_are_finite_in_float32(spatial_dims):
    p, t = _pair(SHAPES[spatial_dims])
    pred = _t(p, torch.float32).requires_grad_(True)
    out = losses.ssim(pred, _t(t, torch.float32))
    assert out.dtype == torch.float32
    out.sum().backward()
    assert torch.isfinite(pred.grad).all() and pred.grad.abs().sum() > 0


def test_gradcheck():
    p, t = _pair((1, 1, 6, 7))
    pred = _t(p).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda x: losses.ssim(x, _t(t), win_size=5), (pred,))


def test_computed_in_float32_under_autocast():
    p, t = _pair((2, 1, 10, 10))
    ref = losses.ssim(_t(p, torch.float32), _t(t, torch.float32))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = losses.ssim(_t(p, torch.bfloat16), _t(t, torch.bfloat16))
    assert out.dtype == torch.float32
    # only the bfloat16 rounding of the inputs remains
    np.testing.assert_allclose(out.numpy(), ref.numpy(), atol=0.02)


def test_bad_options_and_shapes():
    x = torch.zeros(1, 1, 8, 8)
    with pytest.raises(ConfigError, match="win_size must be an odd integer"):
        losses.ssim(x, x, win_size=6)
    with pytest.raises(ConfigError, match="sigma must be > 0"):
        losses.ssim(x, x, sigma=0.0)
    with pytest.raises(DataError, match=r"\(B, C, H, W\) or \(B, C, D, H, W\)"):
        losses.ssim(torch.zeros(2, 8), torch.zeros(2, 8))
    with pytest.raises(DataError, match="one shape"):
        losses.ssim(x, torch.zeros(1, 1, 8, 9))


def test_registered_and_built_with_config():
    assert LOSSES.get("SSIMLoss") is losses.ssim
    p, t = _pair((2, 1, 9, 9))
    fn = make_loss(Component(class_name="ssim", config={"win_size": 5, "sigma": 1.0}))
    np.testing.assert_allclose(fn(_t(p), _t(t)).numpy(), losses.ssim(_t(p), _t(t), win_size=5, sigma=1.0).numpy())
    with pytest.raises(ConfigError, match=r"did you mean 'win_size'"):
        make_loss(Component(class_name="ssim", config={"win_siz": 5}))


# --- make_weighted_loss ----------------------------------------------------------------------------


def test_weighted_loss_is_the_weighted_sum():
    p, t = _t(RNG.normal(size=(3, 1, 8, 8))), _t(RNG.normal(size=(3, 1, 8, 8)))
    fn = make_weighted_loss([(Component(class_name="l1"), 0.5),
                             (Component(class_name="ssim", config={"win_size": 5}), 2.0)])
    ref = 0.5 * losses.mae(p, t) + 2.0 * losses.ssim(p, t, win_size=5)
    out = fn(p, t)
    assert out.shape == (3,)
    np.testing.assert_allclose(out.numpy(), ref.numpy(), rtol=1e-12)
    one = make_weighted_loss([(Component(class_name="mse"), 3.0)])
    np.testing.assert_allclose(one(p, t).numpy(), 3.0 * losses.mse(p, t).numpy(), rtol=1e-12)


def test_weighted_loss_errors_name_the_term():
    with pytest.raises(ConfigError, match="train.loss: found no loss terms"):
        make_weighted_loss([])
    with pytest.raises(ConfigError, match=r"train.loss\[1\].weight: found -1.0"):
        make_weighted_loss([(Component(class_name="mse"), 1.0), (Component(class_name="ssim"), -1.0)])
    with pytest.raises(ConfigError, match=r"train.loss\[1\].config.delt.*did you mean 'delta'"):
        make_weighted_loss([(Component(class_name="mse"), 1.0),
                            (Component(class_name="huber", config={"delt": 1.0}), 1.0)])
