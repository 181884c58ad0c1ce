"""The multiview model: a CNN per view of its own shape, features concatenated into one head."""

from __future__ import annotations

import pytest
import torch

from deepscope.config.io import load_config
from deepscope.data.spec import ImageSpec, InputSpec
from deepscope.errors import ConfigError
from deepscope.models.build import build_model
from deepscope.models.nets.cnn import CNN

VIEWS = {"top": ImageSpec(1, (9, 113)), "side": ImageSpec(1, (30, 113)), "front": ImageSpec(1, (30, 9))}


def _model(**over):
    model = {"architecture": "multiview", "cnn": {"n_init_filters": 4, "block_depths": [1, 1]},
             "top": {"units": [8, 4]}, **over}
    return load_config({"model": model, "train": {"loss": "cross_entropy"}}).model


def _spec(scalars=None):
    return InputSpec(images=dict(VIEWS), scalars=scalars, target_shape=(), target_kind="label", n_classes=4)


def test_three_views_of_different_shapes_and_the_head_sees_their_concatenation():
    net = build_model(_model(), _spec(), "cross_entropy")
    images = {k: torch.randn(2, 1, *v.spatial) for k, v in VIEWS.items()}
    assert net(images).shape == (2, 4)
    feats = net.features(images)
    assert feats.shape[1] == sum(net.views[k].out_features for k in VIEWS)
    torch.testing.assert_close(feats[:, :net.views["top"].out_features], net.views["top"](images["top"]))
    cnn_params = sum(sum(p.numel() for p in CNN(1, v.spatial, _model().cnn).parameters()) for v in VIEWS.values())
    top_params = (feats.shape[1] * 8 + 8) + (8 * 4 + 4)
    assert sum(p.numel() for p in net.parameters()) == cnn_params + top_params


def test_a_view_with_its_own_cnn_and_scalars_joining_the_head():
    net = build_model(_model(views={"front": {"n_init_filters": 2, "block_depths": [1], "globalavgpool": True}}),
                      _spec(scalars=3), "cross_entropy")
    assert net.views["front"].out_features == 2  # pooled: one feature per map
    images = {k: torch.randn(2, 1, *v.spatial) for k, v in VIEWS.items()}
    assert net.features(images, torch.randn(2, 3)).shape[1] == sum(m.out_features for m in net.views.values()) + 3
    net(images, torch.randn(2, 3)).sum().backward()


def test_an_unknown_view_name_is_named_with_a_suggestion():
    with pytest.raises(ConfigError, match=r"model.views.sid: the data has no image 'sid'; did you mean 'side'"):
        build_model(_model(views={"sid": {"n_init_filters": 2}}), _spec(), "cross_entropy")
