"""Loading submodels of an earlier run (DeepCalo's pretrained_model) and freezing them."""

from __future__ import annotations

import pytest
import torch

from deepscope.config import dump_yaml, load_config
from deepscope.config.model import PretrainedModelConfig
from deepscope.data.spec import ImageSpec, InputSpec
from deepscope.errors import CheckpointError, ConfigError
from deepscope.models.build import build_model
from deepscope.training.pretrained import available_names, freeze_pretrained, load_pretrained

SPEC = InputSpec(images={"calo": ImageSpec(1, (8, 8))}, scalars=3)
MODEL = {"cnn": {"n_init_filters": 4, "block_depths": [1, 1]}, "top": {"units": [8, 1]},
         "scalar_net": {"units": [4]}}


def _cfg(model=MODEL):
    return load_config({"name": "old", "model": model, "train": {"loss": "mse"}})


def _net(model=MODEL, spec=SPEC, seed=0):
    torch.manual_seed(seed)
    return build_model(_cfg(model).model, spec)


def _save(net, path):
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"epoch": 0, "state_dict": {f"net.{k}": v for k, v in net.state_dict().items()}}, path)


def _run(tmp_path, model=MODEL, spec=SPEC, seed=1, name="old"):
    """A minimal earlier run folder: config.yaml, input_spec.json, checkpoints/best.ckpt."""
    run = tmp_path / name
    run.mkdir()
    (run / "config.yaml").write_text(dump_yaml(_cfg(model)))
    (run / "input_spec.json").write_text(spec.to_json())
    old = _net(model, spec, seed)
    _save(old, run / "checkpoints" / "best.ckpt")
    return run, old


