"""plateau: step for step against torch's ReduceLROnPlateau fed the same values; state and options."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch

from deepscope.config import load_config
from deepscope.errors import ConfigError
from deepscope.optim.schedules import ScheduleSpec, make_scheduler

LO, HI = 1e-5, 1e-1


def _values(seed, n=60):
    # falls, then wanders: improvements, plateaus and a NaN
    rng = np.random.default_rng(seed)
    values = list(np.exp(-np.arange(n) / 8) + 0.05 * rng.random(n))
    values[n // 2] = float("nan")
    return [float(v) for v in values]


def _ours(values, mode, kwargs):
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(2))], lr=1.0)
    sch = make_scheduler(opt, ScheduleSpec("plateau", LO, HI, 1.0, kwargs, 5, 10, mode=mode))
    out = []
    for v in values:
        opt.step()
        sch.step()
        sch.epoch_end(v)
        out.append(opt.param_groups[0]["lr"])
    return out


def _torch(values, mode, kwargs):
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(2))], lr=HI)
    ref = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode=mode, min_lr=LO, **kwargs)
    out = []
    for v in values:
        opt.step()
        ref.step(v)
        out.append(opt.param_groups[0]["lr"])
    return out


@pytest.mark.parametrize("mode", ["min", "max"])
@pytest.mark.parametrize("kwargs", [{}, {"patience": 0}, {"patience": 2, "factor": 0.5, "cooldown": 3},
                                    {"patience": 1, "threshold": 0.05}, {"patience": 1, "threshold": 0.02,
                                                                        "threshold_mode": "abs"}])
@pytest.mark.parametrize("seed", [0, 1])
def test_matches_torch(mode, kwargs, seed):
    values = _values(seed)
    if mode == "max":
        values = [-v for v in values]
    ours, ref = _ours(values, mode, kwargs), _torch(values, mode, kwargs)
    assert ours == pytest.approx(ref, rel=1e-12)
    if kwargs.get("patience") == 0:
        assert min(ours) == pytest.approx(LO)  # floored at range[0]


def test_starts_at_the_top_and_steps_keep_the_lr():
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(2))], lr=1.0)
    sch = make_scheduler(opt, ScheduleSpec("plateau", LO, HI, 1.0, {}, 5, 10))
    for _ in range(7):
        assert opt.param_groups[0]["lr"] == HI
        opt.step()
        sch.step()


def test_state_resumes_exactly():
    values = _values(3)
    kwargs = {"patience": 1, "cooldown": 2}
    full = _ours(values, "min", kwargs)
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(2))], lr=1.0)
    spec = ScheduleSpec("plateau", LO, HI, 1.0, kwargs, 5, 10)
    sch = make_scheduler(opt, spec)
    n = 23
    for v in values[:n]:
        opt.step()
        sch.step()
        sch.epoch_end(v)
    buf = io.BytesIO()
    torch.save({"opt": opt.state_dict(), "sch": sch.state_dict()}, buf)
    buf.seek(0)
    state = torch.load(buf, weights_only=True)
    assert set(state["sch"]["schedule"]) == {"current", "best", "bad_epochs", "cooldown_counter"}
    opt2 = torch.optim.SGD([torch.nn.Parameter(torch.zeros(2))], lr=1.0)
    sch2 = make_scheduler(opt2, spec)
    opt2.load_state_dict(state["opt"])
    sch2.load_state_dict(state["sch"])
    rest = []
    for v in values[n:]:
        opt2.step()
        sch2.step()
        sch2.epoch_end(v)
        rest.append(opt2.param_groups[0]["lr"])
    assert rest == pytest.approx(full[n:], rel=1e-12)


def test_closed_form_schedules_ignore_epoch_end():
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(2))], lr=1.0)
    sch = make_scheduler(opt, ScheduleSpec("cosine", LO, HI, 1.0, {}, 5, 10))
    before = opt.param_groups[0]["lr"]
    sch.epoch_end(123.0)
    assert opt.param_groups[0]["lr"] == before and not sch.schedule.monitored


@pytest.mark.parametrize("kwargs,match", [
    ({"factor": 1.5}, r"train\.lr_schedule\.kwargs\.factor: found 1\.5"),
    ({"patience": -1}, r"train\.lr_schedule\.kwargs\.patience"),
    ({"threshold_mode": "relative"}, r"train\.lr_schedule\.kwargs\.threshold_mode"),
    ({"mode": "max"}, r"train\.lr_schedule\.kwargs\.mode: unknown option"),  # follows train.monitor
    ({"patiense": 3}, r"did you mean 'patience'"),
])
def test_bad_options(kwargs, match):
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(2))], lr=1.0)
    with pytest.raises(ConfigError, match=match):
        make_scheduler(opt, ScheduleSpec("plateau", LO, HI, 1.0, kwargs, 5, 10))


def test_config_alias_and_mode_from_monitor():
    from deepscope.training.experiment import _schedule

    cfg = load_config({"train": {"lr_schedule": {"name": "ReduceLROnPlateau"}, "metrics": ["accuracy"],
                                 "loss": "cross_entropy", "monitor": "val_accuracy"},
                       "data": {"source": "sklearn_digits"}, "model": {"top": {"units": [8, 10]}}})
    assert cfg.train.lr_schedule.name == "plateau"
    spec = _schedule(cfg, 10)
    assert (spec.monitor, spec.mode) == ("val_accuracy", "max")
