"""train.compile, train.channels_last, log.weight_snapshots and log.mlflow: forms, defaults, bad input."""

from __future__ import annotations

from pathlib import Path

import pytest

from deepscope.config import load_config
from deepscope.errors import ConfigError


def _load(train=None, log=None):
    return load_config({"train": train or {}, "log": log or {}})


def _error(**sections):
    with pytest.raises(ConfigError) as err:
        _load(**sections)
    return str(err.value)


def test_defaults_are_off():
    cfg = _load()
    assert cfg.train.compile is None and cfg.train.channels_last == "auto"
    assert cfg.log.weight_snapshots is None and cfg.log.mlflow is None


@pytest.mark.parametrize("value, want", [
    (False, None), (None, None),
    (True, {"mode": "default", "backend": "inductor", "fullgraph": False, "dynamic": None}),
    ({"backend": "eager", "dynamic": True},
     {"mode": "default", "backend": "eager", "fullgraph": False, "dynamic": True}),
    ({"mode": "max-autotune"}, {"mode": "max-autotune", "backend": "inductor", "fullgraph": False, "dynamic": None}),
])
def test_compile_forms(value, want):
    compile_options = _load(train={"compile": value}).train.compile
    assert (None if compile_options is None else compile_options.model_dump()) == want


@pytest.mark.parametrize("value, message", [
    ("yes please", "train.compile: found 'yes please'; expected true, false or a mapping of options "
                   "(mode, backend, fullgraph, dynamic)"),
    ({"mode": "fast"}, "train.compile.mode"),
    ({"mod": "default"}, "train.compile.mod: unknown key; did you mean 'mode'?"),
    ({"mode": "reduce-overhead", "backend": "eager"},
     "train.compile: mode 'reduce-overhead' is an option of the 'inductor' backend, but backend is 'eager'"),
])
def test_bad_compile_options_are_named(value, message):
    assert message in _error(train={"compile": value})


@pytest.mark.parametrize("value", ["auto", True, False])
def test_channels_last_values(value):
    assert _load(train={"channels_last": value}).train.channels_last == value


def test_bad_channels_last():
    assert "train.channels_last: found 'sometimes'" in _error(train={"channels_last": "sometimes"})


def test_weight_snapshots():
    snaps = _load(log={"weight_snapshots": {}}).log.weight_snapshots
    assert snaps.every_n_epochs == 1 and snaps.figures is True
    assert "log.weight_snapshots.every_n_epochs: found 0" in _error(log={"weight_snapshots": {"every_n_epochs": 0}})


def test_mlflow_options_and_folder_stores_made_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    opts = _load(log={"mlflow": {"tracking_uri": "file:mlruns", "tags": {"team": "calo"}}}).log.mlflow
    assert opts.tracking_uri == f"file:{tmp_path / 'mlruns'}"
    assert opts.experiment_name == "deepscope" and opts.run_name is None and opts.tags == {"team": "calo"}
    assert _load(log={"mlflow": {"tracking_uri": "mlruns"}}).log.mlflow.tracking_uri == str(tmp_path / "mlruns")
    for uri in ("http://localhost:5000", "sqlite:///mlflow.db", "file:///srv/mlruns", "databricks"):
        assert _load(log={"mlflow": {"tracking_uri": uri}}).log.mlflow.tracking_uri == uri
    assert Path(_load(log={"mlflow": {"tracking_uri": "~/mlruns"}}).log.mlflow.tracking_uri).is_absolute()


def test_bad_mlflow_options():
    assert "log.mlflow.tracking_uri: required key is missing" in _error(log={"mlflow": {}})
    assert "log.mlflow.tags" in _error(log={"mlflow": {"tracking_uri": "mlruns", "tags": {"n": 1}}})
