"""``deepscope export --format onnx|torchscript|exported-program``: a tiny run of each kind of model (DeepCalo
images + scalars + tracks, a 3D U-Net deconvolver, a registration net, a multiview net) written, loaded back
and run on a batch of another size than the traced one; raw inputs standardized with numpy from the metadata
alone give the run's own predictions. User mistakes give one message and exit code 2."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from deepscope.cli import build_parser, main
from deepscope.export import export_model, load_model
from deepscope.export_formats import FORMATS, ExportError, read_metadata
from deepscope.training.experiment import Experiment, _load_run

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("export_formats")]

LOG = {"progress_bar": "none", "tensorboard": False, "figures": False}


def _calo_split(rng, n):
    images = rng.normal(1.0, 2.0, size=(n, 8, 8, 1)).astype(np.float32)
    scalars = rng.normal(3.0, 0.5, size=(n, 3)).astype(np.float32)
    tracks = rng.normal(-1.0, 2.0, size=(n, 4, 2)).astype(np.float32)
    tracks[:, 2:] = 0.0  # padding
    return {"images": {"calo": images}, "scalars": scalars, "tracks": tracks,
            "targets": 10.0 + images.sum((1, 2, 3)) + scalars[:, 0]}


def _cube_split(rng, n):
    dirty = rng.normal(2.0, 3.0, size=(n, 8, 8, 8, 1)).astype(np.float32)
    return {"images": {"dirty": dirty}, "targets": np.moveaxis(dirty, -1, 1) * 0.5}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Four tiny trained runs (a few steps each): name -> run folder."""
    import deepscope

    tmp = tmp_path_factory.mktemp("export_formats")
    log = {**LOG, "dir": str(tmp / "runs")}
    rng = np.random.default_rng(0)
    deepscope.train({"name": "calo", "log": log, "data": {"standardize": {"targets": True}},
                     "model": {"cnn": {"n_init_filters": 4, "globalavgpool": True}, "scalar_net": {"units": [4]},
                               "track_net": {"phi_units": [4], "rho_units": [4]}, "top": {"units": [8, 1]}},
                     "train": {"epochs": 1, "batch_size": 16, "loss": "mse", "metrics": ["mae"]}},
                    data={split: _calo_split(rng, n) for split, n in (("train", 32), ("val", 8), ("test", 8))})
    deepscope.train({"name": "cube", "log": log,
                     "model": {"architecture": "unet", "dmode": "deconvolver", "block_sizes": [4, 8], "depths": [1, 1]},
                     "train": {"epochs": 1, "batch_size": 4, "loss": "mse", "metrics": []}},
                    data={split: _cube_split(rng, n) for split, n in (("train", 8), ("val", 4), ("test", 4))})
    Experiment({"name": "reg", "seed": 0, "log": log,
                "data": {"source": "registration_demo", "path": str(tmp / "pairs.h5"), "n_pairs": 20, "shape": [32, 48],
                         "n_sections": 6, "deformation": "elastic", "elastic_amplitude": 1.5, "inverse": True},
                "model": {"architecture": "registration_global", "filters": [4, 8, 8], "dense_layers": [8]},
                "train": {"epochs": 1, "batch_size": 8, "loss": {"registered": "mse", "field": "vector_distance"}}}
               ).train()
    Experiment({"name": "multiview", "seed": 0, "log": log,
                "data": {"source": "track_detector", "path": str(tmp / "events.root"), "n_events": 100,
                         "target": {"branch": "n_tracks", "classes": [1, 2, 3, 4]}, "split": {"val": 0.2, "test": 0.2},
                         "standardize": {"images": "none"}},
                "model": {"architecture": "multiview",
                          "cnn": {"n_init_filters": 4, "block_depths": [1], "downsampling": "maxpool"},
                          "top": {"units": [8, 4], "activation": "relu"}},
                "train": {"epochs": 1, "batch_size": 32, "loss": "cross_entropy", "metrics": ["accuracy"]}}).train()
    return {name: tmp / "runs" / name for name in ("calo", "cube", "reg", "multiview")}


