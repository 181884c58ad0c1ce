"""The search space: sampling (against fixed trials), conditions, grids, and the checks made before any trial."""

from __future__ import annotations

import optuna
import pytest

from deepscope.config import load_config
from deepscope.config.tune import SpaceEntry, TuneConfig, tune_metric
from deepscope.errors import ConfigError
from deepscope.tuning.space import apply_values, check_space, choice_label, decode_params, grid_space, sample
from deepscope.tuning.study import base_config
from tests.conftest import small_config


def _space(raw: dict) -> dict[str, SpaceEntry]:
    return TuneConfig.model_validate({"space": raw}).space


def _base(runs_dir) -> dict:
    return base_config(load_config(small_config(runs_dir)))


def test_float_int_and_list_choices_come_back_as_config_values(runs_dir):
    space = _space({"train.lr": {"float": [1e-4, 1e-1], "log": True},
                    "train.batch_size": {"int": [16, 64], "step": 16},
                    "model.cnn.block_depths": {"choice": [[1], [1, 2]]}})
    trial = optuna.trial.FixedTrial({"train.lr": 0.01, "train.batch_size": 48,
                                     "model.cnn.block_depths": choice_label([1, 2])})
    values = sample(trial, space, _base(runs_dir))
    assert values == {"train.lr": 0.01, "train.batch_size": 48, "model.cnn.block_depths": [1, 2]}
    cfg = load_config(apply_values(_base(runs_dir), values))
    assert cfg.train.lr == 0.01 and cfg.train.batch_size == 48 and cfg.model.cnn.block_depths == [1, 2]
    # what Optuna stores turns back into the values (trials.csv, best_config.yaml)
    assert decode_params(space, {"model.cnn.block_depths": "[1, 2]", "train.lr": 0.01}) == \
        {"model.cnn.block_depths": [1, 2], "train.lr": 0.01}


def test_conditional_entry_is_sampled_only_when_its_condition_holds(runs_dir):
    space = _space({"train.optimizer.class_name": {"choice": ["adam", "sgd"]},
                    "train.optimizer.config.momentum": {"float": [0.5, 0.99],
                                                        "when": {"train.optimizer.class_name": "sgd"}}})
    base = _base(runs_dir)
    with_sgd = sample(optuna.trial.FixedTrial({"train.optimizer.class_name": "sgd",
                                               "train.optimizer.config.momentum": 0.9}), space, base)
    assert with_sgd == {"train.optimizer.class_name": "sgd", "train.optimizer.config.momentum": 0.9}
    with_adam = sample(optuna.trial.FixedTrial({"train.optimizer.class_name": "adam"}), space, base)
    assert with_adam == {"train.optimizer.class_name": "adam"}
    # a condition on a key of the config that is not searched, with a list of accepted values
    fixed = _space({"train.lr": {"float": [1e-3, 1e-2], "when": {"train.loss": ["mse", "cross_entropy"]}}})
    assert sample(optuna.trial.FixedTrial({"train.lr": 0.005}), fixed, base) == {"train.lr": 0.005}
    other = _space({"train.lr": {"float": [1e-3, 1e-2], "when": {"train.loss": "mse"}}})
    assert sample(optuna.trial.FixedTrial({}), other, base) == {}


def test_real_sampler_draws_inside_the_ranges(runs_dir):
    space = _space({"train.lr": {"float": [1e-4, 1e-1], "log": True}, "train.batch_size": {"int": [8, 40], "step": 8},
                    "model.top.dropout": {"float": [0.0, 0.5], "step": 0.1}})
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=3))
    base = _base(runs_dir)
    for _ in range(30):
        trial = study.ask()
        values = sample(trial, space, base)
        assert 1e-4 <= values["train.lr"] <= 1e-1
        assert values["train.batch_size"] in (8, 16, 24, 32, 40)
        assert round(values["model.top.dropout"] * 10, 6) == int(round(values["model.top.dropout"] * 10))
        study.tell(trial, 0.0)


def test_grid_lists_every_value_and_refuses_a_float_range_without_step():
    grid = grid_space(_space({"train.batch_size": {"int": [16, 64], "step": 16},
                              "model.top.dropout": {"float": [0.0, 0.3], "step": 0.1},
                              "model.cnn.block_depths": {"choice": [[1], [2, 2]]}}), "tune.space")
    assert grid["train.batch_size"] == [16, 32, 48, 64]
    assert grid["model.top.dropout"] == pytest.approx([0.0, 0.1, 0.2, 0.3])
    assert grid["model.cnn.block_depths"] == ["[1]", "[2, 2]"]
    with pytest.raises(ConfigError, match=r"tune.space.train.lr: sampler grid needs .* step"):
        grid_space(_space({"train.lr": {"float": [1e-4, 1e-1]}}), "tune.space")


