"""The per-sample torch image metrics equal their numpy references, sample by sample."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from deepscope import metrics, metrics_torch
from deepscope.components import METRICS
from deepscope.data.spec import ImageSpec, InputSpec
from deepscope.training.task import Task


@pytest.mark.parametrize("shape", [(4, 1, 12, 12), (3, 2, 6, 10, 10)])
@pytest.mark.parametrize("name", ["psnr", "ssim", "mae", "mse"])
def test_torch_metric_per_sample_equals_numpy(name, shape):
    rng = np.random.default_rng(0)
    target = np.clip(rng.normal(size=shape), 0, None)
    pred = target + rng.normal(0, 0.1, shape)
    got = getattr(metrics_torch, name)(torch.from_numpy(pred), torch.from_numpy(target)).numpy()
    want = [getattr(metrics, name)(pred[i:i + 1], target[i:i + 1]) for i in range(len(pred))]
    np.testing.assert_allclose(got, want, rtol=1e-4)


def test_psnr_skips_all_zero_targets_and_scores_exact_predictions_inf():
    target = torch.zeros(2, 1, 4, 4)
    target[1, 0, 1, 1] = 1.0
    got = metrics_torch.psnr(torch.cat([target[:1] + 0.1, target[1:]]), target)
    assert torch.isnan(got[0]) and torch.isinf(got[1])


def test_task_scores_on_the_device_in_data_units_like_numpy():
    rng = np.random.default_rng(1)
    spec = InputSpec(images={"x": ImageSpec(1, (8, 8))}, target_shape=(1, 8, 8))
    stats = (np.array([0.3], np.float32), np.array([2.0], np.float32))
    task = Task("mse", spec, ["psnr", "ssim", "mae"], target_stats=stats)
    out, target = rng.normal(size=(5, 1, 8, 8)), rng.normal(size=(5, 1, 8, 8))
    on_device = task.sample_scores_torch(torch.from_numpy(out), torch.from_numpy(target)).numpy()
    np.testing.assert_allclose(on_device, task.sample_scores(out, target), rtol=1e-4)
    # a metric without a torch version (resolution) keeps the numpy path
    assert Task("mse", spec, ["resolution"], target_stats=stats).sample_scores_torch(
        torch.from_numpy(out), torch.from_numpy(target)) is None


def test_every_torch_version_is_declared_on_a_metric():
    declared = {e.meta["sample_torch"].split(":")[1] for e in METRICS.entries() if "sample_torch" in e.meta}
    assert declared == set(metrics_torch.__all__)
