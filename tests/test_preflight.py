"""deepscope.preflight: the checks train makes before its first step, without Lightning or data reads.

The verdicts themselves are tested through the CLI in test_bad_configs_pretrain.py; here: what is
imported, that every component key is built, and that a source's description gives the spec its
real data gives.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
import typing
from pathlib import Path

import numpy as np
import pytest
import torch
from pydantic import BaseModel

from deepscope import preflight
from deepscope.config import ExperimentConfig, dump_yaml, load_config
from deepscope.config.common import Component
from deepscope.data.prepare import describe_data, prepare_data
from deepscope.errors import CheckpointError, ConfigError, DataError
from deepscope.models.build import build_model

ROOT = Path(__file__).resolve().parents[1]
DIGITS = ROOT / "configs" / "digits.yaml"


def test_imports_torch_only_to_build_and_never_lightning(tmp_path):
    script = textwrap.dedent(f"""
        import json, sys
        from deepscope import preflight
        from deepscope.config import load_config
        heavy = lambda: sorted({{m.split(".")[0] for m in sys.modules}}
                               & {{"torch", "lightning", "pytorch_lightning", "torchmetrics"}})
        found = {{}}
        # in-memory arrays (nothing described) and named components without options: nothing to build
        preflight.check(load_config({{"model": {{"cnn": {{"activation": "relu", "normalization": "batch"}}}},
                                      "train": {{"optimizer": "adam", "loss": "mse"}}}}))
        found["light"] = heavy()
        preflight.check(load_config({str(DIGITS)!r}))  # digits are described: the model is built
        found["digits"] = heavy()
        try:  # the pretrained checks (the earlier run is missing)
            preflight.check(load_config({{"model": {{"pretrained_model": {{
                "use": True, "weights_path": "/nonexistent/run", "layers_to_load": ["cnn"]}}}}}}))
        except Exception as exc:
            found["pretrained"] = [type(exc).__name__, heavy()]
        print(json.dumps(found))
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    found = json.loads(proc.stdout.strip().splitlines()[-1])
    assert found == {"light": [], "digits": ["torch"], "pretrained": ["CheckpointError", ["torch"]]}


def test_the_resume_check_finds_the_run_folders_checkpoint(tmp_path):
    from deepscope.training.run import RunDir

    cfg = load_config({"name": "x", "log": {"dir": str(tmp_path)}})
    assert preflight.last_checkpoint(cfg) == RunDir(tmp_path / "x").last


def _component_fields(model: type[BaseModel], seen: set[type]) -> set[str]:
    """Names of the fields anywhere under ``model`` whose type holds a Component."""

    def leaves(annotation: typing.Any) -> typing.Iterator[typing.Any]:
        args = typing.get_args(annotation)
        if not args:
            yield annotation
        for arg in args:
            yield from leaves(arg)

    names: set[str] = set()
    seen.add(model)
    for name, info in model.model_fields.items():
        for leaf in leaves(info.annotation):
            if leaf is Component:
                names.add(name)
            elif isinstance(leaf, type) and issubclass(leaf, BaseModel) and leaf not in seen:
                names |= _component_fields(leaf, seen)
    return names


def test_every_component_key_of_the_schema_is_built():
    fields = _component_fields(ExperimentConfig, set())
    assert {"activation", "initialization", "optimizer", "kernel_constraint"} <= fields
    assert fields <= set(preflight.COMPONENT_FIELDS), fields - set(preflight.COMPONENT_FIELDS)


def test_components_are_found_with_their_dotted_keys():
    cfg = load_config({"model": {"top": {"layer_reg": {"bias_constraint": "non_neg"}}},
                       "train": {"optimizer": {"class_name": "sgd", "config": {"momentum": 0.9}}}})
    found = dict(preflight.components(cfg))
    assert found["model.top.layer_reg.bias_constraint"].class_name == "non_neg"
    assert found["train.optimizer"].config == {"momentum": 0.9}
    assert all(key.rsplit(".", 1)[-1] in preflight.COMPONENT_FIELDS for key in found)


def test_checks_leave_the_random_state_alone():
    cfg = load_config({"data": {"source": "sklearn_digits"}, "model": {"top": {"units": [8, 10]},
                       "cnn": {"initialization": {"class_name": "random_normal", "config": {"stddev": 0.1}}}},
                       "train": {"loss": "cross_entropy", "optimizer": {"class_name": "adam", "config": {"lr": 0.01}}}})
    torch.manual_seed(3)
    before = torch.get_rng_state()
    preflight.check(cfg)
    assert torch.equal(torch.get_rng_state(), before)


def test_one_problem_keeps_its_own_error_class(tmp_path):
    with pytest.raises(DataError, match="data file '.*missing.npz' not found"):
        preflight.check(load_config({"data": {"source": "npz", "path": str(tmp_path / "missing.npz")}}))
    with pytest.raises(CheckpointError, match="weights_path: '.*nowhere' not found"):
        preflight.check(load_config({"model": {"pretrained_model": {
            "use": True, "weights_path": str(tmp_path / "nowhere"), "layers_to_load": ["cnn"]}}}))


def test_several_problems_of_several_kinds_are_one_config_error(tmp_path):
    cfg = load_config({"data": {"source": "npz", "path": str(tmp_path / "missing.npz")},
                       "train": {"optimizer": {"class_name": "adam", "config": {"lrr": 1}}}})
    with pytest.raises(ConfigError) as info:
        preflight.check(cfg)
    problems = info.value.problems
    assert len(problems) == 2
    assert problems[0].startswith("data: data file '") and problems[1].startswith("train.optimizer.config.lrr:")


# --- a source's description gives the spec of its real data -------------------------------------------


def _same_spec(config: dict) -> None:
    cfg = load_config(config)
    described = describe_data(cfg)
    assert described is not None
    assert described == prepare_data(cfg).spec


