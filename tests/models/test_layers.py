"""The layer factory: 'same' convolutions, pooling, activations, normalizations, initializers."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from numpy.lib.stride_tricks import sliding_window_view
from torch import nn

from deepscope.config.common import Component
from deepscope.errors import ConfigError
from deepscope.models.layers import (
    ConvSame,
    GaussActivation,
    as_tuple,
    conv_output_size,
    initialize,
    make_activation,
    make_initializer,
    make_normalization,
    pool,
    strided_conv,
)


def C(name, **config):
    return Component(class_name=name, config=config)


# --- 'same' convolution ---------------------------------------------------------------------------


def _tf_same_pads(size, k, s):
    """TensorFlow's documented 'same' padding: out = ceil(n/s); the extra pixel goes after."""
    out = -(-size // s)
    total = max((out - 1) * s + k - size, 0)
    return out, total // 2, total - total // 2


def _numpy_conv(x, w, b, stride, pads):
    """Cross-correlation in numpy: x (C_in, *S), w (C_out, C_in, *K), explicit (before, after) pads."""
    x = np.pad(x, [(0, 0)] + list(pads))
    k = w.shape[2:]
    win = sliding_window_view(x, k, axis=tuple(range(1, x.ndim)))  # (C_in, *S', *K)
    win = win[(slice(None),) + tuple(slice(None, None, s) for s in stride)]
    dims = len(k)
    letters = "defg"[:dims]
    spatial = "xyz"[:dims]
    out = np.einsum(f"c{spatial}{letters},oc{letters}->o{spatial}", win, w)
    return out + b.reshape(-1, *([1] * dims))


# documented examples of TF 'same' padding: (size, kernel, stride) -> (out, before, after)
@pytest.mark.parametrize("case,expected", [((13, 6, 5), (3, 1, 2)), ((5, 3, 1), (5, 1, 1)),
                                           ((5, 2, 1), (5, 0, 1)), ((6, 3, 2), (3, 0, 1)),
                                           ((7, 3, 2), (4, 1, 1)), ((4, 1, 3), (2, 0, 0))])
def test_reference_padding_formula(case, expected):
    assert _tf_same_pads(*case) == expected


@pytest.mark.parametrize("k,s", list(itertools.product([1, 2, 3, 4], [1, 2, 3])))
@pytest.mark.parametrize("size", [5, 6, 7])
def test_conv_same_2d_matches_tensorflow_same(k, s, size):
    torch.manual_seed(0)
    h, w = size, size + 1  # a non-square image checks that pads go to the right axes
    conv = ConvSame(2, 2, 3, (k, k), (s, s))
    x = torch.randn(1, 2, h, w)
    y = conv(x).detach().numpy()[0]
    oh, th, bh = _tf_same_pads(h, k, s)
    ow, tw, bw = _tf_same_pads(w, k, s)
    assert y.shape == (3, oh, ow) == (3, math.ceil(h / s), math.ceil(w / s))
    ref = _numpy_conv(x.numpy()[0].astype(np.float64), conv.conv.weight.detach().numpy().astype(np.float64),
                      conv.conv.bias.detach().numpy().astype(np.float64), (s, s), [(th, bh), (tw, bw)])
    np.testing.assert_allclose(y, ref, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("kernel,stride", [((3, 3, 2), (1, 1, 1)), ((2, 3, 4), (2, 1, 3)), ((5, 5, 2), (3, 2, 2))])
def test_conv_same_3d_matches_tensorflow_same(kernel, stride):
    torch.manual_seed(1)
    size = (5, 6, 7)
    conv = ConvSame(3, 1, 2, kernel, stride)
    x = torch.randn(1, 1, *size)
    y = conv(x).detach().numpy()[0]
    pads = [_tf_same_pads(n, k, s) for n, k, s in zip(size, kernel, stride)]
    assert y.shape == (2, *(p[0] for p in pads))
    ref = _numpy_conv(x.numpy()[0].astype(np.float64), conv.conv.weight.detach().numpy().astype(np.float64),
                      conv.conv.bias.detach().numpy().astype(np.float64), stride, [(p[1], p[2]) for p in pads])
    np.testing.assert_allclose(y, ref, rtol=1e-4, atol=1e-5)


def test_conv_same_1d_and_groups_and_no_bias():
    conv = ConvSame(1, 4, 6, (4,), (2,), groups=2, bias=False)
    assert conv.conv.bias is None and conv.conv.groups == 2
    assert conv(torch.randn(2, 4, 9)).shape == (2, 6, 5)


def test_conv_output_size():
    assert conv_output_size((7, 6), (2, 3)) == (4, 2)
    assert conv_output_size((5, 5, 5), (1, 2, 3)) == (5, 3, 2)


def test_as_tuple():
    assert as_tuple(3, 2, kernel=True) == (3, 3)
    assert as_tuple(5, 3, kernel=True) == (5, 5, 2)  # DeepCalo: int kernel k in 3D is (k, k, 2)
    assert as_tuple(2, 3) == (2, 2, 2)  # strides are not kernels
    assert as_tuple([1, 2, 3], 3, kernel=True) == (1, 2, 3)
    with pytest.raises(ConfigError, match="2 entries for 3D"):
        as_tuple([3, 3], 3)


@pytest.mark.parametrize("dims", [2, 3])
def test_strided_conv_and_pooling(dims):
    size = (6, 9, 4)[:dims]
    factors = (2, 3, 2)[:dims]
    x = torch.randn(2, 3, *size)
    want = tuple(s // f for s, f in zip(size, factors))
    sc = strided_conv(dims, 3, factors)
    assert sc.kernel_size == factors and sc.stride == factors
    assert sc(x).shape == (2, 3, *want)
    avg, mx = pool("avgpool", dims, factors), pool("maxpool", dims, factors)
    assert avg(x).shape == mx(x).shape == (2, 3, *want)
    block = x[0, 0][tuple(slice(0, f) for f in factors)]
    assert torch.allclose(avg(x)[0, 0][(0,) * dims], block.mean())
    assert torch.equal(mx(x)[0, 0][(0,) * dims], block.max())


# --- activations ---------------------------------------------------------------------------------


X = np.linspace(-3, 3, 13)


def _apply(module, x=X):
    return module(torch.tensor(x, dtype=torch.float64)).detach().numpy()


def test_leakyrelu_keras_default_slope_and_alpha():
    act = make_activation(C("leakyrelu"))
    assert act.negative_slope == pytest.approx(0.3)
    np.testing.assert_allclose(_apply(act), np.where(X > 0, X, 0.3 * X))
    act = make_activation(C("LeakyReLU", alpha=0.1))
    assert act.negative_slope == pytest.approx(0.1)
    np.testing.assert_allclose(_apply(act), np.where(X > 0, X, 0.1 * X))


@pytest.mark.parametrize("name,ref", [
    ("relu", lambda x: np.maximum(x, 0)),
    ("elu", lambda x: np.where(x > 0, x, np.expm1(x))),
    ("swish", lambda x: x / (1 + np.exp(-x))),
    ("sigmoid", lambda x: 1 / (1 + np.exp(-x))),
    ("tanh", np.tanh),
    ("softplus", lambda x: np.log1p(np.exp(x))),
    ("linear", lambda x: x),
    ("gauss", lambda x: np.exp(-x ** 2)),
    ("gauss_f", lambda x: 1 - np.exp(-x ** 2)),
])
def test_activation_values(name, ref):
    np.testing.assert_allclose(_apply(make_activation(C(name))), ref(X), rtol=1e-6, atol=1e-12)


def test_fixed_gauss_has_no_parameters():
    for name in ("gauss", "gauss_f"):
        assert list(make_activation(C(name)).parameters()) == []


@pytest.mark.parametrize("name,flipped", [("pgauss", False), ("pgauss_f", True)])
def test_parametric_gauss_trainable_alpha(name, flipped):
    act = make_activation(C(name, init=2.0))
    assert isinstance(act, GaussActivation)
    params = list(act.parameters())
    assert len(params) == 1 and params[0].requires_grad and float(params[0].detach()) == 2.0
    g = np.exp(-(X / 2.0) ** 2)
    act = act.double()
    np.testing.assert_allclose(_apply(act), 1 - g if flipped else g, rtol=1e-6, atol=1e-12)
    # alpha learns: d/dalpha exp(-(x/a)^2) = 2 x^2 / a^3 * exp(-(x/a)^2)
    x = torch.tensor([1.5], dtype=torch.float64)
    act(x).sum().backward()
    d = 2 * 1.5 ** 2 / 2.0 ** 3 * np.exp(-(1.5 / 2.0) ** 2)
    assert float(act.alpha.grad) == pytest.approx(-d if flipped else d)


def test_pgauss_default_init_is_one():
    act = make_activation(C("pgauss"))
    assert float(act.alpha.detach()) == 1.0


def test_prelu_per_channel_and_softmax():
    assert make_activation(C("prelu"), channels=5).weight.shape == (5,)
    assert make_activation(C("prelu", shared=True), channels=5).weight.shape == (1,)
    sm = make_activation(C("softmax"))
    out = sm(torch.tensor([[1.0, 2.0, 3.0]]))
    e = np.exp([1.0, 2.0, 3.0])
    np.testing.assert_allclose(out.numpy()[0], e / e.sum(), rtol=1e-6)


def test_no_activation_is_identity():
    assert isinstance(make_activation(None), nn.Identity)


def test_unknown_activation_option():
    with pytest.raises(ConfigError) as info:
        make_activation(C("leakyrelu", alpah=0.1), path="model.top.activation")
    assert "model.top.activation.config.alpah" in str(info.value) and "did you mean 'alpha'" in str(info.value)


def test_unknown_activation_name():
    with pytest.raises(ConfigError, match="model.cnn.activation: unknown activation 'rleu'"):
        make_activation(C("rleu"), path="model.cnn.activation")


# --- normalization -------------------------------------------------------------------------------


def test_layer_norm_is_group_norm_with_one_group():
    norm = make_normalization(C("layer"), 6, 2)
    assert isinstance(norm, nn.GroupNorm) and norm.num_groups == 1 and norm.num_channels == 6
    x = torch.randn(3, 6, 4, 4, dtype=torch.float64)
    xn = x.numpy()
    mean = xn.mean(axis=(1, 2, 3), keepdims=True)
    var = xn.var(axis=(1, 2, 3), keepdims=True)
    np.testing.assert_allclose(norm.double()(x).detach().numpy(), (xn - mean) / np.sqrt(var + 1e-5), rtol=1e-6)


def test_instance_norm_is_group_norm_per_channel():
    norm = make_normalization(C("InstanceNormalization"), 6, 2)
    assert isinstance(norm, nn.GroupNorm) and norm.num_groups == 6
    x = torch.randn(3, 6, 4, 4, dtype=torch.float64)
    xn = x.numpy()
    mean, var = xn.mean(axis=(2, 3), keepdims=True), xn.var(axis=(2, 3), keepdims=True)
    np.testing.assert_allclose(norm.double()(x).detach().numpy(), (xn - mean) / np.sqrt(var + 1e-5), rtol=1e-6)


@pytest.mark.parametrize("channels,groups,expected", [(8, 4, 4), (12, 8, 6), (12, 5, 4), (48, 32, 24),
                                                      (6, 32, 6), (7, 3, 1), (16, None, 16), (64, None, 32)])
def test_group_norm_groups_divide_channels(channels, groups, expected):
    spec = C("group", groups=groups) if groups is not None else C("group")
    norm = make_normalization(spec, channels, 2)
    assert isinstance(norm, nn.GroupNorm)
    assert channels % norm.num_groups == 0 and norm.num_groups <= (groups or 32)
    assert norm.num_groups == expected  # the largest divisor of channels that is <= groups


@pytest.mark.parametrize("dims,cls", [(0, nn.BatchNorm1d), (1, nn.BatchNorm1d), (2, nn.BatchNorm2d),
                                      (3, nn.BatchNorm3d)])
def test_batch_norm_per_dims_with_keras_momentum(dims, cls):
    norm = make_normalization(C("BatchNormalization"), 5, dims)
    assert type(norm) is cls and norm.num_features == 5
    assert norm.momentum == pytest.approx(0.01)  # Keras' moving average 0.99
    assert norm.eps == pytest.approx(1e-3)  # Keras' epsilon
    # options are Keras': momentum is the weight of the old average
    assert make_normalization(C("batch", momentum=0.9), 5, dims).momentum == pytest.approx(0.1)
    assert make_normalization(C("batch", epsilon=1e-5), 5, dims).eps == pytest.approx(1e-5)


def test_norm_options_and_errors():
    assert make_normalization(C("layer", eps=1e-3), 4, 2).eps == pytest.approx(1e-3)
    assert make_normalization(C("group", affine=False), 4, 2).weight is None
    with pytest.raises(ConfigError) as info:
        make_normalization(C("batch", momentun=0.1), 4, 2, path="model.cnn.normalization")
    assert "model.cnn.normalization.config.momentun" in str(info.value)
    assert "did you mean 'momentum'" in str(info.value)
    with pytest.raises(ConfigError, match="model.top.normalization.config.groups"):
        make_normalization(C("batch", groups=2), 4, 0, path="model.top.normalization")
    assert isinstance(make_normalization(None, 4, 2), nn.Identity)


# --- initializers --------------------------------------------------------------------------------


def test_orthogonal_square_weight():
    torch.manual_seed(0)
    lin = nn.Linear(16, 16)
    initialize(lin, C("orthogonal"))
    w = lin.weight.detach().double().numpy()
    np.testing.assert_allclose(w @ w.T, np.eye(16), atol=1e-5)
    assert torch.equal(lin.bias, torch.zeros(16))


def test_orthogonal_gain():
    lin = nn.Linear(8, 8)
    initialize(lin, C("orthogonal", gain=2.0))
    w = lin.weight.detach().double().numpy()
    np.testing.assert_allclose(w @ w.T, 4 * np.eye(8), atol=1e-4)


@pytest.mark.parametrize("module,fan_in,fan_out", [(lambda: nn.Linear(50, 30), 50, 30),
                                                    (lambda: nn.Conv2d(4, 8, 3), 36, 72),
                                                    (lambda: nn.Conv3d(2, 3, (3, 3, 2)), 36, 54)])
def test_glorot_uniform_bounds(module, fan_in, fan_out):
    torch.manual_seed(0)
    m = module()
    initialize(m, C("glorot_uniform"))
    w = m.weight.detach().numpy()
    bound = math.sqrt(6.0 / (fan_in + fan_out))
    assert np.abs(w).max() <= bound
    assert np.abs(w).max() > 0.85 * bound  # it fills the interval
    np.testing.assert_allclose(w.std(), bound / math.sqrt(3), rtol=0.1)


def test_random_normal_stddev():
    torch.manual_seed(0)
    w = torch.empty(500, 400)
    make_initializer(C("random_normal"))(w)
    assert abs(float(w.mean())) < 0.05 * 0.02
    assert float(w.std()) == pytest.approx(0.05, rel=0.01)
    make_initializer(C("RandomNormal", stddev=0.2, mean=1.0))(w)
    assert float(w.std()) == pytest.approx(0.2, rel=0.01) and float(w.mean()) == pytest.approx(1.0, abs=0.005)


def test_he_normal_is_keras_truncated_normal():
    torch.manual_seed(0)
    w = torch.empty(400, 1000)  # fan_in 1000
    make_initializer(C("he_normal"))(w)
    std = math.sqrt(2.0 / 1000)
    assert float(w.std()) == pytest.approx(std, rel=0.02)  # truncation corrected back to sqrt(2/fan_in)
    assert float(w.abs().max()) <= 2 * std / 0.87962566103423978 + 1e-7


def test_uniform_and_truncated_normal_ranges():
    w = torch.empty(200, 200)
    make_initializer(C("random_uniform", minval=-0.1, maxval=0.3))(w)
    assert float(w.min()) >= -0.1 and float(w.max()) <= 0.3 and float(w.mean()) == pytest.approx(0.1, abs=0.005)
    make_initializer(C("truncated_normal", stddev=0.1))(w)
    assert float(w.abs().max()) <= 0.2


def test_zeros_and_torch_default():
    lin = nn.Linear(3, 4)
    initialize(lin, C("zeros"))
    assert torch.equal(lin.weight, torch.zeros(4, 3))
    before = lin.weight.clone()
    assert make_initializer(C("torch_default")) is None
    initialize(lin, C("torch_default"))
    assert torch.equal(lin.weight, before)


def test_initialize_reaches_every_conv_and_linear_and_zeroes_biases():
    net = nn.Sequential(nn.Conv2d(2, 3, 3), nn.ReLU(), nn.Flatten(), nn.Linear(12, 5))
    initialize(net, C("random_normal", mean=7.0, stddev=1e-6))
    for m in (net[0], net[3]):
        assert torch.allclose(m.weight, torch.full_like(m.weight, 7.0), atol=1e-4)
        assert torch.equal(m.bias, torch.zeros_like(m.bias))


def test_unknown_initializer_option_names_the_path():
    with pytest.raises(ConfigError) as info:
        make_initializer(C("orthogonal", gian=2.0), path="model.cnn.initialization")
    msg = str(info.value)
    assert "model.cnn.initialization.config.gian" in msg and "did you mean 'gain'" in msg
    with pytest.raises(ConfigError, match="model.top.initialization.config.stdev"):
        initialize(nn.Linear(2, 2), C("random_normal", stdev=0.1), path="model.top.initialization")
