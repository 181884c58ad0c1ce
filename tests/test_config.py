"""Config loading: defaults, aliases, the "str or config dict" form, overrides, cross checks, schema."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from deepscope.config import ExperimentConfig, apply_overrides, dump_yaml, load_config, read_yaml, to_dict
from deepscope.config.common import Component
from deepscope.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((ROOT / "configs").glob("*.yaml"))
TEMPLATES = sorted((ROOT / "src" / "deepscope" / "templates").glob("*.yaml"))

DIGITS = {
    "data": {"source": "sklearn_digits"},
    "model": {"top": {"units": [64, 10]}},
    "train": {"loss": "cross_entropy", "metrics": ["accuracy"]},
}


def cfg_with(*overrides: str, base: dict | None = None) -> ExperimentConfig:
    return load_config(DIGITS if base is None else base, overrides)


# --- defaults --------------------------------------------------------------------------------------


def test_empty_config_gets_every_default():
    cfg = load_config({})
    assert cfg.name == "run" and cfg.seed == 0
    assert cfg.data.source == "arrays" and cfg.data.split is None
    assert cfg.data.channels == "last" and cfg.data.num_workers == 0 and cfg.data.check_finite is True
    assert cfg.data.standardize.images == "per_channel" and cfg.data.standardize.targets is False
    assert cfg.model.architecture == "combined"
    cnn = cfg.model.cnn
    assert (cnn.block_depths, cnn.n_init_filters, cnn.init_kernel_size, cnn.rest_kernel_size) == ([1], 4, 5, 3)
    assert cnn.initialization.class_name == "orthogonal" and cnn.activation is None and cnn.normalization is None
    assert cnn.conv_dim is None and cnn.cardinality == 1 and cnn.squeeze_and_excite_ratio == 16
    assert cfg.model.top.units == [64, 1] and cfg.model.top.final_activation is None
    assert cfg.model.scalar_net.units == [] and cfg.model.scalar_net.connect_to == ["top"]
    assert cfg.model.track_net.phi_units == [64] and cfg.model.track_net.rho_units == [64]
    t = cfg.train
    assert (t.epochs, t.batch_size, t.lr, t.monitor) == (10, 32, None, "val_loss")
    assert t.loss.class_name == "mse" and t.loss.config == {}
    assert t.optimizer.class_name == "nadam" and t.metrics == []
    assert (t.early_stopping.use, t.early_stopping.patience, t.early_stopping.min_delta) == (False, 150, 1e-3)
    assert t.restore_best_weights is True and t.precision == "32" and t.devices == 1
    assert cfg.log.dir == Path("runs") and cfg.log.tensorboard is True and cfg.log.every_n_steps == 10


def test_sklearn_digits_source_defaults():
    cfg = load_config({"data": {"source": "sklearn_digits", "split": {}}})
    assert cfg.data.n_samples is None and cfg.data.one_hot is False
    assert (cfg.data.split.train, cfg.data.split.val, cfg.data.split.test) == (None, 0.15, 0.15)
    assert cfg.data.split.shuffle is True and cfg.data.split.uses_fractions


def test_load_from_path_dict_and_model(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(DIGITS))
    from_path = load_config(path)
    from_str_path = load_config(str(path))
    from_dict = load_config(DIGITS)
    assert from_path == from_str_path == from_dict
    assert load_config(from_dict) is from_dict  # already validated, no overrides: returned as is
    changed = load_config(from_dict, ["train.epochs=2"])
    assert changed.train.epochs == 2 and from_dict.train.epochs == 10


def test_load_config_does_not_mutate_its_input():
    raw = {"train": {"loss": "mean_squared_error", "optimizer": {"class_name": "Adam", "config": None}}}
    before = json.dumps(raw, sort_keys=True)
    load_config(raw, ["train.epochs=4"])
    assert json.dumps(raw, sort_keys=True) == before


def test_load_config_refuses_other_types():
    with pytest.raises(ConfigError, match="found a int; expected a YAML path, a dict or an ExperimentConfig"):
        load_config(3)


def test_missing_file_names_the_file(tmp_path):
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError, match="nope.yaml' not found"):
        load_config(missing)
    with pytest.raises(ConfigError, match="is a folder"):
        read_yaml(tmp_path)


def test_yaml_reads_exponent_floats_and_refuses_duplicate_keys(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  optimizer: {class_name: adam, config: {lr: 1e-3, eps: 1E-8}}\n  gradient_clip_val: 5e-1\n")
    cfg = load_config(path)
    assert cfg.train.optimizer.config == {"lr": 0.001, "eps": 1e-8}
    assert isinstance(cfg.train.optimizer.config["lr"], float) and cfg.train.gradient_clip_val == 0.5
    assert read_yaml(path)["train"]["gradient_clip_val"] == 0.5
    path.write_text("a: &base {x: 1, y: 2}\nb:\n  <<: *base\n  y: 3\n")  # merge keys may be overridden
    assert read_yaml(path) == {"a": {"x": 1, "y": 2}, "b": {"x": 1, "y": 3}}
    path.write_text("model:\n  top: {units: [8, 1]}\n  top: {units: [4, 1]}\n")
    with pytest.raises(ConfigError, match=r"c.yaml:3:3: malformed YAML: key 'top' is given twice"):
        read_yaml(path)


# --- aliases -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "override, getter, canonical",
    [
        ("train.optimizer=Nadam", lambda c: c.train.optimizer.class_name, "nadam"),
        ("train.optimizer=RMSprop", lambda c: c.train.optimizer.class_name, "rmsprop"),
        ("data.source=digits", lambda c: c.data.source, "sklearn_digits"),
        ("model.architecture=DeepCalo", lambda c: c.model.architecture, "combined"),
        ("model.cnn.normalization=BatchNormalization", lambda c: c.model.cnn.normalization.class_name, "batch"),
        ("model.cnn.normalization=layer-norm", lambda c: c.model.cnn.normalization.class_name, "layer"),
        ("model.cnn.activation=LeakyReLU", lambda c: c.model.cnn.activation.class_name, "leakyrelu"),
        ("model.cnn.activation=SiLU", lambda c: c.model.cnn.activation.class_name, "swish"),
        ("model.top.initialization=xavier_uniform", lambda c: c.model.top.initialization.class_name,
         "glorot_uniform"),
        ("model.top.initialization=HeNormal", lambda c: c.model.top.initialization.class_name, "he_normal"),
        ("train.loss=CrossEntropyLoss", lambda c: c.train.loss.class_name, "cross_entropy"),
        ("train.metrics=[categorical_accuracy, ROC_AUC]", lambda c: c.train.metrics, ["accuracy", "auc"]),
    ],
)
def test_aliases_are_stored_canonical(override, getter, canonical):
    assert getter(cfg_with(override)) == canonical


def test_regression_aliases():
    cfg = load_config({"train": {"loss": "mean_squared_error", "metrics": ["mean_absolute_error", "r2_score"]}})
    assert cfg.train.loss.class_name == "mse"
    assert cfg.train.metrics == ["mae", "r2"]
    assert cfg.data.source == "arrays"
    cfg = load_config({"data": {"source": "in_memory"}, "train": {"loss": "L1Loss"}})
    assert cfg.data.source == "arrays" and cfg.train.loss.class_name == "mae"


def test_keras_style_example_is_canonicalised():
    cfg = load_config(ROOT / "configs" / "digits_keras_style.yaml")
    assert cfg.train.optimizer.class_name == "nadam"
    assert cfg.train.optimizer.config == {"learning_rate": 0.002}
    assert cfg.model.cnn.normalization.class_name == "batch"
    assert cfg.model.cnn.activation == Component(class_name="leakyrelu", config={"alpha": 0.1})
    assert cfg.train.metrics == ["accuracy"]
    dumped = to_dict(cfg)
    assert dumped["model"]["cnn"]["normalization"] == "batch"
    assert dumped["train"]["optimizer"] == {"class_name": "nadam", "config": {"learning_rate": 0.002}}


# --- "str or config dict" ---------------------------------------------------------------------------


def test_component_forms():
    cfg = cfg_with(
        "model.cnn.activation={class_name: ReLU, config: null}",
        "model.top.activation=elu",
        "model.top.normalization={class_name: group, config: {num_groups: 2}}",
    )
    assert cfg.model.cnn.activation == Component(class_name="relu", config={})
    assert cfg.model.top.activation == Component(class_name="elu")
    assert cfg.model.top.normalization.config == {"num_groups": 2}
    dumped = to_dict(cfg)
    assert dumped["model"]["cnn"]["activation"] == "relu"  # no options: the plain-string form
    assert dumped["model"]["top"]["normalization"] == {"class_name": "group", "config": {"num_groups": 2}}


@pytest.mark.parametrize("source", [*EXAMPLES, *TEMPLATES], ids=lambda p: f"{p.parent.name}/{p.name}")
def test_dump_then_load_round_trip(source, tmp_path):
    cfg = load_config(source)
    text = dump_yaml(cfg)
    again = load_config(yaml.safe_load(text))
    assert again == cfg
    path = tmp_path / "resolved.yaml"
    path.write_text(text)
    assert load_config(path) == cfg
    assert dump_yaml(again) == text  # stable: dumping is idempotent
    json.dumps(to_dict(cfg))  # plain JSON-able data


def test_round_trip_keeps_component_options():
    raw = {
        "data": {"source": "sklearn_digits", "split": {"train": "0:1000", "val": [1000, 1001, 1002], "test": "1003:"}},
        "model": {"cnn": {"activation": {"class_name": "LeakyReLU", "config": {"alpha": 0.2}},
                          "init_kernel_size": [3, 5], "conv_dim": 2},
                  "top": {"units": [32, 10], "final_activation": "softmax"}},
        "train": {"loss": {"class_name": "categorical_crossentropy", "config": {"label_smoothing": 0.1}},
                  "optimizer": {"class_name": "SGD", "config": {"lr": 0.1, "momentum": 0.9}}},
    }
    cfg = load_config(raw)
    again = load_config(yaml.safe_load(dump_yaml(cfg)))
    assert again == cfg
    assert again.model.cnn.activation.config == {"alpha": 0.2}
    assert again.train.optimizer == Component(class_name="sgd", config={"lr": 0.1, "momentum": 0.9})
    assert again.data.split.val == [1000, 1001, 1002] and again.data.split.test == "1003:"


def test_dump_yaml_keeps_schema_order():
    keys = list(yaml.safe_load(dump_yaml(load_config({}))))
    assert keys == ["name", "seed", "task", "data", "model", "train", "log", "phases", "tune"]


# --- overrides --------------------------------------------------------------------------------------


def test_override_values_are_parsed_as_yaml():
    out = apply_overrides({}, [
        "train.epochs=3", "train.lr=0.5", "train.optimizer.config.eps=1e-7", "model.top.units=[32, 10]",
        "model.top.final_activation=null", "name=my-run", "log.tensorboard=false", "data.split.test='0:10'",
        "name2=a=b", "seed=",
    ])
    assert out == {
        "train": {"epochs": 3, "lr": 0.5, "optimizer": {"config": {"eps": 1e-7}}},
        "model": {"top": {"units": [32, 10], "final_activation": None}},
        "name": "my-run", "log": {"tensorboard": False}, "data": {"split": {"test": "0:10"}},
        "name2": "a=b", "seed": "",
    }
    assert isinstance(out["train"]["epochs"], int) and isinstance(out["train"]["lr"], float)


def test_override_creates_nested_keys_and_keeps_siblings():
    raw = {"model": {"cnn": {"n_init_filters": 8}}}
    out = apply_overrides(raw, ["model.cnn.block_depths=[1, 2]", "model.scalar_net.units=[4]"])
    assert out == {"model": {"cnn": {"n_init_filters": 8, "block_depths": [1, 2]}, "scalar_net": {"units": [4]}}}
    assert raw == {"model": {"cnn": {"n_init_filters": 8}}}  # input untouched


def test_override_string_component_then_its_config():
    out = apply_overrides({"train": {"optimizer": "nadam"}}, ["train.optimizer=adam", "train.optimizer.config.lr=0.1"])
    assert out["train"]["optimizer"] == {"class_name": "adam", "config": {"lr": 0.1}}
    cfg = cfg_with("train.optimizer=adam", "train.optimizer.config.lr=0.1")
    assert cfg.train.optimizer == Component(class_name="adam", config={"lr": 0.1})
    cfg = cfg_with("train.optimizer=Nadam", "train.optimizer.class_name=sgd")
    assert cfg.train.optimizer.class_name == "sgd"


def test_override_last_one_wins():
    assert cfg_with("train.epochs=3", "train.epochs=7").train.epochs == 7


@pytest.mark.parametrize("bad, fragment", [
    ("train.epochs", "override 'train.epochs': expected key.path=value"),
    ("=3", "override '=3': expected key.path=value"),
    ("train.epochs.x=1", "override 'train.epochs.x=1': train.epochs is 5, not a mapping"),
])
def test_bad_override_raises(bad, fragment):
    with pytest.raises(ConfigError) as info:
        apply_overrides({"train": {"epochs": 5}}, [bad])
    assert fragment in str(info.value)


def test_override_with_a_bad_key_names_it(tmp_path):
    with pytest.raises(ConfigError, match=r"train\.epoch: unknown key; did you mean 'epochs'\?"):
        load_config(ROOT / "configs" / "digits.yaml", ["train.epoch=3"])
    with pytest.raises(ConfigError, match=r"train\.epochs: found 'x' \(str\)"):
        load_config(ROOT / "configs" / "digits.yaml", ["train.epochs=x"])


# --- validation: several problems, valid variants of the cross checks ----------------------------


def test_several_problems_reported_at_once():
    with pytest.raises(ConfigError) as info:
        load_config({
            "seed": -3,
            "data": {"source": "sklearn_digits", "split": {"val": 2.0}},
            "model": {"cnn": {"n_init_filters": 0}, "top": {"dropout": 1.5}},
            "train": {"epochs": "many", "optimizer": "adamm"},
            "log": {"progress_bar": "tqdm"},
        })
    err = info.value
    lines = str(err).splitlines()
    assert lines[0] == "invalid config (7 problems):"
    assert len(lines) == 8 and all(line.startswith("  - ") for line in lines[1:])
    keys = [p.split(":")[0] for p in err.problems]
    assert sorted(keys) == sorted(["seed", "data.split.val", "model.cnn.n_init_filters", "model.top.dropout",
                                   "train.epochs", "train.optimizer", "log.progress_bar"])


def test_several_cross_check_problems_reported_at_once():
    with pytest.raises(ConfigError) as info:
        load_config({"model": {"top": {"units": [8, 1], "final_activation": "softmax"}},
                     "train": {"loss": "cross_entropy", "metrics": ["mse"], "monitor": "val_foo",
                               "lr": 0.1, "optimizer": {"class_name": "adam", "config": {"lr": 0.2}}}})
    problems = info.value.problems
    assert len(problems) == 5
    assert problems[0].startswith("train.metrics: mse is a regression metric")
    assert any(p.startswith("model.top.final_activation 'softmax' contradicts") for p in problems)
    assert any(p.startswith("model.top.units ends with 1 output") for p in problems)
    assert any(p.startswith("train.monitor: 'val_foo' is not logged") for p in problems)
    assert any(p.startswith("train.lr and train.optimizer.config.lr are both set") for p in problems)


@pytest.mark.parametrize("raw", [
    {"model": {"top": {"units": [8, 1]}}, "train": {"loss": "bce_with_logits", "metrics": ["accuracy", "auc"]}},
    {"model": {"top": {"units": [8, 1], "final_activation": "sigmoid"}}, "train": {"loss": "bce"}},
    {"model": {"top": {"units": [8, 4], "final_activation": "softmax"}},
     "train": {"loss": "categorical_crossentropy", "monitor": "val_accuracy", "metrics": ["accuracy"]}},
    {"train": {"loss": "huber", "metrics": ["mae", "resolution"], "monitor": "train_mae",
               "early_stopping": {"use": True, "monitor": "val_resolution"}}},
    {"data": {"source": "sklearn_digits", "split": {"val": 0.0, "test": 0.2}},
     "model": {"top": {"units": [8, 10]}}, "train": {"loss": "cross_entropy", "monitor": "train_loss"}},
    {"data": {"source": "sklearn_digits", "split": {"train": 0.7, "val": 0.15, "test": 0.15}},
     "model": {"top": {"units": [8, 10]}}, "train": {"loss": "cross_entropy"}},
    {"data": {"source": "npz", "path": "x.npz", "split": {"train": "0:80", "val": [80, 81], "test": "90:"}}},
    {"train": {"lr": 0.01, "optimizer": {"class_name": "sgd", "config": {"momentum": 0.9}}}},
    {"model": {"cnn": {"conv_dim": 3, "init_kernel_size": [3, 3, 3], "rest_strides": [1, 2, 2]}}},
    # conv_dim 3 takes 2D images (their layers stacked as a third dim) or 3D ones: wanted_size may have 2 or 3 dims
    {"model": {"cnn": {"conv_dim": 3}, "upsampling": {"use": True, "wanted_size": [28, 50]}}},
    {"model": {"cnn": {"conv_dim": 3}, "upsampling": {"use": True, "wanted_size": [4, 28, 50]}}},
    {"model": {"cnn": {"n_init_filters": 16, "use_squeeze_and_excite": True, "squeeze_and_excite_ratio": 16}}},
], ids=["bce_logits", "bce_sigmoid", "cce_softmax", "regression_monitors", "no_val_train_monitor",
        "train_fraction", "index_split", "lr_once", "kernels_3d", "upsampling_2d_conv_3d", "upsampling_3d_conv_3d",
        "se_ratio_equal"])
def test_consistent_configs_are_valid(raw):
    load_config(raw)


def test_upsampling_dims_against_conv_dim():
    with pytest.raises(ConfigError) as info:
        load_config({"model": {"cnn": {"conv_dim": 2}, "upsampling": {"use": True, "wanted_size": [4, 28, 50]}}})
    assert info.value.problems == ["model.upsampling.wanted_size has 3 entries but model.cnn.conv_dim is 2, which "
                                   "takes 2D images: wanted_size is their (H, W) size; give 2 entries"]
    load_config({"model": {"cnn": {"conv_dim": 2}, "upsampling": {"use": False, "wanted_size": [4, 28, 50]}}})


def test_split_values_are_normalised():
    cfg = load_config({"data": {"source": "npz", "path": "x.npz",
                                "split": {"train": " 0 : 100 ", "val": "100:120", "test": "120:"}}})
    assert (cfg.data.split.train, cfg.data.split.val, cfg.data.split.test) == ("0:100", "100:120", "120:")
    assert not cfg.data.split.uses_fractions
    # a relative data path is stored absolute (from the current folder) so run folders work anywhere
    assert load_config({"data": {"source": "npz", "path": "d.npz"}}).data.path == Path.cwd() / "d.npz"


def test_lr_in_both_keras_and_torch_spelling_is_refused():
    with pytest.raises(ConfigError, match="train.optimizer.config.lr and train.optimizer.config.learning_rate"):
        load_config({"train": {"optimizer": {"class_name": "adam", "config": {"lr": 0.1, "learning_rate": 0.1}}}})


@pytest.mark.parametrize("name", ["digits", "run_2", "a.b-c", "X"])
def test_folder_safe_names(name):
    assert load_config({"name": name}).name == name


@pytest.mark.parametrize("name", ["../up", "has space", "-leading", "", "a/b"])
def test_unsafe_names_refused(name):
    with pytest.raises(ConfigError, match="name: found .*; expected a folder-safe name"):
        load_config({"name": name})


# --- shipped configs and the schema -----------------------------------------------------------------


def test_there_are_examples_and_templates():
    assert len(EXAMPLES) >= 2
    assert {p.stem for p in TEMPLATES} == {"digits", "regression", "minimal", "deconvolution"}


@pytest.mark.parametrize("path", [*EXAMPLES, *TEMPLATES], ids=lambda p: f"{p.parent.name}/{p.name}")
def test_shipped_config_validates(path):
    cfg = load_config(path)
    raw = yaml.safe_load(path.read_text())
    # a RACCOON/PENGUIN run file names its run in model_params
    assert cfg.name == (raw["name"] if "name" in raw else raw["model_params"]["name"])


def test_json_schema_is_valid_json_with_every_section():
    schema = ExperimentConfig.model_json_schema()
    text = json.dumps(schema)
    again = json.loads(text)
    assert again["type"] == "object"
    assert set(again["properties"]) == {"name", "seed", "task", "data", "model", "train", "log", "phases", "tune"}
    assert again.get("additionalProperties") is False
    defs = again["$defs"]
    for name in ("TrainConfig", "CNNConfig", "TopConfig", "ScalarNetConfig", "TrackNetConfig", "SplitConfig",
                 "StandardizeConfig", "LogConfig", "EarlyStoppingConfig", "DigitsData", "NpzData", "ArraysData"):
        assert name in defs, name
    assert "restore_best_weights" in defs["TrainConfig"]["properties"]
    assert "n_init_filters" in defs["CNNConfig"]["properties"]
    assert "discriminator" in json.dumps(again["properties"]["data"])