def _same(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def _pre(**kw):
    return PretrainedModelConfig(use=True, **kw)


def test_named_submodels_are_copied_and_frozen_per_name(tmp_path):
    run, old = _run(tmp_path)
    net = _net(seed=2)
    before = {k: v.clone() for k, v in net.scalar_net.state_dict().items()}
    lines = load_pretrained(net, _pre(weights_path=run, layers_to_load=["cnn", "top"],
                                      freeze_loaded_layers=[True, False]), SPEC)
    assert _same(net.cnn, old.cnn) and _same(net.top, old.top)
    assert all(torch.equal(v, before[k]) for k, v in net.scalar_net.state_dict().items())  # not named: untouched
    assert all(not p.requires_grad for p in net.cnn.parameters())
    assert all(p.requires_grad for p in net.top.parameters()) and all(p.requires_grad for p in net.scalar_net.parameters())
    assert any("loaded 'cnn'" in line and "best.ckpt" in line for line in lines)
    assert any("froze 'cnn'" in line for line in lines) and not any("froze 'top'" in line for line in lines)


def test_frozen_parameters_do_not_change_when_training(tmp_path):
    run, _ = _run(tmp_path)
    net = _net(seed=2)
    load_pretrained(net, _pre(weights_path=run, layers_to_load=["cnn"], freeze_loaded_layers=True), SPEC)
    frozen = {k: v.clone() for k, v in net.cnn.state_dict().items() if "weight" in k}
    top = net.top.output.weight.clone()
    opt = torch.optim.SGD([p for p in net.parameters() if p.requires_grad], lr=0.1)
    out = net(images={"calo": torch.randn(4, 1, 8, 8)}, scalars=torch.randn(4, 3))
    out.pow(2).mean().backward()
    opt.step()
    assert all(torch.equal(net.cnn.state_dict()[k], v) for k, v in frozen.items())
    assert not torch.equal(net.top.output.weight, top)


def test_dotted_layer_names_and_checkpoint_files(tmp_path):
    run, old = _run(tmp_path)
    _save(_net(seed=5), run / "checkpoints" / "last.ckpt")
    net = _net(seed=2)
    load_pretrained(net, _pre(weights_path=run / "checkpoints" / "last.ckpt", layers_to_load=["cnn.blocks.1"]), SPEC)
    assert _same(net.cnn.blocks[1], _net(seed=5).cnn.blocks[1])  # the file named, not best.ckpt
    assert not _same(net.cnn.blocks[0], old.cnn.blocks[0])
    load_pretrained(net, _pre(weights_path=run, layers_to_load=["cnn.blocks.1"]), SPEC)
    assert _same(net.cnn.blocks[1], old.cnn.blocks[1])  # a folder means best.ckpt


def test_unknown_name_lists_what_both_models_have(tmp_path):
    run, _ = _run(tmp_path)
    with pytest.raises(ConfigError) as err:
        load_pretrained(_net(), _pre(weights_path=run, layers_to_load=["cnnn"]), SPEC)
    msg = str(err.value)
    assert "model.pretrained_model.layers_to_load: 'cnnn'" in msg and "did you mean 'cnn'?" in msg
    listed = msg.split("available in both: ")[1].rstrip(")").split(", ")
    assert {"cnn", "cnn.blocks", "scalar_net", "scalar_net.layers", "top", "top.output"} <= set(listed)
    assert not [name for name in listed if name.count(".") > 1]  # submodels and one level below


def test_name_missing_in_one_model_says_which(tmp_path):
    no_scalars = InputSpec(images={"calo": ImageSpec(1, (8, 8))})
    run, _ = _run(tmp_path, spec=no_scalars)
    with pytest.raises(ConfigError, match="'scalar_net' is not a submodel or layer of the pretrained model"):
        load_pretrained(_net(), _pre(weights_path=run, layers_to_load=["scalar_net"]), SPEC)


def test_shape_mismatch_lists_the_differing_tensors(tmp_path):
    run, _ = _run(tmp_path, model={**MODEL, "cnn": {"n_init_filters": 8, "block_depths": [1, 1]}})
    net = _net()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    with pytest.raises(CheckpointError) as err:
        load_pretrained(net, _pre(weights_path=run, layers_to_load=["scalar_net", "cnn"]), SPEC)
    msg = str(err.value)
    assert "cnn.blocks.0.0.conv" in msg and "pretrained (8, 1, 5, 5), current (4, 1, 5, 5)" in msg
    assert all(torch.equal(v, before[k]) for k, v in net.state_dict().items())  # nothing copied


def test_missing_and_corrupt_files_name_the_path(tmp_path):
    with pytest.raises(CheckpointError, match="nowhere"):
        load_pretrained(_net(), _pre(weights_path=tmp_path / "nowhere", layers_to_load=["cnn"]), SPEC)
    run, _ = _run(tmp_path)
    (run / "checkpoints" / "best.ckpt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="best.ckpt' cannot be read"):
        load_pretrained(_net(), _pre(weights_path=run, layers_to_load=["cnn"]), SPEC)
    (run / "checkpoints" / "best.ckpt").unlink()
    with pytest.raises(CheckpointError, match="has no checkpoint"):
        load_pretrained(_net(), _pre(weights_path=run, layers_to_load=["cnn"]), SPEC)
    (run / "config.yaml").write_text("model: {cnn: {n_init_filters: -1}}\n")
    _save(_net(), run / "checkpoints" / "best.ckpt")
    with pytest.raises(CheckpointError, match="config.yaml' is not valid"):
        load_pretrained(_net(), _pre(weights_path=run, layers_to_load=["cnn"]), SPEC)


def test_params_path_names_a_config_elsewhere(tmp_path):
    run, old = _run(tmp_path)
    moved = tmp_path / "elsewhere.yaml"
    (run / "config.yaml").rename(moved)
    net = _net(seed=2)
    with pytest.raises(CheckpointError, match="config.yaml' not found"):
        load_pretrained(net, _pre(weights_path=run, layers_to_load=["top"]), SPEC)
    load_pretrained(net, _pre(weights_path=run, params_path=moved, layers_to_load=["top"]), SPEC)
    assert _same(net.top, old.top)


def test_nothing_happens_when_not_used(tmp_path):
    net = _net()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    assert load_pretrained(net, PretrainedModelConfig(weights_path=tmp_path / "nowhere"), SPEC) == []
    assert all(torch.equal(v, before[k]) for k, v in net.state_dict().items())
    names = available_names(net)
    assert {"cnn", "cnn.blocks", "top", "top.output"} <= set(names) and "cnn.blocks.0" not in names


def test_freezing_again_on_resume_needs_no_files():
    net = _net()
    cfg = _pre(weights_path="gone", layers_to_load=["cnn", "top.output"], freeze_loaded_layers=[False, True])
    lines = freeze_pretrained(net, cfg)
    assert lines == [f"froze 'top.output': its {sum(p.numel() for p in net.top.output.parameters()):,} parameters "
                     "are not trained"]
    assert not net.top.output.weight.requires_grad and all(p.requires_grad for p in net.cnn.parameters())
    with pytest.raises(ConfigError, match="did you mean 'top'"):
        freeze_pretrained(net, _pre(weights_path="gone", layers_to_load=["tpo"], freeze_loaded_layers=True))
