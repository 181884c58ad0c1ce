"""``cnn.conv_dim: 3`` on 2D images: DeepCalo's 3D convolutions over the stack of calorimeter layers.

The CNN reshapes (B, C, H, W) to (B, 1, H, W, C) and convolves with (k, k, 2) kernels; the
references here are torch.nn.functional.conv3d on an explicitly permuted input, hand-counted
parameters and hand-computed downsampling sizes.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from deepscope.config import load_config
from deepscope.config.model import CNNConfig, CombinedParams
from deepscope.data.spec import ImageSpec, InputSpec
from deepscope.errors import ConfigError
from deepscope.evaluation.architecture import architecture_figure, trace_architecture
from deepscope.models.build import build_model
from deepscope.models.layers import DropBlock
from deepscope.models.nets.cnn import CNN, LayersAsDepth
from deepscope.models.nets.combined import build_combined
from deepscope.models.summary import summarize


def _convs(module):
    return [m for m in module.modules() if isinstance(m, (nn.Conv2d, nn.Conv3d))]


def _stack(x):
    """The layer stack written out by hand: (B, C, H, W) -> (B, H, W, C) -> (B, 1, H, W, C)."""
    return x.permute(0, 2, 3, 1)[:, None]


# --- the input reshape and the first conv ----------------------------------------------------------


@pytest.mark.parametrize("cnn_type", ["simple", "res"])
def test_first_conv_is_a_conv3d_over_the_layers(cnn_type):
    cnn = CNN(2, (6, 5), CNNConfig(conv_dim=3, cnn_type=cnn_type, init_kernel_size=3, n_init_filters=4))
    first = _convs(cnn)[0]
    assert isinstance(first, nn.Conv3d) and not any(isinstance(m, nn.Conv2d) for m in cnn.modules())
    assert first.in_channels == 1 and first.out_channels == 4 and first.kernel_size == (3, 3, 2)
    assert isinstance(cnn.layers_as_depth, LayersAsDepth) and cnn.conv_dim == 3 and cnn.in_shape == (1, 6, 5, 2)
    assert cnn.out_shape == (4, 6, 5, 2)
    assert cnn(torch.randn(3, 2, 6, 5)).shape == (3, 4 * 6 * 5 * 2)


def test_layers_as_depth_keeps_the_layer_order():
    x = torch.arange(2 * 3 * 4 * 5, dtype=torch.float32).reshape(2, 3, 4, 5)
    y = LayersAsDepth()(x)
    assert y.shape == (2, 1, 4, 5, 3)
    for j in range(3):
        assert torch.equal(y[:, 0, :, :, j], x[:, j])


def test_first_conv_matches_conv3d_on_the_permuted_images():
    torch.manual_seed(0)
    cnn = CNN(3, (5, 4), CNNConfig(conv_dim=3, init_kernel_size=3, n_init_filters=2), flatten=False)
    conv = _convs(cnn)[0]
    nn.init.normal_(conv.bias)
    x = torch.randn(2, 3, 5, 4)
    # TensorFlow 'same' padding: (1, 1) on H and W for k = 3; (0, 1) on the layers for k = 2
    ref = F.conv3d(F.pad(_stack(x), (0, 1, 1, 1, 1, 1)), conv.weight, conv.bias)
    torch.testing.assert_close(cnn.features(x), ref)


@pytest.mark.parametrize("offset", [0, 1])
def test_a_net_that_sees_one_layer_responds_only_to_that_channel(offset):
    # kernel (1, 1, 2): depth tap `offset` only, so output layer d is input layer d + offset (zero past the end)
    cnn = CNN(3, (4, 5), CNNConfig(conv_dim=3, init_kernel_size=1, n_init_filters=1), flatten=False)
    conv = _convs(cnn)[0]
    assert conv.kernel_size == (1, 1, 2)
    with torch.no_grad():
        conv.weight.zero_()
        conv.weight[0, 0, 0, 0, offset] = 1.0
        conv.bias.zero_()
    x = torch.randn(2, 3, 4, 5)
    out = cnn.features(x)  # (B, 1, H, W, layers)
    for d in range(3):
        want = x[:, d + offset] if d + offset < 3 else torch.zeros(2, 4, 5)
        torch.testing.assert_close(out[:, 0, :, :, d], want)
    x2 = x.clone()
    x2[:, 2] += 1.0  # change only layer 2: only the output layer(s) that read it move
    moved = [d for d in range(3) if not torch.equal(cnn.features(x2)[..., d], out[..., d])]
    assert moved == [2 - offset]


# --- parameters ------------------------------------------------------------------------------------


def test_parameter_count_of_a_small_3d_cnn():
    cnn = CNN(2, (6, 5), CNNConfig(conv_dim=3, block_depths=[1, 2], n_init_filters=4, init_kernel_size=3,
                                   rest_kernel_size=3))
    # F_out · (F_in · 3·3·2) weights + F_out biases per conv: 1 -> 4, then 4 -> 8 and 8 -> 8
    want = (4 * 1 * 18 + 4) + (8 * 4 * 18 + 8) + (8 * 8 * 18 + 8)
    assert sum(p.numel() for p in cnn.parameters()) == want == 1820


def test_parameter_count_with_groups_and_batch_norm():
    cnn = CNN(2, (6, 5), CNNConfig(conv_dim=3, block_depths=[1, 2], n_init_filters=4, init_kernel_size=3,
                                   rest_kernel_size=[3, 3, 1], cardinality=2, normalization="batch"))
    # no conv biases before a normalization; grouped convs see F_in / 2 channels; BatchNorm3d: 2·F each
    convs = (4 * 1 * 18) + (8 * 2 * 9) + (8 * 4 * 9)
    norms = 2 * 4 + 2 * 8 + 2 * 8
    assert sum(p.numel() for p in cnn.parameters()) == convs + norms == 544
    assert [type(m).__name__ for m in cnn.modules() if isinstance(m, nn.BatchNorm3d)] == ["BatchNorm3d"] * 3


def test_cardinality_groups_every_conv_but_the_first_in_3d():
    cnn = CNN(2, (6, 5), CNNConfig(conv_dim=3, block_depths=[1, 1], n_init_filters=4, cardinality=2))
    first, second = _convs(cnn)
    assert (first.in_channels, first.groups) == (1, 1)
    assert (second.in_channels, second.out_channels, second.groups) == (4, 8, 2)
    assert second.weight.shape == (8, 2, 3, 3, 2)
    unit = cnn.blocks[1][0].conv  # ConvSame of the grouped conv
    x = torch.randn(2, 4, 6, 5, 2)
    x2 = x.clone()
    x2[:, 2:] += 1.0  # the second group's inputs
    out, out2 = unit(x), unit(x2)
    torch.testing.assert_close(out[:, :4], out2[:, :4])  # the first group's outputs do not see them
    assert not torch.allclose(out[:, 4:], out2[:, 4:])


# --- downsampling, including the layer dim ---------------------------------------------------------


@pytest.mark.parametrize("layers, min_size, sizes", [
    # (14, 25, 2): smallest 2, so 14 and 25 (≥ 3) are divided by 3, the layers by 2; then 1 < 2 stops it
    (2, 2, [(14, 25, 2), (4, 8, 1), (4, 8, 1)]),
    # (14, 25, 4): factors (3, 3, 2) -> (4, 8, 2); then smallest 2: (3, 3, 2) -> (1, 2, 1)
    (4, 2, [(14, 25, 4), (4, 8, 2), (1, 2, 1)]),
    # the layer dim counts for min_size_for_downsampling: 2 layers < 3, so no block downsamples
    (2, 3, [(14, 25, 2), (14, 25, 2), (14, 25, 2)]),
])
@pytest.mark.parametrize("downsampling", ["avgpool", "maxpool", "strided"])
def test_downsampling_sizes_include_the_layer_dim(layers, min_size, sizes, downsampling):
    cnn = CNN(layers, (14, 25), CNNConfig(conv_dim=3, block_depths=[1, 1, 1], n_init_filters=2,
                                          downsampling=downsampling, min_size_for_downsampling=min_size),
              flatten=False)
    x = LayersAsDepth()(torch.randn(2, layers, 14, 25))
    for block, size in zip(cnn.blocks, sizes):
        x = block(x)
        assert tuple(x.shape[2:]) == size
    assert cnn.out_shape == (8, *sizes[-1])
    assert tuple(cnn.features(torch.randn(2, layers, 14, 25)).shape) == (2, 8, *sizes[-1])


def test_int_strides_stride_the_layers_too_and_lists_keep_them():
    x = torch.randn(2, 4, 8, 8)
    assert CNN(4, (8, 8), CNNConfig(conv_dim=3, init_strides=2), flatten=False).features(x).shape == (2, 4, 4, 4, 2)
    kept = CNN(4, (8, 8), CNNConfig(conv_dim=3, init_strides=[2, 2, 1]), flatten=False)
    assert kept.features(x).shape == (2, 4, 4, 4, 4)


# --- every part in 3D, and backward ----------------------------------------------------------------


@pytest.mark.parametrize("cnn_type", ["simple", "res"])
def test_everything_on_backpropagates(cnn_type):
    torch.manual_seed(0)
    cfg = CNNConfig(conv_dim=3, cnn_type=cnn_type, block_depths=[1, 1], n_init_filters=4, normalization="batch",
                    activation="relu", use_squeeze_and_excite=True, squeeze_and_excite_ratio=2,
                    downsampling="maxpool", dropout={"block_size": 3, "keep_prob": 0.8}, cardinality=2,
                    globalavgpool=True)
    cnn = CNN(3, (6, 9), cfg).train()
    assert all(d.spatial_dims == 3 for d in cnn.modules() if isinstance(d, DropBlock))
    x = torch.randn(4, 3, 6, 9, requires_grad=True)
    out = cnn(x)
    assert out.shape == (4, 8)  # global average pool over (H, W, layers)
    out.square().mean().backward()
    assert x.grad is not None and bool(x.grad.abs().sum() > 0)
    for name, param in cnn.named_parameters():
        assert param.grad is not None and torch.isfinite(param.grad).all(), name


def _stacked_spec():
    return InputSpec(images={"a": ImageSpec(2, (4, 6)), "gate_a": ImageSpec(2, (4, 6)), "b": ImageSpec(1, (2, 3))},
                     scalars=3)


def _stacked_params(**extra):
    raw = {"cnn": {"conv_dim": 3, "block_depths": [1, 1], "n_init_filters": 2, "init_kernel_size": 3,
                   "normalization": "batch", "activation": "relu", "downsampling": "avgpool"},
           "gate_net": {"units": [3], "final_activation": "gauss_f"},
           "upsampling": {"use": True, "wanted_size": [4, 6]},
           "scalar_net": {"units": [4], "connect_to": ["FiLM_gen"]}, "FiLM_gen": {"use": True, "units": [5]},
           "top": {"units": [6, 1], "activation": "relu"}, **extra}
    return CombinedParams.model_validate(raw)


def _stacked_inputs(spec, b=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {"images": {k: torch.randn(b, v.channels, *v.spatial, generator=g) for k, v in spec.images.items()},
            "scalars": torch.randn(b, spec.scalars, generator=g)}


def test_gate_upsampling_and_film_with_conv_dim_3():
    torch.manual_seed(0)
    spec = _stacked_spec()
    net = build_model(_stacked_params(), spec, "mse")
    # a: 2 layers, concatenate-merged with its gate -> 4; b: 1 layer upsampled 2x -> the stack has 5 layers
    assert net.cnn.in_shape == (1, 4, 6, 5) and net.upsampling[1].factors == (2, 2)
    assert net.FiLM_gen.out_features == 2 * (2 + 4)
    inputs = _stacked_inputs(spec)
    seen = []
    handle = net.cnn.blocks[0][0].conv.register_forward_hook(lambda m, i, o: seen.append(i[0]))  # before padding
    net.train()
    out = net(**inputs)
    handle.remove()
    assert out.shape == (3, 1)
    torch.testing.assert_close(seen[0], _stack(net.merged_images(inputs["images"])))
    out.square().mean().backward()
    for name, param in net.named_parameters():
        assert param.grad is not None and torch.isfinite(param.grad).all(), name
    net.eval()
    other = dict(inputs, scalars=inputs["scalars"] + 1.0)  # scalars reach the output only through FiLM
    assert not torch.allclose(net(**inputs), net(**other))


def test_network_in_network_after_a_layer_stack_cnn():
    spec = InputSpec(images={"calo": ImageSpec(3, (6, 6))})
    p = CombinedParams.model_validate({"cnn": {"conv_dim": 3, "n_init_filters": 2},
                                       "network_in_network": {"use": True, "units": [4], "strides": [1, 1, 2]},
                                       "top": {"units": [1]}})
    net = build_combined(spec, p)
    assert isinstance(_convs(net.network_in_network)[0], nn.Conv3d)
    assert net.network_in_network.out_features == 4 * 6 * 6 * 2
    assert net(images={"calo": torch.randn(2, 3, 6, 6)}).shape == (2, 1)
    bad = CombinedParams.model_validate({"cnn": {"conv_dim": 3},
                                         "network_in_network": {"use": True, "strides": [1, 1]}})
    with pytest.raises(ConfigError) as info:
        build_combined(spec, bad)
    assert str(info.value) == ("model.network_in_network.strides: kernel/stride [1, 1] has 2 entries for 3D "
                               "convolutions; give 3 entries (one per conv dim) or an int")


def test_summary_and_architecture_figure(tmp_path):
    spec = _stacked_spec()
    net = build_model(_stacked_params(), spec, "mse")
    text = summarize(net, spec)
    assert "cnn.layers_as_depth" in text and "LayersAsDepth" in text and "(B, 1, 4, 6, 5)" in text
    assert "Conv3d" in text and "Conv2d" not in text
    edges = {b.key: b.sources for b in trace_architecture(net, spec)}
    assert edges["cnn"] == {"upsampling", "FiLM_gen"}
    assert architecture_figure(net, spec, tmp_path / "arch.png").stat().st_size > 10_000


# --- the rules, with their messages ----------------------------------------------------------------


def test_upsampling_wanted_size_is_the_2d_size_of_the_images():
    spec = InputSpec(images={"a": ImageSpec(2, (4, 6)), "b": ImageSpec(1, (2, 3))})
    net = build_combined(spec, CombinedParams.model_validate(
        {"cnn": {"conv_dim": 3}, "upsampling": {"use": True, "wanted_size": [4, 6]}}))
    assert net.cnn.in_shape == (1, 4, 6, 3)
    with pytest.raises(ConfigError) as info:
        build_combined(spec, CombinedParams.model_validate(
            {"cnn": {"conv_dim": 3}, "upsampling": {"use": True, "wanted_size": [4, 6, 3]}}))
    assert str(info.value) == (
        "model.upsampling.wanted_size [4, 6, 3] has 3 entries but images['a'] is 2D (4x6); wanted_size is the size "
        "the images are upsampled to, one entry per image dim: with model.cnn.conv_dim 3 it is still their 2D (H, W) "
        "size, since the images are upsampled before their layers are stacked as the CNN's third dim; give 2 "
        "entries, e.g. [4, 6]")


def test_kernel_lists_need_one_entry_per_conv_dim():
    spec = InputSpec(images={"calo": ImageSpec(2, (6, 6))})
    ok = build_combined(spec, CombinedParams.model_validate({"cnn": {"conv_dim": 3, "init_kernel_size": [3, 3, 1]}}))
    assert _convs(ok.cnn)[0].kernel_size == (3, 3, 1)
    with pytest.raises(ConfigError) as info:  # a 2-list with conv_dim 3 is caught when the config is read
        load_config({"model": {"cnn": {"conv_dim": 3, "init_kernel_size": [3, 3]}}})
    assert info.value.problems == ["model.cnn: init_kernel_size has 2 entries but conv_dim is 3; give 3 entries "
                                   "(one per conv dim) or an int"]
    with pytest.raises(ConfigError) as info:  # conv_dim left out: the builder checks them against the images
        build_combined(spec, CombinedParams.model_validate({"cnn": {"rest_strides": [1, 1, 2],
                                                                    "block_depths": [1, 1]}}))
    assert str(info.value) == (
        "model.cnn.rest_strides [1, 1, 2] has 3 entries but the images are 2D (6x6); give 2 entries, or an int; "
        "or set model.cnn.conv_dim: 3 to convolve over their layers as a third dim")
    with pytest.raises(ConfigError) as info:
        build_combined(InputSpec(images={"cube": ImageSpec(1, (4, 4, 4))}),
                       CombinedParams.model_validate({"cnn": {"init_kernel_size": [3, 3]}}))
    assert str(info.value) == ("model.cnn.init_kernel_size [3, 3] has 2 entries but the images are 3D (4x4x4); "
                               "give 3 entries, or an int")
