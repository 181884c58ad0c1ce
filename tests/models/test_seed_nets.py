"""RACCOON and PENGUIN exactly as the seed lays them out (SEED-FACTS §2): layers, parameter counts, sizes."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from deepscope.config import load_config
from deepscope.data.spec import ImageSpec, InputSpec
from deepscope.errors import ConfigError
from deepscope.models.build import build_model
from deepscope.models.nets.seeds import conv_stack_size


def _net(arch: str, channels: int, spatial: tuple[int, ...], lp: int, **model):
    cfg = load_config({"model": {"architecture": arch, "layer_param": lp, **model},
                       "train": {"loss": "bce_with_logits"}})
    spec = InputSpec(images={"x": ImageSpec(channels, spatial)}, target_shape=())
    return build_model(cfg.model, spec, "bce_with_logits")


def _raccoon_count(c: int, lp: int, k: int, final: int) -> int:
    """Hand count: conv weights (no bias) + BatchNorm (2 per channel) + two dense layers."""
    convs = [(c, lp), (lp, 4 * lp), (4 * lp, 8 * lp)]
    return (sum(i * o * k + 2 * o for i, o in convs)
            + (8 * lp * final * lp + lp) + (lp + 1))


def _penguin_count(c: int, lp: int, k: int, final: int) -> int:
    widths = [lp, 2 * lp, 4 * lp, 6 * lp, 8 * lp, 10 * lp]
    convs = list(zip([c, *widths[:-1]], widths))
    return (sum(i * o * k + 2 * o for i, o in convs)
            + (10 * lp * final * 10 * lp + 10 * lp) + 2 * 10 * lp  # Linear + BatchNorm1d
            + (10 * lp * lp + lp) + 2 * lp + (lp + 1))


def _trainable(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters() if p.requires_grad)


@pytest.mark.parametrize("lp, channels, size", [(16, 1, 256), (8, 2, 128), (4, 1, 64), (3, 3, 100)])
def test_raccoon_parameter_count_2d(lp, channels, size):
    final = conv_stack_size((size, size), [(4, 4, 0)] * 3)
    assert _trainable(_net("raccoon", channels, (size, size), lp)) == _raccoon_count(channels, lp, 16, math.prod(final))


def test_the_seeds_256_input_gives_its_flatten_sizes():
    assert conv_stack_size((256, 256), [(4, 4, 0)] * 3) == (4, 4)  # RACCOON: 8·lp·4·4
    assert conv_stack_size((256, 256), [(4, 2, 1)] * 6) == (4, 4)  # PENGUIN: 10·lp·4·4
    net = _net("raccoon", 1, (256, 256), 16)
    assert net.head[0].in_features == 8 * 16 * 4 * 4
    assert _trainable(net) == 180929  # 256 + 32 + 16384 + 128 + 131072 + 256 + 32784 + 17


@pytest.mark.parametrize("lp, channels, size", [(16, 1, 256), (4, 1, 64), (2, 2, 96)])
def test_penguin_parameter_count_2d(lp, channels, size):
    final = conv_stack_size((size, size), [(4, 2, 1)] * 6)
    assert _trainable(_net("penguin", channels, (size, size), lp)) == _penguin_count(channels, lp, 16, math.prod(final))


@pytest.mark.parametrize("arch, count", [("raccoon", _raccoon_count), ("penguin", _penguin_count)])
def test_3d_cubes_have_cubic_kernels(arch, count):
    conv = (4, 4, 0) if arch == "raccoon" else (4, 2, 1)
    layers = 3 if arch == "raccoon" else 6
    final = conv_stack_size((64, 64, 64), [conv] * layers)
    net = _net(arch, 1, (64, 64, 64), 2)
    assert _trainable(net) == count(1, 2, 64, math.prod(final))
    out = net(images={"x": torch.randn(2, 1, 64, 64, 64)})
    assert out.shape == (2, 1)


@pytest.mark.parametrize("arch", ["raccoon", "penguin"])
def test_layers_are_conv_without_bias_batchnorm_act(arch):
    net = _net(arch, 1, (64, 64), 4)
    convs = [m for m in net.features if isinstance(m, nn.Conv2d)]
    assert all(c.bias is None and c.kernel_size == (4, 4) for c in convs)
    assert [c.stride for c in convs] == ([(4, 4)] * 3 if arch == "raccoon" else [(2, 2)] * 6)
    kinds = [type(m).__name__ for m in net.features][:3]
    assert kinds == ["Conv2d", "BatchNorm2d", "ReLU"]  # the seed's default activation
    net.train()
    out = net(images={"x": torch.randn(4, 1, 64, 64)})
    out.sum().backward()
    assert out.shape == (4, 1) and all(torch.isfinite(p.grad).all() for p in net.parameters())


def test_leaky_relu_0_2_on_request():
    net = _net("raccoon", 1, (64, 64), 4, activation={"class_name": "leakyrelu", "config": {"negative_slope": 0.2}})
    acts = [m for m in net.modules() if isinstance(m, nn.LeakyReLU)]
    assert len(acts) == 4 and all(a.negative_slope == 0.2 for a in acts)


@pytest.mark.parametrize("arch, smallest", [("raccoon", 64), ("penguin", 64)])
def test_too_small_inputs_name_the_smallest_size(arch, smallest):
    with pytest.raises(ConfigError, match=f"need at least {smallest} pixels per side"):
        _net(arch, 1, (smallest - 1, smallest - 1), 4)
    _net(arch, 1, (smallest, smallest), 4)  # the smallest works


def test_image_targets_are_refused():
    cfg = load_config({"model": {"architecture": "penguin"}})
    spec = InputSpec(images={"x": ImageSpec(1, (64, 64))}, target_shape=(1, 64, 64))
    with pytest.raises(ConfigError, match="outputs one value per target column"):
        build_model(cfg.model, spec)


def test_the_docs_example_builds():
    import re
    from pathlib import Path

    import yaml

    text = (Path(__file__).resolve().parents[2] / "docs" / "architectures.md").read_text(encoding="utf-8")
    example = next(b for b in re.findall(r"```yaml\n(.*?)```", text, flags=re.S) if "architecture: penguin" in b)
    raw = yaml.safe_load(example)
    cfg = load_config(raw)
    spec = InputSpec(images={"x": ImageSpec(1, (256, 256))}, target_shape=())
    net = build_model(cfg.model, spec, cfg.train.loss_name)
    assert net(images={"x": torch.randn(2, 1, 256, 256)}).shape == (2, 1)
