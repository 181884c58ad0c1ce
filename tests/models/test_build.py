"""build_model / check_output: the model must fit the data it is built for."""

from __future__ import annotations

import pytest
import torch

from deepscope.config import load_config
from deepscope.data.spec import ImageSpec, InputSpec
from deepscope.errors import ConfigError
from deepscope.models.build import build_model, check_output, output_width
from deepscope.models.nets.combined import CombinedNet

IMAGES = {"calo": ImageSpec(1, (6, 6))}


def _model_cfg(units, loss="mse", **model):
    cfg = load_config({"model": {"cnn": {"n_init_filters": 2}, "top": {"units": units}, **model},
                       "train": {"loss": loss}})
    return cfg.model


def test_builds_the_registered_architecture():
    spec = InputSpec(images=IMAGES, scalars=2)
    model = build_model(_model_cfg([4, 1]), spec, "mse")
    assert isinstance(model, CombinedNet)
    out = model(images={"calo": torch.randn(3, 1, 6, 6)}, scalars=torch.randn(3, 2))
    assert out.shape == (3, 1)
    assert output_width(model, spec) == 1
    assert model.training  # the dry run restores the mode


def test_alias_architecture():
    cfg = load_config({"model": {"architecture": "deepcalo", "top": {"units": [1]}}})
    assert isinstance(build_model(cfg.model, InputSpec(scalars=2), "mse"), CombinedNet)


def test_regression_output_width_must_match_targets():
    spec = InputSpec(images=IMAGES)
    with pytest.raises(ConfigError) as info:
        build_model(_model_cfg([4, 2]), spec, "mse")
    msg = str(info.value)
    assert "model.top.units" in msg and "2 output(s)" in msg and "one number per sample" in msg


def test_vector_targets():
    spec = InputSpec(images=IMAGES, target_shape=(3,))
    build_model(_model_cfg([4, 3]), spec, "mse")
    with pytest.raises(ConfigError, match=r"model.top.units.*per-sample shape \(3,\)"):
        build_model(_model_cfg([4, 1]), spec, "mse")


def test_label_targets_need_one_output_per_class():
    spec = InputSpec(images=IMAGES, target_kind="label", n_classes=10)
    build_model(_model_cfg([4, 10], "cross_entropy"), spec, "cross_entropy")
    with pytest.raises(ConfigError) as info:
        build_model(_model_cfg([4, 5], "cross_entropy"), spec, "cross_entropy")
    msg = str(info.value)
    assert "model.top.units" in msg and "10 classes" in msg and "make the last entry of units 10" in msg


def test_check_output_directly():
    spec = InputSpec(scalars=2, target_shape=(2,))
    model = build_model(_model_cfg([3]), spec)  # no loss: no check
    with pytest.raises(ConfigError, match="model.top.units"):
        check_output(model, spec, "mse")


def test_conv_dim_mismatch():
    spec = InputSpec(images=IMAGES)
    with pytest.raises(ConfigError) as info:
        build_model(_model_cfg([4, 1], cnn={"conv_dim": 3}), spec, "mse")
    assert "model.cnn.conv_dim" in str(info.value)
    spec3 = InputSpec(images={"cube": ImageSpec(1, (4, 4, 4))})
    with pytest.raises(ConfigError, match="model.cnn.conv_dim is 2"):
        build_model(_model_cfg([4, 1], cnn={"conv_dim": 2}), spec3, "mse")
    build_model(_model_cfg([4, 1], cnn={"conv_dim": 3}), spec3, "mse")
