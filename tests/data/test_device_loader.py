"""Device-resident loading (``data.on_device``): a loader that holds its split's standardized samples on the
training device gives the batches the host loader gives, resumes the same, and is chosen only where it can
work."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from deepscope.config import load_config
from deepscope.config.data import StandardizeConfig
from deepscope.data.arrays import ArraySet
from deepscope.data.dataset import BatchDataset, BatchIndexSampler, BatchLoader
from deepscope.data.standardize import Standardizer
from deepscope.errors import ConfigError
from deepscope.training import placement
from deepscope.training.placement import loader_device
from tests.conftest import small_config


def _set(n=53, seed=0, labels=False):
    rng = np.random.default_rng(seed)
    targets = rng.integers(0, 4, n) if labels else rng.normal(size=(n, 2)).astype(np.float32)
    return ArraySet(images={"a": rng.normal(3.0, 2.0, size=(n, 2, 5, 4)).astype(np.float32),
                            "b": rng.normal(size=(n, 1, 3, 3)).astype(np.float32)},
                    scalars=rng.normal(-1.0, 4.0, size=(n, 3)).astype(np.float32),
                    tracks=np.concatenate([rng.normal(size=(n, 3, 2)), np.zeros((n, 2, 2))], 1).astype(np.float32),
                    targets=targets, sample_weights=rng.uniform(size=n).astype(np.float32))


def _standardizer(store, indices, targets=True):
    return Standardizer.fit(store.read, indices, StandardizeConfig(images="per_channel", targets=targets),
                            standardize_targets=targets)


def _loaders(store, indices, standardizer, device, batch=8, seed=1, shuffle=True):
    def make(dev):
        dataset = BatchDataset(store, indices, standardizer)
        return BatchLoader(dataset, BatchIndexSampler(len(indices), batch, shuffle=shuffle, seed=seed), device=dev)

    return make(None), make(device)


def _assert_same(a, b, exact=True):
    assert set(a) == set(b)
    for key in a:
        if isinstance(a[key], dict):
            _assert_same(a[key], b[key], exact)
            continue
        x, y = a[key], b[key].cpu()
        assert x.dtype == y.dtype and x.shape == y.shape, key
        if exact:
            torch.testing.assert_close(x, y, rtol=0, atol=0, msg=key)
        else:
            torch.testing.assert_close(x, y, msg=key)


@pytest.mark.parametrize("standardized", [True, False])
@pytest.mark.parametrize("labels", [False, True])
def test_cpu_device_batches_equal_the_host_batches(standardized, labels):
    store = _set(labels=labels)
    indices = np.random.default_rng(5).permutation(53)[:41]  # a split: some samples, in any order
    standardizer = _standardizer(store, indices, targets=not labels) if standardized else None
    host, device = _loaders(store, indices, standardizer, "cpu")
    assert device.device == "cpu" and not device.pin_memory
    for epoch in range(2):
        host.sampler.set_epoch(epoch)
        device.sampler.set_epoch(epoch)
        batches = list(device)
        expected = list(host)
        assert len(batches) == len(expected) == 6
        for a, b in zip(expected, batches):
            _assert_same(a, b)
            assert b["index"].dtype == torch.int64
        seen = torch.cat([b["index"] for b in batches]).numpy()
        np.testing.assert_array_equal(np.sort(seen), np.sort(indices))  # the split's own sample indices
    held = device.held()
    assert held["images"]["a"].device.type == "cpu" and len(held["index"]) == 41
    if standardized:  # standardized once, when held: per channel mean 0 over the split
        np.testing.assert_allclose(held["images"]["a"].double().mean((0, 2, 3)).numpy(), 0.0, atol=1e-5)
        np.testing.assert_allclose(held["scalars"].double().std(0, unbiased=False).numpy(), 1.0, rtol=1e-4)
    assert device.held() is held  # moved once


def test_a_lazy_store_on_the_device_gives_the_same_batches(tmp_path):
    import h5py

    from deepscope.data.hdf5 import load_hdf5

    rng = np.random.default_rng(2)
    with h5py.File(tmp_path / "d.h5", "w") as f:
        f.create_dataset("img", data=rng.normal(size=(40, 4, 4, 2)), chunks=(8, 4, 4, 2), compression="gzip")
        f["y"] = rng.normal(size=40)
    cfg = load_config({"data": {"source": "hdf5", "path": str(tmp_path / "d.h5"), "images": "img", "targets": "y",
                                "lazy": True}, "train": {"loss": "mse"}})
    store = load_hdf5(cfg.data)
    indices = np.arange(5, 37)
    host, device = _loaders(store, indices, _standardizer(store, indices), "cpu", batch=6)
    for a, b in zip(list(host), list(device)):
        _assert_same(a, b)
    store.close()


def test_resume_mid_epoch_on_the_device_as_on_the_host():
    store = _set()
    indices = np.arange(53)
    standardizer = _standardizer(store, indices)
    for dev in (None, "cpu"):
        first = BatchLoader(BatchDataset(store, indices, standardizer),
                            BatchIndexSampler(53, 8, shuffle=True, seed=3), device=dev)
        first.sampler.set_epoch(1)
        whole = list(first)
        seen = []
        for batch in first:
            seen.append(batch)
            first.batch_done()
            if len(seen) == 3:
                break
        state = first.state_dict()
        assert state == {"batches_done": 3, "epoch": 1}
        resumed = BatchLoader(BatchDataset(store, indices, standardizer),
                              BatchIndexSampler(53, 8, shuffle=True, seed=3), device=dev)
        resumed.sampler.set_epoch(state["epoch"])
        resumed.load_state_dict(state)
        rest = list(resumed)
        assert len(rest) == len(whole) - 3
        for a, b in zip(whole, seen + rest):
            _assert_same(a, b)
        assert len(list(resumed)) == len(whole)  # the next epoch starts from the beginning


def test_a_transform_cannot_run_on_the_device():
    store = _set()
    dataset = BatchDataset(store, np.arange(53), transform=lambda batch, epoch=None: batch)
    with pytest.raises(ValueError, match="cannot apply a numpy transform"):
        BatchLoader(dataset, BatchIndexSampler(53, 8, shuffle=True), device="cpu")


def test_prefetch_reaches_the_workers():
    dataset = BatchDataset(_set(), np.arange(53))
    loader = BatchLoader(dataset, BatchIndexSampler(53, 8, shuffle=True), num_workers=1, prefetch=5)
    assert loader.prefetch_factor == 5 and loader.persistent_workers
    assert BatchLoader(dataset, BatchIndexSampler(53, 8, shuffle=True)).prefetch_factor is None


# --- where the samples are held ----------------------------------------------------------------------------


def _cfg(on_device="auto", accelerator="auto"):
    return SimpleNamespace(data=SimpleNamespace(on_device=on_device), train=SimpleNamespace(accelerator=accelerator))


@pytest.mark.skipif(torch.cuda.is_available(), reason="the CPU-only answers")
def test_loader_device_on_a_cpu_only_machine():
    store, indices = _set(), np.arange(53)
    assert loader_device(_cfg("auto"), store, indices, None, 1) is None
    assert loader_device(_cfg(True), store, indices, None, 1) == "cpu"
    assert loader_device(_cfg(True, "cpu"), store, indices, None, 1) == "cpu"
    assert loader_device(_cfg(False), store, indices, None, 1) is None
    assert loader_device(_cfg(True), store, indices, lambda b, epoch=None: b, 1) is None  # a transform: host


def test_loader_device_auto_on_a_gpu(monkeypatch):
    store, indices = _set(), np.arange(53)
    need = 53 * (2 * 5 * 4 + 9 + 3 + 5 * 2 + 2 + 1) * 4  # bytes of the split as float32
    monkeypatch.setattr(placement, "training_device", lambda train: "cuda")
    monkeypatch.setattr(placement, "_free_gpu_bytes", lambda: 4 * need)
    assert loader_device(_cfg("auto"), store, indices, None, 1) == "cuda"
    assert loader_device(_cfg("auto"), store, indices, None, 2) is None  # DDP: each process its own share
    assert loader_device(_cfg("auto"), store, indices, lambda b, epoch=None: b, 1) is None
    assert loader_device(_cfg("auto"), object(), indices, None, 1) is None  # a lazy store stays on the host
    assert loader_device(_cfg(False), store, indices, None, 1) is None
    monkeypatch.setattr(placement, "_free_gpu_bytes", lambda: 4 * need - 4)  # more than a quarter of the free
    assert loader_device(_cfg("auto"), store, indices, None, 1) is None
    assert loader_device(_cfg(True), store, indices, None, 1) == "cuda"  # true: whatever it takes


def test_config_on_device_and_prefetch():
    data = load_config(small_config("runs")).data
    assert data.on_device == "auto" and data.prefetch == 2
    assert load_config(small_config("runs", data={"on_device": True, "prefetch": 4})).data.on_device is True
    with pytest.raises(ConfigError, match=r"data.on_device: true holds the samples on the device, but data.augment"):
        load_config(small_config("runs", data={"on_device": True, "augment": {"flips": True}}))
    load_config(small_config("runs", data={"on_device": "auto", "augment": {"flips": True}}))  # auto picks the host
    with pytest.raises(ConfigError, match=r"data.on_device: found 'sometimes'; expected 'auto' or a valid boolean"):
        load_config(small_config("runs", data={"on_device": "sometimes"}))
    with pytest.raises(ConfigError, match=r"data.prefetch: found 0"):
        load_config(small_config("runs", data={"prefetch": 0}))


def test_training_loaders_hold_the_data_when_asked(tmp_path):
    from deepscope.data.prepare import prepare_data
    from deepscope.training.experiment import _loader

    cfg = load_config(small_config(tmp_path / "runs", data={"on_device": True, "num_workers": 2, "n_samples": 100}))
    prepared = prepare_data(cfg)
    train = _loader(prepared, "train", cfg, shuffle=True)
    assert train.device == "cpu" and train.num_workers == 0  # no workers to feed a held split
    cfg_host = load_config(small_config(tmp_path / "runs", data={"on_device": False, "n_samples": 100}))
    host = _loader(prepare_data(cfg_host), "train", cfg_host, shuffle=True)
    assert host.device is None
    for a, b in zip(list(host), list(train)):
        _assert_same(a, b)


@pytest.mark.slow
def test_training_on_the_device_matches_the_host(tmp_path):
    import deepscope

    results = {}
    for on_device in (False, True):
        cfg = small_config(tmp_path / f"runs-{on_device}", data={"on_device": on_device},
                           train={"epochs": 2, "batch_size": 32, "loss": "cross_entropy", "metrics": ["accuracy"],
                                  "optimizer": "adam", "accelerator": "cpu"})
        cfg["log"] = {**cfg["log"], "figures": False}
        result = deepscope.train(cfg)
        results[on_device] = (result.metrics, json.loads((result.run_dir / "final_metrics.json").read_text()))
    (host, host_file), (device, device_file) = results[False], results[True]
    assert set(host) == set(device) and host_file.keys() == device_file.keys()
    for split in host:
        for name, value in host[split].items():
            assert device[split][name] == pytest.approx(value, rel=1e-4, abs=1e-6), (split, name)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_device_batches_equal_the_host_batches():
    store = _set()
    indices = np.arange(3, 50)
    host, device = _loaders(store, indices, _standardizer(store, indices), "cuda")
    held = device.held()
    assert held["images"]["a"].device.type == "cuda" and held["index"].device.type == "cuda"
    for a, b in zip(list(host), list(device)):
        assert b["images"]["a"].device.type == "cuda"
        _assert_same(a, b, exact=False)
