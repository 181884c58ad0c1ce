"""The ``log`` section: where the run folder goes and what it holds."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlparse

from pydantic import AfterValidator, Field, PositiveInt

from deepscope.config.common import StrictModel

__all__ = ["LogConfig", "MLflowConfig", "WeightSnapshotsConfig", "is_file_store"]


def is_file_store(uri: str) -> bool:
    """Whether an MLflow tracking URI names a folder (a plain path or ``file:``) rather than a server."""
    scheme = urlparse(uri).scheme
    return scheme == "file" or (scheme == "" and not uri.startswith("databricks"))


def _absolute_file_store(uri: str) -> str:
    # A relative folder is taken from the current folder at validation, so a resumed run (or one
    # started from another folder) logs to the same store; servers are left as written.
    if not is_file_store(uri):
        return uri
    if uri.startswith("file:"):
        path = uri.removeprefix("file:")
        if path.startswith("//"):  # file://host/path or file:///path: already absolute
            return uri
        return "file:" + str(Path(path).expanduser().absolute())
    return str(Path(uri).expanduser().absolute())


class WeightSnapshotsConfig(StrictModel):
    """Save the net's weights (and draw their histograms) during training (``log.weight_snapshots``)."""

    every_n_epochs: PositiveInt = Field(1, description="save after every n-th epoch, and after the last one")
    figures: bool = Field(True, description="draw figures/weights/epoch_<n>.png (with log.figures)")


class MLflowConfig(StrictModel):
    """Log the run to MLflow besides the run folder (``log.mlflow``)."""

    tracking_uri: Annotated[str, AfterValidator(_absolute_file_store)] = Field(
        ..., min_length=1, description="MLflow tracking URI: a server (http://...), a database or a folder")
    experiment_name: str = Field("deepscope", min_length=1, description="MLflow experiment the run goes into")
    run_name: str | None = Field(None, description="MLflow run name; null = the run folder's name")
    tags: dict[str, str] = Field(default_factory=dict, description="tags set on the MLflow run")


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
    weight_snapshots: WeightSnapshotsConfig | None = Field(
        None, description="save the weights every n epochs to weights/ (and draw histograms); null = off")
    mlflow: MLflowConfig | None = Field(None, description="also log to MLflow; null = off")
