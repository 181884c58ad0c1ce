"""train.lr_finder: the suggestion against the known stability limit of least squares, bitwise restore,
files and figures, the prompt, use_suggestion, and resume."""

from __future__ import annotations

import copy
import csv
import io
import json

import h5py
import numpy as np
import pytest
import torch

import deepscope
import deepscope.training.lr_finder as lr_finder
from deepscope.config import load_config
from deepscope.errors import ConfigError
from deepscope.training.lr_finder import LRChoice, Suggestion, choose, suggest
from tests.conftest import small_config

N_TRAIN = 64


def least_squares():
    """Linear least squares with features on different scales; returns the data and 2/λ_max."""
    rng = np.random.default_rng(0)

    def make(n):
        x = (rng.normal(size=(n, 3)) * [1.0, 2.0, 0.5]).astype(np.float32)
        y = (x @ np.array([1.0, -0.5, 2.0]) + 0.3 + 0.1 * rng.normal(size=n)).astype(np.float32)
        return {"scalars": x, "targets": y}

    data = {"train": make(N_TRAIN), "val": make(16)}
    a = np.c_[data["train"]["scalars"].astype(float), np.ones(N_TRAIN)]  # weights and bias
    hessian = 2.0 / N_TRAIN * a.T @ a  # of the mean squared error
    return data, 2.0 / np.linalg.eigvalsh(hessian).max()


def ls_config(runs_dir, name, finder, **train):
    return {
        "name": name,
        "log": {"dir": str(runs_dir), "progress_bar": "none", "tensorboard": False},
        "data": {"source": "arrays", "standardize": {"images": "none", "scalars": False, "tracks": False,
                                                     "targets": False}},
        "model": {"scalar_net": {"units": []}, "top": {"units": [1]}},
        # one batch per epoch: plain gradient descent, which diverges for lr > 2/λ_max
        "train": {"epochs": 2, "batch_size": N_TRAIN, "loss": "mse", "optimizer": "sgd", "accelerator": "cpu",
                  "lr_finder": {"use": True, **finder}, **train},
    }


def _lr_column(run_dir):
    with (run_dir / "lr.csv").open(newline="") as f:
        return np.array([float(r["lr"]) for r in csv.DictReader(f)])


@pytest.mark.slow
@pytest.mark.parametrize("scale,factors", [("linear", (0.01, 3.0)), ("log", (1e-3, 10.0))])
def test_suggestion_is_stable_on_least_squares(runs_dir, scale, factors):
    data, edge = least_squares()
    finder = {"scan_range": [factors[0] * edge, factors[1] * edge], "epochs": 60, "scale": scale,
              "use_suggestion": True}
    schedule = {"lr_schedule": {"name": "CLR", "step_size_factor": 1}} if scale == "linear" else {}
    result = deepscope.train(ls_config(runs_dir, f"ls-{scale}", finder, **schedule), data=data)
    folder = result.run_dir / "lr_finder"
    record = json.loads((folder / "suggestion.json").read_text())
    lo, hi = record["suggested_range"]
    assert 0 < lo < hi < edge, (lo, hi, edge)
    assert lo <= record["suggested_lr"] < edge
    assert record["stopped"]  # the scan went past 2/λ_max and stopped at the divergence
    lrs = _lr_column(result.run_dir)
    if schedule:  # the suggestion replaced lr_schedule.range
        assert record["range"] == [lo, hi] and record["source"] == "suggestion"
        assert lrs.min() == pytest.approx(lo) and lrs.max() <= hi * (1 + 1e-9)
    else:  # train.lr became the suggested lr
        assert record["lr"] == record["suggested_lr"]
        assert lrs == pytest.approx(record["suggested_lr"])
    # files and figures
    with h5py.File(folder / "lr_finder.h5") as f:
        assert set(f) == {"step", "lr", "loss", "smoothed_loss"}
        assert f.attrs["scale"] == scale and list(f.attrs["suggestion"]) == pytest.approx([lo, hi])
        assert len(f["lr"]) == record["steps_done"] < 60
    with (folder / "lr_finder.csv").open(newline="") as f:
        assert list(csv.DictReader(f))[0].keys() == {"step", "lr", "loss", "smoothed_loss"}
    for name in ("lr_finder_loss.png", "lr_finder_lr.png"):
        assert (result.run_dir / "figures" / name).stat().st_size > 1000


