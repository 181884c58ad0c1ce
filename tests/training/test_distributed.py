"""Training on several processes: the same steps and metrics as one process with the whole batch.

The end-to-end test runs the CLI in subprocesses on the CPU (gloo), as a user would: Lightning's
``ddp`` strategy starts the second process by running the same command line again.
"""

from __future__ import annotations

import contextlib
import csv
import os
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import yaml

from deepscope.training.distributed import (RUN_ENV, DistributedSetup, device_problem, gather_outputs,
                                            global_batch_loss, handed_down_run, handing_down, process_count)

# --- pieces --------------------------------------------------------------------------------------


@pytest.mark.parametrize("devices, nodes, expected", [(1, 1, 1), ("auto", 3, 3), (4, 2, 8), ([0, 2], 1, 2)])
def test_process_count(devices, nodes, expected):
    assert process_count(SimpleNamespace(devices=devices, num_nodes=nodes)) == expected


@pytest.mark.parametrize("accelerator, devices, gpus, expected", [
    ("cpu", 2, 0, None),
    ("auto", 1, 0, None),
    ("gpu", 1, 0, "train.accelerator 'gpu' asks for GPUs but this machine has none that torch can use"),
    ("auto", [0], 0, "train.devices [0] asks for GPUs but this machine has none"),
    ("gpu", 4, 2, "train.devices: 4 GPUs per node asked for but this machine has 2"),
    ("cuda", [0, 3], 2, "train.devices: GPU 3 does not exist; this machine has GPUs 0..1"),
    ("gpu", [1], 2, None),
])
def test_device_problem(monkeypatch, accelerator, devices, gpus, expected):
    monkeypatch.setattr(torch.cuda, "device_count", lambda: gpus)
    problem = device_problem(SimpleNamespace(accelerator=accelerator, devices=devices))
    assert problem == expected if expected is None else problem.startswith(expected)


def test_run_is_handed_down_only_to_processes_lightning_starts(monkeypatch, tmp_path):
    monkeypatch.delenv(RUN_ENV, raising=False)
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    with handing_down(tmp_path / "runs" / "x-2", True):
        assert handed_down_run() is None  # rank 0 itself
        monkeypatch.setenv("LOCAL_RANK", "1")
        assert handed_down_run() == (tmp_path / "runs" / "x-2", True)
    assert RUN_ENV not in os.environ and handed_down_run() is None


def test_setup_shards_the_loaders_without_a_process_group(tmp_path):
    from deepscope.data.dataset import BatchIndexSampler

    loader = SimpleNamespace(sampler=BatchIndexSampler(10, 2, shuffle=False, num_replicas=2))
    run = SimpleNamespace(path=tmp_path)
    DistributedSetup(run, False, [loader]).setup(SimpleNamespace(world_size=2, global_rank=1), None, "fit")
    assert [b.tolist() for b in loader.sampler] == [[2, 3], [6, 7], [9]]
    assert run.path == tmp_path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _collectives(rank: int, port: int) -> None:
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        # an uneven, weighted global batch of 5: rank 0 has 3 samples, rank 1 has 2
        x = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0])
        y = torch.tensor([0.5, 1.0, 0.0, 2.0, 3.0])
        w = torch.tensor([1.0, 0.5, 2.0, 1.0, 0.25])
        part = slice(0, 3) if rank == 0 else slice(3, 5)
        theta = torch.tensor(0.7, requires_grad=True)
        loss, mean = global_batch_loss((theta * x[part] - y[part]) ** 2, w[part], 2)
        loss.backward()
        grad = theta.grad.clone()
        dist.all_reduce(grad)  # what DDP does: average the processes' gradients
        grad /= 2
        whole = torch.tensor(0.7, requires_grad=True)
        reference = (((whole * x - y) ** 2) * w).sum() / w.sum()
        reference.backward()
        torch.testing.assert_close(grad, whole.grad)
        torch.testing.assert_close(mean, reference.detach())
        # a NaN on one process reaches the mean on both, so both stop at the same step
        per_sample = torch.tensor([1.0, float("nan")]) if rank == 1 else torch.tensor([1.0, 2.0])
        assert torch.isnan(global_batch_loss(per_sample, None, 2)[1])
        # per-batch outputs (values, index): step 1 is padded, rank 1 repeats sample 4
        chunks = {0: [(np.array([0.0, 1.0]), np.array([0, 1])), (np.array([4.0]), np.array([4]))],
                  1: [(np.array([2.0, 3.0]), np.array([2, 3])), (np.array([4.0]), np.array([4]))]}[rank]
        gathered = gather_outputs(chunks, 2)
        if rank == 0:
            assert np.concatenate([c[0] for c in gathered]).tolist() == [0.0, 1.0, 2.0, 3.0, 4.0]
        else:
            assert gathered is None
    finally:
        dist.destroy_process_group()


def test_loss_normalization_and_gathering_across_two_processes():
    mp.spawn(_collectives, args=(_free_port(),), nprocs=2)


# --- end to end through the CLI ------------------------------------------------------------------


def _write_data(path: Path) -> None:
    rng = np.random.default_rng(0)
    arrays = {}
    # global batches of 40: train 90 = 2 x 40 + 10 (split 5 + 5); val 41 = 40 + 1 (rank 1 repeats a sample)
    for split, n in (("train", 90), ("val", 41)):
        images = rng.normal(size=(n, 8, 8)).astype(np.float32)
        arrays[f"{split}/images/calo"] = images
        arrays[f"{split}/targets"] = (images.sum((1, 2)) + 0.1 * rng.normal(size=n)).astype(np.float32)
        arrays[f"{split}/sample_weights"] = rng.uniform(0.5, 2.0, size=n).astype(np.float32)
    np.savez(path, **arrays)


