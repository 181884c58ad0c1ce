"""lr_schedule: every schedule step by step against independently written closed forms, resume, config errors."""

from __future__ import annotations

import csv
import math

import pytest
import torch

import deepscope
from deepscope.config import load_config
from deepscope.errors import ConfigError
from deepscope.optim.schedules import ScheduleSpec, make_scheduler
from tests.conftest import small_config

LO, HI = 1e-3, 5e-3
GRID = [(5, 6, 2.0), (7, 4, 1.0), (3, 10, 2.5)]  # (steps per epoch, epochs, step_size_factor)


def _run(name, k, epochs, ssf, kwargs=None, optimizer=None, n=None):
    opt = optimizer or torch.optim.SGD([torch.nn.Parameter(torch.zeros(2))], lr=0.1)
    sch = make_scheduler(opt, ScheduleSpec(name, LO, HI, ssf, kwargs or {}, k, epochs))
    lrs, moms = [], []
    for _ in range(n if n is not None else k * epochs):
        group = opt.param_groups[0]
        lrs.append(group["lr"])
        moms.append(group["betas"][0] if "betas" in group else group.get("momentum"))
        opt.step()
        sch.step()
    return lrs, moms


def clr_expected(it, k, ssf, mode, gamma=1.0):
    s = ssf * k
    cycle = math.floor(1 + it / (2 * s))
    x = abs(it / s - 2 * cycle + 1)
    f = {"triangular": 1.0, "triangular2": 1 / 2 ** (cycle - 1), "exp_range": gamma ** it}[mode]
    return LO + (HI - LO) * max(0.0, 1 - x) * f


@pytest.mark.parametrize("k,epochs,ssf", GRID)
@pytest.mark.parametrize("mode,gamma", [("triangular", 1.0), ("triangular2", 1.0), ("exp_range", 0.99)])
def test_clr(k, epochs, ssf, mode, gamma):
    lrs, _ = _run("CLR", k, epochs, ssf, {"mode": mode, "gamma": gamma})
    expected = [clr_expected(it, k, ssf, mode, gamma) for it in range(k * epochs)]
    assert lrs == pytest.approx(expected, rel=1e-12, abs=1e-15)
    assert lrs[0] == pytest.approx(LO)


def one_cycle_expected(it, k, epochs, ssf):
    total = k * epochs
    s = total / ssf
    if it < 2 * s:
        x = abs(it / s - 1)
        h = max(0.0, 1 - x)
        return LO + (HI - LO) * h, 0.95 - 0.10 * h
    return LO - (LO - LO / 100) * (it - 2 * s) / (total - 2 * s), 0.95


@pytest.mark.parametrize("k,epochs,ssf", [(5, 6, 2.25), (4, 10, 3.0), (7, 4, 2.5)])
@pytest.mark.parametrize("momentum", [False, True])
def test_one_cycle(k, epochs, ssf, momentum):
    opt = torch.optim.Adam([torch.nn.Parameter(torch.zeros(2))], lr=0.1)
    lrs, moms = _run("OneCycle", k, epochs, ssf, {"cyclical_momentum": momentum}, optimizer=opt, n=k * epochs + 1)
    expected = [one_cycle_expected(it, k, epochs, ssf) for it in range(k * epochs + 1)]
    assert lrs == pytest.approx([e[0] for e in expected], rel=1e-12)
    assert lrs[-1] == pytest.approx(LO / 100)
    if momentum:
        assert moms == pytest.approx([e[1] for e in expected], rel=1e-12)
        assert min(moms) == pytest.approx(0.85, abs=0.02)
    else:
        assert set(moms) == {0.9}


def test_one_cycle_momentum_with_sgd_and_without_momentum():
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(2))], lr=0.1, momentum=0.9)
    _, moms = _run("OneCycle", 4, 4, 2.0, {"cyclical_momentum": True}, optimizer=opt)
    assert moms[0] == pytest.approx(0.95) and moms[8] == pytest.approx(0.85)
    plain = torch.optim.SGD([torch.nn.Parameter(torch.zeros(2))], lr=0.1)
    with pytest.raises(ConfigError, match=r"train\.lr_schedule\.kwargs\.cyclical_momentum"):
        _run("OneCycle", 4, 4, 2.0, {"cyclical_momentum": True}, optimizer=plain)


def sgdr_expected(n, k, ssf, mult, lr_decay):
    out, hi, length = [], HI, ssf
    while len(out) < n:
        steps = k * length
        b = 0
        while b < steps and len(out) < n:
            out.append(LO + 0.5 * (hi - LO) * (1 + math.cos(math.pi * b / steps)))
            b += 1
        length = math.ceil(length * mult)
        hi *= lr_decay
    return out


@pytest.mark.parametrize("k,epochs,ssf", [(5, 15, 1.0), (4, 20, 2.0), (3, 12, 1.0)])
@pytest.mark.parametrize("mult,lr_decay", [(2.0, 1.0), (1.0, 0.5), (1.5, 0.8)])
def test_sgdr(k, epochs, ssf, mult, lr_decay):
    lrs, _ = _run("SGDR", k, epochs, ssf, {"mult": mult, "lr_decay": lr_decay})
    assert lrs == pytest.approx(sgdr_expected(k * epochs, k, ssf, mult, lr_decay), rel=1e-12)
    assert lrs[0] == pytest.approx(HI)


