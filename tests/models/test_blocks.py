"""Blocks: DeepCalo's dense stack, conv unit, squeeze-and-excite and Deep Sets."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from deepscope.config.common import Component
from deepscope.models.blocks import ConvUnit, DeepSets, DenseStack, SqueezeExcite, track_mask


def C(name, **config):
    return Component(class_name=name, config=config)


def test_empty_units_is_identity():
    stack = DenseStack(5, [], activation=C("relu"), normalization=C("batch"), dropout=0.5)
    assert stack.out_features == 5 and list(stack.parameters()) == []
    x = torch.randn(3, 5)
    assert torch.equal(stack(x), x)


def test_layer_order_linear_dropout_norm_activation():
    stack = DenseStack(4, [6, 3], activation=C("relu"), normalization=C("layer"), dropout=0.2)
    calls = []
    for layer in stack.layers:
        for name in ("linear", "dropout", "norm", "act"):
            getattr(layer, name).register_forward_hook(lambda m, i, o, name=name: calls.append(name))
    stack.eval()
    stack(torch.randn(2, 4))
    assert calls == ["linear", "dropout", "norm", "act"] * 2
    layer = stack.layers[0]
    assert isinstance(layer.linear, nn.Linear) and isinstance(layer.dropout, nn.Dropout)
    assert layer.dropout.p == pytest.approx(0.2)
    assert isinstance(layer.norm, nn.GroupNorm) and isinstance(layer.act, nn.ReLU)


def test_dense_stack_values():
    stack = DenseStack(3, [2], activation=C("relu"), initialization=C("torch_default")).double()
    x = torch.randn(4, 3, dtype=torch.float64)
    w, b = stack.layers[0].linear.weight.detach().numpy(), stack.layers[0].linear.bias.detach().numpy()
    np.testing.assert_allclose(stack(x).detach().numpy(), np.maximum(x.numpy() @ w.T + b, 0), rtol=1e-12)


def test_no_bias_when_a_normalization_follows():
    with_norm = DenseStack(4, [6, 3], normalization=C("batch"))
    without = DenseStack(4, [6, 3])
    assert all(layer.linear.bias is None for layer in with_norm.layers)
    assert all(layer.linear.bias is not None for layer in without.layers)
    # 4*6 + 6*3 weights; batch norm adds 2 per feature (6 + 3)
    assert sum(p.numel() for p in with_norm.parameters()) == 4 * 6 + 6 * 3 + 2 * (6 + 3)
    assert sum(p.numel() for p in without.parameters()) == 4 * 6 + 6 + 6 * 3 + 3


def test_no_dropout_is_identity_and_dropout_zeroes_in_training():
    assert isinstance(DenseStack(3, [4]).layers[0].dropout, nn.Identity)
    stack = DenseStack(200, [200], dropout=0.5, initialization=C("orthogonal"))
    stack.train()
    torch.manual_seed(0)
    out = stack.layers[0].dropout(torch.ones(1000))
    assert 0.4 < float((out == 0).float().mean()) < 0.6


def test_normalization_over_tracks_axis():
    stack = DenseStack(3, [5], normalization=C("batch"), activation=C("relu"))
    out = stack(torch.randn(4, 7, 3))
    assert out.shape == (4, 7, 5)
    # batch norm statistics over all B*T rows: before the relu every feature has mean 0
    pre = stack.layers[0].norm(stack.layers[0].linear(torch.randn(4, 7, 3)).reshape(-1, 5))
    np.testing.assert_allclose(pre.detach().mean(0).numpy(), np.zeros(5), atol=1e-5)


def test_initialization_applies_to_the_stack():
    stack = DenseStack(8, [8], initialization=C("orthogonal"))
    w = stack.layers[0].linear.weight.detach().double().numpy()
    np.testing.assert_allclose(w @ w.T, np.eye(8), atol=1e-5)
    assert torch.equal(stack.layers[0].linear.bias, torch.zeros(8))


# --- squeeze-and-excite and conv unit ------------------------------------------------------------


@pytest.mark.parametrize("dims", [2, 3])
def test_squeeze_excite_numerics(dims):
    torch.manual_seed(0)
    se = SqueezeExcite(8, 4).double()
    x = torch.randn(2, 8, *([3] * dims), dtype=torch.float64)
    w1, b1 = se.fc[0].weight.detach().numpy(), se.fc[0].bias.detach().numpy()
    w2, b2 = se.fc[2].weight.detach().numpy(), se.fc[2].bias.detach().numpy()
    assert w1.shape == (2, 8) and w2.shape == (8, 2)  # C / ratio hidden units
    xn = x.numpy()
    z = xn.reshape(2, 8, -1).mean(-1)
    s = 1 / (1 + np.exp(-(np.maximum(z @ w1.T + b1, 0) @ w2.T + b2)))  # (B, C) in (0, 1)
    ref = xn * s.reshape(2, 8, *([1] * dims))
    np.testing.assert_allclose(se(x).detach().numpy(), ref, rtol=1e-10)


def test_squeeze_excite_without_units():
    with pytest.raises(ValueError, match="ratio 16"):
        SqueezeExcite(8, 16)


@pytest.mark.parametrize("dims", [2, 3])
def test_conv_unit(dims):
    unit = ConvUnit(dims, 2, 8, (3,) * dims, (2,) * dims, groups=2, activation=C("relu"),
                    normalization=C("batch"), se_ratio=4, path="model.cnn")
    assert unit.conv.conv.bias is None and unit.conv.conv.groups == 2
    assert isinstance(unit.norm, nn.modules.batchnorm._BatchNorm) and isinstance(unit.se, SqueezeExcite)
    out = unit(torch.randn(2, 2, *([5] * dims)))
    assert out.shape == (2, 8, *([3] * dims))
    assert float(out.detach().min()) >= 0  # relu then a positive rescale
    plain = ConvUnit(dims, 2, 4, (3,) * dims, (1,) * dims, 1, None, None, None, "model.cnn")
    assert plain.conv.conv.bias is not None
    assert isinstance(plain.norm, nn.Identity) and isinstance(plain.act, nn.Identity)
    assert isinstance(plain.se, nn.Identity)


# --- Deep Sets -------------------------------------------------------------------------------------


def _deepsets():
    torch.manual_seed(0)
    phi = DenseStack(3, [8, 6], activation=C("tanh"), initialization=C("torch_default"))
    rho = DenseStack(6, [4], activation=C("tanh"), initialization=C("torch_default"))
    for m in (phi, rho):
        for layer in m.layers:
            nn.init.uniform_(layer.linear.bias, 0.5, 1.0)  # phi(0) != 0: padding must be masked
    return DeepSets(phi, rho).double().eval()


def _tracks(b=3, t=5, f=3, n_real=(5, 3, 1)):
    x = torch.randn(b, t, f, dtype=torch.float64)
    for i, k in enumerate(n_real):
        x[i, k:] = 0.0
    return x


def test_track_mask():
    x = torch.tensor([[[1.0, 0.0], [0.0, 0.0], [0.0, -2.0]]])
    assert track_mask(x).tolist() == [[[1.0], [0.0], [1.0]]]


def test_deepsets_is_permutation_invariant():
    net = _deepsets()
    x = _tracks()
    out = net(x)
    assert out.shape == (3, 4) and net.out_features == 4
    for seed in range(3):
        perm = torch.randperm(5, generator=torch.Generator().manual_seed(seed))
        torch.testing.assert_close(net(x[:, perm]), out, rtol=1e-12, atol=1e-12)


def test_extra_padding_does_not_change_the_output():
    net = _deepsets()
    x = _tracks()
    out = net(x)
    padded = torch.cat([x, torch.zeros(3, 4, 3, dtype=torch.float64)], 1)
    torch.testing.assert_close(net(padded), out, rtol=1e-12, atol=1e-12)
    # padding in the middle is masked too
    middle = torch.cat([x[:, :1], torch.zeros(3, 2, 3, dtype=torch.float64), x[:, 1:]], 1)
    torch.testing.assert_close(net(middle), out, rtol=1e-12, atol=1e-12)


def test_deepsets_equals_masked_sum_reference():
    net = _deepsets()
    x = _tracks()
    phi = net.phi(x)  # (B, T, 6)
    mask = (x.abs().sum(-1, keepdim=True) > 0).double()
    ref = net.rho((phi * mask).sum(1))
    torch.testing.assert_close(net(x), ref)
    # a sample without tracks gives rho(0)
    empty = torch.zeros(1, 5, 3, dtype=torch.float64)
    torch.testing.assert_close(net(empty), net.rho(torch.zeros(1, 6, dtype=torch.float64)))
