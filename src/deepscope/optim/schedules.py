"""Learning-rate schedules updated every optimizer step (DeepCalo's ``lr_schedule``).

Every schedule is a closed-form function of the global optimizer step ``it``, so a scheduler's only
state is its step count: a run resumed from a checkpoint continues exactly where it stopped.
With ``k`` optimizer steps per epoch, ``E`` epochs, range ``[lo, hi]`` and ``s`` = step_size_factor:

- ``CLR``: step size ``s·k``; triangle between lo and hi, scaled by 1 / 1/2^(cycle-1) / γ^it.
- ``OneCycle``: step size ``k·E/s``; one triangle, then a linear anneal from lo to lo/100 at step k·E.
- ``SGDR``: cosine from hi to lo over L epochs, restarting; L₀ = s, L ← ⌈L·mult⌉, hi ← hi·lr_decay.
- ``cosine``, ``step``, ``exponential``: torch's CosineAnnealingLR, StepLR and ExponentialLR
  (per epoch, converted to steps).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch.optim.lr_scheduler import LRScheduler

from deepscope.components import SCHEDULES
from deepscope.errors import ConfigError
from deepscope.registry import check_kwargs

__all__ = ["Schedule", "ScheduleLR", "ScheduleSpec", "make_scheduler"]

PATH = "train.lr_schedule"


@dataclass
class Schedule:
    """``lr(it)`` and, optionally, ``momentum(it)`` (``None``: momentum is left alone)."""

    lr: Callable[[int], float]
    momentum: Callable[[int], float] | None = None


@dataclass
class ScheduleSpec:
    """What a schedule needs besides the config: the loop's length."""

    name: str
    lo: float
    hi: float
    step_size_factor: float
    kwargs: dict[str, Any]
    steps_per_epoch: int
    epochs: int


def _triangle(it: float, s: float) -> tuple[int, float]:
    cycle = math.floor(1 + it / (2 * s))
    x = abs(it / s - 2 * cycle + 1)
    return cycle, max(0.0, 1.0 - x)


def clr(lo: float, hi: float, k: int, epochs: int, step_size_factor: float,
        mode: str = "triangular", gamma: float = 1.0) -> Schedule:
    """Cyclical learning rate (Smith 2015)."""
    if mode not in ("triangular", "triangular2", "exp_range"):
        raise ConfigError(f"{PATH}.kwargs.mode: '{mode}' is not one of triangular, triangular2, exp_range")
    s = step_size_factor * k

    def lr(it: int) -> float:
        cycle, h = _triangle(it, s)
        f = 1.0 if mode == "triangular" else 1.0 / 2 ** (cycle - 1) if mode == "triangular2" else gamma ** it
        return lo + (hi - lo) * h * f

    return Schedule(lr)


def one_cycle(lo: float, hi: float, k: int, epochs: int, step_size_factor: float,
              cyclical_momentum: bool = False, momentum: tuple[float, float] | list[float] = (0.85, 0.95)) -> Schedule:
    """One cycle (Smith 2018): one triangle, then a linear anneal from lo to lo/100 at the last step."""
    total = k * epochs
    s = total / step_size_factor
    m_lo, m_hi = float(momentum[0]), float(momentum[1])

    def lr(it: int) -> float:
        if it < 2 * s:
            return lo + (hi - lo) * _triangle(it, s)[1]
        rest = total - 2 * s
        frac = 1.0 if rest <= 0 else min(1.0, (it - 2 * s) / rest)
        return lo + (lo / 100 - lo) * frac

    def mom(it: int) -> float:
        if it < 2 * s:
            return m_hi - (m_hi - m_lo) * _triangle(it, s)[1]
        return m_hi

    return Schedule(lr, mom if cyclical_momentum else None)