@pytest.mark.slow
def test_resume_reuses_the_choice_without_scanning(runs_dir, monkeypatch):
    data, edge = least_squares()
    cfg = ls_config(runs_dir, "ls-resume", {"scan_range": [0.01 * edge, 3 * edge], "epochs": 40,
                                            "use_suggestion": True}, epochs=1)
    first = deepscope.train(cfg, data=data)
    record = json.loads((first.run_dir / "lr_finder" / "suggestion.json").read_text())

    def no_scan(*args, **kwargs):
        raise AssertionError("the finder ran again on resume")

    monkeypatch.setattr(lr_finder, "scan_lr", no_scan)
    cfg["train"]["epochs"] = 3
    again = deepscope.train(cfg, data=data)
    assert again.resumed
    assert _lr_column(again.run_dir) == pytest.approx([record["lr"]] * 3)


def _scan_checking_restore(seen):
    original = lr_finder.scan_lr

    def wrapped(system, loader, cfg, root):
        before = copy.deepcopy(system.net.state_dict())
        rng = torch.get_rng_state(), np.random.get_state()[1].copy()
        result = original(system, loader, cfg, root)
        after = system.net.state_dict()
        seen["keys"] = list(before)
        seen["equal"] = all(torch.equal(before[k], after[k]) and before[k].dtype == after[k].dtype for k in before)
        seen["rng"] = torch.equal(rng[0], torch.get_rng_state()) and np.array_equal(rng[1], np.random.get_state()[1])
        seen["history"] = list(system.lr_history)
        return result

    return wrapped


@pytest.mark.slow
def test_weights_restored_bitwise_and_training_unchanged(runs_dir, monkeypatch):
    model = {"cnn": {"n_init_filters": 4, "activation": "relu", "normalization": "batch"},
             "top": {"units": [16, 10], "activation": "relu", "normalization": "batch"}}
    seen = {}
    monkeypatch.setattr(lr_finder, "scan_lr", _scan_checking_restore(seen))
    with_finder = small_config(runs_dir, model=model, name="with",
                               train={"epochs": 1, "batch_size": 32, "loss": "cross_entropy", "optimizer": "adam",
                                      "lr_finder": {"use": True, "scan_range": [1e-4, 1.0], "scale": "log"}})
    result = deepscope.train(with_finder)
    assert any("running_mean" in k for k in seen["keys"])  # batch-norm buffers are part of the check
    assert seen["equal"] and seen["rng"] and seen["history"] == []
    assert json.loads((result.run_dir / "lr_finder" / "suggestion.json").read_text())["used"] is False
    # the scan leaves no trace in the real training: same metrics as a run without it
    without = copy.deepcopy(with_finder)
    without["name"], without["train"]["lr_finder"] = "without", {"use": False}
    plain = deepscope.train(without)
    assert result.metrics == plain.metrics
    assert _lr_column(result.run_dir) == pytest.approx(_lr_column(plain.run_dir))


# --- the suggestion and the choice, without training ------------------------------------------------------


def test_suggest_on_a_valley():
    lr = np.linspace(1e-3, 1.0, 200)
    loss = 1.0 / (1.0 + 40 * lr) + np.where(lr > 0.5, 50 * (lr - 0.5) ** 2, 0.0)
    sug = suggest(lr, loss, "linear", beta=0.9)
    low = lr[np.argmin(sug.smoothed[np.isfinite(sug.smoothed)])]
    assert sug.range[1] == pytest.approx(low / 10)
    assert sug.range[0] <= sug.lr < sug.range[1] and sug.range[0] <= sug.range[1] / 3 * (1 + 1e-12)


def test_suggest_cuts_at_divergence_and_handles_early_divergence():
    lr = np.geomspace(1e-4, 1.0, 50)
    loss = np.r_[np.linspace(2.0, 0.5, 40), [1.0, 3.0, 9.0, np.inf], np.full(6, np.nan)]
    sug = suggest(lr, loss, "log", beta=0.5)
    assert np.isnan(sug.smoothed[43:]).all() and np.isfinite(sug.smoothed[:41]).all()
    assert sug.range is not None
    bad = suggest(lr[:3], np.array([1.0, np.nan, np.nan]), "log", beta=0.5)
    assert bad.range is None and bad.lr is None and "scan lower" in bad.note