def _raw_inputs(spec, batch, n_tracks, seed):
    """Inputs in data units (channels first), far from zero mean and unit scale so standardization matters."""
    rng = np.random.default_rng(seed)
    raw = {"images": {k: rng.normal(1.0, 2.0, size=(batch, v.channels, *v.spatial)).astype(np.float32)
                      for k, v in spec.images.items()}}
    if spec.scalars:
        raw["scalars"] = rng.normal(3.0, 0.5, size=(batch, spec.scalars)).astype(np.float32)
    if spec.tracks:
        tracks = np.zeros((batch, n_tracks, spec.tracks[1]), np.float32)
        tracks[:, :3] = rng.normal(-1.0, 2.0, size=(batch, 3, spec.tracks[1]))
        raw["tracks"] = tracks
    return raw


def _standardize(x, stats):
    """What a user does with the metadata: (x - mean) / std along ``axis``; zero padding rows stay zero."""
    if stats is None:
        return x
    mean, std = np.asarray(stats["mean"], np.float32), np.asarray(stats["std"], np.float32)
    if stats["axis"] is not None and mean.ndim == 1:
        shape = [1] * x.ndim
        shape[stats["axis"]] = -1
        mean, std = mean.reshape(shape), std.reshape(shape)
    out = (x - mean) / std
    if stats.get("padding_stays_zero"):
        out = out * (np.abs(x).sum(-1, keepdims=True) > 0)
    return out.astype(np.float32)


def _feeds(meta, raw):
    """ONNX inputs from raw data, with the metadata's names and standardization only."""
    feeds = {}
    for entry in meta["inputs"]:
        kind, _, name = entry["key"].partition("/")
        value = raw["images"][name] if kind == "images" else raw[kind]
        feeds[entry["name"]] = _standardize(value, entry["standardize"])
    return feeds


def _deepscope_outputs(run_dir, raw):
    """The run's own route: its saved standardizer, the net, and predictions in data units."""
    loaded = _load_run(run_dir)
    batch = loaded.standardizer.transform(raw)
    inputs = {k: torch.from_numpy(batch[k]) for k in ("scalars", "tracks") if k in batch}
    inputs["images"] = {n: torch.from_numpy(v) for n, v in batch["images"].items()}
    with torch.no_grad():
        out = loaded.net.eval()(**inputs)
    return loaded, out.numpy(), loaded.task.predictions(loaded.task.shape_output(out).numpy())


@pytest.mark.parametrize("name", ["calo", "cube", "reg", "multiview"])
def test_the_onnx_file_and_its_metadata_reproduce_the_runs_predictions_from_raw_inputs(runs, tmp_path, name):
    import onnx
    import onnxruntime as ort

    written = export_model(runs[name], tmp_path / "model", format="onnx")
    assert [p.name for p in written] == ["model.onnx", "model.json"]
    meta = read_metadata(written[0])
    assert meta == json.loads(written[1].read_text())  # the same JSON inside the file and beside it
    assert meta["export_format"] == "onnx" and meta["deepscope_version"] and meta["source_run"] == str(runs[name])
    model = onnx.load(str(written[0]))
    graph_inputs = {i.name: [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim]
                    for i in model.graph.input}
    assert graph_inputs == {i["name"]: i["shape"] for i in meta["inputs"]}
    assert [o.name for o in model.graph.output] == [o["name"] for o in meta["outputs"]]

    loaded = _load_run(runs[name])
    n_tracks = (loaded.spec.tracks[0] + 3) if loaded.spec.tracks else 0  # more tracks than trained: dynamic axis
    raw = _raw_inputs(loaded.spec, 5, n_tracks, seed=7)  # batch 5: the file was traced with 2
    session = ort.InferenceSession(str(written[0]), providers=["CPUExecutionProvider"])
    got = session.run(None, _feeds(meta, raw))
    loaded, expected, predictions = _deepscope_outputs(runs[name], raw)
    whole = np.concatenate(got, axis=1)  # registration: registered image and field, split along channels
    np.testing.assert_allclose(whole, expected, rtol=1e-4, atol=1e-4)
    task = meta["task"]
    if task["kind"] == "regression" and meta["task_family"] == "supervised":
        values = got[0].reshape(len(got[0]), *task["target_shape"])
        stats = task["target_standardize"]
        if stats is not None:  # predictions in data units: output * std + mean (calo's targets are standardized)
            values = values * np.float32(stats["std"]) + np.float32(stats["mean"])
        np.testing.assert_allclose(values, predictions["predictions"], rtol=1e-4, atol=1e-4)
    if task["kind"] == "multiclass":
        assert task["class_names"] == ["1", "2", "3", "4"]
        np.testing.assert_array_equal(got[0].argmax(1), predictions["predictions"])