def sgdr(lo: float, hi: float, k: int, epochs: int, step_size_factor: float,
         mult: float = 2.0, lr_decay: float = 1.0) -> Schedule:
    """Cosine annealing with warm restarts (Loshchilov & Hutter 2016)."""

    def lr(it: int) -> float:
        start, length, top = 0.0, float(step_size_factor), hi
        while it >= start + k * length:
            start += k * length
            length = math.ceil(length * mult)
            top *= lr_decay
        b = it - start
        return lo + 0.5 * (top - lo) * (1 + math.cos(math.pi * b / (k * length)))

    return Schedule(lr)


def cosine(lo: float, hi: float, k: int, epochs: int, step_size_factor: float) -> Schedule:
    """CosineAnnealingLR over all k·E steps, from hi to lo."""
    total = k * epochs
    return Schedule(lambda it: lo + 0.5 * (hi - lo) * (1 + math.cos(math.pi * min(it, total) / total)))


def step(lo: float, hi: float, k: int, epochs: int, step_size_factor: float, gamma: float = 0.1) -> Schedule:
    """StepLR: hi times gamma every step_size_factor epochs (never below lo)."""
    size = step_size_factor * k
    return Schedule(lambda it: max(lo, hi * gamma ** math.floor(it / size)))


def exponential(lo: float, hi: float, k: int, epochs: int, step_size_factor: float,
                gamma: float = 0.9) -> Schedule:
    """ExponentialLR: hi times gamma per epoch, applied smoothly per step (never below lo)."""
    return Schedule(lambda it: max(lo, hi * gamma ** (it / k)))


def build_schedule(spec: ScheduleSpec) -> Schedule:
    """The schedule named by ``spec``; unknown options are errors with "did you mean"."""
    name = SCHEDULES.canonical(spec.name, f"{PATH}.name")
    factory = SCHEDULES.get(name)
    check_kwargs(factory, spec.kwargs, f"{PATH}.kwargs",
                 ignore=("lo", "hi", "k", "epochs", "step_size_factor"))
    return factory(spec.lo, spec.hi, max(1, int(spec.steps_per_epoch)), max(1, int(spec.epochs)),
                   spec.step_size_factor, **spec.kwargs)


def _set_momentum(optimizer: torch.optim.Optimizer, value: float) -> None:
    for group in optimizer.param_groups:
        if "betas" in group:
            group["betas"] = (value, *tuple(group["betas"])[1:])
        else:
            group["momentum"] = value


class ScheduleLR(LRScheduler):
    """A torch scheduler that sets ``lr = schedule.lr(step)`` (and momentum) at every step.

    Its state is the step count only (``last_epoch``), so it saves into and resumes from a Lightning
    checkpoint exactly, and loads with ``weights_only=True``.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, schedule: Schedule, last_epoch: int = -1) -> None:
        self.schedule = schedule
        if schedule.momentum is not None:
            group = optimizer.param_groups[0]
            if not ("betas" in group or group.get("momentum", 0) > 0):
                raise ConfigError(
                    f"{PATH}.kwargs.cyclical_momentum: the optimizer {type(optimizer).__name__} has no momentum "
                    "or betas to cycle (use sgd with momentum > 0 or an Adam-family optimizer, or set it false)")
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        it = self.last_epoch
        if self.schedule.momentum is not None:
            _set_momentum(self.optimizer, self.schedule.momentum(it))
        return [self.schedule.lr(it) for _ in self.optimizer.param_groups]

    def state_dict(self) -> dict[str, Any]:
        return {"last_epoch": self.last_epoch, "_step_count": self._step_count,
                "base_lrs": list(self.base_lrs), "_last_lr": list(getattr(self, "_last_lr", []))}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.__dict__.update(state_dict)


def make_scheduler(optimizer: torch.optim.Optimizer, spec: ScheduleSpec) -> ScheduleLR:
    """A :class:`ScheduleLR` for ``spec`` on ``optimizer`` (its lr starts at the schedule's value)."""
    return ScheduleLR(optimizer, build_schedule(spec))