def _cfg(schedule=True, **finder):
    train = {"lr_finder": {"use": True, **finder}}
    if schedule:
        train["lr_schedule"] = {"name": "CLR"}
    return load_config({"data": {"source": "sklearn_digits"}, "train": train})


SUG = Suggestion(np.zeros(3), (1e-3, 4e-3), 2e-3)


class FakeTTY(io.StringIO):
    def isatty(self):
        return True


def test_prompt_without_a_terminal_never_blocks(monkeypatch, caplog):
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    monkeypatch.setattr("builtins.input", lambda *a: pytest.fail("input() called without a terminal"))
    with caplog.at_level("INFO", logger="deepscope"):
        choice, source = choose(SUG, _cfg(prompt_for_input=True))
    assert (choice, source) == (LRChoice(range=(1e-3, 4e-3)), "suggestion")
    assert "no terminal" in caplog.text and "suggestion is used" in caplog.text


def test_prompt_at_a_terminal_reasks_on_bad_input(monkeypatch, caplog):
    monkeypatch.setattr("sys.stdin", FakeTTY("1e-2\nlots\n5e-3 1e-3\n2e-4, 8e-4\n"))
    with caplog.at_level("WARNING", logger="deepscope"):
        choice, source = choose(SUG, _cfg(prompt_for_input=True))
    assert (choice, source) == (LRChoice(range=(2e-4, 8e-4)), "typed")
    assert caplog.text.count("try again") == 3


def test_prompt_enter_takes_the_suggestion_and_asks_one_lr_without_schedule(monkeypatch):
    monkeypatch.setattr("sys.stdin", FakeTTY("\n"))
    assert choose(SUG, _cfg(prompt_for_input=True)) == (LRChoice(range=(1e-3, 4e-3)), "suggestion")
    monkeypatch.setattr("sys.stdin", FakeTTY("3e-3\n"))
    assert choose(SUG, _cfg(schedule=False, prompt_for_input=True)) == (LRChoice(lr=3e-3), "typed")


def test_use_suggestion_and_plain_use():
    assert choose(SUG, _cfg(use_suggestion=True)) == (LRChoice(range=(1e-3, 4e-3)), "suggestion")
    assert choose(SUG, _cfg(schedule=False, use_suggestion=True)) == (LRChoice(lr=2e-3), "suggestion")
    assert choose(SUG, _cfg()) == (LRChoice(), "none")
    empty = Suggestion(np.zeros(3), None, None, "the loss diverged")
    assert choose(empty, _cfg(use_suggestion=True)) == (LRChoice(), "none")


@pytest.mark.parametrize("train,match", [
    ({"auto_lr": True, "lr": 0.01}, r"train\.auto_lr is true but train\.lr is set too"),
    ({"auto_lr": True, "optimizer": {"class_name": "adam", "config": {"lr": 0.01}}},
     r"train\.optimizer\.config\.lr"),
    ({"auto_lr": True, "lr_finder": {"use": True, "use_suggestion": True}},
     r"train\.auto_lr and train\.lr_finder\.use_suggestion are both true"),
    ({"lr_finder": {"use_suggestion": True}}, r"train\.lr_finder: use_suggestion is true but use is false"),
    ({"lr_finder": {"prompt_for_input": True}}, r"train\.lr_finder: prompt_for_input is true but use is false"),
    ({"lr_finder": {"use": True, "scan_range": [0.1, 0.01]}}, r"train\.lr_finder: scan_range: the first lr 0\.1"),
    ({"lr_finder": {"use": True, "scale": "exp"}}, r"train\.lr_finder\.scale"),
    ({"lr": 0.01, "lr_finder": {"use": True, "use_suggestion": True}},
     r"train\.lr_finder\.use_suggestion sets the learning rate .* but train\.lr is set too"),
])
def test_config_errors(train, match):
    with pytest.raises(ConfigError, match=match):
        load_config({"data": {"source": "sklearn_digits"}, "train": train})
