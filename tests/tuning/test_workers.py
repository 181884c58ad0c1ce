"""How workers share a study: dead workers of other hosts, late heartbeats, interrupts, the grid, storage URLs.

Trials here are asked on an Optuna storage directly and judged by the worker code (no training), except
where a study runs end to end."""

from __future__ import annotations

import datetime
import json
import os
import time
from dataclasses import asdict, replace
from pathlib import Path

import optuna
import pytest

from deepscope.config import load_config
from deepscope.tuning.storage import display_url, make_sampler
from deepscope.tuning.study import Stage, StageFolder, _tell, reap_stale, tally
from deepscope.training.lock import Holder, lock_path
from tests.conftest import small_config

LR = {"train.lr": {"float": [1e-3, 1e-2]}}


def _stage(tmp_path: Path, study: optuna.Study, **tune_keys) -> Stage:
    cfg = load_config(small_config(tmp_path / "runs", tune={"space": LR, "n_trials": 2, **tune_keys}))
    spec = cfg.tune.stage_list()[0]
    return Stage(study, spec, cfg.tune, {}, StageFolder(tmp_path / "study"), tmp_path / "study", "val_accuracy",
                 "maximize", "tune.space")


def _running_trial(study: optuna.Study, holder: Holder, heartbeat: float, run: str = "trial-0000") -> None:
    """A trial a worker started 20 minutes ago, last heard from at ``heartbeat``."""
    study.add_trial(optuna.trial.FrozenTrial(
        number=0, trial_id=0, state=optuna.trial.TrialState.RUNNING, value=None,
        datetime_start=datetime.datetime.now() - datetime.timedelta(minutes=20), datetime_complete=None,
        params={"train.lr": 0.005}, distributions={"train.lr": optuna.distributions.FloatDistribution(1e-3, 1e-2)},
        user_attrs={"worker": asdict(holder), "heartbeat": heartbeat, "run": run}, system_attrs={},
        intermediate_values={}))


def _other_host() -> Holder:
    return replace(Holder.this_process(30), host="node17", pid=4242)


def test_a_worker_of_another_host_is_dead_only_after_stale_after_without_a_heartbeat(tmp_path):
    study = optuna.create_study(direction="maximize")
    stage = _stage(tmp_path, study, stale_after=120)
    _running_trial(study, _other_host(), heartbeat=time.time() - 30)
    assert not reap_stale(stage, study.get_trials(deepcopy=False))  # heard from 30 s ago: alive
    assert [t.state.name for t in study.trials] == ["RUNNING"]

    late = optuna.create_study(direction="maximize")
    stage = _stage(tmp_path, late, stale_after=120)
    _running_trial(late, _other_host(), heartbeat=time.time() - 500)
    assert reap_stale(stage, late.get_trials(deepcopy=False))
    trials = late.trials
    assert [t.state.name for t in trials] == ["FAIL", "WAITING"]
    assert "not been heard from for" in trials[0].user_attrs["error"] and "node17" in trials[0].user_attrs["error"]
    assert trials[1].user_attrs["run"] == "trial-0000" and trials[1].system_attrs["fixed_params"] == trials[0].params


def test_a_fresh_run_lock_keeps_a_trial_alive_and_a_dead_hosts_lock_is_removed_for_its_retry(tmp_path):
    study = optuna.create_study(direction="maximize")
    stage = _stage(tmp_path, study, stale_after=120)
    holder = _other_host()
    _running_trial(study, holder, heartbeat=time.time() - 500)
    # the run of a phased trial holds the lock of its phase's folder, refreshed every 30 s by its worker
    phase_lock = stage.folder.trials / "trial-0000" / ".head.lock"
    phase_lock.parent.mkdir(parents=True)
    phase_lock.write_text(json.dumps(asdict(holder)))
    assert not reap_stale(stage, study.get_trials(deepcopy=False))

    old = time.time() - 500
    os.utime(phase_lock, (old, old))
    run_lock = lock_path(stage.folder.trials / "trial-0000")
    run_lock.write_text(json.dumps(asdict(holder)))
    os.utime(run_lock, (old, old))
    assert reap_stale(stage, study.get_trials(deepcopy=False))
    # RunLock never takes over another host's lock: the reaper removed the dead worker's, so the retry can resume
    assert not run_lock.exists() and not phase_lock.exists()


