"""layer_reg: tagging layers, penalties (Keras semantics), activity penalties and constraints."""

from __future__ import annotations

import copy
import pickle

import pytest
import torch
from torch import nn

from deepscope.config.model import CombinedParams, LayerRegConfig
from deepscope.data.spec import ImageSpec, InputSpec
from deepscope.errors import ConfigError
from deepscope.models.nets.combined import build_combined
from deepscope.models.regularization import (
    apply_constraints,
    attach_layer_reg,
    l1,
    l1_l2,
    l2,
    layer_reg_of,
    max_norm,
    regularization_penalty,
)


def _net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(2, 3, 3), nn.ReLU(), nn.Flatten(), nn.Linear(3 * 4 * 4, 2))


def test_penalties_match_keras_formulas():
    w = torch.tensor([[1.0, -2.0], [3.0, 0.5]])
    assert float(l2(0.1)(w)) == pytest.approx(0.1 * (1 + 4 + 9 + 0.25))
    assert float(l1(0.2)(w)) == pytest.approx(0.2 * 6.5)
    assert float(l1_l2(0.2, 0.1)(w)) == pytest.approx(0.2 * 6.5 + 0.1 * 14.25)
    assert float(l2()(w)) == pytest.approx(0.01 * 14.25)  # Keras' default l = 0.01


def test_kernel_and_bias_penalties_by_hand():
    net = _net()
    n = attach_layer_reg(net, {"kernel_regularizer": {"class_name": "l2", "config": {"l": 0.1}},
                               "bias_regularizer": {"class_name": "l1", "config": {"l": 0.2}}}, "model.cnn")
    assert n == 2 and layer_reg_of(net[0]).path == "model.cnn.layer_reg" and layer_reg_of(net[1]) is None
    conv, lin = net[0], net[3]
    want = 0.1 * (conv.weight.square().sum() + lin.weight.square().sum()) + \
        0.2 * (conv.bias.abs().sum() + lin.bias.abs().sum())
    got = regularization_penalty(net)
    torch.testing.assert_close(got, want)
    got.backward()  # differentiable: weight decay through the loss
    torch.testing.assert_close(conv.weight.grad, 0.2 * conv.weight.detach())


def test_activity_penalty_of_the_last_training_forward():
    net = _net()
    attach_layer_reg(net, LayerRegConfig(activity_regularizer={"class_name": "l2", "config": {"l": 0.5}}), "model.top")
    x = torch.randn(4, 2, 6, 6)
    assert float(regularization_penalty(net)) == 0.0
    net.train()
    conv_out = net[0](x)
    out = net(x)
    # the conv was called twice (once by hand): both recorded; per sample, as tf.keras (divided by the batch size)
    want = 0.5 * (2 * conv_out.square().sum() + out.square().sum()) / 4
    torch.testing.assert_close(regularization_penalty(net), want)
    assert float(regularization_penalty(net)) == 0.0  # consumed by reading
    net.eval()
    net(x)
    assert float(regularization_penalty(net)) == 0.0  # nothing recorded in eval mode


def test_max_norm_per_output_unit():
    lin = nn.Linear(3, 2)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[3.0, 4.0, 0.0], [0.3, 0.4, 0.0]]))  # norms 5 and 0.5
        lin.bias.copy_(torch.tensor([6.0, 8.0]))  # norm 10 as one vector
    net = nn.Sequential(lin)
    attach_layer_reg(net, {"kernel_constraint": {"class_name": "max_norm", "config": {"max_value": 2.0}},
                           "bias_constraint": "max_norm"}, "model.top")
    apply_constraints(net)
    eps = 1e-7
    torch.testing.assert_close(lin.weight, torch.tensor([[3.0, 4.0, 0.0], [0.3, 0.4, 0.0]])
                               * torch.tensor([[2.0 / (5 + eps)], [0.5 / (0.5 + eps)]]))
    torch.testing.assert_close(lin.bias, torch.tensor([6.0, 8.0]) * 2.0 / (10 + eps))
    conv = nn.Conv2d(2, 4, 3)
    with torch.no_grad():
        conv.weight.mul_(100)
    net = nn.Sequential(conv)
    attach_layer_reg(net, {"kernel_constraint": "max_norm"}, "model.cnn")
    before = conv.weight.detach().clone()
    apply_constraints(net)
    norms = conv.weight.detach().flatten(1).norm(dim=1)
    torch.testing.assert_close(norms, torch.full((4,), 2.0), rtol=1e-5, atol=1e-5)  # per output filter
    torch.testing.assert_close(conv.weight / norms.reshape(-1, 1, 1, 1),
                               before / before.flatten(1).norm(dim=1).reshape(-1, 1, 1, 1))
    assert max_norm(2.0)(torch.tensor([[0.1, 0.1]])).abs().sum() == pytest.approx(0.2, rel=1e-5)