def test_unknown_key_is_found_before_any_trial_with_the_closest_name(runs_dir):
    space = _space({"model.cnn.block_depth": {"choice": [[1], [2]]}, "train.lrr": {"float": [1e-3, 1e-2]}})
    with pytest.raises(ConfigError) as info:
        check_space(_base(runs_dir), space, "tune.space")
    text = str(info.value)
    assert "tune.space.model.cnn.block_depth" in text and "did you mean 'block_depths'" in text
    assert "tune.space.train.lrr" in text and "did you mean 'lr'" in text


def test_value_problems_are_left_for_the_trials_but_order_problems_are_not(runs_dir):
    base = _base(runs_dir)
    check_space(base, _space({"model.top.dropout": {"choice": [2.0, 0.1]}}), "tune.space")  # a trial fails, not this
    with pytest.raises(ConfigError, match="'train.loss' is searched after 'train.lr'; list it before"):
        check_space(base, _space({"train.lr": {"float": [1e-3, 1e-2], "when": {"train.loss": "mse"}},
                                  "train.loss": {"choice": ["mse", "cross_entropy"]}}), "tune.space")


@pytest.mark.parametrize("entry, message", [
    ({"float": [1.0, 0.5]}, "expected finite low < high"),
    ({"float": [0.0, 1.0], "log": True}, "log: true needs low > 0"),
    ({"int": [1, 4], "choice": [1]}, "expected exactly one of"),
    ({"choice": []}, "expected at least one value"),
    ({"float": [1e-3, 1.0], "log": True, "step": 0.1}, "log and step cannot be combined"),
    ({"choice": [1, 2], "log": True}, "log and step are for float and int ranges"),
])
def test_bad_space_entries_are_named(runs_dir, entry, message):
    with pytest.raises(ConfigError) as info:
        load_config(small_config(runs_dir, tune={"space": {"train.lr": entry}}))
    assert "tune.space.train.lr" in str(info.value) and message in str(info.value)


def test_metric_defaults_to_the_last_metric_and_must_be_logged(runs_dir):
    cfg = load_config(small_config(runs_dir, tune={"space": {"train.lr": {"float": [1e-3, 1e-2]}}}))
    assert tune_metric(cfg) == "val_accuracy"
    cfg = load_config(small_config(runs_dir, tune={"space": {"train.lr": {"float": [1e-3, 1e-2]}}, "metric": "loss"}))
    assert tune_metric(cfg) == "val_loss"
    with pytest.raises(ConfigError, match=r"tune.metric: 'aucc' is not logged .*did you mean 'val_auc'"):
        load_config(small_config(runs_dir, train={"metrics": ["accuracy", "auc"]},
                                 tune={"space": {"train.lr": {"float": [1e-3, 1e-2]}}, "metric": "aucc"}))
    with pytest.raises(ConfigError, match="tune.space.name: set by each trial"):
        load_config(small_config(runs_dir, tune={"space": {"name": {"choice": ["a", "b"]}}}))
    with pytest.raises(ConfigError, match="give either tune.space or tune.stages"):
        load_config(small_config(runs_dir, tune={"space": {"train.lr": {"float": [1e-3, 1e-2]}},
                                                 "stages": [{"name": "a", "n_trials": 1,
                                                             "space": {"train.lr": {"float": [1e-3, 1e-2]}}}]}))


def test_tune_section_is_not_part_of_a_run_config(runs_dir):
    from deepscope.training.run import RunDir, run_config

    cfg = load_config(small_config(runs_dir, tune={"space": {"train.lr": {"float": [1e-3, 1e-2]}}}))
    assert "tune" not in run_config(cfg, RunDir(runs_dir / "t"))


def test_a_condition_on_a_key_that_does_not_exist_is_refused_before_any_trial(runs_dir):
    space = _space({"train.optimizer.config.momentum": {"float": [0.5, 0.99], "when": {"train.optimiser": "sgd"}}})
    with pytest.raises(ConfigError, match="'train.optimiser' is neither an earlier entry of the space nor a key"):
        check_space(_base(runs_dir), space, "tune.space")


def test_a_condition_reads_a_component_in_its_short_form(runs_dir):
    base = _base(runs_dir)
    assert base["train"]["optimizer"] == "adam"  # small_config gives the short form
    space = _space({"train.lr": {"float": [1e-3, 1e-2], "when": {"train.optimizer.class_name": "adam"}}})
    check_space(base, space, "tune.space")
    assert sample(optuna.trial.FixedTrial({"train.lr": 0.002}), space, base) == {"train.lr": 0.002}


def test_a_stepped_float_is_written_as_the_step_gives_it(runs_dir):
    space = _space({"model.top.dropout": {"float": [0.0, 0.5], "step": 0.1}})
    study = optuna.create_study(sampler=optuna.samplers.GridSampler({"model.top.dropout": [0.30000000000000004]}))
    assert sample(study.ask(), space, _base(runs_dir)) == {"model.top.dropout": 0.3}
