"""``deepscope predict`` by format: HDF5, ROOT and NPZ inputs read with the run's own data section,
predictions written in the input's format (or the output suffix's), errors as exit code 2.

Each run trains one tiny epoch on a pool split by index ranges; a fresh file holding exactly the
pool's test samples must then give the predictions training wrote to ``predictions/test.npz`` (an
independent path: the training loader), and the same as the equivalent ``.npz`` input."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
import uproot

import deepscope
from deepscope.config import load_config
from deepscope.cli import main
from deepscope.errors import DataError
from deepscope.components import SOURCES
from deepscope.evaluation.predict_io import (FORMATS, _import, input_format, output_format, run_formats,
                                             write_predictions)
from deepscope.training.experiment import predict
from tests.conftest import small_config
from tests.data.test_root_source import CLASSES, TOP, simulate, write_root

pytestmark = pytest.mark.slow

SPLIT = {"train": "0:60", "val": "60:80", "test": "80:100"}
TEST = slice(80, 100)


def _hdf5_arrays(n: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    img = rng.normal(size=(n, 8, 8)).astype(np.float32)
    s = rng.normal(size=(n, 2)).astype(np.float32)
    label = (img.mean((1, 2)) > 0).astype(np.int64) + (s[:, 0] > 0.5)
    return {"img": img, "s": s, "label": label}


def _write_h5(path, arrays):
    with h5py.File(path, "w") as f:
        for key, value in arrays.items():
            f[key] = value
    return path


@pytest.fixture(scope="module")
def hdf5_run(tmp_path_factory):
    """A 3-class classifier on an ``hdf5`` source (image + scalars), and its pool's arrays."""
    tmp = tmp_path_factory.mktemp("hdf5_run")
    arrays = _hdf5_arrays(100, 0)
    path = _write_h5(tmp / "pool.h5", arrays)
    cfg = small_config(tmp / "runs", model={"cnn": {"n_init_filters": 4}, "top": {"units": [8, 3]}})
    cfg["log"] = {**cfg["log"], "figures": False}
    cfg["data"] = {"source": "hdf5", "path": str(path), "images": {"calo": "img"}, "scalars": ["s"],
                   "targets": "label", "split": SPLIT}
    result = deepscope.train(cfg)
    return tmp, result.run_dir, arrays


@pytest.fixture(scope="module")
def root_run(tmp_path_factory):
    """A 4-class classifier (track counts) on a ``root`` source, and its pool's events."""
    tmp = tmp_path_factory.mktemp("root_run")
    events = simulate(100, 3)
    path = write_root(tmp / "pool.root", events)
    cfg = small_config(tmp / "runs", model={"cnn": {"n_init_filters": 4}, "top": {"units": [16, 4]}})
    cfg["log"] = {**cfg["log"], "figures": False}
    cfg["data"] = {"source": "root", "path": str(path), "views": {"top": TOP}, "target": CLASSES, "split": SPLIT}
    result = deepscope.train(cfg)
    return tmp, result.run_dir, events


def _test_predictions(run):
    saved = np.load(run / "predictions" / "test.npz")
    order = np.argsort(saved["index"])
    return {k: saved[k][order] for k in saved.files}


def _slice_events(events, rows, drop=()):
    return {k: (v[rows] if isinstance(v, np.ndarray) else v[rows]) for k, v in events.items() if k not in drop}


# --- HDF5 -------------------------------------------------------------------------------------------------


