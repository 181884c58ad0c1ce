"""``deepscope tune`` end to end on tiny digits runs: the study folder, failures, pruning, resuming, dead
workers, staged searches and two worker processes sharing one journal storage."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from dataclasses import asdict, replace
from pathlib import Path

import optuna
import pytest
import yaml

from deepscope.cli import main
from deepscope.config import load_config
from deepscope.tuning import tune
from tests.conftest import small_config

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("tune")]

ROOT = Path(__file__).resolve().parents[2]
LR = {"train.optimizer.config.lr": {"float": [1e-3, 3e-2], "log": True}}


def _config(runs_dir, **tune_keys) -> dict:
    tune_section = {"space": LR, "n_trials": 2, "pruner": "none", **tune_keys}
    cfg = small_config(runs_dir, tune=tune_section, name="search")
    cfg["log"].update(figures=False, predictions=False)
    cfg["data"]["split"] = {"val": 0.2, "test": 0.2}
    return cfg


def _rows(folder: Path) -> list[dict]:
    with open(folder / "trials.csv", newline="") as f:
        return list(csv.DictReader(f))


def _study(folder: Path, name: str) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=f"sqlite:///{folder / 'study.db'}")


def test_a_study_leaves_trials_as_run_folders_a_table_a_best_config_and_figures(runs_dir):
    cfg = _config(runs_dir, n_trials=3, space={**LR, "model.cnn.block_depths": {"choice": [[1], [1, 1]]}})
    cfg["log"]["figures"] = True
    result = tune(cfg)
    folder = runs_dir / "studies" / "search"
    assert result.folder == folder and result.metric == "val_accuracy" and result.direction == "maximize"
    rows = _rows(folder)
    assert [r["number"] for r in rows] == ["0", "1", "2"] and {r["state"] for r in rows} == {"COMPLETE"}
    for row in rows:  # every trial is an ordinary run folder holding its sampled values
        run = folder / row["run"]
        assert (run / "checkpoints" / "best.ckpt").is_file()
        trained = yaml.safe_load((run / "config.yaml").read_text())
        assert trained["train"]["optimizer"]["config"]["lr"] == pytest.approx(float(row["train.optimizer.config.lr"]))
        assert trained["model"]["cnn"]["block_depths"] == json.loads(row["model.cnn.block_depths"])
        assert "tune" not in trained
        # the objective is the validation accuracy the run reports with its kept weights
        final = json.loads((run / "final_metrics.json").read_text())
        assert float(row["value"]) == pytest.approx(final["val"]["accuracy"])
    values = [float(r["value"]) for r in rows]
    assert result.best_value == max(values) and result.best_number == values.index(max(values))
    summary = json.loads((folder / "study.json").read_text())
    assert summary["counts"]["COMPLETE"] == 3 and summary["best"]["number"] == result.best_number
    assert summary["metric"] == "val_accuracy" and summary["direction"] == "maximize"
    # the best config is ready to train: the base config with the best values, no tune section
    best = load_config(result.best_config)
    assert best.tune is None and best.name == "search-best"
    assert best.train.optimizer.config["lr"] == pytest.approx(result.best_params["train.optimizer.config.lr"])
    assert best.model.cnn.block_depths == result.best_params["model.cnn.block_depths"]
    for name in ("optimization_history", "param_importances", "parallel_coordinate"):
        assert (folder / "figures" / f"{name}.png").stat().st_size > 5000
    # resuming: a larger budget adds only the missing trials
    cfg["tune"]["n_trials"] = 4
    again = tune(cfg)
    assert again.counts["COMPLETE"] == 4 and len(_rows(folder)) == 4


def test_an_invalid_combination_is_a_failed_trial_with_its_message_not_a_crash(runs_dir):
    cfg = _config(runs_dir, sampler="grid", space={"model.top.dropout": {"choice": [1.5, 0.1]}})
    result = tune(cfg)
    rows = {r["model.top.dropout"]: r for r in _rows(runs_dir / "studies" / "search")}
    assert rows["1.5"]["state"] == "FAIL" and "model.top.dropout" in rows["1.5"]["error"]
    assert rows["0.1"]["state"] == "COMPLETE"
    assert result.counts["FAIL"] == 1 and result.counts["COMPLETE"] == 1 and result.best_params == \
        {"model.top.dropout": 0.1}


def test_pruning_stops_a_trial_from_its_validation_values_and_keeps_its_run(runs_dir, monkeypatch):
    import deepscope.tuning.storage as storage

    # a pruner that stops every trial after its first validation: the Lightning callback must report to it
    monkeypatch.setattr(storage, "make_pruner", lambda tune_cfg, epochs: optuna.pruners.ThresholdPruner(lower=1.01))
    cfg = _config(runs_dir, pruner="median")
    cfg["train"]["epochs"] = 3
    result = tune(cfg)
    folder = runs_dir / "studies" / "search"
    assert result.counts["PRUNED"] == 2 and result.best_value is None
    study = _study(folder, "search")
    for trial in study.trials:
        assert list(trial.intermediate_values) == [0]  # reported after epoch 1, then stopped
        metrics = (folder / "trials" / trial.user_attrs["run"] / "metrics.csv").read_text().splitlines()
        assert len(metrics) == 2  # header and one epoch
    assert not (folder / "best_config.yaml").exists()


def test_a_trial_left_running_by_a_dead_worker_is_failed_and_resumed_in_its_run_folder(runs_dir):
    from deepscope.training.lock import Holder

    cfg = _config(runs_dir)
    folder = runs_dir / "studies" / "search"
    folder.mkdir(parents=True)
    study = optuna.create_study(study_name="search", storage=f"sqlite:///{folder / 'study.db'}", direction="maximize")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    orphan = study.ask({"train.optimizer.config.lr": optuna.distributions.FloatDistribution(1e-3, 3e-2, log=True)})
    orphan.set_user_attr("worker", asdict(replace(Holder.this_process(0), pid=dead.pid)))
    orphan.set_user_attr("run", "trial-0000")

    result = tune(cfg)
    trials = _study(folder, "search").trials
    assert trials[0].state.name == "FAIL" and "worker died" in trials[0].user_attrs["error"]
    retry = trials[1]
    assert retry.user_attrs["retry_of"] == 0 and retry.user_attrs["run"] == "trial-0000"
    assert retry.params == trials[0].params and retry.state.name == "COMPLETE"
    # the failed original is counted once, as its retry: the budget of 2 holds two finished trials
    assert result.counts["COMPLETE"] == 2 and result.counts["finished"] == 2 and len(trials) == 3


def test_ctrl_c_queues_the_trial_again_and_the_next_run_resumes_it(runs_dir, monkeypatch):
    from deepscope.training.experiment import Experiment, Interrupted

    cfg = _config(runs_dir)
    real = Experiment.train

    def interrupted(self, new_version=False):
        raise Interrupted("interrupted in epoch 1 at step 2")

    monkeypatch.setattr(Experiment, "train", interrupted)
    with pytest.raises(Interrupted):
        tune(cfg)
    folder = runs_dir / "studies" / "search"
    trials = _study(folder, "search").trials
    assert [t.state.name for t in trials] == ["FAIL", "WAITING"]
    assert trials[1].user_attrs["retry_of"] == 0 and trials[1].user_attrs["run"] == "trial-0000"

    monkeypatch.setattr(Experiment, "train", real)
    result = tune(cfg)
    trials = _study(folder, "search").trials
    assert trials[1].state.name == "COMPLETE" and (folder / "trials" / "trial-0000" / "final_metrics.json").exists()
    assert result.counts["finished"] == 2


def test_staged_search_fixes_the_first_stage_best_for_the_second(runs_dir):
    cfg = _config(runs_dir, space={}, stages=[
        {"name": "architecture", "n_trials": 2, "space": {"model.cnn.block_depths": {"choice": [[1], [1, 1]]}}},
        {"name": "training", "n_trials": 2, "space": LR}])
    cfg["tune"]["sampler"] = "grid"
    del cfg["tune"]["n_trials"]  # each stage has its own
    cfg["tune"]["stages"][1]["space"] = {"train.batch_size": {"int": [16, 32], "step": 16}}
    result = tune(cfg)
    root = runs_dir / "studies" / "search"
    arch = json.loads((root / "stages" / "architecture" / "study.json").read_text())
    best_depths = arch["best"]["params"]["model.cnn.block_depths"]
    for row in _rows(root / "stages" / "training"):
        trained = yaml.safe_load((root / "stages" / "training" / row["run"] / "config.yaml").read_text())
        assert trained["model"]["cnn"]["block_depths"] == best_depths
    summary = json.loads((root / "study.json").read_text())
    assert summary["stages"] == ["architecture", "training"] and summary["counts"]["COMPLETE"] == 4
    assert summary["best"]["run"].startswith("stages/training/trials/")
    best = load_config(root / "best_config.yaml")
    assert best.model.cnn.block_depths == best_depths and best.train.batch_size == result.best_params["train.batch_size"]
    assert set(result.best_params) == {"model.cnn.block_depths", "train.batch_size"}


def test_two_workers_on_one_journal_share_the_study_without_lost_or_extra_trials(runs_dir, tmp_path):
    cfg = _config(runs_dir, n_trials=5, storage=f"journal:///{tmp_path / 'journal.log'}")
    path = tmp_path / "tune.yaml"
    path.write_text(yaml.safe_dump(cfg))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    workers = [subprocess.Popen([sys.executable, "-m", "deepscope", "tune", str(path)], cwd=tmp_path, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for _ in range(2)]
    outputs = [w.communicate(timeout=400)[0] for w in workers]
    assert [w.returncode for w in workers] == [0, 0], outputs
    from optuna.storages.journal import JournalFileBackend

    storage = optuna.storages.JournalStorage(JournalFileBackend(str(tmp_path / "journal.log")))
    trials = optuna.load_study(study_name="search", storage=storage).trials
    assert sorted(t.number for t in trials) == list(range(5))
    assert [t.state.name for t in trials] == ["COMPLETE"] * 5
    runs = [t.user_attrs["run"] for t in trials]
    assert len(set(runs)) == 5
    assert sorted(p.name for p in (runs_dir / "studies" / "search" / "trials").iterdir() if p.is_dir()) == sorted(runs)
    # both workers took part, each started different trials
    ran = [{line.split()[1].rstrip(":") for line in out.splitlines() if line.startswith("trial ") and "=" in line}
           for out in outputs]
    assert all(ran) and not ran[0] & ran[1], outputs
    assert len(_rows(runs_dir / "studies" / "search")) == 5


def test_cli_tune_reports_the_best_trial_and_refuses_bad_configs_with_exit_2(runs_dir, tmp_path, capsys):
    path = tmp_path / "tune.yaml"
    path.write_text(yaml.safe_dump(_config(runs_dir, n_trials=1)))
    assert main(["tune", str(path)]) == 0
    out = capsys.readouterr().out
    assert "best: trial 0, val_accuracy" in out and "deepscope train" in out and "best_config.yaml" in out

    no_tune = small_config(runs_dir)
    path.write_text(yaml.safe_dump(no_tune))
    assert main(["tune", str(path)]) == 2
    assert "the config has no tune section" in capsys.readouterr().err
    path.write_text(yaml.safe_dump(_config(runs_dir, space={"train.lrr": {"float": [1e-3, 1e-2]}})))
    assert main(["tune", str(path)]) == 2
    assert "tune.space.train.lrr" in capsys.readouterr().err
    path.write_text(yaml.safe_dump(_config(runs_dir, sampler="grid")))
    assert main(["tune", str(path)]) == 2
    assert "sampler grid needs a finite set of values" in capsys.readouterr().err
    path.write_text(yaml.safe_dump(_config(runs_dir, storage="journal:///")))
    assert main(["tune", str(path)]) == 2
    assert "expected a file after journal:///" in capsys.readouterr().err


def test_a_worker_killed_mid_trial_leaves_a_trial_that_the_next_worker_resumes_from_its_checkpoint(runs_dir, tmp_path):
    import signal
    import time

    cfg = _config(runs_dir, n_trials=1)
    cfg["data"]["n_samples"] = 600
    cfg["train"].update(epochs=30, batch_size=8)
    path = tmp_path / "tune.yaml"
    path.write_text(yaml.safe_dump(cfg))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    worker = subprocess.Popen([sys.executable, "-m", "deepscope", "tune", str(path)], cwd=tmp_path, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    run = runs_dir / "studies" / "search" / "trials" / "trial-0000"
    deadline = time.monotonic() + 240
    while not (run / "checkpoints" / "last.ckpt").exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    worker.send_signal(signal.SIGKILL)  # no chance to clean up: the trial stays RUNNING in the storage
    worker.wait(timeout=30)
    assert (run / "checkpoints" / "last.ckpt").exists()
    trained_before = len((run / "metrics.csv").read_text().splitlines()) - 1
    assert 1 <= trained_before < 30

    result = tune(cfg)  # the same config: the killed trial's run resumes
    trials = _study(runs_dir / "studies" / "search", "search").trials
    assert [t.state.name for t in trials] == ["FAIL", "COMPLETE"]
    assert "worker died" in trials[0].user_attrs["error"] and trials[1].user_attrs["run"] == "trial-0000"
    epochs = [int(line.split(",")[0]) for line in (run / "metrics.csv").read_text().splitlines()[1:]]
    assert epochs == sorted(set(epochs)) and epochs[0] == 0  # resumed: one row per epoch, none trained twice
    assert result.counts["finished"] == 1 and result.best_number == 1


def test_any_exception_of_a_trial_fails_that_trial_and_the_study_goes_on(runs_dir, monkeypatch):
    from deepscope.training.experiment import Experiment

    real, calls = Experiment.train, []

    def flaky(self, new_version=False):
        calls.append(self.cfg.name)
        if len(calls) == 1:
            raise TypeError("unsupported operand type(s) for +: 'NoneType' and 'int'")
        return real(self, new_version)

    monkeypatch.setattr(Experiment, "train", flaky)
    result = tune(_config(runs_dir))
    rows = _rows(runs_dir / "studies" / "search")
    assert [r["state"] for r in rows] == ["FAIL", "COMPLETE"]
    assert rows[0]["error"] == "TypeError: unsupported operand type(s) for +: 'NoneType' and 'int'"
    assert result.counts["finished"] == 2


def test_a_study_folder_that_cannot_be_made_is_exit_2(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    path = tmp_path / "tune.yaml"
    path.write_text(yaml.safe_dump(_config(blocker / "runs")))
    assert main(["tune", str(path)]) == 2
    err = capsys.readouterr().err
    assert "log.dir: cannot create the study folder" in err and "Traceback" not in err
