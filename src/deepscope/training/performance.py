"""How the net runs on the machine: precision, ``torch.compile``, channels-last memory, determinism.

:func:`check_environment` (from :mod:`deepscope.training.environment`) runs in the pre-flight checks,
so a setting this machine cannot honour is refused before anything is written. The functions here
change the net in place: its ``state_dict`` keys and values stay those of a plain net, so
checkpoints load anywhere.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import torch
from torch import nn

from deepscope.config.train import CompileConfig
# re-exported: the checks of what this machine can run live where Lightning-free callers import them
from deepscope.training.environment import check_environment, training_device

__all__ = ["check_environment", "compile_net", "convert_channels_last", "images_channels_last",
           "set_deterministic_env", "training_device", "use_channels_last"]

log = logging.getLogger("deepscope")

# cuBLAS picks its workspace once per process; these two sizes make its results reproducible
# (https://docs.nvidia.com/cuda/cublas/index.html#results-reproducibility)
DETERMINISTIC_CUBLAS = (":4096:8", ":16:8")

# memory format by tensor rank: (B, C, H, W) and (B, C, D, H, W)
_FORMATS = {4: torch.channels_last, 5: torch.channels_last_3d}


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