def test_hdf5_in_hdf5_out_matches_training_and_the_npz_route(hdf5_run, tmp_path):
    _, run, arrays = hdf5_run
    test = {k: v[TEST] for k, v in arrays.items()}
    new = _write_h5(tmp_path / "new.h5", test)
    result = predict(run, new, tmp_path / "out.h5")
    saved = _test_predictions(run)
    np.testing.assert_array_equal(result["predictions"], saved["predictions"])
    np.testing.assert_allclose(result["probabilities"], saved["probabilities"], atol=1e-6)
    np.savez(tmp_path / "new.npz", **{"images/calo": test["img"], "scalars": test["s"], "targets": test["label"]})
    via_npz = predict(run, tmp_path / "new.npz", tmp_path / "out.npz")
    with h5py.File(tmp_path / "out.h5") as f:
        assert set(f) == {"predictions", "probabilities", "index", "targets", "loss"}
        np.testing.assert_array_equal(f["predictions"][()], via_npz["predictions"])
        np.testing.assert_allclose(f["probabilities"][()], via_npz["probabilities"], atol=1e-6)
        np.testing.assert_allclose(f["loss"][()], via_npz["loss"], atol=1e-5)
        np.testing.assert_array_equal(f["targets"][()], test["label"])
        np.testing.assert_array_equal(f["index"][()], np.arange(20))
        assert f["probabilities"].shape == (20, 3)
        assert f.attrs["run"] == str(run) and f.attrs["checkpoint"].endswith(".ckpt")
        assert f.attrs["version"].startswith("deepscope ") and f.attrs["input"] == str(new)
        assert f.attrs["date"][:2] == "20"


def test_hdf5_without_targets_and_npz_output_by_suffix(hdf5_run, tmp_path):
    _, run, arrays = hdf5_run
    new = _write_h5(tmp_path / "new.hdf5", {"img": arrays["img"][TEST], "s": arrays["s"][TEST]})
    assert main(["predict", str(run), "--input", str(new), "--output", str(tmp_path / "out.npz")]) == 0
    out = np.load(tmp_path / "out.npz")
    assert set(out.files) == {"predictions", "probabilities", "index"}
    np.testing.assert_array_equal(out["predictions"], _test_predictions(run)["predictions"])


def test_hdf5_channels_first_with_the_channels_option(hdf5_run, tmp_path):
    _, run, arrays = hdf5_run
    new = _write_h5(tmp_path / "new.h5", {"img": arrays["img"][TEST][:, None], "s": arrays["s"][TEST]})
    result = predict(run, new, tmp_path / "out.h5", channels="first")  # (N, 1, 8, 8): channels first
    np.testing.assert_allclose(result["probabilities"], _test_predictions(run)["probabilities"], atol=1e-6)
    with pytest.raises(DataError, match=r"per-sample shape \(C, \.\.\.\) = \(8, 1, 8\)"):
        predict(run, new, tmp_path / "again.h5")  # the run's data.channels: last


def test_hdf5_output_from_an_npz_input(hdf5_run, tmp_path):
    _, run, arrays = hdf5_run
    np.savez(tmp_path / "new.npz", **{"images/calo": arrays["img"][:7], "scalars": arrays["s"][:7]})
    result = predict(run, tmp_path / "new.npz", tmp_path / "out.h5")
    with h5py.File(tmp_path / "out.h5") as f:
        np.testing.assert_array_equal(f["predictions"][()], result["predictions"])
        assert "targets" not in f and len(f["index"]) == 7


# --- ROOT -------------------------------------------------------------------------------------------------


def test_root_in_root_out_matches_training(root_run, tmp_path):
    _, run, events = root_run
    new = write_root(tmp_path / "new.root", _slice_events(events, TEST))
    assert main(["predict", str(run), "--input", str(new), "--output", str(tmp_path / "out.root")]) == 0
    saved = _test_predictions(run)
    with uproot.open(tmp_path / "out.root") as f:
        tree = f["predictions"]
        assert tree.num_entries == 20
        assert set(tree.keys()) == {"predictions", "probabilities", "index", "targets", "loss"}
        got = tree.arrays(library="np")
        provenance = json.loads(str(f["provenance"]))
    np.testing.assert_array_equal(got["predictions"], saved["predictions"])
    np.testing.assert_allclose(got["probabilities"], saved["probabilities"], atol=1e-6)
    assert got["probabilities"].shape == (20, 4)
    np.testing.assert_array_equal(got["targets"], saved["targets"])  # n_tracks 1..4 as labels 0..3
    np.testing.assert_array_equal(got["index"], np.arange(20))
    assert provenance["run"] == str(run) and provenance["input"] == str(new)
    assert {"checkpoint", "version", "date"} <= set(provenance)


