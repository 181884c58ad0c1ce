"""DeepCalo's combined model: downsampling rule, CNN shapes and parameters, the whole net."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from deepscope.config.model import CNNConfig, CombinedParams
from deepscope.data.spec import ImageSpec, InputSpec
from deepscope.errors import ConfigError
from deepscope.models.blocks import SqueezeExcite
from deepscope.models.layers import ConvSame
from deepscope.models.nets.combined import CNN, CombinedNet, build_combined, downsampling_factors


def _convs(module):
    return [m.conv for m in module.modules() if isinstance(m, ConvSame)]


def _n_params(module):
    return sum(p.numel() for p in module.parameters())


# --- downsampling rule -----------------------------------------------------------------------------


def test_readme_downsampling_example():
    factors = downsampling_factors((7, 6), 6)
    assert factors == (2, 2)
    assert tuple(s // f for s, f in zip((7, 6), factors)) == (3, 3)
    assert downsampling_factors((7, 6), 7) is None


def test_aspect_rule_reduces_the_long_axis_by_three():
    assert downsampling_factors((12, 8), 2) == (3, 2)  # 12 >= 1.5 * 8
    assert downsampling_factors((11, 8), 2) == (2, 2)  # 11 < 12
    assert downsampling_factors((8, 24), 2) == (2, 3)
    assert downsampling_factors((4, 6, 9), 2) == (2, 3, 3)
    assert downsampling_factors((5, 5, 5), 6) is None


# --- CNN -------------------------------------------------------------------------------------------


def _spatial(dims):
    return (9, 8) if dims == 2 else (6, 7, 5)


@pytest.mark.parametrize("dims", [2, 3])
def test_filters_double_per_block_and_shapes_match_forward(dims):
    spatial = _spatial(dims)
    cfg = CNNConfig(block_depths=[1, 2, 1], n_init_filters=4, activation="relu")
    cnn = CNN(2, spatial, cfg)
    convs = _convs(cnn)
    assert [c.out_channels for c in convs] == [4, 8, 8, 16]
    assert [c.in_channels for c in convs] == [2, 4, 8, 8]
    k0 = (5, 5) if dims == 2 else (5, 5, 2)
    assert convs[0].kernel_size == k0 and convs[1].kernel_size == ((3, 3) if dims == 2 else (3, 3, 2))
    out = cnn(torch.randn(2, 2, *spatial))
    assert cnn.out_shape == (16, *spatial)  # no downsampling, stride 1
    assert out.shape == (2, cnn.out_features) == (2, 16 * math.prod(spatial))


@pytest.mark.parametrize("dims", [2, 3])
def test_strides_shrink_the_image(dims):
    spatial = _spatial(dims)
    cnn = CNN(1, spatial, CNNConfig(block_depths=[1, 1], init_strides=2, rest_strides=2))
    want = tuple(math.ceil(math.ceil(s / 2) / 2) for s in spatial)
    assert cnn.out_shape == (8, *want)
    blocks = cnn.blocks(torch.randn(1, 1, *spatial))
    assert tuple(blocks.shape[1:]) == cnn.out_shape
    assert cnn(torch.randn(1, 1, *spatial)).shape == (1, cnn.out_features)


@pytest.mark.parametrize("dims", [2, 3])
def test_globalavgpool(dims):
    spatial = _spatial(dims)
    cnn = CNN(1, spatial, CNNConfig(block_depths=[1, 1], globalavgpool=True))
    x = torch.randn(3, 1, *spatial)
    out = cnn(x)
    assert cnn.out_features == 8 and out.shape == (3, 8)
    torch.testing.assert_close(out, cnn.blocks(x).flatten(2).mean(-1))


@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize("kind,cls", [("avgpool", (nn.AvgPool2d, nn.AvgPool3d)),
                                      ("maxpool", (nn.MaxPool2d, nn.MaxPool3d)),
                                      ("strided", (nn.Conv2d, nn.Conv3d))])
def test_each_downsampling_kind(dims, kind, cls):
    spatial = (12, 8) if dims == 2 else (6, 6, 9)
    cfg = CNNConfig(block_depths=[1, 1, 1], downsampling=kind, min_size_for_downsampling=3)
    cnn = CNN(1, spatial, cfg)
    # block 1: (12, 8) -> factors (3, 2) -> (4, 4); block 2: (4, 4) -> (2, 2)
    # 3D: (6, 6, 9) -> (2, 2, 3) -> (3, 3, 3); then (3, 3, 3) -> (1, 1, 1)
    want = (2, 2) if dims == 2 else (1, 1, 1)
    assert cnn.out_shape == (16, *want)
    first_of_block = [cnn.blocks[i][0] for i in range(3)]
    assert not isinstance(first_of_block[0], cls[dims - 2])
    assert all(isinstance(m, cls[dims - 2]) for m in first_of_block[1:])
    ds = first_of_block[1]
    factors = (3, 2) if dims == 2 else (2, 2, 3)
    assert tuple(ds.kernel_size) == factors and tuple(ds.stride) == factors
    if kind == "strided":
        assert ds.in_channels == ds.out_channels == 4
    out = cnn.blocks(torch.randn(2, 1, *spatial))
    assert tuple(out.shape[1:]) == cnn.out_shape


def test_no_downsampling_below_min_size():
    cnn = CNN(1, (6, 6), CNNConfig(block_depths=[1, 1, 1], downsampling="maxpool", min_size_for_downsampling=4))
    # 6x6 -> 3x3 in block 1; block 2 sees 3 < 4 and keeps its size
    assert cnn.out_shape == (16, 3, 3)
    assert sum(isinstance(m, nn.MaxPool2d) for m in cnn.modules()) == 1


def test_cardinality_grouped_convolution_and_parameter_count():
    cfg = CNNConfig(block_depths=[1, 2], n_init_filters=4, cardinality=2, init_kernel_size=3, rest_kernel_size=3)
    cnn = CNN(3, (6, 6), cfg)
    convs = _convs(cnn)
    assert [c.groups for c in convs] == [1, 2, 2]  # block 0 is a plain conv
    # weights out * in/groups * k*k plus a bias per output (no normalization)
    expected = (4 * 3 * 9 + 4) + (8 * (4 // 2) * 9 + 8) + (8 * (8 // 2) * 9 + 8)
    assert _n_params(cnn) == expected
    ungrouped = CNN(3, (6, 6), CNNConfig(block_depths=[1, 2], n_init_filters=4, init_kernel_size=3))
    assert _n_params(ungrouped) == (4 * 3 * 9 + 4) + (8 * 4 * 9 + 8) + (8 * 8 * 9 + 8)


def test_cardinality_must_divide_filters():
    from deepscope.config import load_config

    with pytest.raises(ConfigError, match="model.cnn: cardinality 3 must divide n_init_filters 4"):
        load_config({"model": {"cnn": {"block_depths": [1, 1], "cardinality": 3}}})
    # the module checks it too, for configs built without validation
    with pytest.raises(ConfigError, match="model.cnn.cardinality 3 must divide n_init_filters 4"):
        CNN(1, (6, 6), CNNConfig.model_construct(**{**CNNConfig().model_dump(), "block_depths": [1, 1],
                                                    "cardinality": 3}))


@pytest.mark.parametrize("dims", [2, 3])
def test_squeeze_and_excite(dims):
    spatial = _spatial(dims)
    cfg = CNNConfig(block_depths=[1, 1], n_init_filters=4, use_squeeze_and_excite=True,
                    squeeze_and_excite_ratio=2)
    cnn = CNN(1, spatial, cfg)
    ses = [m for m in cnn.modules() if isinstance(m, SqueezeExcite)]
    assert [(se.fc[0].in_features, se.fc[0].out_features) for se in ses] == [(4, 2), (8, 4)]
    unit = cnn.blocks[0][0]
    x = torch.randn(2, 1, *spatial)
    pre = unit.act(unit.norm(unit.conv(x)))
    scale = ses[0].fc(pre.flatten(2).mean(-1))  # (B, C) in (0, 1)
    assert float(scale.detach().min()) > 0 and float(scale.detach().max()) < 1
    torch.testing.assert_close(unit(x), pre * scale.reshape(2, 4, *([1] * dims)))
    plain = CNN(1, spatial, CNNConfig(block_depths=[1, 1]))
    assert not any(isinstance(m, SqueezeExcite) for m in plain.modules())


def test_conv_dim_against_the_images():
    stacked = CNN(3, (5, 5), CNNConfig(conv_dim=3))  # 2D images: their 3 layers become the third conv dim
    assert stacked.in_shape == (1, 5, 5, 3) and stacked(torch.randn(2, 3, 5, 5)).shape == (2, 4 * 5 * 5 * 3)
    with pytest.raises(ConfigError, match=r"model.cnn.conv_dim is 2 but the images are 3D \(1 channel\(s\) of 5x5x5\)"):
        CNN(1, (5, 5, 5), CNNConfig(conv_dim=2))
    assert CNN(1, (5, 5, 5), CNNConfig(conv_dim=3)).layers_as_depth is None


def test_normalization_drops_the_conv_bias():
    cnn = CNN(1, (5, 5), CNNConfig(block_depths=[1, 1], normalization="batch"))
    assert all(c.bias is None for c in _convs(cnn))


# --- the whole net ---------------------------------------------------------------------------------


SPEC = InputSpec(images={"calo": ImageSpec(1, (8, 8))}, scalars=3, tracks=(4, 2))


def _params(**model):
    base = {"cnn": {"n_init_filters": 2, "init_kernel_size": 3, "activation": "relu"},
            "scalar_net": {"units": [4], "activation": "relu"},
            "track_net": {"phi_units": [5], "rho_units": [3], "activation": "relu"},
            "top": {"units": [6, 1], "activation": "relu"}}
    for key, value in model.items():
        base[key] = {**base.get(key, {}), **value}
    return CombinedParams.model_validate(base)


def _inputs(spec, b=4):
    torch.manual_seed(0)
    inputs = {"images": {k: torch.randn(b, v.channels, *v.spatial) for k, v in spec.images.items()}}
    if spec.scalars:
        inputs["scalars"] = torch.randn(b, spec.scalars)
    if spec.tracks:
        tracks = torch.randn(b, *spec.tracks)
        tracks[:, 2:] = 0
        inputs["tracks"] = tracks
    return inputs


def test_combined_parameter_count_by_hand():
    net = build_combined(SPEC, _params())
    cnn = 2 * 1 * 3 * 3 + 2  # one conv, 2 filters of 3x3 over 1 channel, with bias
    scalar = 3 * 4 + 4
    phi, rho = 2 * 5 + 5, 5 * 3 + 3
    width = 2 * 8 * 8 + 4 + 3  # flattened CNN + scalar net + track net
    top = (width * 6 + 6) + (6 * 1 + 1)
    assert _n_params(net.cnn) == cnn and _n_params(net.scalar_net) == scalar
    assert _n_params(net.track_net) == phi + rho and _n_params(net.top) == top
    assert _n_params(net) == cnn + scalar + phi + rho + top == 892


def test_combined_parameter_count_with_normalization():
    net = build_combined(SPEC, _params(top={"units": [6, 1], "normalization": "batch"}))
    width = 2 * 8 * 8 + 4 + 3
    top = width * 6 + 2 * 6 + (6 * 1 + 1)  # hidden layer: no bias, batch norm weight and bias
    assert _n_params(net.top) == top


def test_combined_forward_and_backward():
    net = build_combined(SPEC, _params(top={"units": [6, 3]}))
    out = net(**_inputs(SPEC))
    assert out.shape == (4, 3)
    out.square().sum().backward()
    for name, p in net.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
    assert any(float(p.grad.abs().sum()) > 0 for p in net.cnn.parameters())


def test_combined_output_equals_top_of_concatenated_features():
    net = build_combined(SPEC, _params()).eval()
    inputs = _inputs(SPEC)
    feats = torch.cat([net.cnn(inputs["images"]["calo"]), net.scalar_net(inputs["scalars"]),
                       net.track_net(inputs["tracks"])], 1)
    torch.testing.assert_close(net(**inputs), net.top(feats))


def test_images_are_concatenated_on_channels():
    spec = InputSpec(images={"a": ImageSpec(1, (6, 6)), "b": ImageSpec(2, (6, 6))})
    net = build_combined(spec, _params())
    assert _convs(net.cnn)[0].in_channels == 3
    assert net.scalar_net is None and net.track_net is None
    inputs = _inputs(spec)
    out = net(**inputs)
    ref = net.top(net.cnn(torch.cat([inputs["images"]["a"], inputs["images"]["b"]], 1)))
    torch.testing.assert_close(out, ref)


def test_submodels_exist_only_for_present_inputs():
    net = build_combined(InputSpec(scalars=3), _params())
    assert net.cnn is None and net.track_net is None and net.scalar_net is not None
    assert net(scalars=torch.randn(2, 3)).shape == (2, 1)
    net = build_combined(InputSpec(tracks=(4, 2)), _params())
    assert net(tracks=torch.randn(2, 4, 2)).shape == (2, 1)


def test_scalar_net_with_no_units_passes_scalars_through():
    net = build_combined(InputSpec(scalars=3), _params(scalar_net={"units": []}))
    assert net.scalar_net.out_features == 3 and net.top.hidden.layers[0].linear.in_features == 3


def test_nothing_connected_to_top():
    with pytest.raises(ConfigError, match="no submodel receives any input"):
        build_combined(InputSpec(scalars=3), _params(scalar_net={"connect_to": []}))


@pytest.mark.parametrize("dims", [2, 3])
def test_combined_3d_and_2d(dims):
    spec = InputSpec(images={"x": ImageSpec(1, _spatial(dims))}, scalars=2)
    net = build_combined(spec, _params(cnn={"block_depths": [1, 1], "downsampling": "avgpool",
                                            "globalavgpool": True}))
    out = net(**_inputs(spec, b=2))
    assert out.shape == (2, 1) and torch.isfinite(out).all()


def test_final_activation():
    net = build_combined(InputSpec(scalars=3), _params(top={"units": [4, 3], "final_activation": "softmax"}))
    out = net(scalars=torch.randn(5, 3))
    torch.testing.assert_close(out.sum(1), torch.ones(5))
    assert isinstance(net, CombinedNet)
