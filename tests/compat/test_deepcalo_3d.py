"""DeepCalo's README 3D example: (N, H, W, C) images with ``cnn.conv_dim: 3``, through the dict API and the CLI.

The README's "Example of valid data" is (N, 14, 25, 2) images, 7 scalars, no tracks and one
target; with ``conv_dim: 3`` the CNN convolves over (14, 25, 2) with (5, 5, 2) kernels.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import yaml
from torch import nn

import deepscope
from deepscope.cli import main
from deepscope.compat import ModelContainer, get_default_params
from deepscope.compat.deepcalo import params_to_config
from deepscope.config import dump_yaml

N_POINTS = {"train": 24, "val": 8, "test": 8}


def _readme_data(seed=0):
    """DeepCalo's README example, with tiny sets: images (n, h, w, c) = (n, 14, 25, 2), 7 scalars."""
    rng = np.random.default_rng(seed)
    h, w, c = 14, 25, 2
    return {name: {"images": {"example_imgs": rng.standard_normal((n, h, w, c))},
                   "scalars": rng.standard_normal((n, 7)),
                   "tracks": {},  # empty, so track_net is not created
                   "targets": rng.standard_normal(n)}
            for name, n in N_POINTS.items()}


def _params(**extra):
    params = get_default_params()
    params["cnn"]["conv_dim"] = 3
    params.update(extra)
    return params


def _first_conv(net):
    return next(m for m in net.cnn.modules() if isinstance(m, (nn.Conv2d, nn.Conv3d)))


def test_conv_dim_3_and_tuple_kernels_map_through():
    params = _params()
    params["cnn"].update({"init_kernel_size": (5, 5, 2), "rest_kernel_size": (3, 3, 1), "init_strides": (1, 1, 1)})
    raw = params_to_config(params)
    cnn = raw["model"]["cnn"]
    assert cnn["conv_dim"] == 3 and cnn["init_kernel_size"] == [5, 5, 2] and cnn["rest_kernel_size"] == [3, 3, 1]
    cfg = deepscope.load_config(raw)
    assert cfg.model.cnn.conv_dim == 3 and cfg.model.cnn.init_strides == [1, 1, 1]
    assert yaml.safe_load(dump_yaml(cfg))["model"]["cnn"]["init_kernel_size"] == [5, 5, 2]


def test_readme_example_builds_a_3d_cnn_over_the_layers(tmp_path):
    mc = ModelContainer(_readme_data(), _params(), {"log": str(tmp_path)}, verbose=False)
    net = mc.get_model()
    conv = _first_conv(net)
    assert isinstance(conv, nn.Conv3d) and conv.in_channels == 1 and conv.kernel_size == (5, 5, 2)
    assert net.cnn.in_shape == (1, 14, 25, 2) and net.cnn.out_shape == (4, 14, 25, 2)
    x = torch.from_numpy(_readme_data()["test"]["images"]["example_imgs"][:2]).float().permute(0, 3, 1, 2)
    assert net(images={"example_imgs": x}).shape == (2, 1)


def test_a_3d_kernel_list_with_two_entries_names_the_params_key(tmp_path):
    params = _params()
    params["cnn"]["init_kernel_size"] = (5, 5)
    with pytest.raises(deepscope.ConfigError) as info:
        ModelContainer(_readme_data(), params, {"log": str(tmp_path)}, verbose=False)
    assert "params['cnn'] (model.cnn): init_kernel_size has 2 entries but conv_dim is 3" in str(info.value)


@pytest.mark.slow
def test_readme_3d_example_trains_and_evaluates(tmp_path):
    data = _readme_data()
    dirs = {"log": str(tmp_path / "logs"), "fig": "unused", "saved_models": "unused", "lr_finder": "unused"}
    mc = ModelContainer(data, _params(batch_size=8), dirs, verbose=False, overrides=["log.tensorboard=false"])
    result = mc.train()
    run = result.run_dir
    assert result.epochs == 1 and (run / "figures" / "architecture.png").is_file()
    assert deepscope.load_config(run / "config.yaml").model.cnn.conv_dim == 3
    summary = (run / "model_summary.txt").read_text()
    assert "LayersAsDepth" in summary and "(B, 1, 14, 25, 2)" in summary and "Conv3d" in summary
    test = mc.evaluate()
    assert test["samples"] == N_POINTS["test"] and np.isfinite(test["loss"])
    assert test["loss"] == pytest.approx(result.metrics["test"]["loss"], rel=1e-5)
    assert mc.evaluate("val")["samples"] == N_POINTS["val"]


@pytest.mark.slow
def test_readme_3d_example_as_a_yaml_config_through_the_cli(tmp_path, capsys):
    flat = {}
    for name, part in _readme_data().items():
        flat[f"{name}/images/example_imgs"] = part["images"]["example_imgs"]
        flat[f"{name}/scalars"] = part["scalars"]
        flat[f"{name}/targets"] = part["targets"]
    np.savez(tmp_path / "readme.npz", **flat)
    cfg = {
        "name": "readme-3d", "log": {"dir": str(tmp_path / "runs"), "progress_bar": "none", "tensorboard": False},
        "data": {"source": "npz", "path": str(tmp_path / "readme.npz"), "channels": "last"},
        "model": {"cnn": {"conv_dim": 3, "init_kernel_size": [5, 5, 2], "block_depths": [1, 1],
                          "downsampling": "avgpool", "activation": "relu"},
                  "top": {"units": [8, 1], "activation": "relu"}},
        "train": {"epochs": 1, "batch_size": 8, "loss": "mse", "optimizer": "adam"},
    }
    path = tmp_path / "readme-3d.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert main(["train", str(path)]) == 0
    run = tmp_path / "runs" / "readme-3d"
    summary = (run / "model_summary.txt").read_text()
    # block 1 downsamples (14, 25, 2) by (3, 3, 2): the layer dim counts like H and W
    assert "(B, 1, 14, 25, 2)" in summary and "AvgPool3d" in summary and "(B, 4, 4, 8, 1)" in summary
    assert main(["evaluate", str(run)]) == 0
    saved = json.loads((run / "evaluation" / "test_metrics.json").read_text())
    assert saved["samples"] == N_POINTS["test"] and np.isfinite(saved["loss"])
    assert "Traceback" not in capsys.readouterr().err
