"""SIGTERM (and Ctrl-C) mid-epoch: a checkpoint is written, and the next run continues from it."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest
import torch
import yaml

pytestmark = pytest.mark.slow

STEPS_PER_EPOCH = 80  # 800 training samples / batch 10


def _config(tmp_path, runs_dir):
    cfg = {
        "name": "sigterm",
        "log": {"dir": str(runs_dir), "progress_bar": "none", "tensorboard": False, "figures": False},
        "data": {"source": "sklearn_digits", "split": {"train": "0:800", "val": "800:900", "test": "900:1000"}},
        "model": {"cnn": {"block_depths": [2, 2], "n_init_filters": 48, "activation": "relu"},
                  "top": {"units": [64, 10], "activation": "relu"}},
        "train": {"epochs": 2, "batch_size": 10, "loss": "cross_entropy", "optimizer": "adam",
                  "metrics": ["accuracy"]},
    }
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _train(path, **kw):
    return subprocess.Popen([sys.executable, "-m", "deepscope", "train", str(path)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kw)


@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 130), (signal.SIGINT, 130)])
def test_signal_mid_epoch_saves_and_resume_finishes_the_epoch(tmp_path, runs_dir, sig, code):
    path = _config(tmp_path, runs_dir)
    proc = _train(path)
    run = runs_dir / "sigterm"
    # wait until training has produced its first epoch line on stderr, then signal during epoch 2
    deadline = time.time() + 120
    lines = []
    while time.time() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        lines.append(line)
        if "epoch 1/2" in line:  # printed at the end of epoch 1 (an epoch takes ~0.6 s here)
            time.sleep(0.25)  # let epoch 2 start: a signal during the epoch-end hooks saves at the boundary
            proc.send_signal(sig)
            break
    out, err = proc.communicate(timeout=120)
    err = "".join(lines) + err
    assert proc.returncode == code, err
    assert "interrupted" in err and "Run the same command again" in err and "Traceback" not in err
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    step = ckpt["global_step"]
    assert STEPS_PER_EPOCH < step < 2 * STEPS_PER_EPOCH, step  # saved inside epoch 2

    # the same command again finishes epoch 2 with exactly the batches it had not seen
    done = subprocess.run([sys.executable, "-m", "deepscope", "train", str(path)], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    assert "resuming" in done.stderr
    final = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert final["global_step"] == 2 * STEPS_PER_EPOCH
    assert final["epoch"] == 1
