"""In-memory data is standardized once for training; batches equal per-batch standardization."""

from __future__ import annotations

import numpy as np

from deepscope.config import load_config
from deepscope.data.dataset import BatchDataset
from deepscope.data.prepare import prepare_data


def _data(rng, n):
    tracks = rng.normal(size=(n, 5, 3)).astype(np.float32)
    tracks[:, 3:] = 0.0
    return {"images": {"calo": rng.normal(3.0, 2.0, size=(n, 6, 5, 2))}, "scalars": rng.normal(size=(n, 4)) * 5,
            "tracks": tracks, "targets": rng.normal(10, 3, size=n), "sample_weights": rng.uniform(size=n)}


def test_standardized_once_equals_standardized_per_batch():
    rng = np.random.default_rng(0)
    data = {"train": _data(rng, 300), "val": _data(rng, 50)}
    cfg = load_config({"data": {"standardize": {"targets": True}}, "train": {"loss": "mse"},
                       "model": {"top": {"units": [4, 1]}}})
    prepared = prepare_data(cfg, data)
    for split in ("train", "val"):
        store, per_batch = prepared.training_store(split)
        assert per_batch is None and store is not prepared.stores[split]
        once = BatchDataset(store, prepared.indices[split], None)
        each = BatchDataset(prepared.stores[split], prepared.indices[split], prepared.standardizer)
        pos = rng.permutation(len(once))[:64]
        a, b = once[pos], each[pos]
        for key in ("scalars", "tracks", "targets", "sample_weights", "index"):
            np.testing.assert_allclose(a[key].numpy(), b[key].numpy(), rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(a["images"]["calo"].numpy(), b["images"]["calo"].numpy(), rtol=1e-6, atol=1e-6)
        assert (a["tracks"].numpy()[:, 3:] == 0).all()  # padding stays exactly zero
    # the training split is standardized with its own statistics: mean 0, std 1 per channel
    store, _ = prepared.training_store("train")
    img = store.images["calo"][prepared.indices["train"]]
    np.testing.assert_allclose(img.mean(axis=(0, 2, 3)), 0.0, atol=1e-5)
    np.testing.assert_allclose(img.std(axis=(0, 2, 3)), 1.0, atol=1e-4)
    # the user's arrays are not changed
    assert abs(float(np.mean(data["train"]["images"]["calo"])) - 3.0) < 0.2
