"""Sliding-window inference: blended windows equal the full forward pass of convolutional predictors."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from deepscope.evaluation.sliding import needs_sliding_window, sliding_window_predict

# (image spatial size, window) per case; odd sizes on purpose
SIZES = {
    2: [((37, 29), (16, 12)), ((9, 40), (16, 16))],  # larger than the window; smaller along y only
    3: [((13, 21, 11), (8, 8, 8)), ((5, 19, 17), (8, 8, 8))],
}
CASES = [(dims, spatial, roi) for dims, cases in SIZES.items() for spatial, roi in cases]


def _conv(weight: torch.Tensor):
    """A predictor convolving with ``weight`` (C_out, C_in, *k), zero-padded to keep the size."""
    dims = weight.ndim - 2
    conv = getattr(F, f"conv{dims}d")
    return lambda x: conv(x, weight, padding=weight.shape[-1] // 2)


def _pointwise(dims: int, c_in: int = 2, c_out: int = 3):
    torch.manual_seed(0)
    return _conv(torch.randn((c_out, c_in) + (1,) * dims))


def _average(dims: int, c: int = 2):
    """A fixed 3x3(x3) average over every input channel, one output channel per input channel."""
    return _conv(torch.eye(c).reshape((c, c) + (1,) * dims) * torch.full((3,) * dims, 1 / 3**dims))


def _image(spatial, channels: int = 2, batch: int = 2) -> torch.Tensor:
    return torch.randn((batch, channels) + tuple(spatial), generator=torch.Generator().manual_seed(1))


def _window_rings(window: torch.Tensor) -> torch.Tensor:
    """One channel that is 1 on the outermost pixels of each window and 0 inside."""
    ring = torch.zeros((window.shape[0], 1) + tuple(window.shape[2:]))
    for axis in range(2, window.ndim):
        ring.index_fill_(axis, torch.tensor([0, window.shape[axis] - 1]), 1.0)
    return ring


@pytest.mark.parametrize("mode", ["gaussian", "constant"])
@pytest.mark.parametrize(("dims", "spatial", "roi"), CASES)
def test_pointwise_conv_equals_full_forward_everywhere(dims, spatial, roi, mode):
    net = _pointwise(dims, c_in=2, c_out=3)  # other output channels than input channels
    image = _image(spatial)
    out = sliding_window_predict(net, image, roi, overlap=0.5, mode=mode, sw_batch_size=3)
    assert out.shape == (2, 3) + spatial
    torch.testing.assert_close(out, net(image), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("mode", ["gaussian", "constant"])
@pytest.mark.parametrize(("dims", "spatial", "roi"), CASES)
def test_average_conv_equals_full_forward_away_from_window_borders(dims, spatial, roi, mode):
    net = _average(dims)
    image = _image(spatial)
    out = sliding_window_predict(net, image, roi, overlap=0.25, mode=mode)
    # where any window has its border the 3x3 neighbourhood was cut off by that window's padding
    rings = sliding_window_predict(_window_rings, image, roi, overlap=0.25, mode=mode)
    inside = (rings[:, 0] == 0).unsqueeze(1).expand_as(out)
    assert inside.float().mean() > 0.2  # the comparison covers a good part of the image
    torch.testing.assert_close(out[inside], net(image)[inside], atol=1e-5, rtol=1e-5)
    assert not torch.allclose(out, net(image), atol=1e-4)  # and the borders do differ: the test has teeth


@pytest.mark.parametrize(("dims", "spatial", "roi"), CASES)
def test_gaussian_blending_of_a_constant_is_the_constant(dims, spatial, roi):
    def constant(window):
        return torch.full((window.shape[0], 4) + tuple(window.shape[2:]), 3.5)

    out = sliding_window_predict(constant, _image(spatial, channels=1), roi, overlap=0.25, mode="gaussian")
    assert out.shape == (2, 4) + spatial
    torch.testing.assert_close(out, torch.full_like(out, 3.5))


@pytest.mark.parametrize("dims", [2, 3])
def test_window_equal_to_image_is_one_exact_pass(dims):
    spatial = (7, 10, 9)[-dims:]
    weight = torch.randn((3, 2) + (3,) * dims, generator=torch.Generator().manual_seed(2))
    conv = _conv(weight)
    calls = []

    def net(x):
        calls.append(tuple(x.shape))
        return torch.tanh(conv(x)) * 10

    image = _image(spatial)
    out = sliding_window_predict(net, image, spatial, overlap=0.5)
    assert calls == [tuple(image.shape)]
    assert torch.equal(out, net(image))


@pytest.mark.parametrize("dims", [2, 3])
def test_window_larger_than_image_pads_and_crops_back(dims):
    spatial, roi = (5, 7, 6)[-dims:], (8, 8, 9)[-dims:]
    net = _average(dims)
    seen = []

    def recorded(x):
        seen.append(tuple(x.shape[2:]))
        return net(x)

    image = _image(spatial)
    out = sliding_window_predict(recorded, image, roi)
    assert seen == [roi]  # the model sees windows of its size
    assert out.shape == image.shape
    # zero padding then cropping gives exactly the zero-padded convolution of the image itself
    torch.testing.assert_close(out, net(image), atol=1e-6, rtol=1e-6)


def test_needs_sliding_window():
    assert needs_sliding_window((64, 64, 64), (32, 32, 32))
    assert needs_sliding_window((16, 65), (32, 64))
    assert not needs_sliding_window((32, 32), (32, 32))
    assert not needs_sliding_window((8, 9, 10), (16, 16, 16))


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"roi_size": (8, 8, 8)}, "roi_size (8, 8, 8) has 3 entries but the image has 2 spatial axes"),
    ({"roi_size": (8, 0)}, "every entry must be a positive number of pixels"),
    ({"overlap": 1.0}, "overlap is 1.0; expected a fraction in [0, 1)"),
    ({"mode": "gausian"}, "unknown blend mode 'gausian'; did you mean 'gaussian'? (available: gaussian, constant)"),
    ({"sw_batch_size": 0}, "sw_batch_size is 0; expected at least 1"),
])
def test_bad_arguments(kwargs, message):
    args = {"roi_size": (8, 8)} | kwargs
    with pytest.raises(ValueError) as info:
        sliding_window_predict(_pointwise(2), _image((20, 20)), **args)
    assert message in str(info.value)


def test_a_predictor_that_changes_the_size_is_refused():
    with pytest.raises(ValueError, match=r"returned spatial size \(4, 4\) for windows of \(8, 8\)"):
        sliding_window_predict(lambda x: F.avg_pool2d(x, 2), _image((20, 20)), (8, 8))
