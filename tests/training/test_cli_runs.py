"""The CLI on run folders: train, evaluate, predict, and its errors (exit code 2, no traceback)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from sklearn.datasets import load_digits

from deepscope.cli import main

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cli")
    cfg = {
        "name": "cli", "log": {"dir": str(tmp / "runs"), "progress_bar": "none", "tensorboard": False},
        "data": {"source": "sklearn_digits", "split": {"train": "0:300", "val": "300:400", "test": "400:500"}},
        "model": {"cnn": {"n_init_filters": 8, "activation": "relu"}, "top": {"units": [32, 10], "activation": "relu"}},
        "train": {"epochs": 3, "batch_size": 32, "loss": "cross_entropy", "metrics": ["accuracy"], "optimizer": "adam"},
    }
    path = tmp / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert main(["train", str(path), "-o", "train.epochs=2"]) == 0
    return tmp, tmp / "runs" / "cli"


def test_override_reached_the_run(trained):
    _, run = trained
    assert yaml.safe_load((run / "config.yaml").read_text())["train"]["epochs"] == 2


def test_evaluate_matches_the_metrics_of_training(trained, capsys):
    _, run = trained
    assert main(["evaluate", str(run)]) == 0
    saved = json.loads((run / "evaluation" / "test_metrics.json").read_text())
    final = json.loads((run / "final_metrics.json").read_text())
    assert saved["accuracy"] == pytest.approx(final["test"]["accuracy"])
    assert saved["samples"] == 100
    assert "accuracy" in capsys.readouterr().out


def test_predict_applies_saved_standardization(trained, tmp_path):
    _, run = trained
    digits = load_digits()
    x, y = digits.images[400:500].astype(np.float32), digits.target[400:500]
    np.savez(tmp_path / "new.npz", **{"images/digits": x})  # (N, 8, 8): one channel
    assert main(["predict", str(run), "--input", str(tmp_path / "new.npz"), "--output", str(tmp_path / "p.npz")]) == 0
    preds = np.load(tmp_path / "p.npz")
    test = np.load(run / "predictions" / "test.npz")
    np.testing.assert_array_equal(preds["predictions"], test["predictions"])  # same samples, same answers
    np.testing.assert_allclose(preds["probabilities"], test["probabilities"], atol=1e-6)
    assert "targets" not in preds.files
    assert (preds["predictions"] == y).mean() > 0.5


@pytest.mark.parametrize("arrays, expected", [
    ({"images/digits": np.zeros((5, 9, 9))}, "per-sample shape"),
    ({"images/other": np.zeros((5, 8, 8))}, "image 'digits' is missing"),
])
def test_predict_rejects_input_that_does_not_fit(trained, tmp_path, capsys, arrays, expected):
    _, run = trained
    np.savez(tmp_path / "bad.npz", **arrays)
    assert main(["predict", str(run), "--input", str(tmp_path / "bad.npz"), "--output", str(tmp_path / "o.npz")]) == 2
    err = capsys.readouterr().err
    assert expected in err and "Traceback" not in err
    assert not (tmp_path / "o.npz").exists()


def test_corrupt_input_file_and_missing_run(trained, tmp_path, capsys):
    _, run = trained
    (tmp_path / "junk.npz").write_bytes(b"not a zip file")
    assert main(["predict", str(run), "--input", str(tmp_path / "junk.npz"), "--output", str(tmp_path / "o.npz")]) == 2
    assert "junk.npz" in capsys.readouterr().err
    assert main(["evaluate", str(tmp_path / "nope")]) == 2
    assert "not found" in capsys.readouterr().err


def test_corrupt_checkpoint_is_a_checkpoint_error(trained, tmp_path, capsys):
    _, run = trained
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(b"\x00garbage")
    assert main(["evaluate", str(run), "--checkpoint", str(bad)]) == 2
    assert "cannot be read" in capsys.readouterr().err


def test_train_on_a_missing_data_file_exits_2(tmp_path, capsys):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"name": "m", "log": {"dir": str(tmp_path / "runs")},
                                    "data": {"source": "npz", "path": str(tmp_path / "missing.npz")}}))
    assert main(["train", str(path)]) == 2
    err = capsys.readouterr().err
    assert "missing.npz" in err and "not found" in err
    assert not (tmp_path / "runs" / "m").exists()


def _write_documented_file(config: Path, folder: Path) -> Path:
    """Run the one-line command an atlas_hdf5 example's header gives for writing its data file, in ``folder``."""
    text = config.read_text()
    found = re.search(r'^#\s+python -c "(.+)"$', text, flags=re.MULTILINE)
    assert found, f"{config.name}: the header gives no 'python -c \"...\"' command that writes its data file"
    folder.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-c", found.group(1)], cwd=folder, check=True, timeout=300)
    written = folder / yaml.safe_load(text)["data"]["path"]
    assert written.is_file(), f"{config.name}: the header's command did not write data.path"
    return written


