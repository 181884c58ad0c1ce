"""DropBlock (2D/3D), energy-conserving upsampling and non-affine normalization in the layer factory."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from deepscope.config.common import Component
from deepscope.models.layers import DropBlock, EnergyUpsample, make_dropblock, make_normalization, upsampling_factors

# --- DropBlock -------------------------------------------------------------------------------------


def _expected_kept(size, block, gamma):
    """Exact E[kept fraction]: position i survives iff no seed among the n(i) valid corners covering it."""
    per_dim = []
    for s in size:
        b = min(block, s)
        covers = np.array([min(i, s - b) - max(0, i - b + 1) + 1 for i in range(s)])  # corners p with p <= i < p+b
        per_dim.append(covers)
    n = per_dim[0]
    for c in per_dim[1:]:
        n = np.multiply.outer(n, c)
    return float(np.mean((1.0 - gamma) ** n))


@pytest.mark.parametrize("dims,shape", [(2, (16, 16, 40, 40)), (3, (8, 8, 16, 16, 16))])
def test_kept_fraction_matches_keep_prob_and_the_exact_expectation(dims, shape):
    torch.manual_seed(0)
    drop = DropBlock(dims, block_size=3, keep_prob=0.9)
    size = shape[2:]
    gamma = drop.gamma(size)
    # the paper's gamma, adjusted for the valid seed region
    assert gamma == pytest.approx(0.1 / 3**dims * math.prod(size) / math.prod(s - 2 for s in size))
    kept = 1.0 - float(torch.stack([drop.drop_mask(shape) for _ in range(4)]).mean())
    assert kept == pytest.approx(0.9, abs=0.012)  # blocks overlap a little, so slightly more is kept
    assert kept == pytest.approx(_expected_kept(size, 3, gamma), abs=0.006)  # about 3 standard deviations


@pytest.mark.parametrize("dims", [2, 3])
def test_a_seed_drops_one_block_and_the_rest_is_rescaled(dims, monkeypatch):
    size, b = (7, 6, 5)[:dims], 3
    drop = DropBlock(dims, block_size=b, keep_prob=0.5).train()
    corner = (2, 1, 0)[:dims]

    def one_seed(*shape, **kwargs):  # a single seed at `corner` of channel 1 of sample 0
        r = torch.ones(*shape)
        r[(0, 1, *corner)] = 0.0
        return r

    monkeypatch.setattr(torch, "rand", one_seed)
    x = torch.rand(2, 3, *size) + 1.0
    out = drop(x)
    dropped = out == 0
    want = torch.zeros_like(dropped)
    want[(0, 1, *(slice(c, c + b) for c in corner))] = True  # a b x b square (b x b x b cube in 3D)
    assert torch.equal(dropped, want)
    n = x.numel()
    torch.testing.assert_close(out[~dropped], x[~dropped] * n / (n - b**dims))


@pytest.mark.parametrize("dims", [2, 3])
def test_dropped_regions_are_unions_of_whole_blocks(dims):
    torch.manual_seed(1)
    b = 3
    mask = DropBlock(dims, block_size=b, keep_prob=0.85).drop_mask((2, 3, *([12] * dims)))
    pool = {2: F.max_pool2d, 3: F.max_pool3d}[dims]
    # opening: keep only the corners whose whole block is dropped, then grow them back to blocks
    corners = -pool(-mask, b, stride=1)
    grown = pool(F.pad(corners, [b - 1] * (2 * dims)), b, stride=1)
    assert torch.equal(grown, mask) and float(mask.sum()) > 0


@pytest.mark.parametrize("dims", [2, 3])
def test_eval_is_identity_and_the_sum_is_preserved(dims):
    torch.manual_seed(2)
    drop = DropBlock(dims, block_size=2, keep_prob=0.7)
    x = torch.randn(4, 3, *([9] * dims))
    assert drop.eval()(x) is x
    drop.train()
    ones = torch.ones(4, 3, *([9] * dims))
    assert float(drop(ones).mean()) == pytest.approx(1.0, rel=1e-6)  # count / kept rescaling
    assert not torch.equal(drop(ones), ones)
    # the expectation of the sum is kept (edges are dropped less often than the middle, as in the paper)
    x = torch.rand(4, 3, *([9] * dims))
    sums = torch.stack([drop(x).sum() for _ in range(200)])
    assert float(sums.mean()) == pytest.approx(float(x.sum()), rel=0.01)


def test_sync_channels_drops_the_same_blocks_in_every_channel():
    torch.manual_seed(3)
    out = DropBlock(2, block_size=3, keep_prob=0.7, sync_channels=True).train()(torch.ones(2, 4, 10, 10))
    zero = out == 0
    assert zero.any() and all(torch.equal(zero[:, 0], zero[:, c]) for c in range(4))
    out = DropBlock(2, block_size=3, keep_prob=0.7).train()(torch.ones(2, 4, 10, 10))
    assert not torch.equal(out[:, 0] == 0, out[:, 1] == 0)


def test_block_larger_than_a_dim_is_clipped_to_it():
    drop = DropBlock(3, block_size=3, keep_prob=0.8)
    mask = drop.drop_mask((2, 2, 8, 8, 2))  # depth 2 < block 3: blocks are 3 x 3 x 2
    assert mask.shape == (2, 2, 8, 8, 2) and torch.equal(mask[..., 0], mask[..., 1])
    assert math.isfinite(drop.gamma((8, 8, 2)))


def test_dropblock_options_and_errors():
    assert isinstance(make_dropblock(2, None), nn.Identity)
    d = make_dropblock(3, {"block_size": 5, "keep_prob": 0.8, "sync_channels": True})
    assert (d.spatial_dims, d.block_size, d.keep_prob, d.sync_channels) == (3, 5, 0.8, True)
    assert DropBlock(2, keep_prob=1.0).train()(torch.ones(1, 1, 4, 4)).eq(1).all()
    with pytest.raises(ValueError, match="keep_prob"):
        DropBlock(2, keep_prob=0.0)
    with pytest.raises(ValueError, match="block_size"):
        DropBlock(2, block_size=0)


# --- upsampling ------------------------------------------------------------------------------------


def test_upsampling_factors_deepcalo_rule():
    assert upsampling_factors((6, 8), (12, 16)) == (2, 2)
    assert upsampling_factors((5, 7), (12, 12)) == (2, 2)  # round(2.4), round(1.71)
    assert upsampling_factors((30, 4), (10, 12)) == (1, 3)  # never below 1
    assert upsampling_factors((4, 2, 2), (8, 8, 2)) == (2, 4, 1)


@pytest.mark.parametrize("dims", [2, 3])
def test_nearest_upsampling_keeps_each_images_sum(dims):
    factors = (2, 3, 1)[:dims]
    up = EnergyUpsample(dims, factors, "nearest")
    x = torch.rand(2, 3, *((3, 2, 4)[:dims]), dtype=torch.float64)
    y = up(x)
    assert y.shape == (2, 3, *(s * f for s, f in zip(x.shape[2:], factors)))
    torch.testing.assert_close(y.sum(dim=tuple(range(2, 2 + dims))), x.sum(dim=tuple(range(2, 2 + dims))))
    # every pixel is spread evenly over its block
    block = y[(0, 0, *(slice(0, f) for f in factors))]
    torch.testing.assert_close(block, torch.full_like(block, float(x[(0, 0, *([0] * dims))]) / math.prod(factors)))


@pytest.mark.parametrize("dims", [2, 3])
def test_linear_upsampling(dims):
    up = EnergyUpsample(dims, (2,) * dims, "bilinear")
    assert up.mode == ("bilinear" if dims == 2 else "trilinear")
    flat = torch.ones(1, 1, *([3] * dims))
    torch.testing.assert_close(up(flat), torch.full((1, 1, *([6] * dims)), 1 / 2**dims))
    with pytest.raises(ValueError, match="interpolation"):
        EnergyUpsample(dims, (2,) * dims, "bicubic")


# --- non-affine normalization (FiLM) -------------------------------------------------------------


@pytest.mark.parametrize("name", ["batch", "layer", "instance", "group"])
def test_normalization_without_affine(name):
    norm = make_normalization(Component(class_name=name), 4, 2, affine=False)
    assert list(norm.parameters()) == []
    assert len(list(make_normalization(Component(class_name=name), 4, 2).parameters())) == 2
