"""data.augment: the config's rules, and the Augmenter's transforms against numpy references."""

from __future__ import annotations

import copy

import numpy as np
import pytest
from pydantic import ValidationError

from deepscope.config.augment import AugmentConfig
from deepscope.config.data import StandardizeConfig
from deepscope.data.arrays import ArraySet
from deepscope.data.augment import Augmenter
from deepscope.data.standardize import Standardizer
from deepscope.errors import ConfigError, DataError

SPATIAL = {2: (6, 6), 3: (4, 6, 6)}


def _batch(dims=2, n=16, channels=2, spatial=None, seed=0, index=True):
    rng = np.random.default_rng(seed)
    spatial = spatial or SPATIAL[dims]
    x = rng.normal(size=(n, channels) + spatial).astype(np.float32)
    batch = {"images": {"calo": x}, "targets": x[:, :1] * 2, "scalars": rng.normal(size=(n, 3)).astype(np.float32)}
    if index:
        batch["index"] = np.arange(100, 100 + n)
    return batch


def _reference(x, draw, size):
    """One sample (C, *S) moved as ``draw`` says, built another way: np.flip, np.rot90, zero-pad, slice."""
    v = np.flip(x, axis=[1 + a for a in draw.flips]) if draw.flips else x
    v = np.rot90(v, draw.turns, axes=(-2, -1))
    margin = 32
    v = np.pad(v, [(0, 0)] + [(margin, margin)] * (x.ndim - 1))
    return v[(slice(None),) + tuple(slice(margin + o - s, margin + o - s + n)
                                    for o, s, n in zip(draw.offset, draw.shift, size))]


def _check_against_reference(cfg, dims, spatial=None):
    aug = Augmenter(cfg, seed=3)
    batch = _batch(dims, spatial=spatial)
    out, draws = aug(batch), aug.draws(batch)
    size = aug.output_spatial(batch["images"]["calo"].shape[2:])
    for i, draw in enumerate(draws):
        np.testing.assert_array_equal(out["images"]["calo"][i], _reference(batch["images"]["calo"][i], draw, size))
    return out, draws


# -- the config ---------------------------------------------------------------------------------------

def test_defaults_are_off():
    cfg = AugmentConfig()
    assert (cfg.flips, cfg.rot90, cfg.shift, cfg.crop, cfg.noise, cfg.scale, cfg.p) == (False, False, 0, None, 0.0,
                                                                                         None, 0.5)
    assert not cfg.enabled and not Augmenter(cfg, 0).enabled


def test_config_forms():
    assert AugmentConfig(flips=["X", "z"]).flips == ["z", "x"]  # canonical order
    assert AugmentConfig(flips=True).flips is True
    assert AugmentConfig(crop=[32, 32.0]).crop == [32, 32]
    assert AugmentConfig(scale=[0.5, 2]).scale == (0.5, 2.0)
    assert AugmentConfig(scale=[1, 1]).enabled


@pytest.mark.parametrize(("key", "value", "message"), [
    ("crop", [32], "found [32] (1 entry); expected a list of 2 (y, x) or 3 (z, y, x) positive integers"),
    ("crop", [8, 8, 8, 8], "(4 entries); expected a list of 2 (y, x) or 3 (z, y, x)"),
    ("crop", [8, 0], "found [8, 0]; expected a list of 2 (y, x) or 3 (z, y, x) positive integers"),
    ("crop", 32, "found 32; expected a list"),
    ("scale", [2.0, 0.5], "found [2.0, 0.5]; expected [lo, hi] with 0 < lo <= hi"),
    ("scale", [0, 1], "found [0, 1]; expected [lo, hi] with 0 < lo <= hi"),
    ("scale", 1.5, "found 1.5; expected [lo, hi]"),
    ("flips", "x", "found 'x'; expected true (every spatial axis), false, or a list of axes from z, y, x (write [x]"),
    ("flips", ["x", "w"], "found axis 'w'; expected true"),
    ("flips", ["x", "x"], "each axis may be named once"),
    ("p", 1.5, "less than or equal to 1"),
    ("shift", -1, "greater than or equal to 0"),
    ("noise", -0.1, "greater than or equal to 0"),
    ("rotate", True, "Extra inputs are not permitted"),
])
def test_bad_config(key, value, message):
    with pytest.raises(ValidationError) as info:
        AugmentConfig(**{key: value})
    assert [e["loc"] for e in info.value.errors()] == [(key,)]
    assert message in str(info.value)


