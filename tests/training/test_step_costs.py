"""What keeps deepscope's per-step cost close to a plain PyTorch loop (bench/overhead.py), and that
each shortcut leaves behaviour unchanged."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader

import deepscope
import deepscope.training.experiment as experiment
from deepscope.data.arrays import ArraySet
from deepscope.data.dataset import BatchDataset, BatchIndexSampler, BatchLoader
from deepscope.training.distributed import DistributedSetup, StopTogether
from deepscope.training.trainer import NoProfiler
from tests.conftest import small_config


def _loader(n: int = 50, batch: int = 8, workers: int = 0) -> BatchLoader:
    rng = np.random.default_rng(0)
    store = ArraySet(images={"calo": rng.normal(size=(n, 1, 3, 3)).astype(np.float32)},
                     targets=rng.normal(size=n).astype(np.float32))
    return BatchLoader(BatchDataset(store, np.arange(n)), BatchIndexSampler(n, batch, shuffle=True, seed=3),
                       num_workers=workers)


def _same(a: list, b: list) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert x.keys() == y.keys()
        torch.testing.assert_close(x["images"]["calo"], y["images"]["calo"], rtol=0, atol=0)
        torch.testing.assert_close(x["targets"], y["targets"], rtol=0, atol=0)
        torch.testing.assert_close(x["index"], y["index"], rtol=0, atol=0)


def test_loader_without_workers_reads_in_process_the_batches_the_dataloader_gives():
    loader = _loader()
    loader.sampler.set_epoch(2)
    direct = list(loader)  # the in-process path
    loader.sampler.set_epoch(2)
    through_torch = list(DataLoader.__iter__(loader))  # torch's own iterator over the same sampler
    _same(direct, through_torch)
    assert len(direct) == len(loader) == 7


def test_loader_in_process_resumes_mid_epoch_like_before():
    loader = _loader()
    loader.sampler.set_epoch(1)
    full = list(loader)
    loader.sampler.set_epoch(1)
    loader.load_state_dict({"batches_done": 3, "epoch": 1})
    _same(list(loader), full[3:])


def test_no_profiler_times_nothing_and_costs_one_shared_context():
    profiler = NoProfiler()
    with profiler.profile("run_training_batch") as entered:
        pass
    assert entered is None and profiler.profile("a") is profiler.profile("b")


def _system(monkeypatch, runs_dir, **train):
    """Train a tiny digits run and return its system, trainer and the extra callbacks it was given."""
    seen: dict = {}
    original = experiment.build_trainer

    def capture(cfg, run, resume_epoch, extra_callbacks=()):
        trainer, interrupt = original(cfg, run, resume_epoch, extra_callbacks=extra_callbacks)
        seen.update(trainer=trainer, extra=list(extra_callbacks))
        return trainer, interrupt

    monkeypatch.setattr(experiment, "build_trainer", capture)
    deepscope.train(small_config(runs_dir, train={"epochs": 1, "batch_size": 64, "loss": "cross_entropy",
                                                  "optimizer": "adam", **train},
                                 log={"dir": str(runs_dir), "progress_bar": "none", "tensorboard": False,
                                      "figures": False, "predictions": False}))
    return seen


@pytest.mark.slow
def test_a_single_process_run_has_no_ddp_callbacks_and_uses_no_profiler(monkeypatch, runs_dir):
    seen = _system(monkeypatch, runs_dir)
    kinds = {type(cb) for cb in seen["extra"]}
    assert DistributedSetup not in kinds and StopTogether not in kinds
    assert isinstance(seen["trainer"].profiler, NoProfiler)


def test_ddp_callbacks_are_kept_for_several_processes(monkeypatch, runs_dir):
    # the decision is taken from train.devices before Lightning starts any process
    captured: list = []

    def stop(cfg, run, resume_epoch, extra_callbacks=()):
        captured.extend(extra_callbacks)
        raise RuntimeError("stop before training")

    monkeypatch.setattr(experiment, "build_trainer", stop)
    cfg = small_config(runs_dir, train={"epochs": 1, "batch_size": 32, "loss": "cross_entropy", "optimizer": "adam",
                                        "accelerator": "cpu", "devices": 2, "strategy": "ddp"})
    with pytest.raises(RuntimeError, match="stop before training"):
        deepscope.train(cfg)
    kinds = {type(cb) for cb in captured}
    assert DistributedSetup in kinds and StopTogether in kinds


def test_the_system_leaves_cpu_batches_in_place_and_registers_modules_as_usual():
    from deepscope.training.system import SupervisedSystem
    from deepscope.training.task import Task
    from deepscope.data.spec import InputSpec
    from deepscope.config.common import Component

    task = Task("mse", InputSpec(scalars=2))
    system = SupervisedSystem(nn.Linear(2, 1), lambda p, t: (p - t) ** 2, task, Component(class_name="adam"))
    batch = {"scalars": torch.zeros(4, 2), "targets": torch.zeros(4)}
    assert system.transfer_batch_to_device(batch, torch.device("cpu"), 0) is batch
    system._current_fx_name = "training_step"  # Lightning's bookkeeping: a plain attribute
    assert system._current_fx_name == "training_step" and "_current_fx_name" not in system._modules
    system.extra = nn.Linear(1, 1)  # anything else still goes through nn.Module
    assert "extra" in system._modules and any(n.startswith("extra.") for n, _ in system.named_parameters())


def test_checkpoint_callbacks_keep_lightnings_state_key(tmp_path):
    """Checkpoints store each callback's state (the best score) under its state key: resuming a run
    saved with Lightning's ModelCheckpoint must find it."""
    from lightning.pytorch.callbacks import ModelCheckpoint

    from deepscope.training.trainer import _ModelCheckpoint

    for kwargs in ({"monitor": "val_loss", "mode": "min", "filename": "best"}, {"monitor": None, "filename": "last"}):
        ours, theirs = _ModelCheckpoint(dirpath=tmp_path, **kwargs), ModelCheckpoint(dirpath=tmp_path, **kwargs)
        assert ours.state_key == theirs.state_key == ours.state_key
        assert ours.state_key.startswith("ModelCheckpoint{")


@pytest.mark.slow
@pytest.mark.parametrize("clock", ["wall", "cpu"])
def test_the_overhead_benchmark_runs_and_reports_both_measures(clock):
    """bench/overhead.py hooks into deepscope's Trainer factory; it must keep working as that changes."""
    import re
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[2] / "bench" / "overhead.py"
    proc = subprocess.run([sys.executable, str(script), "--samples", "256", "--val-samples", "16", "--epochs", "2",
                           "--repeats", "1", "--filters", "2", "--block-depths", "1", "--threads", "1",
                           "--clock", clock], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    overhead = re.search(r"overhead per step, model compute excluded: (-?[\d.]+) ms", proc.stdout)
    ratio = re.search(r"ratio \(deepscope / plain samples/s\): ([\d.]+)", proc.stdout)
    assert overhead and ratio, proc.stdout[-2000:]
    assert 0.2 < float(ratio.group(1)) < 2.0 and abs(float(overhead.group(1))) < 50
