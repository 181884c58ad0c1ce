"""How the net runs on the machine: precision, ``torch.compile``, channels-last memory, determinism.

:func:`check_environment` runs first in ``Experiment.train``, so a setting this machine cannot honour
is refused before anything is written. The other functions change the net in place: its
``state_dict`` keys and values stay those of a plain net, so checkpoints load anywhere.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import torch
from torch import nn

from deepscope.config.schema import ExperimentConfig
from deepscope.config.train import CompileConfig, TrainConfig
from deepscope.errors import ConfigError, did_you_mean

__all__ = ["check_environment", "compile_net", "convert_channels_last", "images_channels_last",
           "set_deterministic_env", "training_device", "use_channels_last"]

log = logging.getLogger("deepscope")

# cuBLAS picks its workspace once per process; these two sizes make its results reproducible
# (https://docs.nvidia.com/cuda/cublas/index.html#results-reproducibility)
DETERMINISTIC_CUBLAS = (":4096:8", ":16:8")

# memory format by tensor rank: (B, C, H, W) and (B, C, D, H, W)
_FORMATS = {4: torch.channels_last, 5: torch.channels_last_3d}


def training_device(train: TrainConfig) -> str:
    """'cuda', 'mps' or 'cpu': where ``train.accelerator`` puts training on this machine."""
    if train.accelerator in ("gpu", "cuda"):
        return "cuda"
    if train.accelerator == "auto":
        if torch.cuda.is_available():
            return "cuda"
        if torch.backends.mps.is_available():
            return "mps"
    return "mps" if train.accelerator == "mps" else "cpu"


def check_environment(cfg: ExperimentConfig) -> None:
    """Refuse settings this machine cannot run, with every problem in one :class:`ConfigError`.

    Raises:
        ConfigError: ``16-mixed`` precision on a CPU, an unknown ``train.compile.backend``, or
            ``log.mlflow`` without the mlflow package.
    """
    from deepscope.training.mlflow_logger import mlflow_problem

    problems = [p for p in (_precision_problem(cfg.train), _compile_problem(cfg.train.compile), mlflow_problem(cfg))
                if p]
    if problems:
        raise ConfigError(problems=problems)


def _precision_problem(train: TrainConfig) -> str | None:
    # Lightning would quietly train in bf16-mixed instead; say so before anything is written
    if train.precision == "16-mixed" and training_device(train) == "cpu":
        where = "train.accelerator is 'cpu'" if train.accelerator == "cpu" else "this machine has no GPU"
        return (f"train.precision: '16-mixed' needs a GPU, but training runs on the CPU ({where}); "
                "use 'bf16-mixed' for mixed precision on a CPU, or '32'")
    return None


def _compile_problem(options: CompileConfig | None) -> str | None:
    if options is None:
        return None
    backends = torch.compiler.list_backends(exclude_tags=())
    if options.backend not in backends:
        return (f"train.compile.backend: unknown backend '{options.backend}'{did_you_mean(options.backend, backends)} "
                f"(available: {', '.join(sorted(backends))})")
    return None


def set_deterministic_env(deterministic: bool) -> None:
    """Make cuBLAS reproducible (``CUBLAS_WORKSPACE_CONFIG``) before CUDA starts, when asked for.

    torch reads the variable when it first uses cuBLAS; Lightning sets it too, but only when the
    Trainer is built, which may be after CUDA was used in this process.
    """
    if not deterministic or os.environ.get("CUBLAS_WORKSPACE_CONFIG") in DETERMINISTIC_CUBLAS:
        return
    os.environ["CUBLAS_WORKSPACE_CONFIG"] = DETERMINISTIC_CUBLAS[0]
    if torch.cuda.is_initialized():
        log.warning("train.deterministic: CUDA was started in this process before training, so cuBLAS may keep a "
                    "non-reproducible workspace; set CUBLAS_WORKSPACE_CONFIG=:4096:8 before starting Python")


def use_channels_last(setting: bool | str, device: str, net: nn.Module) -> bool:
    """Whether to train in channels-last memory format.

    ``'auto'`` means on a CUDA GPU when the net has 2D or 3D convolutions (4D or 5D weights),
    where cuDNN's channels-last kernels are faster (tensor cores, mixed precision above all);
    on a CPU it brings little, so ``'auto'`` leaves it off there.
    """
    if setting == "auto":
        return device == "cuda" and any(p.dim() in _FORMATS for p in net.parameters())
    return bool(setting)


def convert_channels_last(net: nn.Module) -> int:
    """Store every 4D/5D parameter (conv kernels) channels-last, in place; returns how many.

    The parameter objects stay the same (the optimizer's references hold) and so do their values
    and ``state_dict`` keys: only the strides change.
    """
    converted = 0
    with torch.no_grad():
        for p in net.parameters():
            fmt = _FORMATS.get(p.dim())
            if fmt is not None:
                p.data = p.data.contiguous(memory_format=fmt)
                converted += 1
    return converted


def images_channels_last(inputs: dict[str, Any]) -> dict[str, Any]:
    """The net's keyword inputs with every 4D/5D image (B, C, *S) in channels-last format."""
    images = inputs.get("images")
    if not images:
        return inputs
    converted = {name: x.contiguous(memory_format=_FORMATS[x.dim()]) if x.dim() in _FORMATS else x
                 for name, x in images.items()}
    return {**inputs, "images": converted}


def compile_net(net: nn.Module, options: CompileConfig | None) -> None:
    """Compile ``net``'s forward with ``torch.compile`` in place (``nn.Module.compile``).

    In place, unlike ``torch.compile(net)``, which wraps the net and prefixes every ``state_dict``
    key with ``_orig_mod.``: checkpoints stay loadable by an uncompiled net.
    """
    if options is None:
        return
    net.compile(backend=options.backend, mode=None if options.mode == "default" else options.mode,
                fullgraph=options.fullgraph, dynamic=options.dynamic)