def test_an_interrupted_trial_is_always_queued_again_but_a_dying_one_twice(tmp_path):
    from deepscope.tuning.study import _requeue

    study = optuna.create_study(direction="maximize")
    stage = _stage(tmp_path, study)
    trial = study.ask({"train.lr": optuna.distributions.FloatDistribution(1e-3, 1e-2)})
    trial.set_user_attr("run", "trial-0000")
    for _ in range(4):  # four Ctrl-C / preemptions in a row
        study.tell(trial, state=optuna.trial.TrialState.FAIL)
        _requeue(stage, study.trials[trial.number], "interrupted", died=False)
        trial = study.ask()
    assert trial.user_attrs["retries"] == 0 and trial.user_attrs["run"] == "trial-0000"
    for expected in (1, 2):
        study.tell(trial, state=optuna.trial.TrialState.FAIL)
        _requeue(stage, study.trials[trial.number], "worker died")
        trial = study.ask()
        assert trial.user_attrs["retries"] == expected
    study.tell(trial, state=optuna.trial.TrialState.FAIL)
    _requeue(stage, study.trials[trial.number], "worker died")  # a third death: left failed
    assert not [t for t in study.trials if t.state.name == "WAITING"]
    assert tally(study.trials)["finished"] == 1  # every failure was retried but the last: one trial


def test_a_result_told_after_another_worker_failed_the_trial_is_a_warning_not_a_crash(tmp_path, caplog):
    study = optuna.create_study(direction="maximize")
    stage = _stage(tmp_path, study)
    trial = study.ask({"train.lr": optuna.distributions.FloatDistribution(1e-3, 1e-2)})
    study._storage.set_trial_state_values(trial._trial_id, state=optuna.trial.TrialState.FAIL)  # reaped meanwhile
    assert _tell(stage, trial, optuna.trial.TrialState.COMPLETE, value=0.9) is False
    assert _tell(stage, trial, optuna.trial.TrialState.FAIL, error="boom") is False
    assert "after another worker had marked it failed" in caplog.text


def test_workers_of_a_grid_share_one_shuffle_so_the_grid_is_covered_once(tmp_path):
    cfg = load_config(small_config(tmp_path, tune={"sampler": "grid", "space": {
        "train.batch_size": {"int": [8, 48], "step": 8}, "model.top.dropout": {"choice": [0.0, 0.5]}}}))
    spec = cfg.tune.stage_list()[0]
    storage = optuna.storages.InMemoryStorage()
    optuna.create_study(study_name="g", storage=storage)
    workers = [optuna.load_study(study_name="g", storage=storage,
                                 sampler=make_sampler(cfg.tune, spec, 0, "tune.space", worker=k)) for k in (0, 1)]
    seen = []
    for i in range(12):  # two workers take turns over a grid of 6 x 2 points
        study = workers[i % 2]
        trial = study.ask()
        point = (trial.suggest_int("train.batch_size", 8, 48, step=8),
                 trial.suggest_categorical("model.top.dropout", [0.0, 0.5]))
        study.tell(trial, 0.0)
        seen.append(point)
    assert len(set(seen)) == 12


@pytest.mark.parametrize("url, shown", [
    ("postgresql://alice:s3cret@db.example.org/studies", "postgresql://alice:***@db.example.org/studies"),
    ("sqlite:///runs/studies/a/study.db", "sqlite:///runs/studies/a/study.db"),
    ("journal:////shared/a.log", "journal:////shared/a.log"),
])
def test_database_passwords_are_never_shown(url, shown):
    assert display_url(url) == shown