def _train(tmp_path: Path, *overrides: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in (RUN_ENV, "LOCAL_RANK", "NODE_RANK", "WORLD_SIZE",
                                                            "MASTER_ADDR", "MASTER_PORT", "RANK")}
    return subprocess.run([sys.executable, "-m", "deepscope.cli", "train", "cfg.yaml", *overrides], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=240)


def _rows(run: Path) -> list[dict[str, float]]:
    with open(run / "metrics.csv", newline="") as f:
        return [{k: float(v) for k, v in row.items() if k != "epoch_time"} for row in csv.DictReader(f)]


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)["state_dict"]


@pytest.mark.slow
@pytest.mark.xdist_group("ddp")
def test_two_processes_train_like_one_with_twice_the_batch(tmp_path):
    _write_data(tmp_path / "data.npz")
    cfg = {
        "name": "two", "seed": 5,
        "log": {"dir": "runs", "progress_bar": "none", "tensorboard": False, "figures": False},
        "data": {"source": "npz", "path": "data.npz"},
        "model": {"cnn": {"n_init_filters": 4, "activation": "relu"}, "top": {"units": [8, 1], "activation": "relu"}},
        "train": {"epochs": 2, "batch_size": 20, "loss": "mse", "metrics": ["mae"], "accelerator": "cpu",
                  "optimizer": {"class_name": "sgd", "config": {"lr": 0.01, "momentum": 0.9}}},
    }
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(cfg))
    ddp = ("-o", "train.devices=2", "-o", "train.strategy=ddp")
    one = ("-o", "name=one", "-o", "train.batch_size=40", "-o", "train.epochs=3")
    with ThreadPoolExecutor(2) as pool:
        first, single = pool.map(lambda args: _train(tmp_path, *args), [ddp, one])
    assert first.returncode == 0, first.stderr[-3000:]
    assert single.returncode == 0, single.stderr[-3000:]
    # rank 0 alone reports; the second process trained in the same folder and wrote nothing
    assert first.stderr.count("run folder ") == 1 and "2 processes on 1 node" in first.stderr
    assert first.stdout.count("run folder:") == 1
    resumed = _train(tmp_path, *ddp, "-o", "train.epochs=3")  # both processes resume from last.ckpt
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming after epoch 2; 2 processes" in resumed.stderr

    runs = tmp_path / "runs"
    assert sorted(p.name for p in runs.iterdir()) == ["one", "two"]  # no stray version or staging folder
    two = runs / "two"
    for rel in ["config.yaml", "model_summary.txt", "input_spec.json", "standardization.npz", "metrics.csv",
                "final_metrics.json", "predictions/val.npz", "checkpoints/best.ckpt", "checkpoints/last.ckpt"]:
        assert (two / rel).is_file(), rel
    assert not list(two.rglob("*.tmp"))
    assert yaml.safe_load((two / "config.yaml").read_text())["train"]["devices"] == 2

    rows_two, rows_one = _rows(two), _rows(runs / "one")
    assert [r["step"] for r in rows_two] == [r["step"] for r in rows_one] == [2, 5, 8]  # 3 steps an epoch
    for a, b in zip(rows_two, rows_one):
        assert a.keys() == b.keys()
        for key in a:
            assert a[key] == pytest.approx(b[key], rel=1e-4, abs=1e-6), key
    weights_two, weights_one = _weights(two), _weights(runs / "one")
    assert weights_two.keys() == weights_one.keys()
    for key in weights_one:
        torch.testing.assert_close(weights_two[key], weights_one[key], rtol=1e-4, atol=1e-6)


@pytest.mark.slow
@pytest.mark.xdist_group("ddp")
def test_sigterm_stops_both_processes_at_the_same_step(tmp_path):
    # Lightning's own SIGTERM handling can leave the processes waiting for each other; StopTogether
    # stops both at the end of one step, rank 0 saves last.ckpt, and the run exits 130
    cfg = {
        "name": "stop", "log": {"dir": "runs", "progress_bar": "none", "tensorboard": False, "figures": False},
        "data": {"source": "sklearn_digits", "n_samples": 200, "split": {"train": "0:160", "val": "160:200"}},
        "model": {"top": {"units": [8, 10], "activation": "relu"}},
        "train": {"epochs": 10000, "batch_size": 8, "loss": "cross_entropy", "optimizer": "sgd",
                  "accelerator": "cpu", "devices": 2},
    }
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(cfg))
    env = {k: v for k, v in os.environ.items() if k not in (RUN_ENV, "LOCAL_RANK", "WORLD_SIZE", "MASTER_PORT")}
    proc = subprocess.Popen([sys.executable, "-m", "deepscope.cli", "train", "cfg.yaml"], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        for line in proc.stderr:
            if line.startswith("epoch 3/"):
                break
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=90)
        assert proc.returncode == 130, err[-3000:]
        assert "saved" in err and (tmp_path / "runs" / "stop" / "checkpoints" / "last.ckpt").is_file()
        deadline = time.monotonic() + 20  # the second process has exited too (and been reaped)
        while _group_alive(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not _group_alive(proc.pid)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True
