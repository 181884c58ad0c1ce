"""Optimizers by name: every one steps downhill; Keras option names; DeepCalo's Yogi/PAdam defaults."""

from __future__ import annotations

import pytest
import torch

from deepscope.components import OPTIMIZERS
from deepscope.config.common import Component
from deepscope.errors import ConfigError
from deepscope.optim.optimizers import make_optimizer


def C(name, **config):
    return Component(class_name=name, config=config)


def _quadratic():
    target = torch.tensor([1.0, -2.0, 0.5, 3.0])
    x = torch.nn.Parameter(torch.zeros(4))
    return x, lambda: ((x - target) ** 2).sum()


@pytest.mark.parametrize("name", OPTIMIZERS.names())
def test_every_optimizer_reduces_a_quadratic(name):
    x, loss_fn = _quadratic()
    opt = make_optimizer(C(name), [x])
    start = float(loss_fn().detach())
    for _ in range(5):
        opt.zero_grad()
        loss = loss_fn()
        loss.backward()
        opt.step()
    assert float(loss_fn().detach()) < start
    assert torch.isfinite(x).all()


@pytest.mark.parametrize("alias,cls", [("Adam", torch.optim.Adam), ("Nadam", torch.optim.NAdam),
                                       ("SGD", torch.optim.SGD), ("RMSprop", torch.optim.RMSprop),
                                       ("AdamW", torch.optim.AdamW), ("adamax", torch.optim.Adamax)])
def test_names_and_aliases(alias, cls):
    x, _ = _quadratic()
    assert type(make_optimizer(C(alias), [x])) is cls


def test_keras_names_map_to_torch():
    x, _ = _quadratic()
    opt = make_optimizer(C("adam", learning_rate=0.005, epsilon=1e-4, beta_1=0.8, beta_2=0.95), [x])
    group = opt.param_groups[0]
    assert group["lr"] == 0.005 and group["eps"] == 1e-4 and tuple(group["betas"]) == (0.8, 0.95)


def test_one_keras_beta_keeps_the_other_default():
    x, _ = _quadratic()
    assert tuple(make_optimizer(C("nadam", beta_1=0.7), [x]).param_groups[0]["betas"]) == (0.7, 0.999)
    assert tuple(make_optimizer(C("adamax", beta_2=0.99), [x]).param_groups[0]["betas"]) == (0.9, 0.99)


def test_torch_names_work_too():
    x, _ = _quadratic()
    group = make_optimizer(C("sgd", lr=0.2, momentum=0.9, nesterov=True), [x]).param_groups[0]
    assert group["lr"] == 0.2 and group["momentum"] == 0.9 and group["nesterov"] is True


def test_yogi_defaults():
    x, _ = _quadratic()
    opt = make_optimizer(C("Yogi"), [x])
    assert type(opt).__name__ == "Yogi"
    assert opt.param_groups[0]["lr"] == 0.01 and opt.param_groups[0]["eps"] == 1e-3


def test_padam_defaults():
    x, _ = _quadratic()
    opt = make_optimizer(C("Padam"), [x])
    assert type(opt).__name__ == "PAdam"
    assert opt.param_groups[0]["lr"] == 0.1 and opt.param_groups[0]["partial"] == 0.125


def test_yogi_and_padam_options():
    x, _ = _quadratic()
    assert make_optimizer(C("yogi", epsilon=1e-5), [x]).param_groups[0]["eps"] == 1e-5
    assert make_optimizer(C("padam", partial=0.25), [x]).param_groups[0]["partial"] == 0.25


@pytest.mark.parametrize("name", ["sgd", "adam", "yogi", "padam", "adadelta"])
def test_train_lr_overrides_the_default(name):
    x, _ = _quadratic()
    opt = make_optimizer(C(name), [x], lr=0.0314)
    assert opt.param_groups[0]["lr"] == 0.0314


def test_train_lr_keeps_other_defaults():
    x, _ = _quadratic()
    group = make_optimizer(C("yogi"), [x], lr=0.05).param_groups[0]
    assert group["lr"] == 0.05 and group["eps"] == 1e-3


def test_unknown_option_with_did_you_mean():
    x, _ = _quadratic()
    with pytest.raises(ConfigError) as info:
        make_optimizer(C("sgd", momentun=0.9), [x])
    msg = str(info.value)
    assert "train.optimizer.config.momentun" in msg and "did you mean 'momentum'" in msg
    with pytest.raises(ConfigError, match="train.optimizer.config.partial"):
        make_optimizer(C("adam", partial=0.1), [x])
    with pytest.raises(ConfigError, match="model.opt.config.betaz"):
        make_optimizer(C("yogi", betaz=(0.9, 0.9)), [x], path="model.opt")


def test_unknown_optimizer_name():
    x, _ = _quadratic()
    with pytest.raises(ConfigError, match="train.optimizer: unknown optimizer 'adma'; did you mean"):
        make_optimizer(C("adma"), [x])


def test_invalid_value_is_a_config_error():
    x, _ = _quadratic()
    with pytest.raises(ConfigError, match="train.optimizer.config"):
        make_optimizer(C("adam", lr=-1.0), [x])
