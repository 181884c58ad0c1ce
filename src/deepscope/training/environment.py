"""What this machine can run: the settings of a config it cannot honour, refused before training.

:func:`check_environment` and :func:`device_problem` run in the pre-flight checks
(:mod:`deepscope.preflight`), so ``deepscope validate`` and ``deepscope train`` refuse the same
settings with the same words. Neither this module nor its callers import Lightning, and torch is
imported only by a check that needs it (a config without GPUs, ``16-mixed`` or ``train.compile``
never loads it here).
"""

from __future__ import annotations

from typing import Any

from deepscope.errors import ConfigError, did_you_mean

__all__ = ["INSTALL_HINT", "check_environment", "device_problem", "mlflow_problem", "training_device"]

INSTALL_HINT = "pip install 'deepscope[mlflow]'"


def training_device(train: Any) -> str:
    """'cuda', 'mps' or 'cpu': where ``train.accelerator`` puts training on this machine."""
    if train.accelerator in ("gpu", "cuda"):
        return "cuda"
    if train.accelerator == "auto":
        import torch

        if torch.cuda.is_available():
            return "cuda"
        if torch.backends.mps.is_available():
            return "mps"
    return "mps" if train.accelerator == "mps" else "cpu"


def check_environment(cfg: Any) -> None:
    """Refuse settings this machine cannot run, with every problem in one :class:`ConfigError`.

    Raises:
        ConfigError: ``16-mixed`` precision on a CPU, an unknown ``train.compile.backend``, or
            ``log.mlflow`` without the mlflow package.
    """
    problems = [p for p in (_precision_problem(cfg.train), _compile_problem(cfg.train.compile), mlflow_problem(cfg))
                if p]
    if problems:
        raise ConfigError(problems=problems)


def _precision_problem(train: Any) -> str | None:
    # Lightning would quietly train in bf16-mixed instead; say so before anything is written
    if train.precision == "16-mixed" and training_device(train) == "cpu":
        where = "train.accelerator is 'cpu'" if train.accelerator == "cpu" else "this machine has no GPU"
        return (f"train.precision: '16-mixed' needs a GPU, but training runs on the CPU ({where}); "
                "use 'bf16-mixed' for mixed precision on a CPU, or '32'")
    return None


def _compile_problem(options: Any) -> str | None:
    if options is None:
        return None
    import torch

    backends = torch.compiler.list_backends(exclude_tags=())
    if options.backend not in backends:
        return (f"train.compile.backend: unknown backend '{options.backend}'{did_you_mean(options.backend, backends)} "
                f"(available: {', '.join(sorted(backends))})")
    return None


def mlflow_problem(cfg: Any) -> str | None:
    """Why ``log.mlflow`` cannot work here (the package is missing), or ``None``."""
    if cfg.log.mlflow is None:
        return None
    try:
        import mlflow  # noqa: F401
    except ImportError:
        return f"log.mlflow: needs the mlflow package, which is not installed: {INSTALL_HINT}"
    return None


def device_problem(train: Any) -> str | None:
    """The GPUs a ``train`` section asks for that this machine does not have (Lightning's own error is a
    traceback), or ``None``."""
    devices = train.devices
    if not (train.accelerator in ("gpu", "cuda") or (train.accelerator == "auto" and isinstance(devices, list))):
        return None
    import torch

    have = torch.cuda.device_count()
    what = f"train.devices {devices}" if isinstance(devices, list) else f"train.accelerator '{train.accelerator}'"
    if have == 0:
        return f"{what} asks for GPUs but this machine has none that torch can use; use train.accelerator: cpu"
    missing = [i for i in devices if i >= have] if isinstance(devices, list) else []
    if missing:
        return f"train.devices: GPU {missing[0]} does not exist; this machine has GPUs 0..{have - 1}"
    if isinstance(devices, int) and devices > have:
        return f"train.devices: {devices} GPUs per node asked for but this machine has {have}"
    return None
