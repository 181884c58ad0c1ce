"""The ``log`` section: where the run folder goes and what it holds."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, PositiveInt

from deepscope.config.common import StrictModel

__all__ = ["LogConfig"]


class LogConfig(StrictModel):
    """What a run writes besides checkpoints and the resolved config."""

    dir: Path = Field(Path("runs"), description="parent folder of run folders: <dir>/<name>/")
    tensorboard: bool = True
    figures: bool = True
    predictions: bool = Field(True, description="write predictions/val.npz and predictions/test.npz")
    progress_bar: Literal["auto", "rich", "none"] = Field(
        "auto", description="'auto': a rich bar at a terminal, one line per epoch otherwise"
    )
    every_n_steps: PositiveInt = Field(10, description="how often per-step values go to TensorBoard")
