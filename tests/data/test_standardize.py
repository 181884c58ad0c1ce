"""Standardizer: statistics from the training split only, equal to numpy's; padded tracks stay zero."""

from __future__ import annotations

import numpy as np
import pytest

from deepscope.config.data import StandardizeConfig
from deepscope.data.arrays import ArraySet
from deepscope.data.standardize import Standardizer
from deepscope.errors import CheckpointError

N = 40


@pytest.fixture
def store():
    rng = np.random.default_rng(0)
    images = (rng.normal(size=(N, 3, 4, 5)) * np.array([1.0, 5.0, 0.1])[None, :, None, None]
              + np.array([0.0, 10.0, -3.0])[None, :, None, None])
    tracks = rng.normal(loc=2.0, scale=3.0, size=(N, 5, 2))
    n_real = rng.integers(1, 6, size=N)
    for i, k in enumerate(n_real):
        tracks[i, k:] = 0.0  # zero padding after the real tracks
    tracks[0] = 0.0  # a sample without tracks
    return ArraySet(
        images={"calo": images.astype(np.float32)},
        scalars=(rng.normal(size=(N, 3)) * [1, 2, 3] + [4, 5, 6]).astype(np.float32),
        tracks=tracks.astype(np.float32),
        targets=(rng.normal(size=N) * 7 + 100).astype(np.float32),
    )


TRAIN = np.arange(0, N, 2)  # every other sample


def _fit(store, cfg=None, targets=True, chunk=4096, indices=TRAIN):
    return Standardizer.fit(store.read, indices, cfg or StandardizeConfig(), targets, chunk=chunk)