@pytest.mark.parametrize("data, loss", [
    ({"n_samples": 20}, "cross_entropy"),
    ({}, "cross_entropy"),
    ({"one_hot": True, "n_samples": 50}, "categorical_crossentropy"),
    ({"n_samples": 40}, "mse"),
])
def test_digits_description(data, loss):
    final = "softmax" if loss == "categorical_crossentropy" else None
    _same_spec({"data": {"source": "sklearn_digits", **data}, "train": {"loss": loss},
                "model": {"top": {"units": [10], "final_activation": final}}})


@pytest.mark.parametrize("n_samples, end", [(None, 1797), (None, 1798), (40, 40), (40, 41)])
def test_digits_description_checks_the_split_against_the_real_sample_count(n_samples, end):
    cfg = load_config({"data": {"source": "sklearn_digits", "n_samples": n_samples,
                                "split": {"train": f"0:{end - 10}", "val": f"{end - 10}:{end}", "test": None}},
                       "train": {"loss": "cross_entropy"}, "model": {"top": {"units": [10]}}})
    verdicts = []
    for find in (describe_data, lambda c: prepare_data(c).spec):
        try:
            verdicts.append(find(cfg))
        except DataError as exc:
            verdicts.append(str(exc))
    assert verdicts[0] == verdicts[1]
    assert isinstance(verdicts[0], str) == (end > (n_samples or 1797))


@pytest.mark.parametrize("data", [
    {},
    {"images": ["em_fine"], "gate_images": False, "tracks": [], "scalars": ["p_eta", "p_e"]},
    {"images": [], "target": "correction", "multiply_output_with": False, "options": {"max_tracks": 3}},
])
def test_calorimeter_description(data):
    options = {"accordion_calibration": 1.0, **data.pop("options", {})}  # no 20 000-event calibration here
    _same_spec({"data": {"source": "calorimeter", "n_train": 20, "n_val": 5, "n_test": 0, "options": options, **data},
                "model": {"top": {"units": [1]}}})


def test_npz_description_of_a_pool_with_labels(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "pool.npz"
    np.savez(path, **{"images/calo": rng.normal(size=(30, 6, 5, 2)).astype(np.float32),
                      "scalars": rng.normal(size=(30, 3)), "targets": rng.integers(1, 4, size=30)})
    _same_spec({"data": {"source": "npz", "path": str(path)}, "train": {"loss": "cross_entropy"},
                "model": {"top": {"units": [4]}}})


def test_npz_description_of_split_sets(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "sets.npz"
    arrays = {}
    for name, n in (("train", 20), ("val", 6)):
        arrays.update({f"{name}/images/calo": rng.normal(size=(n, 2, 4, 4)),
                       f"{name}/tracks": rng.normal(size=(n, 5, 3)),
                       f"{name}/targets": np.eye(3, dtype=np.float32)[rng.integers(0, 3, size=n)],
                       f"{name}/sample_weights": np.ones(n)})
    np.savez_compressed(path, **arrays)
    _same_spec({"data": {"source": "npz", "path": str(path), "channels": "first"},
                "train": {"loss": "bce_with_logits"}, "model": {"top": {"units": [3]}}})


def test_npz_whose_sample_counts_differ_is_left_to_the_loader(tmp_path):
    path = tmp_path / "odd.npz"
    np.savez(path, scalars=np.zeros((5, 2)), targets=np.zeros(4))
    cfg = load_config({"data": {"source": "npz", "path": str(path)}})
    assert describe_data(cfg) is None
    with pytest.raises(DataError, match="'targets' has 4 samples but 'scalars' has 5"):
        prepare_data(cfg)


# --- pretrained_model: a new run loads (every check), a resumed one only freezes -------------------------


def _digits_with_pretrained(tmp_path, layers):
    model = {"cnn": {"n_init_filters": 4}, "top": {"units": [8, 10]}}
    earlier = load_config({"name": "old", "data": {"source": "sklearn_digits"}, "model": model,
                           "train": {"loss": "cross_entropy"}})
    spec = describe_data(earlier)
    run = tmp_path / "old"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.yaml").write_text(dump_yaml(earlier))
    (run / "input_spec.json").write_text(spec.to_json())
    net = build_model(earlier.model, spec)
    torch.save({"state_dict": {f"net.{k}": v for k, v in net.state_dict().items()}}, run / "checkpoints" / "best.ckpt")
    return load_config({"name": "new", "data": {"source": "sklearn_digits"}, "log": {"dir": str(tmp_path / "runs")},
                        "model": {**model, "pretrained_model": {"use": True, "weights_path": str(run),
                                                                "layers_to_load": layers}},
                        "train": {"loss": "cross_entropy"}})


def test_pretrained_layer_names_are_checked_against_both_models(tmp_path):
    preflight.check(_digits_with_pretrained(tmp_path, ["cnn", "top"]))
    with pytest.raises(ConfigError, match="layers_to_load: 'cnnn' is not a submodel.*did you mean 'cnn'"):
        preflight.check(_digits_with_pretrained(tmp_path / "typo", ["cnnn"]))


def test_a_resumed_run_does_not_need_the_earlier_run_again(tmp_path):
    cfg = _digits_with_pretrained(tmp_path, ["cnn"])
    last = tmp_path / "runs" / "new" / "checkpoints" / "last.ckpt"
    last.parent.mkdir(parents=True)
    last.write_bytes(b"")  # train resumes from it: the loaded weights are in it
    shutil.rmtree(tmp_path / "old")
    preflight.check(cfg)
    last.unlink()  # a new run loads them again, from a folder that is gone
    with pytest.raises(CheckpointError, match="weights_path: '.*old' not found"):
        preflight.check(cfg)
