"""Optional MLflow logging (``log.mlflow``): Lightning's ``MLFlowLogger`` beside the run folder.

The epoch values of ``metrics.csv`` (and the per-step loss) go to an MLflow run; the resolved
config goes in as flattened parameters (``train.lr``, ``model.cnn.block_depths``, …) and
``config.yaml`` as an artifact. ``mlflow.json`` in the run folder records the MLflow run, so a
resumed run keeps logging to it. mlflow is an optional dependency: ``pip install 'deepscope[mlflow]'``.
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any

import lightning as L

from deepscope.config.log import MLflowConfig, is_file_store
from deepscope.config.schema import ExperimentConfig
from deepscope.training.callbacks import atomic_write_text
from deepscope.training.environment import INSTALL_HINT, mlflow_problem  # re-exported (Lightning-free there)
from deepscope.training.run import RunDir, run_config

__all__ = ["INSTALL_HINT", "MLflowRunInfo", "flatten_config", "mlflow_logging", "mlflow_problem"]

log = logging.getLogger("deepscope")

def flatten_config(data: Any, prefix: str = "") -> dict[str, Any]:
    """``{"train": {"lr": 0.1}}`` → ``{"train.lr": 0.1}``; lists and empty mappings are leaves."""
    if isinstance(data, dict) and data:
        out: dict[str, Any] = {}
        for key, value in data.items():
            out.update(flatten_config(value, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix: data}


def _recorded_run_id(run: RunDir, options: MLflowConfig) -> str | None:
    """The MLflow run an earlier session of this run folder logged to, if it still exists."""
    record = run.path / "mlflow.json"
    if not record.exists():
        return None
    try:
        saved = json.loads(record.read_text())
    except (OSError, ValueError):
        return None
    if saved.get("tracking_uri") != options.tracking_uri or saved.get("experiment_name") != options.experiment_name:
        return None
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    try:
        return MlflowClient(options.tracking_uri).get_run(saved["run_id"]).info.run_id
    except (MlflowException, KeyError):
        log.warning(f"log.mlflow: the MLflow run recorded in {record} is gone; logging to a new one")
        return None


def mlflow_logging(cfg: ExperimentConfig, run: RunDir) -> tuple[Any, L.Callback]:
    """The ``MLFlowLogger`` for ``cfg.log.mlflow`` and the callback that logs the config to it.

    A run that is resumed continues the MLflow run recorded in its ``mlflow.json``.
    """
    from lightning.pytorch.loggers import MLFlowLogger

    options = cfg.log.mlflow
    if is_file_store(options.tracking_uri):
        # MLflow 3 refuses folder stores unless asked; the config asks for one explicitly
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    logger = MLFlowLogger(experiment_name=options.experiment_name, run_name=options.run_name or run.path.name,
                          tracking_uri=options.tracking_uri, tags=dict(options.tags) or None,
                          run_id=_recorded_run_id(run, options))
    return logger, MLflowRunInfo(logger, cfg, run)


class MLflowRunInfo(L.Callback):
    """At the start of training (rank 0): the config as parameters, ``config.yaml`` as an artifact,
    and the MLflow run's id in ``<run>/mlflow.json``."""

    def __init__(self, logger: Any, cfg: ExperimentConfig, run: RunDir) -> None:
        self.logger, self.cfg, self.run = logger, cfg, run

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        client, run_id = self.logger.experiment, self.logger.run_id
        options = self.cfg.log.mlflow
        atomic_write_text(self.run.path / "mlflow.json", json.dumps(
            {"tracking_uri": options.tracking_uri, "experiment_name": options.experiment_name,
             "experiment_id": self.logger.experiment_id, "run_id": run_id}, indent=2) + "\n")
        # MLflow parameters cannot change; a resumed run (train.epochs raised) keeps the first values
        logged = client.get_run(run_id).data.params
        params = {k: v for k, v in flatten_config(run_config(self.cfg, self.run)).items() if k not in logged}
        if params:
            self.logger.log_hyperparams(params)
        try:
            client.log_artifact(run_id, str(self.run.config))
        except Exception as exc:  # an artifact store can fail in many ways; the metrics still go through
            log.warning(f"log.mlflow: config.yaml was not stored as an artifact ({type(exc).__name__}: {exc})")
