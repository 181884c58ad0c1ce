"""Chunk-local shuffling (``BatchIndexSampler(block=k)``, ``data.shuffle: chunks``): every epoch is still
a permutation, reproducible from (seed, epoch), and each batch touches few storage chunks."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from deepscope.data.dataset import BatchIndexSampler

# (n, block, batch_size): blocks dividing n, a last partial block, blocks larger than a batch, many small blocks
CASES = [(512, 8, 16), (500, 16, 16), (300, 32, 10), (1000, 4, 64), (97, 10, 8)]
IDS = [f"n{n}-block{k}-batch{b}" for n, k, b in CASES]


def _epoch(sampler, epoch):
    sampler.set_epoch(epoch)
    return list(sampler)


def _window(block, batch, replicas=1):
    """Positions shuffled together, as the sampler's docstring says: whole blocks, at least two, and at
    least two global batches."""
    return block * max(2, -(-2 * batch * replicas // block))


@pytest.mark.parametrize("n, block, batch", CASES, ids=IDS)
def test_every_epoch_is_a_permutation(n, block, batch):
    sampler = BatchIndexSampler(n, batch, shuffle=True, seed=3, block=block)
    orders = []
    for epoch in range(4):
        batches = _epoch(sampler, epoch)
        assert len(batches) == len(sampler) == -(-n // batch)
        assert all(len(b) == batch for b in batches[:-1])
        order = np.concatenate(batches)
        np.testing.assert_array_equal(np.sort(order), np.arange(n))
        orders.append(order)
    for a in range(4):  # epochs differ from one another and from file order
        assert not np.array_equal(orders[a], np.arange(n))
        for b in range(a + 1, 4):
            assert not np.array_equal(orders[a], orders[b])


@pytest.mark.parametrize("n, block, batch", CASES, ids=IDS)
def test_same_seed_and_epoch_give_the_same_order(n, block, batch):
    a = BatchIndexSampler(n, batch, shuffle=True, seed=5, block=block)
    b = BatchIndexSampler(n, batch, shuffle=True, seed=5, block=block)
    c = BatchIndexSampler(n, batch, shuffle=True, seed=6, block=block)
    for epoch in (0, 7):
        first, again, other = _epoch(a, epoch), _epoch(b, epoch), _epoch(c, epoch)
        assert all(np.array_equal(x, y) for x, y in zip(first, again))
        assert not np.array_equal(np.concatenate(first), np.concatenate(other))
    assert [x.tolist() for x in _epoch(a, 2)] == [x.tolist() for x in _epoch(a, 2)]  # asked twice: the same


def test_without_shuffle_the_block_changes_nothing():
    sampler = BatchIndexSampler(50, 8, shuffle=False, block=16)
    np.testing.assert_array_equal(np.concatenate(list(sampler)), np.arange(50))


def _blocks_per_batch(batches, block):
    return [len(np.unique(np.asarray(b) // block)) for b in batches]


@pytest.mark.parametrize("n, block, batch", CASES, ids=IDS)
def test_batches_touch_few_blocks(n, block, batch):
    window = _window(block, batch)
    # a batch (at most a window long) lies in at most two windows; a window holds window/block whole blocks,
    # one more where the last, partial block shifted the blocks after it
    bound = 2 * (window // block + (1 if n % block else 0))
    local = BatchIndexSampler(n, batch, shuffle=True, seed=0, block=block)
    plain = BatchIndexSampler(n, batch, shuffle=True, seed=0)
    touched_local, touched_plain = [], []
    for epoch in range(3):
        touched_local += _blocks_per_batch(_epoch(local, epoch), block)
        touched_plain += _blocks_per_batch(_epoch(plain, epoch), block)
    assert max(touched_local) <= bound
    assert sum(touched_plain) > 1.5 * sum(touched_local)


def test_batches_stay_within_their_window_when_windows_hold_whole_batches():
    n, block, batch = 1024, 8, 16  # window 32 = 2 batches: each batch is drawn from 4 blocks
    sampler = BatchIndexSampler(n, batch, shuffle=True, seed=1, block=block)
    for epoch in range(3):
        batches = _epoch(sampler, epoch)
        assert max(_blocks_per_batch(batches, block)) <= 4
        for k in range(0, len(batches), 2):  # the two batches of a window share its 4 blocks
            pair = np.concatenate(batches[k:k + 2])
            assert len(np.unique(pair // block)) == 4
            assert np.all(np.bincount(pair // block)[np.unique(pair // block)] == block)  # whole blocks
    plain = BatchIndexSampler(n, batch, shuffle=True, seed=1)
    assert np.mean(_blocks_per_batch(list(plain), block)) > 12  # 16 of 128 blocks drawn at random


@pytest.mark.parametrize("n, block, batch", [(512, 8, 16), (500, 16, 16), (301, 32, 10)])
def test_ddp_shares_are_disjoint_and_cover_the_epoch(n, block, batch):
    replicas = [BatchIndexSampler(n, batch, shuffle=True, seed=2, num_replicas=2, rank=r, block=block)
                for r in range(2)]
    single = BatchIndexSampler(n, 2 * batch, shuffle=True, seed=2, block=block)
    for epoch in range(3):
        shares = [_epoch(s, epoch) for s in replicas]
        assert len(shares[0]) == len(shares[1]) == len(replicas[0])
        seen = np.concatenate([np.concatenate(s) for s in shares])
        assert len(np.unique(seen)) == len(seen)  # disjoint
        whole = _epoch(single, epoch)
        if n % (2 * batch) == 1:  # a last global batch of one sample is dropped for the epoch (pad=False)
            assert len(seen) == n - 1 and len(whole) == len(shares[0]) + 1
        else:
            np.testing.assert_array_equal(np.sort(seen), np.arange(n))  # and covering
        for k in range(len(shares[0])):  # step by step the samples one process sees with 2x the batch
            np.testing.assert_array_equal(np.sort(np.concatenate([shares[0][k], shares[1][k]])),
                                          np.sort(whole[k]))


# --- through a lazy HDF5 store --------------------------------------------------------------------------


def _chunked_file(path, n=1024, chunk=32):
    rng = np.random.default_rng(0)
    img = rng.normal(size=(n, 4, 4)).astype(np.float32)
    y = rng.normal(size=n).astype(np.float32)
    with h5py.File(path, "w") as f:
        f.create_dataset("train/img", data=img, chunks=(chunk, 4, 4), compression="gzip")
        f.create_dataset("train/y", data=y, chunks=(chunk,), compression="gzip")
        f.create_dataset("val/img", data=img[:64], chunks=(chunk, 4, 4), compression="gzip")
        f.create_dataset("val/y", data=y[:64], chunks=(chunk,), compression="gzip")
    return img, y


def _config(path, shuffle, lazy=True):
    from deepscope.config import load_config

    return load_config({"data": {"source": "hdf5", "path": str(path), "sets": {"train": "train", "val": "val"},
                                 "images": {"x": "img"}, "targets": "y", "lazy": lazy, "shuffle": shuffle,
                                 "standardize": {"images": "none"}},
                        "train": {"loss": "mse", "batch_size": 16}, "seed": 4})


def _count_chunk_reads(monkeypatch):
    """Record, per read of a dataset, the storage chunks it touches."""
    from deepscope.data import hdf5

    touched: list[int] = []
    real = hdf5.take_rows

    def counting(ds, rows, where):
        touched.append(len(np.unique(np.asarray(rows) // ds.chunks[0])))
        return real(ds, rows, where)

    monkeypatch.setattr(hdf5, "take_rows", counting)
    return touched


def test_the_training_loader_shuffles_chunks_of_a_lazy_store(tmp_path, monkeypatch):
    from deepscope.data.prepare import prepare_data
    from deepscope.training.experiment import _loader

    path = tmp_path / "d.h5"
    img, y = _chunked_file(path)
    reads = {}
    for shuffle in ("samples", "chunks"):
        cfg = _config(path, shuffle)
        prepared = prepare_data(cfg)
        loader = _loader(prepared, "train", cfg, shuffle=True)
        assert loader.sampler.block == (32 if shuffle == "chunks" else None)
        store = prepared.stores["train"]
        assert store.chunk_rows == 32
        store.rows_read = 0
        touched = _count_chunk_reads(monkeypatch)
        seen = []
        for batch in loader:
            index = batch["index"].numpy()
            np.testing.assert_array_equal(batch["images"]["x"][:, 0].numpy(), img[index])  # the right samples
            np.testing.assert_array_equal(batch["targets"].numpy(), y[index])
            seen.append(index)
        monkeypatch.undo()
        np.testing.assert_array_equal(np.sort(np.concatenate(seen)), np.arange(1024))
        reads[shuffle] = (sum(touched), store.rows_read)
        assert len(touched) == 2 * 64  # images and targets, 64 batches
        val = _loader(prepared, "val", cfg, shuffle=False)
        assert val.sampler.block is None  # evaluation reads in file order
    # per epoch, 1024 samples in 32 chunks of 32: chunk-local batches of 16 touch 2 chunks (a window of 2),
    # batches drawn from the whole split about 12 each
    chunks_local, chunks_plain = reads["chunks"][0], reads["samples"][0]
    assert chunks_local <= 2 * 2 * 64
    assert chunks_plain >= 2 * 10 * 64
    assert chunks_plain > 4 * chunks_local
    assert min(reads["chunks"][1], reads["samples"][1]) >= 2 * 1024  # every sample's rows of both datasets
    # rows this small are read as whole chunks: what is fetched follows the chunks touched
    assert reads["chunks"][1] == 32 * chunks_local
    assert reads["samples"][1] > 4 * reads["chunks"][1]


def test_chunk_shuffle_of_an_in_memory_set_is_plain(tmp_path):
    from deepscope.data.prepare import prepare_data
    from deepscope.training.experiment import _loader

    path = tmp_path / "d.h5"
    _chunked_file(path, n=256)
    cfg = _config(path, "chunks", lazy=False)
    loader = _loader(prepare_data(cfg), "train", cfg, shuffle=True)
    assert loader.sampler.block is None  # no storage chunks in memory
