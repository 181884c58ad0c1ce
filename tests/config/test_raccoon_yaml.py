"""RACCOON / PENGUIN run files (model_params / data_params / train_params) read as they are."""

from __future__ import annotations

import pytest
import yaml

from deepscope.config import load_config
from deepscope.config.io import dump_yaml
from deepscope.config.raccoon_yaml import from_raccoon_yaml, is_raccoon_yaml
from deepscope.errors import ConfigError

SEED_FILE = """\
model_params:
  architecture: "RACCOON"         # "RACCOON" or "PENGUIN": Network architecture.
  layer_param: 16                 # (int) Parameter to control the number of feature maps.
  dropout: 0.5                    # (float) Dropout rate of fully connected layers.
  name: "Somename"                # (str) Name of model.
data_params:
  datafile: "data_z1.h5"
  train_seeds: 150                # (int) Number of seeds used for training [0, train_seeds).
  test_seeds: 100                 # (int) Number of seeds used for testing.
  newton_augmentation: 1.0        # (float) Factor to change the newtonian images.
train_params:
  epochs: 10
  lr: 0.001
  log_dir: "testruns"
"""


def test_the_seeds_template_becomes_the_native_config():
    raw = yaml.safe_load(SEED_FILE)
    assert is_raccoon_yaml(raw)
    native = from_raccoon_yaml(raw)
    assert native["name"] == "Somename"
    assert native["model"] == {"architecture": "raccoon", "layer_param": 16, "dropout": 0.5}
    assert native["data"] == {"source": "cube_hdf5", "path": "data_z1.h5", "slices": {"axes": [0]},
                              "seeds": {"train": [0, 150], "val": [150, 250]}}
    assert native["train"]["epochs"] == 10 and native["train"]["lr"] == 0.001
    assert native["train"]["loss"] == "bce_with_logits"
    assert native["train"]["optimizer"] == {"class_name": "adam", "config": {"beta_1": 0.5, "beta_2": 0.999}}
    assert native["log"] == {"dir": "testruns"}


def test_penguin_and_the_newtonian_amplitude():
    raw = yaml.safe_load(SEED_FILE.replace('"RACCOON"', '"penguin"').replace("newton_augmentation: 1.0",
                                                                              "newton_augmentation: 1.2"))
    native = from_raccoon_yaml(raw)
    assert native["model"]["architecture"] == "penguin"
    assert native["data"]["amplitude"] == {0: 1.2}  # the Newtonian cubes are class 0


def test_without_test_seeds_the_training_loss_is_monitored():
    raw = yaml.safe_load(SEED_FILE.replace("test_seeds: 100", "test_seeds: 0"))
    native = from_raccoon_yaml(raw)
    assert "val" not in native["data"]["seeds"] and native["train"]["monitor"] == "train_loss"


@pytest.mark.parametrize("edit, message", [
    (("layer_param: 16", "layer_parm: 16"), "model_params.layer_parm: unknown key; did you mean 'layer_param'?"),
    (('"RACCOON"', '"RACOON"'), "model_params.architecture: found 'RACOON'; did you mean 'raccoon'?"),
    (("train_seeds: 150", "train_seeds: many"), "data_params.train_seeds: found 'many'; expected an integer"),
    (('datafile: "data_z1.h5"', 'datfile: "data_z1.h5"'), "data_params.datafile: required key is missing"),
    (("train_params:", "trainparams:"), "trainparams: unknown section; did you mean 'train_params'?"),
])
def test_mistakes_in_the_seeds_sections_are_named(edit, message):
    raw = yaml.safe_load(SEED_FILE.replace(*edit))
    with pytest.raises(ConfigError) as info:
        from_raccoon_yaml(raw)
    assert message in str(info.value)


def test_a_native_config_is_not_mistaken_for_a_seed_file():
    assert not is_raccoon_yaml({"model": {"architecture": "raccoon"}, "train_params": {}})
    assert not is_raccoon_yaml({"name": "x"})


def test_load_config_reads_the_seed_file_and_applies_overrides_to_the_native_keys(tmp_path):
    path = tmp_path / "temp.yaml"
    path.write_text(SEED_FILE)
    cfg = load_config(path, ["train.epochs=20"])
    assert cfg.model.architecture == "raccoon" and cfg.model.layer_param == 16
    assert cfg.train.epochs == 20 and cfg.name == "Somename"
    assert cfg.data.source == "cube_hdf5"
    again = load_config(yaml.safe_load(dump_yaml(cfg)))  # the resolved, native config round-trips
    assert again == cfg
