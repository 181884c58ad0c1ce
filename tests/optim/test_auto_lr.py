"""train.auto_lr: DeepCalo's c·sqrt(batch) with a constant for every registered optimizer."""

from __future__ import annotations

import math

import pytest

from deepscope.components import OPTIMIZERS
from deepscope.config.common import Component
from deepscope.optim.optimizers import AUTO_LR_CONSTANTS, CONVENTIONAL_LR, auto_lr


def test_deepcalo_nadam_constant():
    assert auto_lr(Component(class_name="nadam"), 64) == pytest.approx(2.5e-5 * 8)
    assert auto_lr(Component(class_name="Nadam"), 1) == pytest.approx(2.5e-5)


@pytest.mark.parametrize("name", OPTIMIZERS.names())
def test_every_optimizer_has_a_constant(name):
    c = AUTO_LR_CONSTANTS[name]
    assert c == pytest.approx(2.5e-5 * CONVENTIONAL_LR[name] / 0.002)
    assert auto_lr(Component(class_name=name), 49) == pytest.approx(7 * c)


def test_constants_follow_the_default_lrs():
    assert AUTO_LR_CONSTANTS["adam"] == pytest.approx(1.25e-5)
    assert AUTO_LR_CONSTANTS["sgd"] == pytest.approx(1.25e-4)
    assert AUTO_LR_CONSTANTS["adadelta"] == pytest.approx(1.25e-2)
    assert AUTO_LR_CONSTANTS["padam"] == pytest.approx(1.25e-3)
    assert math.isclose(AUTO_LR_CONSTANTS["adamax"], AUTO_LR_CONSTANTS["nadam"])
