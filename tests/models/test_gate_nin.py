"""The gate net (per-pixel MLP, gauss activations, merge) and the network in network."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from deepscope.config.common import Component
from deepscope.models.blocks import GateNet, NetworkInNetwork, merge_gate
from deepscope.models.layers import GaussActivation


def C(name, **config):
    return Component(class_name=name, config=config)


def _n_params(module):
    return sum(p.numel() for p in module.parameters())


# --- gate net --------------------------------------------------------------------------------------


@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize("name,ref", [
    ("gauss", lambda x: torch.exp(-x**2)),
    ("gauss_f", lambda x: 1 - torch.exp(-x**2)),
    ("pgauss", lambda x: torch.exp(-(x / 0.5) ** 2)),
    ("pgauss_f", lambda x: 1 - torch.exp(-(x / 0.5) ** 2)),
])
def test_gate_activation_alone(dims, name, ref):
    gate = GateNet([], final_activation=C(name), final_activation_init=[0.5]).double()
    x = torch.randn(2, 3, *([4] * dims), dtype=torch.float64)
    torch.testing.assert_close(gate(x), ref(x))
    trainable = name.startswith("p")
    assert _n_params(gate) == (1 if trainable else 0)  # pgauss: the width alpha, from final_activation_init
    if trainable:
        assert float(gate.final_activation.alpha.detach()) == 0.5
    else:
        assert float(gate.final_activation.alpha) == 1.0


def test_explicit_init_in_the_activation_config_wins():
    gate = GateNet([], final_activation=C("pgauss", init=2.0), final_activation_init=[0.5])
    assert float(gate.final_activation.alpha.detach()) == 2.0


@pytest.mark.parametrize("use_res", [False, True])
def test_gate_mlp_per_pixel_by_hand(use_res):
    torch.manual_seed(0)
    gate = GateNet([3, 2], use_res=use_res, final_activation=C("pgauss_f"), final_activation_init=[0.7],
                   activation=C("tanh")).double()
    # 1 -> 3 -> 2 hidden (with biases: no normalization), 2 -> 1 output with bias, alpha
    assert _n_params(gate) == (1 * 3 + 3) + (3 * 2 + 2) + (2 * 1 + 1) + 1
    x = torch.randn(2, 2, 3, 4, dtype=torch.float64)
    l1, l2 = gate.hidden.layers[0].linear, gate.hidden.layers[1].linear
    v = x.reshape(-1, 1)
    h = gate.output(torch.tanh(l2(torch.tanh(l1(v)))))
    if use_res:
        h = h + v
    ref = (1 - torch.exp(-(h / 0.7) ** 2)).reshape(x.shape)
    torch.testing.assert_close(gate(x), ref)
    # shared over pixels and channels: a pixel's gate depends on that pixel only
    y = x.clone()
    y[0, 1, 2, 3] += 1.0
    changed = (gate(y) != gate(x))
    assert changed.sum() == 1 and changed[0, 1, 2, 3]


def test_gate_normalization_is_over_all_pixels():
    gate = GateNet([4], normalization=C("batch"), final_activation=C("gauss"))
    assert gate.hidden.layers[0].linear.bias is None
    assert isinstance(gate.hidden.layers[0].norm, nn.BatchNorm1d)
    assert gate(torch.randn(2, 1, 5, 5)).shape == (2, 1, 5, 5)


def test_merge_methods():
    img, g = torch.randn(2, 3, 4, 4), torch.rand(2, 3, 4, 4)
    torch.testing.assert_close(merge_gate(img, g, "multiply"), img * g)
    merged = merge_gate(img, g, "concatenate")
    assert merged.shape == (2, 6, 4, 4)
    torch.testing.assert_close(merged, torch.cat([img, img * g], 1))
    with pytest.raises(ValueError, match="available: multiply, concatenate"):
        merge_gate(img, g, "add")


def test_gauss_is_in_the_unit_interval():
    gate = GateNet([8], activation=C("relu"), final_activation=C("pgauss_f"))
    out = gate(torch.randn(3, 2, 6, 6) * 10).detach()
    assert float(out.min()) >= 0 and float(out.max()) <= 1
    assert isinstance(gate.final_activation, GaussActivation)


# --- network in network ----------------------------------------------------------------------------


@pytest.mark.parametrize("dims", [2, 3])
def test_network_in_network_shapes_and_parameters(dims):
    size = (5, 4, 3)[:dims]
    nin = NetworkInNetwork(dims, 8, size, [6, 3], (2,) * dims, activation=C("relu"))
    assert _n_params(nin) == (8 * 6 + 6) + (6 * 3 + 3)  # 1x1 convs with bias
    convs = [m for m in nin.modules() if isinstance(m, (nn.Conv2d, nn.Conv3d))]
    assert all(c.kernel_size == (1,) * dims and c.stride == (2,) * dims for c in convs)
    want = tuple(math.ceil(math.ceil(s / 2) / 2) for s in size)
    assert nin.out_shape == (3, *want) and nin.out_features == 3 * math.prod(want)
    x = torch.randn(2, 8, *size)
    assert nin(x).shape == (2, nin.out_features)
    pooled = NetworkInNetwork(dims, 8, size, [5], (1,) * dims, globalavgpool=True)
    assert pooled.out_features == 5
    torch.testing.assert_close(pooled(x), pooled.layers(x).flatten(2).mean(-1))


def test_network_in_network_norm_activation_dropout():
    nin = NetworkInNetwork(2, 4, (3, 3), [6], (1, 1), activation=C("relu"), normalization=C("batch"), dropout=0.3)
    unit = nin.layers[0]
    assert unit.conv.conv.bias is None and isinstance(unit.norm, nn.BatchNorm2d)
    assert isinstance(unit.act, nn.ReLU) and isinstance(unit.drop, nn.Dropout) and unit.drop.p == 0.3
    assert _n_params(nin) == 4 * 6 + 2 * 6
