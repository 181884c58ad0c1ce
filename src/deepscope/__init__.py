"""deepscope: build, train, evaluate and tune deep convolutional models on instrument data.

One validated config (YAML or dict) describes the experiment; :func:`train` runs it and leaves a
complete run folder. Heavy modules (torch, Lightning) load on first use, so ``import deepscope``
and the config tools stay fast.
"""

from __future__ import annotations

from typing import Any

from deepscope.config import ExperimentConfig, load_config
from deepscope.errors import CheckpointError, ConfigError, DataError, DeepscopeError, TrainingDiverged

__version__ = "0.1.0"

__all__ = [
    "CheckpointError",
    "ConfigError",
    "DataError",
    "DeepscopeError",
    "Experiment",
    "ExperimentConfig",
    "Interrupted",
    "ModelContainer",
    "RunResult",
    "TrainingDiverged",
    "TuneResult",
    "evaluate",
    "load_config",
    "predict",
    "train",
    "tune",
]

_LAZY = {"Experiment", "Interrupted", "RunResult", "train", "evaluate", "predict"}


def __getattr__(name: str) -> Any:
    if name == "ModelContainer":
        from deepscope.compat.deepcalo import ModelContainer

        return ModelContainer
    if name in ("tune", "TuneResult"):
        from deepscope import tuning

        return getattr(tuning, name)
    if name in _LAZY:
        from deepscope.training import experiment

        return getattr(experiment, name)
    raise AttributeError(f"module 'deepscope' has no attribute '{name}'")