def test_rot90_on_non_square_planes_names_the_key():
    aug = Augmenter(AugmentConfig(rot90=True), 0)
    with pytest.raises(DataError) as info:
        aug(_batch(spatial=(6, 8)))
    assert str(info.value) == ("data.augment.rot90 needs square (y, x) planes, but images['calo'] has y size 6 and x "
                               "size 8 (spatial size (6, 8)); set data.augment.rot90: false, or crop to a square "
                               "with data.augment.crop")
    aug.check({"cube": (9, 6, 6)})  # the depth may differ from the plane


def test_config_that_does_not_fit_the_data():
    with pytest.raises(DataError, match=r"data.augment.flips names axis 'z' but images\['calo'\] is 2D \(y, x\)"):
        Augmenter(AugmentConfig(flips=["z"]), 0)(_batch(2))
    with pytest.raises(DataError, match=r"data.augment.crop is \[4, 4\] \(2 axes\) but images\['calo'\] is 3D"):
        Augmenter(AugmentConfig(crop=[4, 4]), 0)(_batch(3))
    with pytest.raises(DataError, match=r"data.augment.crop is \[4, 4, 4\] \(3 axes\) but the images are 2D"):
        Augmenter(AugmentConfig(crop=[4, 4, 4]), 0).output_spatial((8, 8))
    with pytest.raises(DataError, match=r"data.augment.shift moves every image by the same pixels.*b \(3, 3\)"):
        Augmenter(AugmentConfig(shift=1), 0).check({"a": (6, 6), "b": (3, 3)})
    Augmenter(AugmentConfig(flips=True, rot90=True), 0).check({"a": (6, 6), "b": (3, 3)})  # size-free transforms


def test_per_pixel_target_statistics_cannot_move():
    batch = _batch(2)
    std = Standardizer({"targets": (np.zeros((1, 6, 6), np.float32), np.ones((1, 6, 6), np.float32))})
    with pytest.raises(ConfigError, match="data.standardize.targets gives each target pixel its own statistics"):
        Augmenter(AugmentConfig(flips=True), 0, standardizer=std)(batch)
    Augmenter(AugmentConfig(scale=[0.5, 2]), 0, standardizer=std)(batch)  # no pixel moves: fine
    per_channel = Standardizer({"targets": (np.zeros(1, np.float32), np.ones(1, np.float32))})
    Augmenter(AugmentConfig(flips=True), 0, standardizer=per_channel)(batch)  # image targets' stats: per channel


# -- geometric transforms -----------------------------------------------------------------------------

@pytest.mark.parametrize("dims", [2, 3])
def test_flips_are_exact_and_vary(dims):
    _, draws = _check_against_reference(AugmentConfig(flips=True), dims)
    assert {a for d in draws for a in d.flips} == set(range(dims))
    assert any(not d.flips for d in draws)
    _, draws = _check_against_reference(AugmentConfig(flips=["x"], p=1.0), dims)
    assert {d.flips for d in draws} == {(dims - 1,)}


@pytest.mark.parametrize("dims", [2, 3])
def test_rot90_is_an_exact_quarter_turn_of_the_yx_plane(dims):
    aug = Augmenter(AugmentConfig(rot90=True, p=0.75), 0)
    batch = _batch(dims, n=32)
    out = aug(batch)["images"]["calo"]
    turns = [d.turns for d in aug.draws(batch)]
    assert set(turns) == {0, 1, 2, 3}
    for i, k in enumerate(turns):
        np.testing.assert_array_equal(out[i], np.rot90(batch["images"]["calo"][i], k, axes=(-2, -1)))


@pytest.mark.parametrize("dims", [2, 3])
def test_shift_moves_content_and_fills_zeros(dims):
    out, draws = _check_against_reference(AugmentConfig(shift=2), dims)
    x = _batch(dims)["images"]["calo"]
    shifts = np.array([d.shift for d in draws])
    assert shifts.min() == -2 and shifts.max() == 2
    for i, shift in enumerate(shifts):
        rolled = np.roll(x[i], shift, axis=tuple(range(1, dims + 1)))
        for axis, s in enumerate(shift, start=1):  # what rolled in from the other side is zero instead
            index = [slice(None)] * (dims + 1)
            index[axis] = slice(0, s) if s > 0 else slice(rolled.shape[axis] + s, None)
            rolled[tuple(index)] = 0.0
        np.testing.assert_array_equal(out["images"]["calo"][i], rolled)