def test_per_channel_image_stats_equal_numpy_on_train_only(store):
    st = _fit(store)
    x = store.images["calo"][TRAIN].astype(np.float64)
    mean, std = st.stats["images/calo"]
    assert mean.shape == (3,)
    np.testing.assert_allclose(mean, x.mean(axis=(0, 2, 3)), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(std, x.std(axis=(0, 2, 3)), rtol=1e-5)


def test_global_image_stats(store):
    st = _fit(store, StandardizeConfig(images="global"))
    x = store.images["calo"][TRAIN].astype(np.float64)
    mean, std = st.stats["images/calo"]
    np.testing.assert_allclose(mean, x.mean(), rtol=1e-5)
    np.testing.assert_allclose(std, x.std(), rtol=1e-5)
    out = st.transform(store.read(TRAIN))["images"]["calo"]
    np.testing.assert_allclose(out.mean(), 0.0, atol=1e-5)
    np.testing.assert_allclose(out.std(), 1.0, rtol=1e-4)


def test_scalar_and_target_stats(store):
    st = _fit(store)
    np.testing.assert_allclose(st.stats["scalars"][0], store.scalars[TRAIN].astype(np.float64).mean(0), rtol=1e-5)
    np.testing.assert_allclose(st.stats["scalars"][1], store.scalars[TRAIN].astype(np.float64).std(0), rtol=1e-5)
    np.testing.assert_allclose(st.stats["targets"][0], store.targets[TRAIN].astype(np.float64).mean(), rtol=1e-6)
    np.testing.assert_allclose(st.stats["targets"][1], store.targets[TRAIN].astype(np.float64).std(), rtol=1e-4)


def test_other_splits_do_not_change_stats(store):
    a = _fit(store)
    rest = np.setdiff1d(np.arange(N), TRAIN)
    store.images["calo"][rest] += 1000.0
    store.scalars[rest] *= -50
    store.targets[rest] = 1e6
    b = _fit(store)
    for key in a.stats:
        np.testing.assert_array_equal(a.stats[key][0], b.stats[key][0])
        np.testing.assert_array_equal(a.stats[key][1], b.stats[key][1])


@pytest.mark.parametrize("chunk", [1, 3, 7])
def test_small_chunks_equal_one_chunk(store, chunk):
    whole, parts = _fit(store), _fit(store, chunk=chunk)
    assert set(whole.stats) == set(parts.stats)
    for key in whole.stats:
        np.testing.assert_allclose(parts.stats[key][0], whole.stats[key][0], rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(parts.stats[key][1], whole.stats[key][1], rtol=1e-6, atol=1e-6)


def test_transform_values(store):
    st = _fit(store)
    batch = store.read(np.array([1, 4, 9]))
    out = st.transform(batch)
    x = store.images["calo"][[1, 4, 9]].astype(np.float64)
    ref_mean = store.images["calo"][TRAIN].astype(np.float64).mean(axis=(0, 2, 3))
    ref_std = store.images["calo"][TRAIN].astype(np.float64).std(axis=(0, 2, 3))
    np.testing.assert_allclose(out["images"]["calo"], (x - ref_mean[:, None, None]) / ref_std[:, None, None],
                               rtol=1e-4, atol=1e-4)
    assert out["images"]["calo"].dtype == np.float32
    # the input batch is not modified
    np.testing.assert_array_equal(batch["images"]["calo"], store.images["calo"][[1, 4, 9]])


def test_padded_tracks_excluded_and_kept_zero(store):
    st = _fit(store)
    t = store.tracks[TRAIN].astype(np.float64)
    real = np.abs(t).sum(-1) > 0  # (n, T)
    rows = t[real]  # real tracks only, (n_real, F)
    mean, std = st.stats["tracks"]
    np.testing.assert_allclose(mean, rows.mean(0), rtol=1e-5)
    np.testing.assert_allclose(std, rows.std(0), rtol=1e-5)
    assert not np.allclose(mean, t.reshape(-1, 2).mean(0), rtol=1e-3)  # padding would shift the mean

    out = st.transform(store.read(TRAIN))["tracks"]
    assert np.all(out[~real] == 0.0)  # exactly zero
    np.testing.assert_allclose(out[real], (rows - rows.mean(0)) / rows.std(0), rtol=1e-4, atol=1e-5)


def test_targets_inverse(store):
    st = _fit(store)
    y = store.targets[TRAIN]
    z = st.transform({"targets": y})["targets"]
    np.testing.assert_allclose(z.mean(), 0.0, atol=1e-5)
    np.testing.assert_allclose(st.inverse_targets(z), y, rtol=1e-5)
    assert st.target_stats is not None


def test_targets_untouched_when_not_standardized(store):
    st = _fit(store, targets=False)
    assert "targets" not in st.stats and st.target_stats is None
    y = np.array([1.0, 2.0])
    np.testing.assert_array_equal(st.inverse_targets(y), y)


def test_switched_off_parts(store):
    st = _fit(store, StandardizeConfig(images="none", scalars=False, tracks=False), targets=False)
    assert st.stats == {}
    batch = store.read(TRAIN)
    out = st.transform(batch)
    np.testing.assert_array_equal(out["images"]["calo"], batch["images"]["calo"])
    np.testing.assert_array_equal(out["scalars"], batch["scalars"])


def test_constant_feature_passes_through_unscaled():
    s = ArraySet(scalars=np.stack([np.full(6, 3.0), np.arange(6.0)], 1).astype(np.float32), targets=np.zeros(6))
    st = Standardizer.fit(s.read, np.arange(6), StandardizeConfig(), False)
    mean, std = st.stats["scalars"]
    assert std[0] == 1.0 and mean[0] == 3.0
    out = st.transform(s.read(np.arange(6)))["scalars"]
    np.testing.assert_array_equal(out[:, 0], np.zeros(6))


def test_three_dim_per_channel():
    x = np.random.default_rng(0).normal(size=(6, 2, 3, 4, 5)) + np.array([1.0, -1.0])[None, :, None, None, None]
    s = ArraySet(images={"cube": x.astype(np.float32)}, targets=np.zeros(6))
    st = Standardizer.fit(s.read, np.arange(6), StandardizeConfig(), False)
    np.testing.assert_allclose(st.stats["images/cube"][0], x.mean(axis=(0, 2, 3, 4)), rtol=1e-5)
    np.testing.assert_allclose(st.stats["images/cube"][1], x.std(axis=(0, 2, 3, 4)), rtol=1e-5)


def test_save_load_round_trip(store, tmp_path):
    st = _fit(store)
    path = tmp_path / "standardization.npz"
    st.save(path)
    assert path.exists() and not list(tmp_path.glob("*.tmp*"))
    back = Standardizer.load(path)
    assert set(back.stats) == set(st.stats)
    for key in st.stats:
        np.testing.assert_array_equal(back.stats[key][0], st.stats[key][0])
        np.testing.assert_array_equal(back.stats[key][1], st.stats[key][1])
    batch = store.read(np.arange(5))
    a, b = st.transform(batch), back.transform(batch)
    np.testing.assert_array_equal(a["images"]["calo"], b["images"]["calo"])
    np.testing.assert_array_equal(a["tracks"], b["tracks"])
    assert len(list(back.describe())) == len(st.stats)


@pytest.mark.parametrize("content", [b"garbage" * 50, b"PK\x03\x04" + bytes(100)])
def test_corrupt_file_is_a_checkpoint_error(tmp_path, content):
    path = tmp_path / "standardization.npz"
    path.write_bytes(content)
    with pytest.raises(CheckpointError) as info:
        Standardizer.load(path)
    assert str(path) in str(info.value)


def test_missing_file_is_a_checkpoint_error(tmp_path):
    with pytest.raises(CheckpointError):
        Standardizer.load(tmp_path / "none.npz")


def test_file_with_half_the_stats_is_a_checkpoint_error(tmp_path):
    path = tmp_path / "standardization.npz"
    np.savez(path, **{"scalars/mean": np.zeros(2)})  # no scalars/std
    with pytest.raises(CheckpointError):
        Standardizer.load(path)
