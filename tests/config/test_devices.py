"""The device keys of ``train``: devices, strategy, num_nodes, sync_batchnorm and DeepCalo's n_gpus."""

from __future__ import annotations

import pytest
import yaml

from deepscope.config import dump_yaml, load_config
from deepscope.errors import ConfigError


def _train(**keys):
    return load_config({"train": keys}).train


def test_defaults_are_one_device():
    t = _train()
    assert (t.devices, t.strategy, t.num_nodes, t.sync_batchnorm, t.n_gpus) == (1, "auto", 1, True, None)


@pytest.mark.parametrize("devices", [1, 4, "auto", [0], [1, 3]])
def test_device_forms(devices):
    assert _train(accelerator="gpu", devices=devices).devices == devices


@pytest.mark.parametrize("devices", [0, -1, True, [], [0, 0], [-1], "all", "2", 1.5, [0.5]])
def test_bad_devices_get_one_message(devices):
    with pytest.raises(ConfigError) as err:
        _train(devices=devices)
    message = str(err.value)
    assert message.count("train.devices") == 1
    assert ("each device index may appear once" if devices == [0, 0] else
            "expected a number of devices (1 or more), a list of GPU indices such as [0, 1], or 'auto'") in message


@pytest.mark.parametrize("strategy", ["auto", "ddp", "ddp_spawn", "ddp_find_unused_parameters_true"])
def test_strategies(strategy):
    assert _train(strategy=strategy, devices=2, num_nodes=3).strategy == strategy


def test_unknown_strategy_suggests():
    with pytest.raises(ConfigError, match="train.strategy: found 'dpp'.*did you mean 'ddp'"):
        _train(strategy="dpp")


@pytest.mark.parametrize("n_gpus, accelerator, devices", [(0, "cpu", 1), (1, "gpu", 1), (4, "gpu", 4)])
def test_n_gpus_is_read_as_accelerator_and_devices(n_gpus, accelerator, devices):
    t = _train(n_gpus=n_gpus)
    assert (t.accelerator, t.devices, t.n_gpus) == (accelerator, devices, None)


def test_resolved_n_gpus_config_loads_again():
    # the run folder stores the resolved config, which a resume reads again
    cfg = load_config({"train": {"n_gpus": 2}})
    again = load_config(yaml.safe_load(dump_yaml(cfg)))
    assert (again.train.accelerator, again.train.devices, again.train.n_gpus) == ("gpu", 2, None)


@pytest.mark.parametrize("other, shown", [
    ({"devices": 2}, "train.devices (2)"),
    ({"accelerator": "cpu"}, "train.accelerator ('cpu')"),
    ({"accelerator": "gpu", "devices": 2}, "train.accelerator ('gpu') and train.devices (2)"),
])
def test_n_gpus_with_devices_or_accelerator_is_one_error(other, shown):
    with pytest.raises(ConfigError) as err:
        _train(n_gpus=2, **other)
    assert str(err.value).count("\n  - ") == 1
    assert f"train.n_gpus (2) is set together with {shown}" in str(err.value)


def test_n_gpus_must_be_a_count():
    with pytest.raises(ConfigError, match="train.n_gpus: found -1"):
        _train(n_gpus=-1)


def test_device_list_needs_gpus():
    with pytest.raises(ConfigError, match=r"train.devices \[0, 1\] lists GPU indices but train.accelerator is "
                                          r"'cpu': give a count instead \(devices: 2\), or accelerator: gpu"):
        _train(accelerator="cpu", devices=[0, 1])
    assert _train(accelerator="auto", devices=[0, 1]).devices == [0, 1]


def test_ddp_spawn_with_loader_workers_is_fine():
    cfg = load_config({"data": {"source": "sklearn_digits", "num_workers": 2},
                       "train": {"strategy": "ddp_spawn", "devices": 2, "accelerator": "cpu"}})
    assert cfg.train.strategy == "ddp_spawn" and cfg.data.num_workers == 2


@pytest.mark.parametrize("key, value", [("num_nodes", 0), ("sync_batchnorm", "maybe")])
def test_other_bad_values(key, value):
    with pytest.raises(ConfigError, match=f"train.{key}: found"):
        _train(**{key: value})
