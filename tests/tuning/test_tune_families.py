"""``deepscope tune`` on the families that train differently from a plain supervised run: registration
(named outputs, its own metrics) and phased (a trial is several run folders; the last phase reports to the
pruner)."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest

from deepscope.tuning import tune

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("tune")]

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
SMALL = ["train.epochs=2", "log.progress_bar=none", "log.figures=false"]


def _tune(tmp_path, config: str, extra: list[str], space: str):
    section = f"tune={{space: {{{space}}}, n_trials: 2, pruner: median, pruner_startup_trials: 5}}"
    return tune(CONFIGS / config, [f"log.dir={tmp_path / 'runs'}", *SMALL, *extra, section])


def test_registration_trials_are_judged_by_a_registration_metric(tmp_path):
    result = _tune(tmp_path, "atlalign_global.yaml", [f"data.path={tmp_path / 'pairs.h5'}", "data.n_pairs=64"],
                   "train.lr: {float: [1.0e-4, 1.0e-3], log: true}")
    assert result.metric == "val_iou" and result.direction == "maximize"
    assert result.counts["COMPLETE"] == 2 and 0.0 <= result.best_value <= 1.0
    study = optuna.load_study(study_name="atlalign-global", storage=f"sqlite:///{result.folder / 'study.db'}")
    for trial in study.trials:
        assert list(trial.intermediate_values) == [0, 1]  # the pruner heard every epoch
        assert (result.folder / "trials" / trial.user_attrs["run"] / "final_metrics.json").is_file()


def test_phased_trials_train_every_phase_and_report_from_the_last(tmp_path):
    result = _tune(tmp_path, "supernemo_count.yaml",
                   [f"data.path={tmp_path / 'tracker.root'}", "data.n_events=300"],
                   "train.lr: {float: [1.0e-4, 1.0e-3], log: true}")
    assert result.counts["COMPLETE"] == 2
    study = optuna.load_study(study_name="supernemo-count", storage=f"sqlite:///{result.folder / 'study.db'}")
    for trial in study.trials:
        run = result.folder / "trials" / trial.user_attrs["run"]
        phases = json.loads((run / "phases.json").read_text())["phases"]
        assert len(phases) == 3  # each view, the head, the fine-tuning
        last = Path(phases[-1]["runs"][0]["run"])
        epochs = len((last / "metrics.csv").read_text().splitlines()) - 1
        assert list(trial.intermediate_values) == list(range(epochs))  # the last phase's epochs, once each
