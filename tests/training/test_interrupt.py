"""SIGTERM and Ctrl-C mid-epoch: a checkpoint is written, and the next run continues from it.

The training process signals itself at a fixed training step (through a registered loss, as a
plugin would register one), so the test does not depend on timing.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap

import pytest
import torch
import yaml

pytestmark = pytest.mark.slow

STEPS_PER_EPOCH = 20  # 200 training samples / batch 10
TRIGGER = STEPS_PER_EPOCH + 7  # the 7th training step of epoch 2

SCRIPT = textwrap.dedent("""
    import os, signal, sys
    import torch
    from deepscope.cli import main
    from deepscope.components import LOSSES

    trigger, sig = int(sys.argv[2]), int(sys.argv[3])
    # a process started from a backgrounded, non-interactive shell inherits SIGINT ignored;
    # a terminal's Ctrl-C reaches Python's default handler, so restore it
    signal.signal(signal.SIGINT, signal.default_int_handler)
    calls = {"n": 0}

    def ce_signal(pred, target):
        if torch.is_grad_enabled():
            calls["n"] += 1
            if calls["n"] == trigger:
                os.kill(os.getpid(), sig)
        return torch.nn.functional.cross_entropy(pred, target, reduction="none")

    LOSSES.register("ce_signal", output="logits", task="multiclass")(ce_signal)
    sys.exit(main(["train", sys.argv[1]]))
""")


def _run(tmp_path, config, trigger, sig):
    script = tmp_path / "train_and_signal.py"
    script.write_text(SCRIPT)
    return subprocess.run([sys.executable, str(script), str(config), str(trigger), str(int(sig))],
                          capture_output=True, text=True, timeout=300)


@pytest.fixture
def config(tmp_path, runs_dir):
    cfg = {
        "name": "sig",
        "log": {"dir": str(runs_dir), "progress_bar": "none", "tensorboard": False, "figures": False},
        "data": {"source": "sklearn_digits", "split": {"train": "0:200", "val": "200:250", "test": "250:300"}},
        "model": {"cnn": {"n_init_filters": 4, "activation": "relu"}, "top": {"units": [16, 10], "activation": "relu"}},
        "train": {"epochs": 2, "batch_size": 10, "loss": "ce_signal", "optimizer": "adam"},
    }
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.mark.parametrize("sig, saved_step", [(signal.SIGTERM, TRIGGER), (signal.SIGINT, TRIGGER - 1)])
def test_signal_mid_epoch_saves_and_resume_finishes_the_epoch(tmp_path, runs_dir, config, sig, saved_step):
    first = _run(tmp_path, config, TRIGGER, sig)
    assert first.returncode == 130, first.stderr
    assert "interrupted in epoch 2" in first.stderr and "Run the same command again" in first.stderr
    assert "Traceback" not in first.stderr
    run = runs_dir / "sig"
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    # SIGTERM lets the step finish; Ctrl-C breaks into it, so that step is not counted
    assert ckpt["global_step"] == saved_step

    # the same command again finishes epoch 2 with exactly the batches it had not trained on
    second = _run(tmp_path, config, 0, sig)
    assert second.returncode == 0, second.stderr
    assert "resuming after epoch 1" in second.stderr
    final = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert final["global_step"] == 2 * STEPS_PER_EPOCH
    assert final["epoch"] == 1