def test_empty_layer_reg_tags_nothing_and_penalty_is_zero():
    net = _net()
    assert attach_layer_reg(net, LayerRegConfig(), "model.cnn") == 0
    assert attach_layer_reg(net, None, "model.cnn") == 0
    penalty = regularization_penalty(net)
    assert penalty.shape == () and float(penalty) == 0.0


def test_bad_option_names_the_key():
    with pytest.raises(ConfigError, match=r"model\.cnn\.layer_reg\.kernel_regularizer\.config\.ll"):
        attach_layer_reg(_net(), {"kernel_regularizer": {"class_name": "l2", "config": {"ll": 1}}}, "model.cnn")


SPEC = InputSpec(images={"calo": ImageSpec(1, (6, 6))}, scalars=3)


def _params(**model):
    base = {"cnn": {"block_depths": [1, 1], "n_init_filters": 4, "init_kernel_size": 3, "downsampling": "strided",
                    "use_squeeze_and_excite": True, "squeeze_and_excite_ratio": 2},
            "scalar_net": {"units": [4]}, "top": {"units": [3, 1]}}
    for key, value in model.items():
        base[key] = {**base.get(key, {}), **value}
    return CombinedParams.model_validate(base)


def test_every_layer_of_the_submodel_is_tagged_and_only_it():
    net = build_combined(SPEC, _params(cnn={"layer_reg": {"kernel_regularizer": "l2"}}))
    weighted = (nn.Linear, nn.Conv2d)
    cnn_layers = [m for m in net.cnn.modules() if isinstance(m, weighted)]
    # 2 convs, the strided downsampling conv, 2 x 2 squeeze-and-excite dense layers
    assert len(cnn_layers) == 7 and all(layer_reg_of(m) is not None for m in cnn_layers)
    assert all(layer_reg_of(m) is None for sub in (net.scalar_net, net.top) for m in sub.modules())
    want = sum(0.01 * m.weight.square().sum() for m in cnn_layers)
    torch.testing.assert_close(regularization_penalty(net), want)


def test_per_submodel_layer_reg_in_the_combined_model():
    net = build_combined(SPEC, _params(scalar_net={"layer_reg": {"kernel_regularizer": {"class_name": "l1",
                                                                                        "config": {"l": 0.5}}}},
                                       top={"layer_reg": {"activity_regularizer": "l2"}}))
    net.train()
    x = {"images": {"calo": torch.randn(5, 1, 6, 6)}, "scalars": torch.randn(5, 3)}
    out = net(**x)
    hidden = net.top.hidden.layers[0].linear
    feats = torch.cat([net.cnn(x["images"]["calo"]), net.scalar_net(x["scalars"])], 1)
    act = 0.01 * (hidden(feats).square().sum() + out.square().sum()) / 5
    want = 0.5 * net.scalar_net.layers[0].linear.weight.abs().sum() + act
    net(**x)  # a second forward replaces the first's activity penalties
    torch.testing.assert_close(regularization_penalty(net), want)


def test_tagged_model_copies_and_pickles():
    net = build_combined(SPEC, _params(cnn={"layer_reg": {"kernel_regularizer": "l2", "activity_regularizer": "l1",
                                                          "kernel_constraint": "max_norm"}}))
    net.train()(images={"calo": torch.randn(2, 1, 6, 6)}, scalars=torch.randn(2, 3))
    for clone in (copy.deepcopy(net), pickle.loads(pickle.dumps(net))):
        torch.testing.assert_close(regularization_penalty(clone), regularization_penalty(copy.deepcopy(net)))
        apply_constraints(clone)
