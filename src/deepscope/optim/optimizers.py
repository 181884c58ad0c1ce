"""Optimizers by name: torch's, plus Yogi and PAdam from pytorch-optimizer with DeepCalo's defaults.

Keras spellings of options are accepted once, here: ``learning_rate`` → ``lr``, ``epsilon`` →
``eps``, ``beta_1``/``beta_2`` → ``betas``.

``train.auto_lr`` (DeepCalo) sets ``lr = c·√batch_size``. DeepCalo gives ``c = 2.5e-5`` for Nadam
only; for the others ``c`` is that constant times the ratio of the optimizer's conventional default
lr to Nadam's (:data:`CONVENTIONAL_LR`). A conventional default is where an optimizer is usually
well behaved, so every optimizer gets the same fraction of its usual lr: at batch size 64, Nadam
0.0002 (a tenth of its 0.002), Adam 0.0001 (a tenth of 0.001), SGD 0.001 (a tenth of 0.01).
"""

from __future__ import annotations

import contextlib
import inspect
import math
from collections.abc import Iterable, Iterator
from typing import Any

import torch

from deepscope.components import OPTIMIZERS
from deepscope.config.common import Component
from deepscope.errors import ConfigError
from deepscope.registry import check_kwargs

__all__ = ["AUTO_LR_CONSTANTS", "CONVENTIONAL_LR", "auto_lr", "make_optimizer"]


def sgd(params: Iterable[Any], lr: float = 0.01, **kw: Any) -> torch.optim.Optimizer:
    return torch.optim.SGD(params, lr=lr, **kw)


def adam(params: Iterable[Any], **kw: Any) -> torch.optim.Optimizer:
    return torch.optim.Adam(params, **kw)


def adamw(params: Iterable[Any], **kw: Any) -> torch.optim.Optimizer:
    return torch.optim.AdamW(params, **kw)


def nadam(params: Iterable[Any], **kw: Any) -> torch.optim.Optimizer:
    return torch.optim.NAdam(params, **kw)


def radam(params: Iterable[Any], **kw: Any) -> torch.optim.Optimizer:
    return torch.optim.RAdam(params, **kw)


def rmsprop(params: Iterable[Any], **kw: Any) -> torch.optim.Optimizer:
    return torch.optim.RMSprop(params, **kw)


def adagrad(params: Iterable[Any], **kw: Any) -> torch.optim.Optimizer:
    return torch.optim.Adagrad(params, **kw)


def adadelta(params: Iterable[Any], **kw: Any) -> torch.optim.Optimizer:
    return torch.optim.Adadelta(params, **kw)


def adamax(params: Iterable[Any], **kw: Any) -> torch.optim.Optimizer:
    return torch.optim.Adamax(params, **kw)


def yogi(params: Iterable[Any], lr: float = 1e-2, eps: float = 1e-3, **kw: Any) -> torch.optim.Optimizer:
    """Yogi (Zaheer et al. 2018) with DeepCalo's defaults (lr 0.01, eps 1e-3)."""
    from pytorch_optimizer import Yogi

    with _refusals_as_value_errors():
        return Yogi(params, lr=lr, eps=eps, **kw)


def padam(params: Iterable[Any], lr: float = 1e-1, partial: float = 0.125, **kw: Any) -> torch.optim.Optimizer:
    """Partially adaptive Adam (Chen & Gu 2018) with DeepCalo's defaults (lr 0.1, partial 1/8)."""
    from pytorch_optimizer import PAdam

    with _refusals_as_value_errors():
        return PAdam(params, lr=lr, partial=partial, **kw)


@contextlib.contextmanager
def _refusals_as_value_errors() -> Iterator[None]:
    """pytorch-optimizer refuses some values (a negative lr) with exceptions of its own, not ValueError."""
    from pytorch_optimizer.base import exception

    own = tuple(v for v in vars(exception).values() if isinstance(v, type) and issubclass(v, Exception))
    try:
        yield
    except own as exc:
        raise ValueError(str(exc)) from exc


