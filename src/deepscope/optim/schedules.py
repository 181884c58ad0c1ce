"""Learning-rate schedules updated every optimizer step (DeepCalo's ``lr_schedule``).

Every schedule is a closed-form function of the global optimizer step ``it``, so a scheduler's only
state is its step count: a run resumed from a checkpoint continues exactly where it stopped.
With ``k`` optimizer steps per epoch, ``E`` epochs, range ``[lo, hi]`` and ``s`` = step_size_factor:

- ``CLR``: step size ``s·k``; triangle between lo and hi, scaled by 1 / 1/2^(cycle-1) / γ^it.
- ``OneCycle``: step size ``k·E/s``; one triangle, then a linear anneal from lo to lo/100 at step k·E.
- ``SGDR``: cosine from hi to lo over L epochs, restarting; L₀ = s, L ← ⌈L·mult⌉, hi ← hi·lr_decay.
- ``cosine``, ``step``, ``exponential``: torch's CosineAnnealingLR, StepLR and ExponentialLR
  (per epoch, converted to steps).
- ``plateau``: torch's ReduceLROnPlateau: starts at hi, times ``factor`` once train.monitor has not
  improved for ``patience`` epochs, never below lo. It is the one schedule with more state than the
  step count (current lr, best value, bad epochs, cooldown); :class:`ScheduleLR` saves it too.

A linear warm-up (``train.warmup``, DeepFocus) multiplies any of them, or the constant lr:
``lr(it) = base(it) · (f₀ + (1 − f₀)·min(1, it/W))`` over ``W`` warm-up steps.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch.optim.lr_scheduler import LRScheduler

from deepscope.components import SCHEDULES
from deepscope.errors import ConfigError
from deepscope.registry import check_kwargs

__all__ = ["Plateau", "Schedule", "ScheduleLR", "ScheduleSpec", "lr_scan", "make_scheduler", "schedule_spec"]

PATH = "train.lr_schedule"


@dataclass
class Schedule:
    """``lr(it)`` and, optionally, ``momentum(it)`` (``None``: momentum is left alone).

    Closed-form schedules are functions of the step alone. One that also watches ``train.monitor``
    (``monitored``) reacts in :meth:`epoch_end` and keeps what it learnt in :meth:`state_dict`.
    """

    lr: Callable[[int], float]
    momentum: Callable[[int], float] | None = None
    monitored: ClassVar[bool] = False

    def epoch_end(self, value: float) -> None:
        """Called once per epoch, after validation, with the value of ``train.monitor``."""

    def state_dict(self) -> dict[str, Any]:
        """State beyond the step count (closed forms have none)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`."""


@dataclass
class ScheduleSpec:
    """What a schedule needs besides the config: the loop's length, the warm-up and the monitor.

    ``name`` ``None`` means no schedule: the optimizer's lr, constant but for the warm-up.
    ``mode`` is ``'min'`` or ``'max'``: which way ``monitor`` improves (``plateau`` only).
    """

    name: str | None
    lo: float
    hi: float
    step_size_factor: float
    kwargs: dict[str, Any]
    steps_per_epoch: int
    epochs: int
    warmup_steps: int = 0
    warmup_start_factor: float = 0.0
    monitor: str = "val_loss"
    mode: str = "min"


def schedule_spec(train: Any, train_batches: int, lr_range: tuple[float, float] | None = None,
                  mode: str = "min") -> ScheduleSpec | None:
    """The spec of ``train.lr_schedule`` with ``train.warmup``, for ``train_batches`` batches per epoch.

    Lightning also steps after the last batch of an epoch when fewer than accumulate_grad_batches
    are left, so an epoch has ceil(training batches / accumulate_grad_batches) steps.

    Args:
        train: the validated ``train`` section.
        train_batches: training batches per epoch (per process).
        lr_range: replaces ``lr_schedule.range`` (the LR finder's or auto_lr's choice).
        mode: ``'min'`` or ``'max'``, which way ``train.monitor`` improves.

    Returns:
        ``None`` when there is neither a schedule nor a warm-up.
    """
    sch, warm = train.lr_schedule, train.warmup
    if sch is None and warm is None:
        return None
    steps = max(1, math.ceil(train_batches / train.accumulate_grad_batches))
    warmup_steps = 0 if warm is None else warm.steps or max(1, round(warm.epochs * steps))
    lo, hi = lr_range or (sch.range if sch is not None else (0.0, 0.0))
    return ScheduleSpec(sch.name if sch is not None else None, float(lo), float(hi),
                        float(sch.step_size_factor) if sch is not None else 1.0,
                        dict(sch.kwargs) if sch is not None else {}, steps, train.epochs,
                        warmup_steps=warmup_steps, warmup_start_factor=warm.start_factor if warm is not None else 0.0,
                        monitor=train.monitor, mode=mode)


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


class Plateau(Schedule):
    """torch's ``ReduceLROnPlateau``, step for step, as a schedule (``plateau``).

    The lr starts at ``hi``. After each epoch the monitored value counts as an improvement when it
    beats the best so far by ``threshold`` (relative: ``best·(1 ∓ threshold)``; absolute:
    ``best ∓ threshold``); after more than ``patience`` epochs without one, the lr is multiplied by
    ``factor`` (not below ``lo``; changes smaller than ``eps`` are skipped) and ``cooldown`` epochs
    follow in which bad epochs are not counted.
    """

    monitored: ClassVar[bool] = True

    def __init__(self, lo: float, hi: float, factor: float = 0.1, patience: int = 10, threshold: float = 1e-4,
                 threshold_mode: str = "rel", cooldown: int = 0, eps: float = 1e-8, mode: str = "min") -> None:
        super().__init__(lr=lambda it: self.current)
        if not 0.0 < factor < 1.0:
            raise ConfigError(f"{PATH}.kwargs.factor: found {factor}; expected a number in (0, 1)")
        for key, value in (("patience", patience), ("cooldown", cooldown)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ConfigError(f"{PATH}.kwargs.{key}: found {value!r}; expected a whole number of epochs >= 0")
        if threshold < 0:
            raise ConfigError(f"{PATH}.kwargs.threshold: found {threshold}; expected a number >= 0")
        if threshold_mode not in ("rel", "abs"):
            raise ConfigError(f"{PATH}.kwargs.threshold_mode: '{threshold_mode}' is not one of rel, abs")
        self.lo, self.factor, self.patience, self.cooldown, self.eps = lo, factor, patience, cooldown, eps
        self.threshold, self.threshold_mode, self.mode = threshold, threshold_mode, mode
        self.current = hi
        self.best = math.inf if mode == "min" else -math.inf
        self.bad_epochs = 0
        self.cooldown_counter = 0

    def _is_better(self, value: float) -> bool:
        t = self.threshold
        if self.mode == "min":
            return value < (self.best * (1.0 - t) if self.threshold_mode == "rel" else self.best - t)
        return value > (self.best * (1.0 + t) if self.threshold_mode == "rel" else self.best + t)

    def epoch_end(self, value: float) -> None:
        value = float(value)
        if self._is_better(value):
            self.best, self.bad_epochs = value, 0
        else:
            self.bad_epochs += 1
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.bad_epochs = 0  # bad epochs in the cooldown do not count
        if self.bad_epochs > self.patience:
            new = max(self.current * self.factor, self.lo)
            if self.current - new > self.eps:
                self.current = new
            self.cooldown_counter, self.bad_epochs = self.cooldown, 0

    def state_dict(self) -> dict[str, Any]:
        return {"current": self.current, "best": self.best, "bad_epochs": self.bad_epochs,
                "cooldown_counter": self.cooldown_counter}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if not state:
            return
        self.current, self.best = float(state["current"]), float(state["best"])
        self.bad_epochs, self.cooldown_counter = int(state["bad_epochs"]), int(state["cooldown_counter"])


def plateau(lo: float, hi: float, k: int, epochs: int, step_size_factor: float, factor: float = 0.1,
            patience: int = 10, threshold: float = 1e-4, threshold_mode: str = "rel", cooldown: int = 0,
            eps: float = 1e-8, mode: str = "min") -> Plateau:
    """ReduceLROnPlateau on ``train.monitor`` (``mode`` follows the monitor; not a user option)."""
    return Plateau(lo, hi, factor, patience, threshold, threshold_mode, cooldown, eps, mode)


def lr_scan(lo: float, hi: float, k: int, epochs: int, step_size_factor: float, scale: str = "linear") -> Schedule:
    """The LR finder's scan: from lo at step 0 to hi at the last of the k·epochs steps, linear or log-spaced.

    Not a registered schedule: ``train.lr_finder`` uses it.
    """
    last = max(1, k * epochs - 1)

    def lr(it: int) -> float:
        f = min(it, last) / last
        return lo + (hi - lo) * f if scale == "linear" else lo * (hi / lo) ** f

    return Schedule(lr)


_UNLISTED = {"lr_scan": lr_scan}


def build_schedule(spec: ScheduleSpec) -> Schedule:
    """The schedule named by ``spec``; unknown options are errors with "did you mean"."""
    if spec.name in _UNLISTED:
        factory, monitored = _UNLISTED[spec.name], False
    else:
        name = SCHEDULES.canonical(spec.name, f"{PATH}.name")
        factory, monitored = SCHEDULES.get(name), bool(SCHEDULES.entry(name).meta.get("monitored"))
    filled = ("lo", "hi", "k", "epochs", "step_size_factor", *(("mode",) if monitored else ()))
    check_kwargs(factory, spec.kwargs, f"{PATH}.kwargs", ignore=filled)
    extra = {"mode": spec.mode} if monitored else {}
    return factory(spec.lo, spec.hi, max(1, int(spec.steps_per_epoch)), max(1, int(spec.epochs)),
                   spec.step_size_factor, **spec.kwargs, **extra)


def _set_momentum(optimizer: torch.optim.Optimizer, value: float) -> None:
    for group in optimizer.param_groups:
        if "betas" in group:
            group["betas"] = (value, *tuple(group["betas"])[1:])
        else:
            group["momentum"] = value


class ScheduleLR(LRScheduler):
    """A torch scheduler that sets ``lr = schedule.lr(step) · warm-up(step)`` (and momentum) at every step.

    Its state is the step count (``last_epoch``) and the schedule's own state (``plateau``'s), so it
    saves into and resumes from a Lightning checkpoint exactly, and loads with ``weights_only=True``.

    Args:
        optimizer: the optimizer whose lr (and momentum) it sets.
        schedule: the lr as a function of the optimizer step.
        warmup_steps: ``W``; 0 = no warm-up.
        warmup_start_factor: ``f₀`` in [0, 1): the warm-up's first factor.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, schedule: Schedule, last_epoch: int = -1,
                 warmup_steps: int = 0, warmup_start_factor: float = 0.0) -> None:
        self.schedule = schedule
        self.warmup_steps, self.warmup_start_factor = int(warmup_steps), float(warmup_start_factor)
        if schedule.momentum is not None:
            group = optimizer.param_groups[0]
            if not ("betas" in group or group.get("momentum", 0) > 0):
                raise ConfigError(
                    f"{PATH}.kwargs.cyclical_momentum: the optimizer {type(optimizer).__name__} has no momentum "
                    "or betas to cycle (use sgd with momentum > 0 or an Adam-family optimizer, or set it false)")
        super().__init__(optimizer, last_epoch)

    def warmup_factor(self, it: int) -> float:
        """``f₀ + (1 − f₀)·min(1, it/W)``; 1 without a warm-up."""
        if self.warmup_steps <= 0:
            return 1.0
        f0 = self.warmup_start_factor
        return f0 + (1.0 - f0) * min(1.0, it / self.warmup_steps)

    def get_lr(self) -> list[float]:
        it = self.last_epoch
        if self.schedule.momentum is not None:
            _set_momentum(self.optimizer, self.schedule.momentum(it))
        return [self.schedule.lr(it) * self.warmup_factor(it) for _ in self.optimizer.param_groups]

    def epoch_end(self, value: float) -> None:
        """Pass ``train.monitor``'s value to a monitored schedule; the next step uses its new lr."""
        self.schedule.epoch_end(value)
        self._last_lr = self.get_lr()
        for group, lr in zip(self.optimizer.param_groups, self._last_lr):
            group["lr"] = lr

    def state_dict(self) -> dict[str, Any]:
        return {"last_epoch": self.last_epoch, "_step_count": self._step_count,
                "base_lrs": list(self.base_lrs), "_last_lr": list(getattr(self, "_last_lr", [])),
                "schedule": self.schedule.state_dict()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        state = dict(state_dict)
        self.schedule.load_state_dict(state.pop("schedule", None) or {})
        self.__dict__.update(state)


def make_scheduler(optimizer: torch.optim.Optimizer, spec: ScheduleSpec) -> ScheduleLR:
    """A :class:`ScheduleLR` for ``spec`` on ``optimizer`` (its lr starts at the schedule's value).

    Without a schedule name the base is the optimizer's lr (``train.lr`` or its default), held constant.
    """
    if spec.name is None:
        base = float(optimizer.param_groups[0]["lr"])
        schedule = Schedule(lambda it: base)
    else:
        schedule = build_schedule(spec)
    return ScheduleLR(optimizer, schedule, warmup_steps=spec.warmup_steps,
                      warmup_start_factor=spec.warmup_start_factor)