@pytest.mark.parametrize("dims", [2, 3])
def test_crop_is_a_slice_of_the_sample(dims):
    crop = [3, 4, 5][-dims:]
    out, draws = _check_against_reference(AugmentConfig(crop=crop), dims)
    x = _batch(dims)["images"]["calo"]
    assert out["images"]["calo"].shape == (16, 2) + tuple(crop)
    assert len({d.offset for d in draws}) > 1
    for i, d in enumerate(draws):
        window = tuple(slice(o, o + c) for o, c in zip(d.offset, crop))
        np.testing.assert_array_equal(out["images"]["calo"][i], x[i][(slice(None),) + window])
    assert out["targets"].shape == (16, 1) + tuple(crop)


def test_samples_smaller_than_the_crop_are_padded_centred():
    aug = Augmenter(AugmentConfig(crop=[9, 4]), 0)
    batch = _batch(spatial=(4, 6))
    out = aug(batch)["images"]["calo"]
    assert out.shape == (16, 2, 9, 4)
    assert aug.output_spatial((4, 6)) == (9, 4)
    for i, d in enumerate(aug.draws(batch)):
        assert d.offset[0] == -2  # (9 - 4) // 2 zero rows above, 3 below
        assert not out[i, :, :2].any() and not out[i, :, 6:].any()
        np.testing.assert_array_equal(out[i, :, 2:6], batch["images"]["calo"][i, :, :, d.offset[1]:d.offset[1] + 4])


@pytest.mark.parametrize("dims", [2, 3])
def test_images_and_dense_targets_move_together(dims):
    cfg = AugmentConfig(flips=True, rot90=True, shift=2, crop=[4, 5, 5][-dims:], scale=[0.5, 2.0])
    batch = _batch(dims)
    batch["images"]["gate_calo"] = batch["images"]["calo"] * 3  # a second image of the same size
    out = Augmenter(cfg, 1)(batch)
    calo = out["images"]["calo"]
    assert calo.shape == (16, 2) + tuple(cfg.crop)
    np.testing.assert_allclose(out["targets"], calo[:, :1] * 2, rtol=1e-6)  # scaled alike, moved alike
    # the gate image moved alike but is not scaled (it holds times, not intensities)
    scale = np.array([d.scale for d in Augmenter(cfg, 1).draws(batch)], np.float32).reshape((-1,) + (1,) * (dims + 1))
    np.testing.assert_allclose(out["images"]["gate_calo"] * scale, calo * 3, rtol=1e-5, atol=1e-6)


def test_non_dense_targets_and_other_keys_pass_through():
    batch = _batch(2)
    batch["targets"] = np.arange(32, dtype=np.float32).reshape(16, 2)  # (N, K)
    batch["sample_weights"] = np.ones(16, np.float32)
    out = Augmenter(AugmentConfig(flips=True, crop=[4, 4], scale=[2, 3], noise=1.0), 0)(batch)
    for key in ("targets", "scalars", "sample_weights", "index"):
        assert out[key] is batch[key]
    # (N, C, L) targets whose trailing size is not an image's are not dense either
    batch["targets"] = np.ones((16, 2, 6), np.float32)
    assert Augmenter(AugmentConfig(flips=True, p=1.0), 0)(batch)["targets"] is batch["targets"]


# -- intensity ----------------------------------------------------------------------------------------

def test_noise_changes_the_inputs_only():
    batch = _batch(2, n=64)
    out = Augmenter(AugmentConfig(noise=0.5), 0)(batch)
    noise = out["images"]["calo"] - batch["images"]["calo"]
    assert 0.45 < noise.std() < 0.55 and abs(noise.mean()) < 0.05
    assert out["targets"] is batch["targets"]


def test_scale_multiplies_inputs_and_dense_targets():
    batch = _batch(3)
    aug = Augmenter(AugmentConfig(scale=[0.5, 1.5]), 0)
    out = aug(batch)
    s = np.array([d.scale for d in aug.draws(batch)], np.float32).reshape(-1, 1, 1, 1, 1)
    assert 0.5 <= s.min() < s.max() <= 1.5
    np.testing.assert_allclose(out["images"]["calo"], batch["images"]["calo"] * s, rtol=1e-6)
    np.testing.assert_allclose(out["targets"], batch["targets"] * s, rtol=1e-6)