_TORCH_CLASS = {
    "sgd": torch.optim.SGD, "adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "nadam": torch.optim.NAdam,
    "radam": torch.optim.RAdam, "rmsprop": torch.optim.RMSprop, "adagrad": torch.optim.Adagrad,
    "adadelta": torch.optim.Adadelta, "adamax": torch.optim.Adamax,
}
_KERAS_NAMES = {"learning_rate": "lr", "epsilon": "eps"}

# Keras' default lr of each optimizer; RAdam (not in Keras): its paper's and PyTorch's 0.001; Yogi and
# Padam: DeepCalo's defaults. These are the scales auto_lr carries DeepCalo's Nadam constant over with.
CONVENTIONAL_LR: dict[str, float] = {
    "nadam": 0.002, "adam": 0.001, "adamw": 0.001, "radam": 0.001, "adamax": 0.002, "rmsprop": 0.001,
    "sgd": 0.01, "adagrad": 0.01, "adadelta": 1.0, "yogi": 0.01, "padam": 0.1,
}
NADAM_AUTO_LR = 2.5e-5  # DeepCalo: lr = 2.5e-5·sqrt(batch_size) for Nadam
AUTO_LR_CONSTANTS: dict[str, float] = {
    name: NADAM_AUTO_LR / CONVENTIONAL_LR["nadam"] * lr for name, lr in CONVENTIONAL_LR.items()}


def auto_lr(spec: Component, batch_size: int, path: str = "train.optimizer") -> float:
    """DeepCalo's automatic learning rate ``c·√batch_size`` for the optimizer named by ``spec``.

    Args:
        spec: the optimizer.
        batch_size: the samples per optimizer step (the effective batch).
    """
    return AUTO_LR_CONSTANTS[OPTIMIZERS.canonical(spec.class_name, path)] * math.sqrt(batch_size)


def _keras_kwargs(config: dict[str, Any]) -> dict[str, Any]:
    out = {_KERAS_NAMES.get(k, k): v for k, v in config.items() if k not in ("beta_1", "beta_2")}
    if "beta_1" in config or "beta_2" in config:
        out["betas"] = (config.get("beta_1", 0.9), config.get("beta_2", 0.999))
    return out


def _signature_target(name: str) -> Any:
    if name in _TORCH_CLASS:
        return _TORCH_CLASS[name]
    if name == "yogi":
        from pytorch_optimizer import Yogi as cls
    else:
        from pytorch_optimizer import PAdam as cls
    return _named_options_only(cls)


def _named_options_only(cls: Any) -> Any:
    """``cls``'s signature without its ``**kwargs``: pytorch-optimizer's classes store unknown options
    silently in their param groups, so a misspelt option would otherwise be ignored."""
    sig = inspect.signature(cls)
    named = [p for p in sig.parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD]

    def target(*args: Any, **kwargs: Any) -> None:  # only its signature is read
        raise NotImplementedError

    target.__signature__ = sig.replace(parameters=named)  # type: ignore[attr-defined]
    return target


def make_optimizer(spec: Component, params: Iterable[Any], lr: float | None = None,
                   path: str = "train.optimizer") -> torch.optim.Optimizer:
    """Build the optimizer named by ``spec`` over ``params``; ``lr`` (train.lr) overrides its default.

    Raises:
        ConfigError: an option the optimizer does not take (with "did you mean"), or a value it refuses.
    """
    name = OPTIMIZERS.canonical(spec.class_name, path)
    kwargs = _keras_kwargs(spec.config)
    check_kwargs(_signature_target(name), kwargs, f"{path}.config", ignore=("params",))
    betas = kwargs.get("betas")
    if betas is not None and (not isinstance(betas, (list, tuple)) or len(betas) != 2):
        # torch indexes them (IndexError) or unpacks them only in the first step
        raise ConfigError(f"{path}.config.betas: found {betas!r}; expected two numbers [beta_1, beta_2]")
    if lr is not None:
        kwargs["lr"] = lr
    try:
        return OPTIMIZERS.get(name)(params, **kwargs)
    except (ValueError, TypeError, IndexError) as exc:
        raise ConfigError(f"{path}.config: {exc}") from None
