"""The 'res' CNN (pre-activation units), DropBlock placement and FiLM conditioning."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from deepscope.config.common import Component
from deepscope.config.model import CNNConfig
from deepscope.models.blocks import FiLM, FiLMGenerator, ResUnit, SqueezeExcite, film_slices
from deepscope.models.layers import ConvSame, DropBlock
from deepscope.models.nets.cnn import CNN


def C(name, **config):
    return Component(class_name=name, config=config)


def _n_params(module):
    return sum(p.numel() for p in module.parameters())


def _spatial(dims):
    return (6, 6) if dims == 2 else (6, 6, 4)


def _res(**cfg):
    base = {"cnn_type": "res", "block_depths": [1, 1], "n_init_filters": 4, "init_kernel_size": 3}
    return CNNConfig(**{**base, **cfg})


# --- res CNN ---------------------------------------------------------------------------------------


def test_res_block_depths_count_two_convs_each():
    cnn = CNN(2, (4, 4), _res(block_depths=[1, 2, 2, 2, 2], n_init_filters=1))
    units = [m for m in cnn.modules() if isinstance(m, ResUnit)]
    assert len(units) == 9
    main = [c for u in units for c in (u.conv1, u.conv2)]
    assert len(main) == 18
    projections = [u.shortcut for u in units if isinstance(u.shortcut, ConvSame)]
    assert len(projections) == 5  # the raw image's 2 -> 1 channels, then the first unit of every later block
    assert [c.conv.out_channels for c in main] == [1, 1] + [f for f in (2, 4, 8, 16) for _ in range(4)]
    simple = CNN(2, (4, 4), CNNConfig(block_depths=[1, 2, 2, 2, 2], n_init_filters=1))
    assert sum(isinstance(m, ConvSame) for m in simple.modules()) == 9


@pytest.mark.parametrize("dims", [2, 3])
def test_res_parameter_count_by_hand(dims):
    k = 9 if dims == 2 else 18  # 3x3 or (3, 3, 2)
    cnn = CNN(2, _spatial(dims), _res())
    # block 0, unit 0 (raw input): conv1 2->4 + bias, conv2 4->4 + bias, 1x1 projection 2->4 + bias
    b0 = (4 * 2 * k + 4) + (4 * 4 * k + 4) + (4 * 2 + 4)
    # block 1, unit 0: conv1 4->8, conv2 8->8, projection 4->8
    b1 = (8 * 4 * k + 8) + (8 * 8 * k + 8) + (8 * 4 + 8)
    assert _n_params(cnn) == b0 + b1
    # batch norm: conv1 loses its bias; norm2 (2 per channel) in both units, norm1 only after block 0
    bn = CNN(2, _spatial(dims), _res(normalization="batch"))
    assert _n_params(bn) == b0 - 4 + 2 * 4 + b1 - 8 + 2 * 8 + 2 * 4
    # FiLM: the modulated norms (norm2 of each block's first unit) have no scale and shift
    film = CNN(2, _spatial(dims), _res(normalization="batch"), film=True)
    assert _n_params(film) == _n_params(bn) - 2 * 4 - 2 * 8
    assert film.film_features == 2 * (4 + 8)


@pytest.mark.parametrize("dims", [2, 3])
def test_res_unit_is_pre_activation_with_squeeze_excite_before_the_add(dims):
    torch.manual_seed(0)
    unit = ResUnit(dims, 4, 8, (3,) * dims, (3,) * dims, (2,) * dims, groups=2, groups2=2,
                   activation=C("relu"), normalization=C("layer"), se_ratio=2, path="model.cnn").double()
    assert unit.conv1.conv.groups == 2 and unit.conv2.conv.groups == 2
    assert unit.conv1.conv.bias is None and unit.conv2.conv.bias is not None
    assert isinstance(unit.shortcut, ConvSame) and unit.shortcut.stride == (2,) * dims
    x = torch.randn(3, 4, *([5] * dims), dtype=torch.float64)
    h = unit.conv1(torch.relu(unit.norm1(x)))
    h = unit.conv2(torch.relu(unit.norm2(h)))
    ref = unit.se(h) + unit.shortcut(x)
    torch.testing.assert_close(unit(x), ref)
    assert ref.shape == (3, 8, *([3] * dims))
    same = ResUnit(dims, 8, 8, (3,) * dims, (3,) * dims, (1,) * dims, 1, 1, None, None, None, "model.cnn")
    assert isinstance(same.shortcut, nn.Identity)  # same channels and size: identity shortcut
    x = torch.randn(2, 8, *([4] * dims))
    torch.testing.assert_close(same(x), same.conv2(same.conv1(x)) + x)


def test_first_unit_sees_the_raw_image_and_strides():
    cnn = CNN(1, (9, 9), _res(block_depths=[2, 1], normalization="batch", activation="relu",
                              init_strides=2, rest_strides=1, cardinality=2))
    first, second = cnn.blocks[0][0], cnn.blocks[0][1]
    assert all(isinstance(m, nn.Identity) for m in (first.norm1, first.act1, first.drop1))
    assert isinstance(second.norm1, nn.BatchNorm2d) and isinstance(second.act1, nn.ReLU)
    assert first.conv1.conv.kernel_size == (3, 3) and first.conv1.stride == (2, 2)
    assert first.conv1.conv.groups == 1 and first.conv2.conv.groups == 2 and second.conv1.conv.groups == 2
    assert cnn.out_shape == (8, 5, 5)
    assert cnn.blocks(torch.randn(2, 1, 9, 9)).shape == (2, 8, 5, 5)


@pytest.mark.parametrize("dims", [2, 3])
def test_res_downsampling_at_the_start_of_later_blocks(dims):
    spatial = (12, 8) if dims == 2 else (6, 6, 9)
    cnn = CNN(1, spatial, _res(block_depths=[1, 1, 1], downsampling="maxpool", min_size_for_downsampling=3))
    assert cnn.out_shape == (16, *((2, 2) if dims == 2 else (1, 1, 1)))
    assert isinstance(cnn.blocks[1][0], (nn.MaxPool2d, nn.MaxPool3d)) and isinstance(cnn.blocks[1][1], ResUnit)
    x = torch.randn(2, 1, *spatial)
    assert cnn(x).shape == (2, cnn.out_features)


@pytest.mark.parametrize("cnn_type,n_drop", [("simple", 3), ("res", 5)])
def test_dropblock_after_each_conv(cnn_type, n_drop):
    cfg = CNNConfig(cnn_type=cnn_type, block_depths=[1, 2], n_init_filters=2, activation="relu",
                    dropout={"block_size": 2, "keep_prob": 0.7})
    cnn = CNN(1, (8, 8), cfg)
    drops = [m for m in cnn.modules() if isinstance(m, DropBlock)]
    assert len(drops) == n_drop  # simple: one per conv; res: one before every conv but the raw-image one
    assert (drops[0].block_size, drops[0].keep_prob, drops[0].sync_channels) == (2, 0.7, False)
    x = torch.randn(4, 1, 8, 8)
    cnn.eval()
    torch.testing.assert_close(cnn(x), cnn(x))
    cnn.train()
    assert not torch.allclose(cnn(x), cnn(x))
    if cnn_type == "simple":
        unit = cnn.blocks[0][0]
        calls = []
        for name in ("conv", "norm", "act", "drop", "se"):
            getattr(unit, name).register_forward_hook(lambda m, i, o, name=name: calls.append(name))
        unit(x)
        assert calls == ["conv", "norm", "act", "drop", "se"]


# --- FiLM ------------------------------------------------------------------------------------------


def test_film_layer_formula():
    x = torch.randn(2, 3, 4, 5)
    params = torch.randn(2, 6)
    gamma, beta = params[:, :3, None, None], params[:, 3:, None, None]
    torch.testing.assert_close(FiLM()(x, params), (1 + gamma) * x + beta)
    torch.testing.assert_close(FiLM()(x, torch.zeros(2, 6)), x)  # zero output: identity
    with pytest.raises(ValueError, match="expected"):
        FiLM()(x, torch.zeros(2, 5))


def test_film_generator_size_and_slices():
    gen = FiLMGenerator(7, [5], [4, 8, 16], activation=C("relu"))
    assert gen.out_features == 2 * 4 * (2**3 - 1) == 56
    assert gen(torch.randn(3, 7)).shape == (3, 56)
    assert film_slices([4, 8, 16]) == [slice(0, 8), slice(8, 24), slice(24, 56)]
    # units [] : one linear layer from the inputs
    assert _n_params(FiLMGenerator(7, [], [4, 8])) == 7 * 24 + 24


@pytest.mark.parametrize("cnn_type", ["simple", "res"])
@pytest.mark.parametrize("dims", [2, 3])
def test_film_modulates_the_first_unit_of_each_block(cnn_type, dims):
    torch.manual_seed(0)
    cfg = CNNConfig(cnn_type=cnn_type, block_depths=[2, 1], n_init_filters=2, init_kernel_size=3,
                    normalization="instance", activation="relu", downsampling="avgpool")
    cnn = CNN(1, _spatial(dims), cfg, film=True).double().eval()
    film = torch.randn(3, cnn.film_features, dtype=torch.float64)  # a hand-set generator output
    assert cnn.film_features == 2 * 2 * (2**2 - 1)
    x = torch.randn(3, 1, *_spatial(dims), dtype=torch.float64)
    # record what enters and leaves every FiLM layer and its normalization
    films = [m for m in cnn.modules() if isinstance(m, FiLM)]
    assert len(films) == 2  # first unit of each block only
    seen = []
    for f in films:
        f.register_forward_hook(lambda m, i, o: seen.append((i[0], o)))
    cnn(x, film)
    for (pre, post), part, channels in zip(seen, film_slices(cnn.block_filters), cnn.block_filters):
        p = film[:, part]
        gamma = p[:, :channels].reshape(3, channels, *([1] * dims))
        beta = p[:, channels:].reshape(3, channels, *([1] * dims))
        torch.testing.assert_close(post, (1 + gamma) * pre + beta)
        # the modulated maps are normalized without scale/shift: mean 0, variance 1 per sample and channel
        torch.testing.assert_close(pre.flatten(2).mean(-1), torch.zeros(3, channels, dtype=torch.float64),
                                   atol=1e-6, rtol=0)
    first = cnn.blocks[0][0]
    norm = first.norm if cnn_type == "simple" else first.norm2
    assert isinstance(norm, nn.GroupNorm) and not norm.affine
    unmodulated = cnn.blocks[0][1]
    assert (unmodulated.film if cnn_type == "simple" else unmodulated.film) is None
    # the values match a manual pass for the simple unit: act(FiLM(norm(conv(x))))
    if cnn_type == "simple":
        p = film[:, :4]
        ref = torch.relu((1 + p[:, :2].reshape(3, 2, *([1] * dims))) * first.norm(first.conv(x))
                         + p[:, 2:].reshape(3, 2, *([1] * dims)))
        torch.testing.assert_close(first(x, p), ref)


def test_film_without_normalization_follows_the_conv():
    cnn = CNN(1, (5, 5), CNNConfig(block_depths=[1], n_init_filters=2, init_kernel_size=3, activation="relu"),
              film=True)
    unit = cnn.blocks[0][0]
    x, p = torch.randn(2, 1, 5, 5), torch.randn(2, 4)
    ref = torch.relu((1 + p[:, :2, None, None]) * unit.conv(x) + p[:, 2:, None, None])
    torch.testing.assert_close(cnn(x, p), ref.flatten(1))


def test_film_argument_is_checked():
    cnn = CNN(1, (5, 5), CNNConfig(block_depths=[1, 1], n_init_filters=2), film=True)
    with pytest.raises(ValueError, match="built with FiLM"):
        cnn(torch.randn(2, 1, 5, 5))
    with pytest.raises(ValueError, match="needs 12"):
        cnn(torch.randn(2, 1, 5, 5), torch.randn(2, 10))
    plain = CNN(1, (5, 5), CNNConfig(block_depths=[1, 1], n_init_filters=2))
    with pytest.raises(ValueError, match="without FiLM"):
        plain(torch.randn(2, 1, 5, 5), torch.randn(2, 12))
    assert plain.film_features == 0


def test_squeeze_excite_in_res_units():
    cnn = CNN(1, (6, 6), _res(use_squeeze_and_excite=True, squeeze_and_excite_ratio=2))
    ses = [m for m in cnn.modules() if isinstance(m, SqueezeExcite)]
    assert [se.fc[0].in_features for se in ses] == [4, 8]
