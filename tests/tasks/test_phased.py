"""The phased family: one config trained as several runs (each view alone, the combined model with their
CNNs frozen, then fine-tuned), each a resumable run folder; finished phases are not trained again."""

from __future__ import annotations

import json

import pytest
import torch
import yaml

from deepscope.cli import main
from deepscope.config import load_config
from deepscope.errors import CheckpointError, ConfigError
from deepscope.tasks import family_name
from deepscope.training.experiment import Experiment, evaluate

pytestmark = pytest.mark.xdist_group("phased")


def _config(tmp, **changes):
    cfg = {"name": "ph", "seed": 0,
           "data": {"source": "track_detector", "path": str(tmp / "events.root"), "n_events": 200,
                    "target": {"branch": "n_tracks", "classes": [1, 2, 3, 4]}, "split": {"val": 0.2, "test": 0.2},
                    "standardize": {"images": "none"}},
           "model": {"architecture": "multiview",
                     "cnn": {"n_init_filters": 4, "block_depths": [1], "downsampling": "maxpool"},
                     "top": {"units": [8, 4], "activation": "relu"}},
           "train": {"epochs": 1, "batch_size": 32, "loss": "cross_entropy", "metrics": ["accuracy"], "lr": 0.001},
           "log": {"dir": str(tmp / "runs"), "figures": False, "progress_bar": "none"},
           "phases": [{"name": "views", "each_view": True},
                      {"name": "head", "start_from": "views", "freeze": True},
                      {"name": "finetune", "start_from": "head", "train": {"lr": 0.0001}}]}
    cfg.update(changes)
    return cfg


def _net_state(run):
    state = torch.load(run / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=True)["state_dict"]
    return {k.removeprefix("net."): v for k, v in state.items() if k.startswith("net.")}