def test_the_metadata_describes_inputs_outputs_and_standardization(runs, tmp_path):
    calo = read_metadata(export_model(runs["calo"], tmp_path / "calo", format="onnx")[1])
    assert [i["name"] for i in calo["inputs"]] == ["image_calo", "scalars", "tracks"]
    assert calo["inputs"][2]["shape"] == ["batch", "tracks", 2] and calo["inputs"][2]["max_tracks_trained"] == 4
    stats = _load_run(runs["calo"]).standardizer.stats
    np.testing.assert_allclose(calo["inputs"][1]["standardize"]["mean"], stats["scalars"][0], rtol=1e-6)
    assert calo["inputs"][0]["standardize"]["axis"] == 1 and calo["inputs"][2]["standardize"]["padding_stays_zero"]
    assert calo["task"]["target_standardize"] is not None and calo["task_family"] == "supervised"
    assert calo["outputs"] == [{"name": "values", "shape": ["batch", 1], "dtype": "float32"}]
    reg = read_metadata(export_model(runs["reg"], tmp_path / "reg.onnx", format="onnx")[0])
    assert reg["task_family"] == "registration" and [o["name"] for o in reg["outputs"]] == ["registered", "field"]
    assert reg["outputs"][1]["shape"] == ["batch", 2, 32, 48]
    assert reg["verified"]["batch_size"] != reg["verified"]["traced_batch_size"]
    assert (calo["onnx_opset"], reg["onnx_opset"]) == (17, 17)
    cube = read_metadata(export_model(runs["cube"], tmp_path / "cube", format="onnx")[0])
    assert cube["onnx_opset"] == 20  # volumes: GridSample on 5D inputs needs opset 20
    assert cube["outputs"][0]["shape"] == ["batch", 1, 8, 8, 8] and cube["inputs"][0]["standardize"]["axis"] == 1


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:DeprecationWarning")
@pytest.mark.parametrize("fmt, suffix", [("torchscript", ".pt"), ("exported-program", ".pt2")])
@pytest.mark.parametrize("name", ["calo", "reg"])
def test_torchscript_and_exported_programs_load_back_and_give_the_nets_outputs(runs, tmp_path, fmt, suffix, name):
    target, sidecar = export_model(runs[name], tmp_path / "model", format=fmt)
    assert target.name == f"model{suffix}" and read_metadata(target)["export_format"] == fmt
    module = torch.jit.load(str(target)) if fmt == "torchscript" else torch.export.load(str(target)).module()
    loaded = _load_run(runs[name])
    raw = _raw_inputs(loaded.spec, 4, loaded.spec.tracks[0] + 2 if loaded.spec.tracks else 0, seed=3)
    feeds = _feeds(json.loads(sidecar.read_text()), raw)
    outputs = module(*(torch.from_numpy(v) for v in feeds.values()))  # no torch.no_grad: an inference export
    assert not any(o.requires_grad for o in outputs)
    got = torch.cat(outputs, dim=1).numpy()
    np.testing.assert_allclose(got, _deepscope_outputs(runs[name], raw)[1], rtol=1e-5, atol=1e-5)


