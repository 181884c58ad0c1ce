"""log.mlflow: the run's epoch values, config and config.yaml in MLflow; a clear error without mlflow."""

from __future__ import annotations

import json
import sys

import pytest

import deepscope
from deepscope.errors import ConfigError
from deepscope.training.mlflow_logger import flatten_config
from tests.conftest import small_config


def _cfg(runs_dir, uri, epochs=2, **mlflow):
    return small_config(runs_dir,
                        log={"dir": str(runs_dir), "progress_bar": "none", "tensorboard": False, "figures": False,
                             "mlflow": {"tracking_uri": uri, **mlflow}},
                        train={"epochs": epochs, "batch_size": 64, "loss": "cross_entropy", "metrics": ["accuracy"],
                               "optimizer": "adam"})


def test_without_mlflow_the_config_is_refused_before_anything_is_written(runs_dir, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "mlflow", None)  # import mlflow now fails
    with pytest.raises(ConfigError) as err:
        deepscope.train(_cfg(runs_dir, f"file:{tmp_path / 'mlruns'}"))
    msg = str(err.value)
    assert "log.mlflow" in msg and "pip install 'deepscope[mlflow]'" in msg
    assert msg.count("\n  - ") == 1  # one problem
    assert not runs_dir.exists() and not (tmp_path / "mlruns").exists()


def test_flatten_config_uses_dotted_keys():
    assert flatten_config({"train": {"lr": 0.1, "metrics": ["mae"], "kwargs": {}}, "seed": 0}) == {
        "train.lr": 0.1, "train.metrics": ["mae"], "train.kwargs": {}, "seed": 0}


@pytest.mark.slow
def test_epoch_metrics_config_and_artifact_reach_the_mlflow_store(runs_dir, tmp_path):
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    store = f"file:{tmp_path / 'mlruns'}"
    result = deepscope.train(_cfg(runs_dir, store, experiment_name="digits", tags={"owner": "tests"}))
    record = json.loads((result.run_dir / "mlflow.json").read_text())
    assert record["tracking_uri"] == store and record["experiment_name"] == "digits"

    client = MlflowClient(store)
    experiment = client.get_experiment_by_name("digits")
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.run_id == record["run_id"]
    assert run.info.run_name == "t" and run.info.status == "FINISHED"
    assert run.data.tags["owner"] == "tests"
    assert run.data.params["train.epochs"] == "2" and run.data.params["train.loss"] == "cross_entropy"
    assert run.data.params["name"] == "t"
    for key in ("train_loss", "val_loss", "val_accuracy"):
        history = client.get_metric_history(run.info.run_id, key)
        assert len(history) == 2, key
    assert [a.path for a in client.list_artifacts(run.info.run_id)] == ["config.yaml"]

    # a resumed run keeps logging to the same MLflow run
    deepscope.train(_cfg(runs_dir, store, epochs=3, experiment_name="digits", tags={"owner": "tests"}))
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.run_id == record["run_id"]
    assert len(client.get_metric_history(run.info.run_id, "val_loss")) == 3