@pytest.fixture(scope="module")
def phased(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("phased")
    result = Experiment(_config(tmp)).train()
    return tmp, result


def test_a_config_with_phases_is_the_phased_family(tmp_path):
    assert family_name(load_config(_config(tmp_path))) == "phased"
    no_phases = _config(tmp_path)
    del no_phases["phases"]
    assert family_name(load_config(no_phases)) == "supervised"


@pytest.mark.parametrize(("phases", "expected"), [
    ([{"name": "views", "each_view": True}, {"name": "head", "start_from": "veiws"}],
     "phases[1].start_from: 'veiws' is no phase: it names an earlier phase; did you mean 'views'? (earlier "
     "phases: views)"),
    ([{"name": "head", "start_from": "views"}, {"name": "views", "each_view": True}],
     "phases[0].start_from: 'views' is a later phase"),
    ([{"name": "a"}, {"name": "a"}], "phases[1].name: 'a' is also phases[0]'s name"),
    ([{"name": "a", "freeze": True}], "phases[0]: load and freeze apply to what is loaded from start_from"),
    ([{"name": "views", "each_view": True}, {"name": "head", "start_from": "views", "train": {"lrr": 0.1}}],
     "phases[1] (head): "),
])
def test_phase_mistakes_name_the_phase(tmp_path, phases, expected):
    with pytest.raises(ConfigError) as info:
        load_config(_config(tmp_path, phases=phases))
    assert expected in str(info.value)
    if "lrr" in str(phases):
        assert "train.lrr" in str(info.value) and "lr" in str(info.value)


def test_each_view_needs_views_and_a_multiview_model(tmp_path):
    cfg = _config(tmp_path, data={"source": "sklearn_digits"})
    cfg["train"]["loss"] = "cross_entropy"
    with pytest.raises(ConfigError, match="each_view needs data with named views"):
        load_config(cfg)
    cfg = _config(tmp_path, model={"architecture": "vgg"})
    with pytest.raises(ConfigError, match="model.architecture is 'vgg': use multiview"):
        load_config(cfg)


def test_every_phase_is_a_run_folder_and_the_combined_runs_record_their_sources(phased):
    tmp, result = phased
    root = tmp / "runs" / "ph"
    runs = ["views-top", "views-side", "views-front", "head", "finetune"]
    assert sorted(result.phases) == sorted(runs)
    for name in runs:
        assert (root / name / "config.yaml").is_file() and (root / name / "final_metrics.json").is_file()
    assert result.run_dir == root / "finetune"
    head = yaml.safe_load((root / "head" / "config.yaml").read_text())
    loaded = {e["weights_path"]: (e["layers_to_load"], e["freeze_loaded_layers"]) for e in head["model"]["pretrained"]}
    assert loaded == {str(root / f"views-{v}"): ([f"views.{v}"], True) for v in ("top", "side", "front")}
    finetune = yaml.safe_load((root / "finetune" / "config.yaml").read_text())
    assert [(e["weights_path"], sorted(e["layers_to_load"]), e["freeze_loaded_layers"])
            for e in finetune["model"]["pretrained"]] == [(str(root / "head"), ["top", "views"], False)]
    assert finetune["train"]["lr"] == 0.0001 and head["train"]["lr"] == 0.001
    # a view's run sees that view alone
    single = yaml.safe_load((root / "views-side" / "config.yaml").read_text())
    assert list(single["data"]["views"]) == ["side"]
    record = json.loads((root / "phases.json").read_text())
    assert [p["name"] for p in record["phases"]] == ["views", "head", "finetune"]
    assert record["phases"][1]["runs"][0]["built_from"] == [str(root / f"views-{v}") for v in ("top", "side", "front")]
    assert set(record["phases"][2]["runs"][0]["metrics"]) == {"val", "test"}


def test_frozen_views_keep_the_weights_of_their_own_runs(phased):
    tmp, _ = phased
    root = tmp / "runs" / "ph"
    head = _net_state(root / "head")
    for view in ("top", "side", "front"):
        alone = _net_state(root / f"views-{view}")
        for key, value in alone.items():
            if key.startswith(f"views.{view}.") and "running_" not in key and "num_batches" not in key:
                assert torch.equal(head[key], value), key
    # the head was trained, and fine-tuning changed the views too
    finetune = _net_state(root / "finetune")
    assert any(not torch.equal(finetune[k], head[k]) for k in head if k.startswith("views.") and "weight" in k)


def test_finished_phases_are_not_trained_again(phased, caplog):
    tmp, _ = phased
    root = tmp / "runs" / "ph"
    stamps = {p: p.stat().st_mtime_ns for p in root.glob("*/checkpoints/*.ckpt")}
    (root / "finetune" / "final_metrics.json").unlink()  # as if it were stopped before its last write
    with caplog.at_level("INFO", logger="deepscope"):
        result = Experiment(_config(tmp)).train()
    assert {p: p.stat().st_mtime_ns for p in root.glob("*/checkpoints/*.ckpt")} == stamps
    assert "head finished earlier; not trained again" in caplog.text.replace(str(root / "head"), "head")
    assert (root / "finetune" / "final_metrics.json").is_file() and set(result.metrics) == {"val", "test"}


def test_a_changed_phase_is_refused_with_the_diff(phased):
    tmp, _ = phased
    cfg = _config(tmp)
    cfg["phases"][2]["train"] = {"lr": 0.01}
    with pytest.raises(ConfigError, match=r"train.lr: 0.0001 -> 0.01"):
        Experiment(cfg).train()


def test_the_experiment_folder_points_at_its_runs(phased, capsys):
    tmp, _ = phased
    root = tmp / "runs" / "ph"
    with pytest.raises(CheckpointError, match="holds the runs of a phased experiment; give one of them"):
        evaluate(root)
    assert main(["evaluate", str(root / "views-top")]) == 0


def test_several_processes_need_an_external_launcher(tmp_path, monkeypatch):
    for key in ("SLURM_PROCID", "TORCHELASTIC_RUN_ID"):
        monkeypatch.delenv(key, raising=False)
    cfg = _config(tmp_path)
    cfg["train"].update({"accelerator": "cpu", "devices": 2, "strategy": "ddp"})
    with pytest.raises(ConfigError, match="training on 2 processes needs them started by srun or torchrun"):
        Experiment(cfg).train()
    assert not (tmp_path / "runs").exists()
