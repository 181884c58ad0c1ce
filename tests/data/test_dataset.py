"""Batch-level datasets: per-epoch shuffling, mid-epoch resume, sorted reads in sampler order."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from deepscope.config.data import StandardizeConfig
from deepscope.data.arrays import ArraySet
from deepscope.data.dataset import BatchDataset, BatchIndexSampler, BatchLoader, to_tensors
from deepscope.data.standardize import Standardizer


def _epoch(sampler):
    return [b.tolist() for b in sampler]


# --- sampler ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("n,bs", [(10, 3), (12, 4), (1, 5), (37, 8)])
def test_each_index_once_per_epoch(n, bs):
    s = BatchIndexSampler(n, bs, shuffle=True, seed=0)
    for epoch in range(3):
        s.set_epoch(epoch)
        batches = _epoch(s)
        assert sorted(i for b in batches for i in b) == list(range(n))
        assert [len(b) for b in batches[:-1]] == [bs] * (len(batches) - 1)
        assert 1 <= len(batches[-1]) <= bs
        assert len(batches) == len(s) == -(-n // bs)


def test_drop_last():
    s = BatchIndexSampler(10, 3, shuffle=True, seed=0, drop_last=True)
    batches = _epoch(s)
    assert len(batches) == len(s) == 3 and all(len(b) == 3 for b in batches)
    assert len({i for b in batches for i in b}) == 9


def test_no_shuffle_is_in_order():
    s = BatchIndexSampler(7, 3, shuffle=False)
    assert _epoch(s) == [[0, 1, 2], [3, 4, 5], [6]]
    s.set_epoch(5)
    assert _epoch(s) == [[0, 1, 2], [3, 4, 5], [6]]


def test_order_depends_only_on_seed_and_epoch():
    a = BatchIndexSampler(50, 8, shuffle=True, seed=3)
    b = BatchIndexSampler(50, 8, shuffle=True, seed=3)
    a.set_epoch(2)
    b.set_epoch(2)
    assert _epoch(a) == _epoch(b)
    assert _epoch(a) == _epoch(a)  # iterating again repeats the epoch
    e2 = _epoch(a)
    a.set_epoch(3)
    assert _epoch(a) != e2
    c = BatchIndexSampler(50, 8, shuffle=True, seed=4)
    c.set_epoch(2)
    assert _epoch(c) != e2
    assert sorted(sum(e2, [])) != sum(e2, [])  # shuffled at all


def test_skip_resumes_mid_epoch_once():
    s = BatchIndexSampler(20, 3, shuffle=True, seed=1)
    s.set_epoch(4)
    full = _epoch(s)
    s.skip = 3
    assert _epoch(s) == full[3:]
    assert _epoch(s) == full  # skip applies to one iteration only


def _ranks(n, bs, world, **kw):
    return [BatchIndexSampler(n, bs, num_replicas=world, rank=r, **kw) for r in range(world)]


@pytest.mark.parametrize("n,bs,world", [(24, 4, 2), (20, 4, 3), (37, 5, 2), (9, 2, 4), (64, 8, 4), (7, 3, 2)])
@pytest.mark.parametrize("epoch", [0, 3])
def test_ranks_split_the_batches_one_process_sees(n, bs, world, epoch):
    # step k on rank r is the r-th slice of step k of one process with batch world*bs: the same
    # samples in the same order once the slices are put side by side
    single = BatchIndexSampler(n, bs * world, shuffle=True, seed=7)
    single.set_epoch(epoch)
    ranks = _ranks(n, bs, world, shuffle=True, seed=7)
    for s in ranks:
        s.set_epoch(epoch)
    per_rank = [_epoch(s) for s in ranks]
    assert len({len(s) for s in ranks}) == 1  # every rank steps together
    assert [len(b) for b in per_rank] == [len(s) for s in ranks]
    for k, batch in enumerate(_epoch(single)):
        if len(batch) < world:  # a remainder smaller than the world is dropped in training
            assert all(len(b) == k for b in per_rank)
            continue
        assert [i for b in per_rank for i in b[k]] == batch
        assert max(len(b[k]) for b in per_rank) - min(len(b[k]) for b in per_rank) <= 1


def test_last_global_batch_split_evenly():
    # 22 samples, bs 4, 2 ranks: two global batches of 8, then 6 split 3 + 3
    per_rank = [_epoch(s) for s in _ranks(22, 4, 2, shuffle=False)]
    assert per_rank[0] == [[0, 1, 2, 3], [8, 9, 10, 11], [16, 17, 18]]
    assert per_rank[1] == [[4, 5, 6, 7], [12, 13, 14, 15], [19, 20, 21]]


@pytest.mark.parametrize("pad", [False, True])
def test_remainder_smaller_than_world(pad):
    # 9 samples, bs 2, 4 ranks: one global batch of 8, then 1 sample for 4 ranks
    ranks = _ranks(9, 2, 4, shuffle=False, pad=pad)
    per_rank = [_epoch(s) for s in ranks]
    assert {len(s) for s in ranks} == {2 if pad else 1}
    assert all(len(b) == len(s) for b, s in zip(per_rank, ranks))
    if pad:  # evaluation: every rank gets a batch; the last sample repeats where there was nothing
        assert [b[1] for b in per_rank] == [[8], [8], [8], [8]]
    else:  # training: dropped on every rank
        assert sorted(i for b in per_rank for i in b[0]) == list(range(8))


def test_evaluation_covers_every_sample_once_up_to_padding():
    for n in range(1, 30):
        seen = [i for s in _ranks(n, 3, 4, shuffle=False, pad=True) for b in s for i in b.tolist()]
        assert sorted(set(seen)) == list(range(n))


def test_drop_last_under_ddp():
    ranks = _ranks(22, 4, 2, shuffle=True, drop_last=True)
    assert [len(s) for s in ranks] == [2, 2] and all(len(b) == 4 for s in ranks for b in s)


def test_skip_resumes_each_rank_mid_epoch():
    for s in _ranks(40, 3, 2, shuffle=True, seed=2):
        s.set_epoch(1)
        full = _epoch(s)
        s.skip = 2
        assert _epoch(s) == full[2:]


def test_shard_checks_the_rank():
    s = BatchIndexSampler(10, 2, shuffle=False)
    s.shard(2, 1)
    assert _epoch(s) == [[2, 3], [6, 7], [9]]
    with pytest.raises(ValueError, match="rank 2 is outside 0..1"):
        s.shard(2, 2)


# --- dataset and loader ----------------------------------------------------------------------------


class RecordingStore:
    """A store that remembers which indices it was asked to read, in which order."""

    def __init__(self, arrays: ArraySet) -> None:
        self.arrays = arrays
        self.calls: list[np.ndarray] = []

    def __len__(self) -> int:
        return len(self.arrays)

    def read(self, indices):
        self.calls.append(np.array(indices))
        return self.arrays.read(indices)


def _set(n=30):
    rng = np.random.default_rng(0)
    return ArraySet(images={"a": rng.normal(size=(n, 1, 2, 2)).astype(np.float32)},
                    scalars=np.arange(n, dtype=np.float32)[:, None] * 10,
                    targets=np.arange(n, dtype=np.int64))


def test_batches_come_in_sampler_order_from_sorted_reads():
    arrays = _set()
    store = RecordingStore(arrays)
    split = np.array([29, 3, 17, 8, 0, 22, 11, 5, 26, 14])  # a split's indices, unsorted
    ds = BatchDataset(store, split)
    positions = np.array([6, 0, 9, 2, 4])
    batch = ds[positions]
    wanted = split[positions]
    assert len(store.calls) == 1
    read = store.calls[0]
    assert np.all(np.diff(read) > 0)  # sorted read
    assert sorted(read.tolist()) == sorted(wanted.tolist())
    np.testing.assert_array_equal(batch["index"].numpy(), wanted)
    np.testing.assert_array_equal(batch["targets"].numpy(), wanted)  # targets == sample index here
    np.testing.assert_array_equal(batch["scalars"].numpy()[:, 0], wanted * 10.0)
    np.testing.assert_array_equal(batch["images"]["a"].numpy(), arrays.images["a"][wanted])
    assert batch["targets"].dtype == torch.int64 and batch["scalars"].dtype == torch.float32


def test_dataset_applies_the_standardizer():
    arrays = _set()
    st = Standardizer.fit(arrays.read, np.arange(30), StandardizeConfig(), False)
    ds = BatchDataset(arrays, np.arange(30), st)
    batch = ds[np.array([5, 1])]
    mean, std = arrays.scalars.mean(), arrays.scalars.std()
    np.testing.assert_allclose(batch["scalars"].numpy()[:, 0], (arrays.scalars[[5, 1], 0] - mean) / std, rtol=1e-5)


def _loader(store, seed=0, epoch=0, bs=4, n=None):
    ds = BatchDataset(store, np.arange(n or len(store)))
    sampler = BatchIndexSampler(len(ds), bs, shuffle=True, seed=seed)
    sampler.set_epoch(epoch)
    return BatchLoader(ds, sampler)


def _indices(loader, stop=None):
    """Iterate like the training loop: each batch trained on is reported with ``batch_done``."""
    out = []
    for k, batch in enumerate(loader):
        out.append(batch["index"].tolist())
        loader.batch_done()
        if stop is not None and k + 1 == stop:
            break
    return out


@pytest.mark.parametrize("k", [1, 3, 7])
def test_loader_resumes_mid_epoch(k):
    arrays = _set()
    reference = _indices(_loader(arrays, epoch=2))
    assert len(reference) == 8
    first = _loader(arrays, epoch=2)
    seen = _indices(first, stop=k)
    assert seen == reference[:k]
    state = first.state_dict()
    assert state == {"batches_done": k, "epoch": 2}

    resumed = _loader(arrays, epoch=2)
    resumed.load_state_dict(state)
    assert _indices(resumed) == reference[k:]
    assert resumed.state_dict()["batches_done"] == len(reference)
    assert _indices(resumed) == reference  # the next pass is a whole epoch again


def test_prefetched_batch_is_not_counted_as_done():
    arrays = _set()
    reference = _indices(_loader(arrays, epoch=0))
    loader = _loader(arrays, epoch=0)
    it = iter(loader)
    next(it)
    loader.batch_done()  # batch 0 trained on
    next(it)  # batch 1 fetched ahead but never trained on
    state = loader.state_dict()
    assert state["batches_done"] == 1
    resumed = _loader(arrays, epoch=0)
    resumed.load_state_dict(state)
    assert _indices(resumed) == reference[1:]


def test_end_of_epoch_state_does_not_skip():
    arrays = _set()
    loader = _loader(arrays, epoch=1)
    reference = _indices(loader)
    state = loader.state_dict()
    assert state["batches_done"] == len(reference)
    fresh = _loader(arrays, epoch=1)
    fresh.load_state_dict(state)
    assert _indices(fresh) == reference


def test_a_new_iteration_restarts_the_count():
    arrays = _set()
    loader = _loader(arrays)
    _indices(loader, stop=3)
    iter(loader)
    assert loader.state_dict()["batches_done"] == 0


def test_empty_state_does_not_skip():
    arrays = _set()
    loader = _loader(arrays)
    loader.load_state_dict({})
    assert len(_indices(loader)) == 8


def test_loader_batches_are_not_collated_again():
    arrays = _set()
    batch = next(iter(_loader(arrays, bs=5)))
    assert batch["images"]["a"].shape == (5, 1, 2, 2)
    assert batch["scalars"].shape == (5, 1)


def test_to_tensors_dtypes():
    out = to_tensors({"a": np.array([1, 2], dtype=np.int32), "b": np.array([1.0], dtype=np.float64),
                      "n": {"c": np.zeros((2, 2), dtype=np.float16)}, "s": "keep"})
    assert out["a"].dtype == torch.int64 and out["b"].dtype == torch.float32
    assert out["n"]["c"].dtype == torch.float32 and out["s"] == "keep"