def test_root_without_the_target_branch_matches_the_npz_route(root_run, tmp_path):
    from deepscope.data.root import load_root

    _, run, events = root_run
    new = write_root(tmp_path / "new.root", _slice_events(events, TEST, drop=("n_tracks",)))
    result = predict(run, new, tmp_path / "out.root")
    assert "targets" not in result and "loss" not in result
    with_targets = load_root(load_config(run / "config.yaml").data.model_copy(
        update={"path": write_root(tmp_path / "full.root", _slice_events(events, TEST))}))
    np.savez(tmp_path / "new.npz", **{"images/top": with_targets.images["top"]})
    via_npz = predict(run, tmp_path / "new.npz", tmp_path / "out.npz", channels="first")
    np.testing.assert_array_equal(result["predictions"], via_npz["predictions"])
    np.testing.assert_allclose(result["probabilities"], via_npz["probabilities"], atol=1e-6)
    with uproot.open(tmp_path / "out.root") as f:
        assert set(f["predictions"].keys()) == {"predictions", "probabilities", "index"}


def test_root_writer_falls_back_to_npz_for_types_uproot_cannot_write(tmp_path):
    result = {"predictions": np.array([1 + 2j, 3 - 1j]), "index": np.arange(2)}
    written = write_predictions(result, tmp_path / "out.root", "root", {"run": "r"})
    assert written == tmp_path / "out.npz" and not (tmp_path / "out.root").exists()
    np.testing.assert_array_equal(np.load(written)["predictions"], result["predictions"])


# --- formats ----------------------------------------------------------------------------------------------


def test_format_by_suffix_then_by_content(tmp_path):
    _write_h5(tmp_path / "data.bin", {"x": np.zeros(2)})
    with open(tmp_path / "arrays.dat", "wb") as f:
        np.savez(f, x=np.zeros(2))  # np.savez would add .npz to a name
    assert input_format(tmp_path / "data.bin") == "hdf5"
    assert input_format(tmp_path / "arrays.dat") == "npz"
    assert input_format(tmp_path) == "fits"
    (tmp_path / "cube.fits.gz").write_bytes(b"")
    assert input_format(tmp_path / "cube.fits.gz") == "fits"
    assert output_format(tmp_path / "p.npz", "root") == "npz"
    assert output_format(tmp_path / "p.HDF5", "npz") == "hdf5"
    assert output_format(tmp_path / "predictions", "root") == "root"
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(DataError, match=r"neither its suffix '\.txt' nor its content"):
        input_format(tmp_path / "notes.txt")


@pytest.mark.parametrize("name", [e.name for e in SOURCES.entries() if "predict_input" in e.meta])
def test_every_source_format_has_a_way_to_predict(name):
    meta = SOURCES.entry(name).meta
    assert meta["predict_input"] in FORMATS and run_formats(SOURCES.entry(name)) == ["npz", meta["predict_input"]]
    ways = [k for k in ("predict_reader", "predict_file", "predict") if k in meta]
    assert len(ways) == 1, ways
    assert callable(_import(meta[ways[0]]))
    if meta["predict_input"] == "fits":
        assert ways == ["predict"]  # folders are written by the source's own writer


def test_sources_without_a_file_format_read_npz_only():
    assert run_formats(SOURCES.entry("sklearn_digits")) == ["npz"]
    assert run_formats(SOURCES.entry("track_detector")) == ["npz", "root"]


# --- errors: one message, exit code 2 ----------------------------------------------------------------------