def test_example_configs_smoke_train(tmp_path):
    configs = sorted(Path(__file__).resolve().parents[2].joinpath("configs").glob("*.yaml"))
    assert configs
    for path in configs:
        extra = []
        raw = yaml.safe_load(path.read_text())
        source = raw["data"]["source"] if "data" in raw else "raccoon_run_file"
        if source == "calorimeter":
            # small simulated sets, written to the test's folder (the file itself is read lazily)
            extra = ["-o", "data.n_train=300", "-o", "data.n_val=100", "-o", "data.n_test=100",
                     "-o", f"data.hdf5_path={tmp_path / 'events.h5'}"]
        if source == "atlas_hdf5":
            # the file the config's header says how to write, written to the test's folder; a few events of it
            data_file = _write_documented_file(path, tmp_path / "data_files" / path.stem)
            extra = ["-o", f"data.path={data_file}", "-o", "data.n_points.train=300", "-o", "data.n_points.val=100",
                     "-o", "data.n_points.test=100"]
        if source == "radio_cubes":
            # a few small simulated cubes, written to the test's folder
            extra = ["-o", f"data.path={tmp_path / ('radio_' + path.stem)}", "-o", "data.n_cubes.train=4",
                     "-o", "data.n_cubes.val=2", "-o", "data.n_cubes.test=2"]
        if source == "grf_cubes":
            # four seeds of 64³ cubes (PENGUIN needs 64² slices), written to the test's folder
            extra = ["-o", f"data.path={tmp_path / ('grf_' + path.stem + '.h5')}",
                     "-o", "data.seeds={train: [0, 2], val: [2, 3], test: [3, 4]}"]
        if source == "track_detector":
            # a few hundred simulated events, written to the test's folder
            extra = ["-o", f"data.path={tmp_path / 'tracker_events.root'}", "-o", "data.n_events=300"]
        if source == "registration_demo":
            # a few small pairs, written to the test's folder; the merged model loads the global run trained just
            # before it (configs are taken in name order: atlalign_global before atlalign_merged)
            extra = ["-o", f"data.path={tmp_path / ('pairs_' + path.stem + '.h5')}", "-o", "data.n_pairs=64"]
            if raw["model"].get("pretrained"):
                extra += ["-o", f"model.pretrained=[{{use: true, weights_path: {tmp_path / 'atlalign-global'}, "
                                "layers_to_load: [global_net], freeze_loaded_layers: true}]"]
        if source == "raccoon_run_file":
            # RACCOON's own format (model_params, data_params, train_params): the file its header says how to make,
            # with three seeds, in the test's folder
            assert f"deepscope simulate grf {raw['data_params']['datafile']}" in path.read_text(), \
                f"{path.name}: the header does not say how to write data_params.datafile"
            cubes = tmp_path / f"grf_{path.stem}.h5"
            assert main(["simulate", "grf", str(cubes), "--seeds", "3"]) == 0, path
            extra = ["-o", f"data.path={cubes}", "-o", "data.seeds={train: [0, 2], val: [2, 3]}"]
        code = main(["train", str(path), "-o", f"log.dir={tmp_path}", "-o", "train.max_steps=3",
                     "-o", "train.epochs=1", "-o", "log.progress_bar=none", "-o", "log.figures=false", *extra])
        assert code == 0, path
