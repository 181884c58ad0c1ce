"""train.warmup: the linear warm-up against its closed form, alone, with CLR and plateau, and resumed."""

from __future__ import annotations

import io
import math

import pytest
import torch

from deepscope.config import load_config
from deepscope.errors import ConfigError
from deepscope.optim.schedules import ScheduleSpec, make_scheduler
from tests.optim.test_schedules import HI, LO, clr_expected


def warm(it, w, f0):
    return f0 + (1 - f0) * min(1.0, it / w)


def _spec(name, w, f0, k=5, epochs=6, kwargs=None):
    return ScheduleSpec(name, LO, HI, 1.0, kwargs or {}, k, epochs, warmup_steps=w, warmup_start_factor=f0)


def _lrs(opt, sch, n):
    out = []
    for _ in range(n):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sch.step()
    return out


def _sgd(lr=0.1):
    return torch.optim.SGD([torch.nn.Parameter(torch.zeros(2))], lr=lr)


@pytest.mark.parametrize("w,f0", [(7, 0.0), (7, 0.25), (1, 0.5), (30, 0.0)])
def test_warmup_alone_scales_the_constant_lr(w, f0):
    opt = _sgd(0.1)
    lrs = _lrs(opt, make_scheduler(opt, _spec(None, w, f0)), 40)
    assert lrs == pytest.approx([0.1 * warm(it, w, f0) for it in range(40)], rel=1e-12, abs=1e-15)
    assert lrs[0] == pytest.approx(0.1 * f0, abs=1e-15) and lrs[-1] == pytest.approx(0.1)


def test_warmup_alone_uses_the_optimizer_default_lr():
    opt = torch.optim.Adam([torch.nn.Parameter(torch.zeros(2))])  # lr 0.001
    lrs = _lrs(opt, make_scheduler(opt, _spec(None, 4, 0.0)), 6)
    assert lrs == pytest.approx([0.0, 2.5e-4, 5e-4, 7.5e-4, 1e-3, 1e-3])


@pytest.mark.parametrize("w,f0", [(4, 0.0), (13, 0.1)])
def test_warmup_multiplies_clr(w, f0):
    k, epochs = 5, 6
    opt = _sgd()
    lrs = _lrs(opt, make_scheduler(opt, _spec("CLR", w, f0, k, epochs)), k * epochs)
    want = [clr_expected(it, k, 1.0, "triangular") * warm(it, w, f0) for it in range(k * epochs)]
    assert lrs == pytest.approx(want, rel=1e-12, abs=1e-15)


def test_warmup_multiplies_plateau():
    opt = _sgd()
    sch = make_scheduler(opt, _spec("plateau", 6, 0.0, kwargs={"patience": 0}))
    lrs = _lrs(opt, sch, 3)
    sch.epoch_end(1.0)
    sch.epoch_end(2.0)  # not better: the lr drops to HI * 0.1, still warming up
    lrs += _lrs(opt, sch, 5)
    current = [HI] * 3 + [max(HI * 0.1, LO)] * 5
    assert lrs == pytest.approx([c * warm(it, 6, 0.0) for it, c in enumerate(current)], rel=1e-12)


@pytest.mark.parametrize("name", [None, "CLR", "plateau"])
def test_resume_in_the_middle_of_the_warmup(name):
    n, total = 5, 20
    opt = _sgd()
    full = _lrs(opt, make_scheduler(opt, _spec(name, 12, 0.2)), total)
    opt = _sgd()
    sch = make_scheduler(opt, _spec(name, 12, 0.2))
    _lrs(opt, sch, n)
    buf = io.BytesIO()
    torch.save({"opt": opt.state_dict(), "sch": sch.state_dict()}, buf)
    buf.seek(0)
    state = torch.load(buf, weights_only=True)
    opt2 = _sgd()
    sch2 = make_scheduler(opt2, _spec(name, 12, 0.2))
    opt2.load_state_dict(state["opt"])
    sch2.load_state_dict(state["sch"])
    assert _lrs(opt2, sch2, total - n) == pytest.approx(full[n:], rel=1e-12)


def test_warmup_config():
    cfg = load_config({"train": {"warmup": {"epochs": 0.5}}, "data": {"source": "sklearn_digits"}})
    assert cfg.train.warmup.epochs == 0.5 and cfg.train.warmup.start_factor == 0.0
    for bad, match in [({"epochs": 1, "steps": 3}, r"train\.warmup: give exactly one of epochs and steps \(found both"),
                       ({}, r"train\.warmup: give exactly one .*found neither"),
                       ({"steps": 3, "start_factor": 1.0}, r"train\.warmup\.start_factor"),
                       ({"steps": 0}, r"train\.warmup\.steps")]:
        with pytest.raises(ConfigError, match=match):
            load_config({"train": {"warmup": bad}, "data": {"source": "sklearn_digits"}})


def test_epochs_become_steps():
    from deepscope.training.experiment import _schedule

    cfg = load_config({"train": {"warmup": {"epochs": 1.5, "start_factor": 0.1}, "accumulate_grad_batches": 2},
                       "data": {"source": "sklearn_digits"}})
    spec = _schedule(cfg, train_batches=21)  # 11 optimizer steps per epoch (the last after one batch)
    assert spec.name is None and spec.warmup_steps == 16 and spec.warmup_start_factor == 0.1
    assert math.isclose(spec.steps_per_epoch, 11)