def test_the_default_format_is_still_the_deepscope_pt(runs, tmp_path):
    assert main(["export", str(runs["calo"]), str(tmp_path / "m")]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.pt"]
    net, run = load_model(tmp_path / "m.pt"), _load_run(runs["calo"])
    inputs = {"images": {"calo": torch.randn(2, 1, 8, 8)}, "scalars": torch.randn(2, 3), "tracks": torch.randn(2, 4, 2)}
    with torch.no_grad():
        assert torch.equal(net(**inputs), run.net.eval()(**inputs))


# --- user mistakes -----------------------------------------------------------------------------------------


def test_the_cli_offers_exactly_the_formats_export_writes():
    export = build_parser()._subparsers._group_actions[0].choices["export"]
    assert next(a for a in export._actions if a.dest == "format").choices == FORMATS


def test_an_unknown_format_is_refused_by_the_cli_and_the_api(runs, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["export", str(runs["calo"]), str(tmp_path / "m"), "--format", "tflite"])
    assert exit_info.value.code == 2
    assert "invalid choice: 'tflite'" in capsys.readouterr().err
    with pytest.raises(ExportError, match="format 'tflite' is not one deepscope export writes; expected one of pt, "
                                          "onnx, torchscript, exported-program"):
        export_model(runs["calo"], tmp_path / "m", format="tflite")
    assert not list(tmp_path.iterdir())


def test_a_missing_run_folder_is_one_message_and_exit_2(tmp_path, capsys):
    assert main(["export", str(tmp_path / "runs" / "nope"), str(tmp_path / "m"), "--format", "onnx"]) == 2
    err = capsys.readouterr().err
    assert f"run folder '{tmp_path / 'runs' / 'nope'}' not found" in err and "Traceback" not in err
    assert not (tmp_path / "m.onnx").exists()


@pytest.mark.parametrize("fmt, written", [("onnx", "m.onnx"), ("torchscript", "m.pt")])
def test_an_existing_export_is_kept_without_force(runs, tmp_path, capsys, fmt, written):
    assert main(["export", str(runs["cube"]), str(tmp_path / "m"), "--format", fmt]) == 0
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    assert sorted(before) == sorted([written, "m.json"])
    capsys.readouterr()
    assert main(["export", str(runs["reg"]), str(tmp_path / "m"), "--format", fmt]) == 2
    err = capsys.readouterr().err
    assert f"{tmp_path / written}, {tmp_path / 'm.json'} exist; choose another path" in err and "--force" in err
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before  # nothing overwritten, no temp files
    assert main(["export", str(runs["reg"]), str(tmp_path / "m"), "--format", fmt, "--force"]) == 0
    assert read_metadata(tmp_path / written)["task_family"] == "registration"


def test_separate_is_for_the_pt_format_only(runs, tmp_path, capsys):
    assert main(["export", str(runs["cube"]), str(tmp_path / "m"), "--format", "onnx", "--separate"]) == 2
    assert "separate (--separate) splits a pt export" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_an_operator_the_onnx_opset_lacks_is_named_and_nothing_is_written(runs, tmp_path, monkeypatch):
    import deepscope.export_formats as formats

    monkeypatch.setattr(formats, "ONNX_OPSET", 15)  # GridSample, the registration warp, came with opset 16
    with pytest.raises(ExportError) as info:
        export_model(runs["reg"], tmp_path / "m", format="onnx")
    message = str(info.value)
    assert "cannot be exported as onnx" in message and "grid_sampler" in message and "opset version 15" in message
    assert not list(tmp_path.iterdir())


def test_metadata_is_required_to_read_one(tmp_path):
    (tmp_path / "x.pt2").write_bytes(b"")
    with pytest.raises(ExportError, match="no deepscope metadata"):
        read_metadata(tmp_path / "x.pt2")
    (tmp_path / "x.json").write_text('{"format": "other"}')
    with pytest.raises(ExportError, match="is not deepscope export metadata"):
        read_metadata(tmp_path / "x.pt2")
