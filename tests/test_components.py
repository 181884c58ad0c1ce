"""Every declared component has an implementation, and its metadata is what the config checks need."""

from __future__ import annotations

import typing

import pytest

from deepscope.components import (ACTIVATIONS, ALL_REGISTRIES, ARCHITECTURES, INITIALIZERS, LOSSES, METRICS,
                                  NORMALIZATIONS, OPTIMIZERS, SOURCES)
from deepscope.config.common import Component
from deepscope.registry import normalize_name

ENTRIES = [(kind, entry.name) for kind, reg in ALL_REGISTRIES.items() for entry in reg.entries()]


def test_every_kind_is_registered_and_non_empty():
    assert set(ALL_REGISTRIES) == {"architectures", "sources", "losses", "metrics", "optimizers",
                                   "activations", "initializers", "normalizations", "regularizers", "constraints", "schedules",
                                   "tasks"}
    for kind, reg in ALL_REGISTRIES.items():
        assert len(reg) > 0, kind
    assert len(ENTRIES) == sum(len(r) for r in ALL_REGISTRIES.values())


@pytest.mark.parametrize("kind, name", ENTRIES, ids=[f"{k}:{n}" for k, n in ENTRIES])
def test_declared_target_imports_and_is_callable(kind, name):
    entry = ALL_REGISTRIES[kind].entry(name)
    impl = entry.load()
    assert callable(impl), f"{kind} '{name}' -> {entry.target!r} is not callable"
    assert ALL_REGISTRIES[kind].get(name) is impl


@pytest.mark.parametrize("kind, name", ENTRIES, ids=[f"{k}:{n}" for k, n in ENTRIES])
def test_name_and_aliases_resolve_to_the_entry(kind, name):
    reg = ALL_REGISTRIES[kind]
    entry = reg.entry(name)
    assert reg.canonical(name) == name
    for alias in entry.aliases:
        assert reg.canonical(alias) == name
        assert reg.canonical(alias.upper()) == name
    assert normalize_name(name) == normalize_name(name.replace("_", "-"))


LOSS_NAMES = LOSSES.names()


@pytest.mark.parametrize("name", LOSS_NAMES)
def test_loss_meta(name):
    meta = LOSSES.entry(name).meta
    # softmax_logits: multi-label logits whose probabilities are one softmax over the labels
    assert meta["output"] in {"values", "logits", "probs", "softmax_logits"}
    assert meta["task"] in {"regression", "binary", "multiclass"}
    # regression losses take raw values; classification losses logits or probabilities
    assert (meta["output"] == "values") == (meta["task"] == "regression")


def test_loss_meta_of_known_losses():
    assert LOSSES.entry("mse").meta == {"output": "values", "task": "regression"}
    assert LOSSES.entry("cross_entropy").meta == {"output": "logits", "task": "multiclass"}
    assert LOSSES.entry("categorical_crossentropy").meta == {"output": "probs", "task": "multiclass"}
    assert LOSSES.entry("bce").meta == {"output": "probs", "task": "binary"}
    assert LOSSES.entry("bce_with_logits").meta == {"output": "logits", "task": "binary"}
    assert LOSSES.entry("softmax_multi_hot").meta == {"output": "softmax_logits", "task": "binary"}


@pytest.mark.parametrize("name", METRICS.names())
def test_metric_meta(name):
    assert METRICS.entry(name).meta["task"] in {"classification", "regression", "registration"}


def test_metric_tasks():
    classification = {n for n in METRICS.names() if METRICS.entry(n).meta["task"] == "classification"}
    assert classification == {"accuracy", "auc", "precision", "recall", "f1", "exact_match", "hamming_loss",
                              "hit_efficiency", "hit_purity"}
    registration = {n for n in METRICS.names() if METRICS.entry(n).meta["task"] == "registration"}
    assert registration == {"vector_distance", "vector_distance_p50", "vector_distance_p90", "vector_distance_p99",
                            "fold_fraction", "inverse_residual", "registered_psnr", "registered_ssim",
                            "registered_ncc", "mutual_information", "dice", "iou"}


def _tags(annotation, field):
    """The discriminator values a config union accepts."""
    union = typing.get_args(annotation)[0]
    members = typing.get_args(union) or (union,)
    return {tag for m in members for tag in typing.get_args(m.model_fields[field].annotation)}


def test_config_accepts_exactly_the_registered_sources_and_architectures():
    from deepscope.config.data import DataConfig
    from deepscope.config.model import ModelConfig

    assert _tags(DataConfig, "source") == set(SOURCES.names())
    assert _tags(ModelConfig, "architecture") == set(ARCHITECTURES.names())


# --- the layer factories and optimizers build every registered name ---------------------------------


@pytest.mark.parametrize("name", ACTIVATIONS.names())
def test_every_activation_builds(name):
    import torch

    from deepscope.models.layers import make_activation

    module = make_activation(Component(class_name=name), channels=3)
    assert isinstance(module, torch.nn.Module)
    out = module(torch.linspace(-2, 2, 12).reshape(4, 3))
    assert out.shape == (4, 3) and torch.isfinite(out).all()


def test_keras_style_activation_options():
    from deepscope.models.layers import make_activation

    module = make_activation(Component(class_name="LeakyReLU", config={"alpha": 0.1}))
    import torch

    assert torch.allclose(module(torch.tensor([-1.0, 2.0])), torch.tensor([-0.1, 2.0]))


@pytest.mark.parametrize("name", INITIALIZERS.names())
def test_every_initializer_builds(name):
    import torch

    from deepscope.models.layers import make_initializer

    init = make_initializer(Component(class_name=name))
    if name == "torch_default":
        assert init is None
        return
    weight = torch.full((6, 4), 7.0)
    init(weight)
    assert torch.isfinite(weight).all() and not torch.equal(weight, torch.full((6, 4), 7.0))


@pytest.mark.parametrize("name", NORMALIZATIONS.names())
@pytest.mark.parametrize("spatial_dims", [0, 2])
def test_every_normalization_builds(name, spatial_dims):
    import torch

    from deepscope.models.layers import make_normalization

    module = make_normalization(Component(class_name=name), channels=4, spatial_dims=spatial_dims)
    x = torch.randn(5, 4, *([3] * spatial_dims))
    assert module(x).shape == x.shape


@pytest.mark.parametrize("name", OPTIMIZERS.names())
def test_every_optimizer_builds_and_steps(name):
    import torch

    from deepscope.optim.optimizers import make_optimizer

    w = torch.nn.Parameter(torch.ones(3))
    opt = make_optimizer(Component(class_name=name), [w], lr=0.01)
    assert isinstance(opt, torch.optim.Optimizer)
    assert opt.param_groups[0]["lr"] == 0.01
    (w ** 2).sum().backward()
    opt.step()
    assert not torch.equal(w.detach(), torch.ones(3))
