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


def test_conv_dim_against_the_image_dims():
    # conv_dim 3 on 2D images stacks their layers as a third conv dim (DeepCalo); it used to be refused
    spec = InputSpec(images={"calo": ImageSpec(2, (6, 6))})
    net = build_model(_model_cfg([4, 1], cnn={"conv_dim": 3}), spec, "mse")
    assert net.cnn.conv_dim == 3 and net.cnn.in_shape == (1, 6, 6, 2) and net.cnn.layers_as_depth is not None
    spec3 = InputSpec(images={"cube": ImageSpec(1, (4, 4, 4))})
    with pytest.raises(ConfigError) as info:
        build_model(_model_cfg([4, 1], cnn={"conv_dim": 2}), spec3, "mse")
    assert str(info.value) == ("model.cnn.conv_dim is 2 but the images are 3D (1 channel(s) of 4x4x4): a 2D "
                               "convolution cannot run over (D, H, W); set model.cnn.conv_dim: 3, or leave it out to "
                               "use the images' dims")
    plain = build_model(_model_cfg([4, 1], cnn={"conv_dim": 3}), spec3, "mse")  # 3D images: the plain 3D CNN
    assert plain.cnn.layers_as_depth is None and plain.cnn.in_shape == (1, 4, 4, 4)
    inferred = build_model(_model_cfg([4, 1]), spec, "mse")  # conv_dim null: the images' own dims
    assert inferred.cnn.conv_dim == 2 and inferred.cnn.in_shape == (2, 6, 6)