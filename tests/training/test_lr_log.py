"""lr.csv (every optimizer step's lr, across resumes), warm-up, plateau and auto_lr in real runs."""

from __future__ import annotations

import copy
import csv
import math

import pytest

import deepscope
from tests.conftest import small_config

TRAIN = {"epochs": 2, "batch_size": 32, "loss": "cross_entropy", "optimizer": "adam"}


def _rows(run_dir):
    with (run_dir / "lr.csv").open(newline="") as f:
        return list(csv.DictReader(f))


def _epoch_values(run_dir, key):
    with (run_dir / "metrics.csv").open(newline="") as f:
        return [float(r[key]) for r in csv.DictReader(f)]


@pytest.mark.slow
def test_constant_lr_is_logged_every_step(runs_dir):
    result = deepscope.train(small_config(runs_dir, train={**TRAIN, "lr": 0.003}))
    rows = _rows(result.run_dir)
    assert list(rows[0]) == ["step", "lr"]
    assert [int(r["step"]) for r in rows] == list(range(len(rows))) and len(rows) == 2 * 7  # 210 samples / 32
    assert {float(r["lr"]) for r in rows} == {0.003}
    assert not (result.run_dir / "figures" / "lr_schedule.png").exists()  # nothing to see in a constant


@pytest.mark.slow
def test_warmup_and_momentum_columns(runs_dir):
    train = {**TRAIN, "accumulate_grad_batches": 2, "warmup": {"steps": 5, "start_factor": 0.2},
             "lr_schedule": {"name": "OneCycle", "kwargs": {"cyclical_momentum": True}}}
    result = deepscope.train(small_config(runs_dir, train=train))
    rows = _rows(result.run_dir)
    assert list(rows[0]) == ["step", "lr", "momentum"]
    # 7 batches, accumulating 2: 4 optimizer steps per epoch (the last after one batch)
    assert [int(r["step"]) for r in rows] == list(range(8))
    from tests.optim.test_schedules import one_cycle_expected

    for r in rows:
        it = int(r["step"])
        lr, mom = one_cycle_expected(it, 4, 2, 2.0)
        assert float(r["lr"]) == pytest.approx(lr * (0.2 + 0.8 * min(1, it / 5)), rel=1e-6)
        assert float(r["momentum"]) == pytest.approx(mom, rel=1e-6)
    assert (result.run_dir / "figures" / "lr_schedule.png").exists()


@pytest.mark.slow
def test_resume_drops_rows_it_trains_again(runs_dir):
    cfg = small_config(runs_dir, train={**TRAIN, "epochs": 1, "lr_schedule": {"name": "SGDR",
                                                                              "step_size_factor": 1}})
    first = deepscope.train(cfg)
    k = len(_rows(first.run_dir))
    with (first.run_dir / "lr.csv").open("a") as f:  # rows of steps that were never saved (a crash)
        f.write(f"{k},0.5\n{k + 1},0.5\n")
    cfg["train"]["epochs"] = 2
    again = deepscope.train(cfg)
    rows = _rows(again.run_dir)
    assert [int(r["step"]) for r in rows] == list(range(2 * k))
    assert 0.5 not in {float(r["lr"]) for r in rows}
    straight = copy.deepcopy(cfg)
    straight["name"] = "straight"
    assert [r["lr"] for r in rows] == [r["lr"] for r in _rows(deepscope.train(straight).run_dir)]


@pytest.mark.slow
def test_plateau_follows_the_monitor_and_resumes_exactly(runs_dir):
    train = {**TRAIN, "epochs": 4, "monitor": "val_accuracy", "metrics": ["accuracy"],
             "lr_schedule": {"name": "plateau", "range": [1e-4, 1e-2],
                             # val_accuracy rarely beats its best by 10 % on 45 samples: drops happen
                             "kwargs": {"patience": 0, "factor": 0.5, "threshold": 0.1}}}
    straight = deepscope.train(small_config(runs_dir, name="straight", train=train))
    import torch

    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1e-2)
    ref = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="max", factor=0.5, patience=0, threshold=0.1,
                                                     min_lr=1e-4)
    want = [1e-2]
    for value in _epoch_values(straight.run_dir, "val_accuracy")[:-1]:
        ref.step(value)
        want.append(opt.param_groups[0]["lr"])
    rows = _rows(straight.run_dir)
    per_epoch = [float(rows[i * 7]["lr"]) for i in range(4)]
    assert per_epoch == pytest.approx(want)
    assert len(set(per_epoch)) > 1  # it did reduce
    # stopped after two epochs and resumed: the plateau state comes back from last.ckpt
    split = small_config(runs_dir, name="split", train={**train, "epochs": 2})
    deepscope.train(split)
    split["train"]["epochs"] = 4
    resumed = deepscope.train(split)
    assert resumed.resumed
    assert [r["lr"] for r in _rows(resumed.run_dir)] == [r["lr"] for r in rows]


@pytest.mark.slow
@pytest.mark.parametrize("schedule", [False, True])
def test_auto_lr(runs_dir, schedule, caplog):
    train = {**TRAIN, "epochs": 1, "optimizer": "nadam", "auto_lr": True, "accumulate_grad_batches": 2,
             "max_steps": 2}
    if schedule:
        train["lr_schedule"] = {"name": "cosine"}
    with caplog.at_level("INFO", logger="deepscope"):
        result = deepscope.train(small_config(runs_dir, train=train))
    lr = 2.5e-5 * math.sqrt(32 * 2)  # effective batch: batch_size x accumulate_grad_batches x 1 device
    first = float(_rows(result.run_dir)[0]["lr"])
    assert first == pytest.approx(lr * math.sqrt(3) if schedule else lr)  # cosine starts at the range's top
    assert "auto_lr" in caplog.text and "effective batch 64" in caplog.text
