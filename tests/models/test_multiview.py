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


def test_a_view_cnn_is_loaded_from_a_single_view_run_and_frozen(tmp_path):
    import numpy as np

    import deepscope

    rng = np.random.default_rng(0)

    def make(n, views):
        shapes = {"top": (9, 40), "side": (16, 40)}
        images = {k: rng.normal(size=(n, *shapes[k], 1)).astype(np.float32) for k in views}
        return {"images": images, "targets": rng.integers(0, 4, n)}

    base = {"log": {"dir": str(tmp_path), "progress_bar": "none", "tensorboard": False, "figures": False},
            "train": {"epochs": 1, "batch_size": 32, "loss": "cross_entropy"}}
    model = {"architecture": "multiview", "cnn": {"n_init_filters": 4, "block_depths": [1, 1]}, "top": {"units": [8, 4]}}
    single = deepscope.train({**base, "name": "top-alone", "model": model},
                             data={"train": make(64, ["top"]), "val": make(32, ["top"])})
    loaded_top = {k: v.clone() for k, v in _net_of(single.run_dir).views["top"].state_dict().items()}
    both = {**model, "pretrained_model": {"use": True, "weights_path": str(single.run_dir),
                                          "layers_to_load": ["views.top"], "freeze_loaded_layers": True}}
    combined = deepscope.train({**base, "name": "both", "model": both},
                               data={"train": make(64, ["top", "side"]), "val": make(32, ["top", "side"])})
    net = _net_of(combined.run_dir)
    for key, value in net.views["top"].state_dict().items():
        if "running" not in key and "num_batches" not in key:  # BatchNorm statistics still move (documented)
            torch.testing.assert_close(value, loaded_top[key], msg=key)
    # equal after an epoch of training: loaded (a fresh view would differ) and frozen (training would move it)


def _net_of(run_dir):
    from deepscope.training.experiment import _load_run

    return _load_run(run_dir).net