def _cli_error(capsys, run, inp, out):
    assert main(["predict", str(run), "--input", str(inp), "--output", str(out)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "error: " in err
    assert not out.exists()
    return " ".join(err.split())


def test_a_format_the_run_does_not_read(hdf5_run, root_run, tmp_path, capsys):
    _, h5run, arrays = hdf5_run
    _, rootrun, events = root_run
    root_file = write_root(tmp_path / "e.root", _slice_events(events, TEST))
    err = _cli_error(capsys, h5run, root_file, tmp_path / "o.root")
    assert "is a ROOT file, but a run on data.source 'hdf5' predicts from an .npz file or an HDF5 file" in err
    h5_file = _write_h5(tmp_path / "e.h5", arrays)
    err = _cli_error(capsys, rootrun, h5_file, tmp_path / "o.h5")
    assert "is an HDF5 file, but a run on data.source 'root' predicts from an .npz file or a ROOT file" in err
    (tmp_path / "cube.fits").write_bytes(b"SIMPLE  =                    T")
    err = _cli_error(capsys, h5run, tmp_path / "cube.fits", tmp_path / "o.h5")
    assert "is a FITS file, but a run on data.source 'hdf5'" in err
    err = _cli_error(capsys, h5run, tmp_path, tmp_path / "out")
    assert "is a folder, but a run on data.source 'hdf5'" in err


def test_missing_and_corrupt_files(hdf5_run, root_run, tmp_path, capsys):
    _, h5run, _ = hdf5_run
    _, rootrun, _ = root_run
    assert "nope.h5' not found" in _cli_error(capsys, h5run, tmp_path / "nope.h5", tmp_path / "o.h5")
    (tmp_path / "junk.h5").write_bytes(b"not hdf5 at all")
    assert "is not an HDF5 file" in _cli_error(capsys, h5run, tmp_path / "junk.h5", tmp_path / "o.h5")
    (tmp_path / "junk.root").write_bytes(b"not root at all")
    assert "is not a ROOT file" in _cli_error(capsys, rootrun, tmp_path / "junk.root", tmp_path / "o.root")
    (tmp_path / "cut.root").write_bytes(b"root" + b"\x00" * 40)
    assert "is not a readable ROOT file" in _cli_error(capsys, rootrun, tmp_path / "cut.root", tmp_path / "o.root")


def test_missing_dataset_or_branch_names_the_closest(hdf5_run, root_run, tmp_path, capsys):
    _, h5run, arrays = hdf5_run
    _, rootrun, events = root_run
    bad = _write_h5(tmp_path / "bad.h5", {"imgs": arrays["img"][:5], "s": arrays["s"][:5]})
    err = _cli_error(capsys, h5run, bad, tmp_path / "o.h5")
    assert "no dataset 'img'" in err and "did you mean 'imgs'?" in err and str(bad) in err
    renamed = _slice_events(events, TEST, drop=("tracker_layer",))
    renamed["tracker_layers"] = events["tracker_layer"][TEST]
    bad_root = write_root(tmp_path / "bad.root", renamed)
    err = _cli_error(capsys, rootrun, bad_root, tmp_path / "o.root")
    assert "no branch 'tracker_layer' (data.views.top)" in err and "did you mean 'tracker_layers'?" in err


def test_shapes_that_do_not_fit(hdf5_run, tmp_path, capsys):
    _, run, arrays = hdf5_run
    bad = _write_h5(tmp_path / "big.h5", {"img": np.zeros((4, 9, 9), np.float32), "s": arrays["s"][:4]})
    err = _cli_error(capsys, run, bad, tmp_path / "o.h5")
    assert "image 'calo' has per-sample shape (C, ...) = (1, 9, 9) but the model was trained on (1, 8, 8)" in err
    bad = _write_h5(tmp_path / "wide.h5", {"img": arrays["img"][:4], "s": np.zeros((4, 3), np.float32)})
    assert "scalars have 3 features; the model takes 2" in _cli_error(capsys, run, bad, tmp_path / "o.h5")


def test_split_groups_are_refused(hdf5_run, tmp_path):
    _, run, arrays = hdf5_run
    cfg = load_config(run / "config.yaml").data
    from deepscope.evaluation.predict_io import read_hdf5_input

    grouped = _write_h5(tmp_path / "g.h5", {f"test/{k}": v[:4] for k, v in arrays.items()})
    with pytest.raises(DataError, match=r"holds the datasets in split groups \(test\)"):
        read_hdf5_input(cfg.model_copy(update={"sets": {"train": "train", "test": "test"}}), grouped)


def test_an_existing_output_is_never_overwritten(hdf5_run, tmp_path, capsys):
    _, run, arrays = hdf5_run
    new = _write_h5(tmp_path / "new.h5", {"img": arrays["img"][:4], "s": arrays["s"][:4]})
    for name in ("out.h5", "out.npz", "out.root"):
        out = tmp_path / name
        out.write_bytes(b"keep me")
        assert main(["predict", str(run), "--input", str(new), "--output", str(out)]) == 2
        assert "exists; predictions never overwrite a file" in capsys.readouterr().err
        assert out.read_bytes() == b"keep me"
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