@pytest.mark.parametrize("name,kwargs", [("CLR", {"mode": "triangular2"}), ("OneCycle", {"cyclical_momentum": True}),
                                         ("SGDR", {"mult": 2}), ("cosine", {}), ("step", {}), ("exponential", {})])
def test_resume_continues_the_schedule(name, kwargs):
    k, epochs, ssf, n = 5, 8, 1.0, 17
    full, _ = _run(name, k, epochs, ssf, kwargs, optimizer=torch.optim.Adam([torch.nn.Parameter(torch.zeros(2))]))
    opt = torch.optim.Adam([torch.nn.Parameter(torch.zeros(2))])
    spec = ScheduleSpec(name, LO, HI, ssf, kwargs, k, epochs)
    sch = make_scheduler(opt, spec)
    for _ in range(n):
        opt.step()
        sch.step()
    state = torch.load(_roundtrip(sch.state_dict(), opt.state_dict()), weights_only=True)
    opt2 = torch.optim.Adam([torch.nn.Parameter(torch.zeros(2))])
    sch2 = make_scheduler(opt2, spec)
    opt2.load_state_dict(state["opt"])
    sch2.load_state_dict(state["sch"])
    rest = []
    for _ in range(k * epochs - n):
        rest.append(opt2.param_groups[0]["lr"])
        opt2.step()
        sch2.step()
    assert rest == pytest.approx(full[n:], rel=1e-12)


def _roundtrip(sch_state, opt_state):
    import io

    buf = io.BytesIO()
    torch.save({"sch": sch_state, "opt": opt_state}, buf)
    buf.seek(0)
    return buf


def test_torch_schedules_match_torch():
    k, epochs = 4, 5
    lrs, _ = _run("cosine", k, epochs, 2.0)
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(2))], lr=HI)
    ref = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=k * epochs, eta_min=LO)
    want = []
    for _ in range(k * epochs):
        want.append(opt.param_groups[0]["lr"])
        opt.step()
        ref.step()
    assert lrs == pytest.approx(want, rel=1e-9)
    lrs, _ = _run("step", k, epochs, 2.0, {"gamma": 0.5})
    assert lrs == pytest.approx([max(LO, HI * 0.5 ** (it // 8)) for it in range(k * epochs)])


def test_unknown_kwarg_and_mode():
    with pytest.raises(ConfigError, match=r"train\.lr_schedule\.kwargs\.mdoe.*did you mean 'mode'"):
        _run("CLR", 3, 2, 1.0, {"mdoe": "triangular"})
    with pytest.raises(ConfigError, match=r"train\.lr_schedule\.kwargs\.mode"):
        _run("CLR", 3, 2, 1.0, {"mode": "square"})


def test_config_validation():
    cfg = load_config({"train": {"lr_schedule": {"name": "onecycle"}}, "data": {"source": "sklearn_digits"}})
    assert cfg.train.lr_schedule.name == "OneCycle"
    assert tuple(cfg.train.lr_schedule.range) == (1e-3, 5e-3) and cfg.train.lr_schedule.step_size_factor == 2
    with pytest.raises(ConfigError, match="did you mean 'SGDR'"):
        load_config({"train": {"lr_schedule": {"name": "SGDRR"}}, "data": {"source": "sklearn_digits"}})
    with pytest.raises(ConfigError, match="min_lr"):
        load_config({"train": {"lr_schedule": {"name": "CLR", "range": [0.01, 0.001]}},
                    "data": {"source": "sklearn_digits"}})


@pytest.mark.slow
def test_train_with_clr(runs_dir):
    cfg = small_config(runs_dir, train={"epochs": 2, "batch_size": 32, "loss": "cross_entropy", "optimizer": "adam",
                                        "lr_schedule": {"name": "CLR", "step_size_factor": 1}})
    result = deepscope.train(cfg)
    with (result.run_dir / "metrics.csv").open(newline="") as f:
        lrs = [float(r["lr"]) for r in csv.DictReader(f) if r.get("lr")]
    assert len(lrs) == 2 and lrs[0] != lrs[1]
    assert all(LO <= v <= HI for v in lrs)
    assert (result.run_dir / "figures" / "lr_schedule.png").exists()


@pytest.mark.slow
def test_resumed_run_continues_the_schedule(runs_dir, monkeypatch):
    import deepscope.training.system as system

    systems = []

    class Recording(system.SupervisedSystem):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            systems.append(self)

    # the supervised family builds its system from deepscope.training.system when asked
    monkeypatch.setattr(system, "SupervisedSystem", Recording)
    cfg = small_config(runs_dir, train={"epochs": 1, "batch_size": 32, "loss": "cross_entropy", "optimizer": "adam",
                                        "lr_schedule": {"name": "CLR", "step_size_factor": 1.5}})
    deepscope.train(cfg)
    k = len(systems[0].lr_history)
    cfg["train"]["epochs"] = 2
    assert deepscope.train(cfg).resumed
    history = systems[-1].lr_history
    assert history[0][0] == k and len(history) == k
    for it, lr in history:
        assert lr == pytest.approx(clr_expected(it, k, 1.5, "triangular"), rel=1e-6)
