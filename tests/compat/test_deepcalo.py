"""DeepCalo's API: exact defaults, the params -> native config map, and a run end to end."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch

import deepscope
from deepscope.compat import ModelContainer, get_default_params
from deepscope.compat.deepcalo import merge_params, params_to_config
from deepscope.errors import ConfigError

# deepcalo.utils.get_default_params (DeepCalo 0.2.x), written out independently of the module
SUB = {"initialization": "orthogonal", "activation": None, "normalization": None, "layer_reg": {}, "dropout": None}
DEEPCALO_DEFAULTS = {
    "epochs": 1, "batch_size": 32, "loss": "mse", "metrics": None, "optimizer": "Nadam",
    "lr_finder": {"use": False, "scan_range": [1e-4, 1e-2], "epochs": 1, "scale": "linear", "prompt_for_input": False},
    "lr_schedule": {"name": None, "range": [1e-3, 5e-3], "step_size_factor": 2, "kwargs": {}},
    "auto_lr": False, "use_earlystopping": False, "restore_best_weights": False,
    "pretrained_model": {"use": False, "weights_path": "./weights.h5", "params_path": None, "layers_to_load": [],
                         "freeze_loaded_layers": []},
    "n_gpus": 0,
    "data_generator": {"use": False, "n_workers": 1, "max_queue_size": 10,
                       "n_points": {"train": None, "val": None, "test": None},
                       "load_kwargs": {"path": "./data.h5", "target_name": None, "img_names": None,
                                       "gate_img_prefix": None, "scalar_names": None, "track_names": None,
                                       "max_tracks": None, "multiply_output_name": None, "sample_weight_name": None}},
    "upsampling": {"use": False, "wanted_size": (100, 100), "interpolation": "nearest"},
    "top": {**SUB, "units": [64, 1], "final_activation": None},
    "cnn": {**SUB, "cnn_type": "simple", "conv_dim": 2, "block_depths": [1], "n_init_filters": 4, "init_kernel_size": 5,
            "rest_kernel_size": 3, "init_strides": 1, "rest_strides": 1, "cardinality": 1,
            "use_squeeze_and_excite": False, "squeeze_and_excite_ratio": 16, "globalavgpool": False,
            "downsampling": None, "min_size_for_downsampling": 2},
    "network_in_network": {**SUB, "use": False, "units": [64], "strides": 1, "globalavgpool": False},
    "scalar_net": {**SUB, "units": [], "connect_to": []},
    "FiLM_gen": {**SUB, "use": False, "units": [64]},
    "track_net": {**SUB, "phi_units": [64], "rho_units": [64], "connect_to": []},
    "gate_net": {**SUB, "units": [], "use_res": False, "final_activation": None, "final_activation_init": [1.0],
                 "merge_method": "concatenate"},
}


def test_defaults_are_deepcalos_exactly():
    params = get_default_params()
    assert params == DEEPCALO_DEFAULTS and list(params) == list(DEEPCALO_DEFAULTS)
    params["cnn"]["block_depths"].append(2)
    assert get_default_params()["cnn"]["block_depths"] == [1]  # a fresh copy every call


def test_params_merge_in_depth_like_deepcalo():
    merged = merge_params(get_default_params(), {"cnn": {"n_init_filters": 8}, "lr_schedule": {"kwargs": {"gamma": 1}},
                                                 "optimizer": {"class_name": "Adam", "config": {"lr": 1e-3}}})
    assert merged["cnn"]["n_init_filters"] == 8 and merged["cnn"]["init_kernel_size"] == 5
    assert merged["lr_schedule"] == {"name": None, "range": [1e-3, 5e-3], "step_size_factor": 2, "kwargs": {"gamma": 1}}
    assert merged["optimizer"] == {"class_name": "Adam", "config": {"lr": 1e-3}}


FULL = {
    "epochs": 7, "batch_size": 64, "loss": "mean_squared_error", "metrics": ["mae"],
    "optimizer": {"class_name": "Nadam", "config": {"lr": 2e-3}},
    "use_earlystopping": True, "restore_best_weights": True, "n_gpus": 1, "name": "calo-run",
    "upsampling": {"use": True, "wanted_size": (16, 16), "interpolation": "bilinear"},
    "pretrained_model": {"use": True, "weights_path": "old/checkpoints/best.ckpt", "layers_to_load": ["cnn", "top"],
                         "freeze_loaded_layers": [True, False]},
    "top": {"units": [32, 1], "activation": "relu", "dropout": 0.1, "final_activation": "linear"},
    "cnn": {"block_depths": [1, 2], "n_init_filters": 8, "conv_dim": 2, "downsampling": "avgpool",
            "normalization": "batch", "activation": {"class_name": "LeakyReLU", "config": {"alpha": 0.1}},
            "dropout": {"block_size": 3, "keep_prob": 0.9}, "layer_reg": {"kernel_regularizer": "l2"}},
    "network_in_network": {"use": True, "units": [16, 4], "globalavgpool": True},
    "scalar_net": {"units": [16], "connect_to": ["top", "FiLM_gen"], "strides": 1},
    "FiLM_gen": {"use": True, "units": [32]},
    "track_net": {"phi_units": [8], "rho_units": [8], "connect_to": ["FiLM_gen"]},
    "gate_net": {"units": [4], "use_res": True, "final_activation": "pgauss", "final_activation_init": [0.5],
                 "merge_method": "multiply"},
}


def test_full_params_map_onto_the_native_config(tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="deepscope"):
        raw = params_to_config(FULL, {"log": str(tmp_path / "logs"), "fig": "f", "saved_models": "s", "lr_finder": "l"},
                               verbose=2)
    assert "params['scalar_net']['strides'] is ignored" in caplog.text
    cfg = deepscope.load_config(raw)
    assert cfg.name == "calo-run" and cfg.log.dir == tmp_path / "logs" and cfg.log.progress_bar == "none"
    assert cfg.data.source == "arrays" and cfg.data.standardize.images == "none" and not cfg.data.standardize.scalars
    t = cfg.train
    assert (t.epochs, t.batch_size, t.loss.class_name, t.metrics) == (7, 64, "mse", ["mae"])
    assert t.optimizer.class_name == "nadam" and t.optimizer.config == {"lr": 2e-3}
    assert (t.early_stopping.use, t.early_stopping.patience, t.early_stopping.min_delta) == (True, 150, 1e-3)
    assert t.restore_best_weights and t.devices == 1 and t.accelerator == "auto"
    m = cfg.model
    assert m.upsampling.use and m.upsampling.wanted_size == [16, 16] and m.upsampling.interpolation == "bilinear"
    pm = m.pretrained_model
    # relative paths are stored absolute (from the current folder), like every path in the config
    assert pm.use and pm.weights_path == Path.cwd() / "old/checkpoints/best.ckpt"
    assert pm.layers_to_load == ["cnn", "top"]
    assert pm.freeze_loaded_layers == [True, False]
    assert m.top.units == [32, 1] and m.top.dropout == 0.1 and m.top.activation.class_name == "relu"
    assert m.cnn.block_depths == [1, 2] and m.cnn.n_init_filters == 8 and m.cnn.conv_dim == 2
    assert m.cnn.activation.class_name == "leakyrelu" and m.cnn.activation.config == {"alpha": 0.1}
    assert m.cnn.dropout.block_size == 3 and m.cnn.layer_reg.kernel_regularizer.class_name == "l2"
    assert m.cnn.initialization.class_name == "orthogonal" and m.cnn.init_kernel_size == 5  # DeepCalo defaults kept
    assert m.network_in_network.use and m.network_in_network.units == [16, 4]
    assert m.scalar_net.units == [16] and m.scalar_net.connect_to == ["top", "FiLM_gen"]
    assert m.FiLM_gen.use and m.FiLM_gen.units == [32] and m.track_net.connect_to == ["FiLM_gen"]
    assert m.gate_net.use_res and m.gate_net.merge_method == "multiply" and m.gate_net.final_activation_init == [0.5]


def test_defaults_map_to_deepcalo_behaviour():
    cfg = deepscope.load_config(params_to_config({}))
    assert cfg.train.epochs == 1 and cfg.train.metrics == [] and cfg.train.accelerator == "cpu"  # n_gpus 0
    assert cfg.train.restore_best_weights is False and cfg.train.early_stopping.use is False
    assert cfg.model.scalar_net.connect_to == [] and cfg.model.cnn.conv_dim == 2
    assert cfg.model.pretrained_model.weights_path is None  # DeepCalo's unused placeholder is dropped
    assert cfg.name.endswith("_1_epochs") and cfg.log.dir.name == "runs"


@pytest.mark.parametrize("params, expected", [
    ({"epoch": 3}, "params: unknown key 'epoch'; did you mean 'epochs'?"),
    ({"lr_schedule": {"nam": "CLR"}}, "params['lr_schedule']: unknown key 'nam'; did you mean 'name'?"),
    ({"cnn": {"n_init_filter": 4}}, "params['cnn']: unknown key 'n_init_filter'; did you mean 'n_init_filters'?"),
    ({"n_gpus": 3}, "params['batch_size']: 32 samples cannot be shared evenly by params['n_gpus'] 3 GPUs"),
    ({"n_gpus": -1}, "params['n_gpus']: found -1; expected 0 (CPU) or a number of GPUs"),
    ({"data_generator": {"use": True}}, "data.source: atlas_hdf5"),
])
def test_refused_params_say_why(params, expected):
    with pytest.raises(ConfigError) as err:
        params_to_config(params)
    assert expected in str(err.value)


def test_several_gpus_split_deepcalos_batch():
    # Keras' multi_gpu_model cut each batch of 64 into 2 x 32: 32 per GPU, the same 64 per step
    cfg = deepscope.load_config(params_to_config({"n_gpus": 2, "batch_size": 64}))
    assert (cfg.train.accelerator, cfg.train.devices, cfg.train.batch_size) == ("gpu", 2, 32)


def test_learning_rate_params_map_onto_train():
    params = {"lr_finder": {"use": True, "scan_range": [1e-5, 1e-3], "epochs": 2, "scale": "log",
                            "prompt_for_input": True},
              "lr_schedule": {"name": "CLR", "range": [1e-4, 1e-3], "step_size_factor": 4,
                              "kwargs": {"mode": "exp_range"}},
              "auto_lr": False}
    t = deepscope.load_config(params_to_config(params)).train
    assert t.lr_finder.use and t.lr_finder.scan_range == (1e-5, 1e-3) and t.lr_finder.scale == "log"
    assert t.lr_finder.epochs == 2 and t.lr_finder.prompt_for_input and not t.lr_finder.use_suggestion
    assert t.lr_schedule.name == "CLR" and t.lr_schedule.range == (1e-4, 1e-3) and t.lr_schedule.step_size_factor == 4
    assert deepscope.load_config(params_to_config({"auto_lr": True})).train.auto_lr
    assert deepscope.load_config(params_to_config({})).train.lr_schedule is None


def test_learning_rate_params_errors_name_the_keys():
    with pytest.raises(ConfigError, match=r"train\.auto_lr is true but train\.optimizer\.config\.lr is set too"):
        ModelContainer({}, {"auto_lr": True, "optimizer": {"class_name": "Nadam", "config": {"lr": 1e-3}}})
    with pytest.raises(ConfigError, match=r"params\['lr_finder'\] \(train\.lr_finder\): prompt_for_input"):
        ModelContainer({}, {"lr_finder": {"prompt_for_input": True}})


def _deepcalo_data(rng, n):
    images = rng.normal(size=(n, 6, 6, 2)).astype(np.float32)  # channels last, as in Keras
    scalars = rng.normal(size=(n, 3)).astype(np.float32)
    return {"images": {"calo": images}, "scalars": scalars, "tracks": {},  # empty: no track net, as in DeepCalo
            "targets": images.sum((1, 2, 3)) + scalars[:, 0]}


def test_native_errors_also_name_the_params_key(tmp_path):
    data = {"train": _deepcalo_data(np.random.default_rng(0), 8), "val": _deepcalo_data(np.random.default_rng(1), 4)}
    with pytest.raises(ConfigError) as err:
        ModelContainer(data, {"cnn": {"n_init_filters": -1}}, {"log": str(tmp_path)})
    assert "params['cnn']['n_init_filters'] (model.cnn.n_init_filters):" in str(err.value)


@pytest.mark.slow
def test_train_and_evaluate_end_to_end(tmp_path):
    rng = np.random.default_rng(0)
    data = {"train": _deepcalo_data(rng, 48), "val": _deepcalo_data(rng, 16), "test": _deepcalo_data(rng, 16)}
    params = get_default_params()
    params.update({"epochs": 1, "batch_size": 16, "metrics": ["mae"], "optimizer": "adam",
                   "top": {"units": [8, 1], "activation": "relu"},
                   "cnn": {"n_init_filters": 4, "activation": "relu"}, "scalar_net": {"units": [4], "connect_to": ["top"]}})
    dirs = {"log": str(tmp_path / "logs"), "fig": "unused", "saved_models": "unused", "lr_finder": "unused"}
    mc = ModelContainer(data, params, dirs, verbose=False, overrides=["log.tensorboard=false"])
    result = mc.train()
    run = result.run_dir
    assert run.parent == tmp_path / "logs" and run.name.endswith("_1_epochs") and result.epochs == 1
    for rel in ("config.yaml", "checkpoints/last.ckpt", "figures/architecture.png", "predictions/test.npz"):
        assert (run / rel).is_file(), rel
    stored = deepscope.load_config(run / "config.yaml")
    assert stored.model.scalar_net.units == [4] and stored.train.restore_best_weights is False
    assert result.checkpoint.name == "last.ckpt"  # DeepCalo's default: evaluate with the last weights
    net = mc.get_model()
    state = torch.load(result.checkpoint, weights_only=True)["state_dict"]
    assert torch.equal(net.top.output.weight, state["net.top.output.weight"])  # the model holds the trained weights
    test = mc.evaluate()
    assert test["samples"] == 16 and set(test) >= {"loss", "mae"}
    assert test["loss"] == pytest.approx(result.metrics["test"]["loss"], rel=1e-5)
    assert mc.evaluate("val")["samples"] == 16