def test_with_the_standardizer_scale_and_fill_are_in_data_units():
    rng = np.random.default_rng(0)
    raw = (rng.random((16, 2, 6, 6)) * [[[[5.0]], [[1.0]]]] + [[[[10.0]], [[-3.0]]]]).astype(np.float32)
    std = Standardizer.fit(ArraySet(images={"calo": raw}, targets=np.zeros(16, np.float32)).read, np.arange(16),
                           StandardizeConfig(), standardize_targets=False)
    batch = std.transform({"images": {"calo": raw}, "index": np.arange(16)})
    aug = Augmenter(AugmentConfig(scale=[0.5, 2.0], shift=1), 0, standardizer=std)
    out, draws = aug(batch), aug.draws(batch)
    mean, sd = (v.reshape(1, -1, 1, 1) for v in std.stats["images/calo"])
    back = out["images"]["calo"] * sd + mean  # in data units again
    expected = np.stack([_reference(raw[i], d, (6, 6)) * d.scale for i, d in enumerate(draws)])
    np.testing.assert_allclose(back, expected, rtol=1e-4, atol=1e-4)  # moved-in pixels are 0 in data units


# -- seeding ------------------------------------------------------------------------------------------

FULL = AugmentConfig(flips=True, rot90=True, shift=1, crop=[5, 5], noise=0.1, scale=[0.8, 1.2])


def test_same_seed_same_output_other_seed_or_epoch_other_output():
    batch = _batch(2)
    a, b = Augmenter(FULL, 7)(batch), Augmenter(FULL, 7)(batch)
    np.testing.assert_array_equal(a["images"]["calo"], b["images"]["calo"])
    np.testing.assert_array_equal(a["targets"], b["targets"])
    assert not np.array_equal(a["images"]["calo"], Augmenter(FULL, 8)(batch)["images"]["calo"])
    aug = Augmenter(FULL, 7)
    aug.set_epoch(1)
    assert not np.array_equal(a["images"]["calo"], aug(batch)["images"]["calo"])
    np.testing.assert_array_equal(aug(batch, epoch=0)["images"]["calo"], a["images"]["calo"])


def test_a_sample_draws_the_same_in_any_batch():
    batch = _batch(2)
    whole = Augmenter(FULL, 7)(batch)["images"]["calo"]
    part = {"images": {"calo": batch["images"]["calo"][[5, 2]]}, "index": batch["index"][[5, 2]]}
    np.testing.assert_array_equal(Augmenter(FULL, 7)(part)["images"]["calo"], whole[[5, 2]])


def test_without_index_the_call_sequence_is_reproducible():
    first, second = _batch(2, index=False), _batch(2, seed=1, index=False)
    aug, again = Augmenter(FULL, 7), Augmenter(FULL, 7)
    runs = [aug(first), aug(second)], [again(first), again(second)]
    for one, two in zip(*runs):
        np.testing.assert_array_equal(one["images"]["calo"], two["images"]["calo"])
    aug.set_epoch(0)  # restarts the count: the epoch repeats
    np.testing.assert_array_equal(aug(first)["images"]["calo"], runs[0][0]["images"]["calo"])
    assert not np.array_equal(aug(first)["images"]["calo"], runs[0][0]["images"]["calo"])  # next call, next draws
    with pytest.raises(DataError, match="needs the batch's 'index'"):
        aug.draws(first)


# -- the batch ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("cfg", [FULL, AugmentConfig(noise=0.1), AugmentConfig(scale=[2, 3]), AugmentConfig()])
def test_the_input_batch_is_not_changed(cfg):
    batch = _batch(2)
    kept = copy.deepcopy(batch)
    out = Augmenter(cfg, 0)(batch)
    assert out is not batch
    for key in ("targets", "scalars", "index"):
        np.testing.assert_array_equal(batch[key], kept[key])
    np.testing.assert_array_equal(batch["images"]["calo"], kept["images"]["calo"])


def test_a_batch_of_cubes_keeps_dtype_and_shape():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(8, 1, 16, 64, 64)).astype(np.float32)
    cfg = AugmentConfig(flips=True, rot90=True, shift=4, crop=[16, 48, 48], noise=0.1, scale=[0.9, 1.1])
    out = Augmenter(cfg, 0)({"images": {"cube": x}, "targets": x * 2, "index": np.arange(8)})
    assert out["images"]["cube"].shape == out["targets"].shape == (8, 1, 16, 48, 48)
    assert out["images"]["cube"].dtype == out["targets"].dtype == np.float32
