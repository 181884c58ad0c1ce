"""Precision, torch.compile, channels-last memory and determinism: checked early, applied in place."""

from __future__ import annotations

import copy
import csv
import math

import pytest
import torch

import deepscope
from deepscope.config import load_config
from deepscope.data.spec import ImageSpec, InputSpec
from deepscope.errors import ConfigError
from deepscope.evaluation.predict import load_net_weights
from deepscope.models.build import build_model
from deepscope.training import performance
from deepscope.training.performance import (compile_net, convert_channels_last, images_channels_last,
                                            set_deterministic_env, use_channels_last)
from tests.conftest import small_config


def _train(runs_dir, **train):
    return small_config(runs_dir, train={"epochs": 1, "batch_size": 32, "loss": "cross_entropy",
                                         "metrics": ["accuracy"], "optimizer": "adam", **train})


def _net(spatial):
    cfg = load_config({"model": {"cnn": {"n_init_filters": 2, "block_depths": [1, 1]}, "top": {"units": [4, 3]},
                                 "scalar_net": {"units": [4]}},
                       "train": {"loss": "mse"}})
    spec = InputSpec(images={"calo": ImageSpec(2, spatial)}, scalars=3, target_shape=(3,))
    return build_model(cfg.model, spec, "mse").eval()


def _inputs(spatial, batch=5):
    gen = torch.Generator().manual_seed(0)
    return {"images": {"calo": torch.randn(batch, 2, *spatial, generator=gen)},
            "scalars": torch.randn(batch, 3, generator=gen)}


# --- precision ---------------------------------------------------------------------------------------


def test_fp16_mixed_on_a_cpu_is_refused_before_anything_is_written(runs_dir):
    with pytest.raises(ConfigError) as err:
        deepscope.train(_train(runs_dir, precision="16-mixed", accelerator="cpu"))
    msg = str(err.value)
    assert "train.precision: '16-mixed' needs a GPU" in msg and "'bf16-mixed'" in msg and "train.accelerator" in msg
    assert not runs_dir.exists()


@pytest.mark.slow
@pytest.mark.parametrize("precision, dtype", [("bf16-mixed", torch.float32), ("64", torch.float64)])
def test_bf16_mixed_and_float64_train_on_a_cpu(runs_dir, precision, dtype):
    result = deepscope.train(_train(runs_dir, precision=precision, accelerator="cpu", epochs=2))
    ckpt = torch.load(result.run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    assert {v.dtype for v in ckpt["state_dict"].values() if v.is_floating_point()} == {dtype}
    with open(result.run_dir / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2
    for key in ("train_loss", "val_loss", "train_accuracy", "val_accuracy"):
        assert all(math.isfinite(float(r[key])) for r in rows), key
    assert all(math.isfinite(v) for split in result.metrics.values() for v in split.values())


# --- compile -----------------------------------------------------------------------------------------


def test_unknown_compile_backend_is_refused_with_the_available_ones(runs_dir):
    with pytest.raises(ConfigError) as err:
        deepscope.train(_train(runs_dir, compile={"backend": "eagr"}))
    msg = str(err.value)
    assert "train.compile.backend: unknown backend 'eagr'; did you mean 'eager'?" in msg and "inductor" in msg
    assert not runs_dir.exists()


def test_compiling_in_place_keeps_state_dict_keys_and_outputs():
    net = _net((6, 6))
    plain = copy.deepcopy(net)
    compile_net(net, load_config({"train": {"compile": {"backend": "eager"}}}).train.compile)
    assert list(net.state_dict()) == list(plain.state_dict())  # no _orig_mod. prefix
    x = _inputs((6, 6))
    torch.testing.assert_close(net(**x), plain(**x))
    compile_net(plain, None)  # off: nothing happens
    assert list(plain.state_dict()) == list(net.state_dict())


# --- channels_last -----------------------------------------------------------------------------------


@pytest.mark.parametrize("spatial", [(6, 6), (4, 6, 6)], ids=["2d", "3d"])
def test_channels_last_gives_the_same_outputs(spatial):
    net = _net(spatial)
    converted = copy.deepcopy(net)
    assert convert_channels_last(converted) > 0
    fmt = torch.channels_last if len(spatial) == 2 else torch.channels_last_3d
    kernels = [p for p in converted.parameters() if p.dim() == len(spatial) + 2]
    assert kernels and all(p.is_contiguous(memory_format=fmt) for p in kernels)
    x = _inputs(spatial)
    moved = images_channels_last(x)
    assert moved["images"]["calo"].is_contiguous(memory_format=fmt)
    assert moved["scalars"] is x["scalars"]  # only images change
    torch.testing.assert_close(converted(**moved), net(**x), rtol=1e-5, atol=1e-6)
    # the weights are the same numbers: they load into a plain net
    plain = _net(spatial)
    plain.load_state_dict(converted.state_dict())
    torch.testing.assert_close(plain(**x), net(**x), rtol=1e-5, atol=1e-6)


def test_channels_last_auto_only_on_a_gpu_with_convs():
    conv_net = _net((6, 6))
    dense_net = torch.nn.Linear(3, 2)
    assert not use_channels_last("auto", "cpu", conv_net)
    assert use_channels_last("auto", "cuda", conv_net)
    assert not use_channels_last("auto", "cuda", dense_net)
    assert use_channels_last(True, "cpu", conv_net)
    assert not use_channels_last(False, "cuda", conv_net)


@pytest.mark.slow
def test_compiled_channels_last_run_trains_and_its_checkpoint_loads_into_a_plain_net(runs_dir):
    result = deepscope.train(_train(runs_dir, compile={"backend": "eager"}, channels_last=True, epochs=2))
    assert all(math.isfinite(v) for v in result.metrics["test"].values())
    stored = deepscope.load_config(result.run_dir / "config.yaml").train
    assert stored.compile.backend == "eager" and stored.channels_last is True
    cfg = deepscope.load_config(result.run_dir / "config.yaml")
    plain = build_model(cfg.model, InputSpec.load(result.run_dir / "input_spec.json"))
    load_net_weights(plain, result.run_dir / "checkpoints" / "last.ckpt")  # keys without _orig_mod.
    metrics = deepscope.evaluate(result.run_dir)
    assert metrics["accuracy"] == pytest.approx(result.metrics["test"]["accuracy"])


# --- deterministic -----------------------------------------------------------------------------------


def test_deterministic_sets_the_cublas_workspace(monkeypatch):
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    set_deterministic_env(False)
    assert "CUBLAS_WORKSPACE_CONFIG" not in performance.os.environ
    set_deterministic_env(True)
    assert performance.os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":16:8")  # the other reproducible setting is kept
    set_deterministic_env(True)
    assert performance.os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":16:8"


@pytest.mark.slow
def test_deterministic_runs_with_one_seed_give_identical_weights(runs_dir):
    weights = []
    try:
        for name in ("a", "b"):
            cfg = _train(runs_dir, deterministic=True, epochs=2)
            cfg["name"] = name
            cfg["seed"] = 3
            result = deepscope.train(cfg)
            weights.append(torch.load(result.run_dir / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"])
    finally:
        torch.use_deterministic_algorithms(False)  # Lightning leaves it on for the process
    assert list(weights[0]) == list(weights[1])
    for key in weights[0]:
        assert torch.equal(weights[0][key], weights[1][key]), key
