"""The ``root`` source: TTrees of jagged hit branches histogrammed into views, class and multi-hot targets.

Small ROOT files are written with uproot in ``tmp_path``; every view is checked against a per-event
numpy loop (or ``np.histogram2d`` for float binning), and every bad input is one DataError naming the
file, the tree and the branch."""

from __future__ import annotations

import awkward as ak
import numpy as np
import pytest
import uproot
import yaml

from deepscope.config import load_config
from deepscope.config.root import RootData
from deepscope.data.root import describe_root, load_root
from deepscope.errors import ConfigError, DataError
from tests.conftest import small_config

TOP = {"rows": "tracker_layer", "cols": "tracker_column", "shape": [9, 113]}
SIDE = {"rows": {"branch": "tracker_z", "range": [-1500, 1500]}, "cols": "tracker_column", "shape": [30, 113]}
FRONT = {"rows": {"branch": "tracker_z", "range": [-1500, 1500]}, "cols": "tracker_layer", "shape": [30, 9]}
CLASSES = {"branch": "n_tracks", "classes": [1, 2, 3, 4]}


def simulate(n, seed=0):
    """Per-event python lists of hits (the reference) for ``n`` events."""
    rng = np.random.default_rng(seed)
    events = {k: [] for k in ("tracker_layer", "tracker_column", "tracker_side", "tracker_z", "calo_row",
                              "calo_column")}
    for _ in range(n):
        k = int(rng.integers(0, 14))
        events["tracker_layer"].append(rng.integers(0, 9, k).astype(np.int32))
        events["tracker_column"].append(rng.integers(0, 113, k).astype(np.int32))
        events["tracker_side"].append(rng.integers(0, 2, k).astype(np.int32))
        events["tracker_z"].append(rng.uniform(-1700, 1700, k))  # some outside the binned range
        m = int(rng.integers(0, 4))
        events["calo_row"].append(rng.integers(0, 15, m).astype(np.int32))
        events["calo_column"].append(rng.integers(0, 22, m).astype(np.int32))
    events["n_tracks"] = rng.integers(1, 5, n).astype(np.int32)
    return events


def write_root(path, events, tree="hit_tree"):
    """Write ``events`` (branch -> per-event arrays, or an (N,) array for a scalar branch) as a TTree."""
    arrays = {k: (np.asarray(v) if isinstance(v, np.ndarray) else ak.Array([list(x) for x in v]))
              for k, v in events.items()}
    types = {k: (str(v.dtype) if isinstance(v, np.ndarray) else
                 f"var * {'float64' if k.endswith('_z') else 'int32'}") for k, v in arrays.items()}
    with uproot.recreate(path) as f:
        f.mktree(tree, types)
        f[tree].extend(arrays)
    return path


def reference_view(events, rows, cols, shape, mode="binary", select=None, row_range=None):
    """The view of every event by a plain loop over events and hits."""
    n = len(events[rows])
    out = np.zeros((n, 1, *shape), np.float32)
    for e in range(n):
        for h in range(len(events[rows][e])):
            if select and any(events[b][e][h] != v for b, v in select.items()):
                continue
            r = events[rows][e][h]
            if row_range is not None:
                lo, hi = row_range
                if not lo <= r <= hi:
                    continue
                r = min(int((r - lo) / (hi - lo) * shape[0]), shape[0] - 1)
            c = events[cols][e][h]
            out[e, 0, r, c] = 1.0 if mode == "binary" else out[e, 0, r, c] + 1.0
    return out


def data_cfg(path, views=None, target=None, loss="cross_entropy", **data):
    """The validated data section (``loss`` is kept for reading; the section alone is validated)."""
    section = {"source": "root", "path": str(path), "views": views or {"top": TOP}, "target": target or CLASSES}
    return RootData.model_validate({**section, **data})


@pytest.fixture
def events():
    return simulate(40)


@pytest.fixture
def one_file(tmp_path, events):
    return write_root(tmp_path / "events.root", events)


# --- views -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["binary", "counts"])
def test_integer_view_matches_a_per_event_loop(one_file, events, mode):
    loaded = load_root(data_cfg(one_file, views={"top": {**TOP, "mode": mode}}))
    expected = reference_view(events, "tracker_layer", "tracker_column", (9, 113), mode)
    assert loaded.images["top"].dtype == np.float32 and loaded.images["top"].shape == (40, 1, 9, 113)
    np.testing.assert_array_equal(loaded.images["top"], expected)
    if mode == "counts":
        assert loaded.images["top"].max() > 1  # some cells hold two hits


def test_selection_keeps_one_side(one_file, events):
    view = {**TOP, "mode": "counts", "select": {"tracker_side": 0}}
    loaded = load_root(data_cfg(one_file, views={"top0": view}))
    expected = reference_view(events, "tracker_layer", "tracker_column", (9, 113), "counts", {"tracker_side": 0})
    np.testing.assert_array_equal(loaded.images["top0"], expected)
    everything = reference_view(events, "tracker_layer", "tracker_column", (9, 113), "counts")
    assert 0 < expected.sum() < everything.sum()


def test_float_range_binning_matches_histogram2d(one_file, events):
    loaded = load_root(data_cfg(one_file, views={"side": {**SIDE, "mode": "counts"}}))
    for e in range(40):
        hist, _, _ = np.histogram2d(events["tracker_z"][e], events["tracker_column"][e], bins=[30, 113],
                                    range=[[-1500, 1500], [-0.5, 112.5]])
        np.testing.assert_array_equal(loaded.images["side"][e, 0], hist)
    expected = reference_view(events, "tracker_z", "tracker_column", (30, 113), "counts", row_range=(-1500, 1500))
    np.testing.assert_array_equal(loaded.images["side"], expected)


def test_three_supernemo_views_have_their_own_shapes(one_file):
    loaded = load_root(data_cfg(one_file, views={"top": TOP, "side": SIDE, "front": FRONT}))
    assert {k: v.shape for k, v in loaded.images.items()} == {
        "top": (40, 1, 9, 113), "side": (40, 1, 30, 113), "front": (40, 1, 30, 9)}


# --- targets ---------------------------------------------------------------------------------------


def test_classes_map_values_to_labels_in_list_order(one_file, events):
    loaded = load_root(data_cfg(one_file, target={"branch": "n_tracks", "classes": [4, 3, 2, 1]}))
    assert loaded.targets.dtype == np.int64
    np.testing.assert_array_equal(loaded.targets, 4 - events["n_tracks"])
    loaded = load_root(data_cfg(one_file))
    np.testing.assert_array_equal(loaded.targets, events["n_tracks"] - 1)


def test_multi_hot_target(one_file, events):
    loaded = load_root(data_cfg(one_file, target={"multi_hot": "calo_column", "size": 22}, loss="bce_with_logits"))
    assert loaded.targets.shape == (40, 22) and loaded.targets.dtype == np.float32
    assert loaded.target_names[:2] == ("calo_column_0", "calo_column_1")
    for e in range(40):
        expected = np.zeros(22, np.float32)
        expected[events["calo_column"][e]] = 1.0
        np.testing.assert_array_equal(loaded.targets[e], expected)


def _with_tracks(events, seed=1):
    """``events`` plus a per-hit track number (0..2, or -1 for noise)."""
    rng = np.random.default_rng(seed)
    return {**events, "tracker_track": [rng.integers(-1, 3, len(x)).astype(np.int32) for x in events["tracker_layer"]]}


@pytest.mark.parametrize("track", ["longest", 1])
def test_mask_target_is_the_image_of_one_tracks_hits(tmp_path, events, track):
    events = _with_tracks(events)
    path = write_root(tmp_path / "tracks.root", events)
    loaded = load_root(data_cfg(path, target={"mask": "tracker_track", "view": "top", "track": track}))
    assert loaded.targets.shape == (40, 1, 9, 113) and loaded.targets.dtype == np.float32
    for e in range(40):
        ids = events["tracker_track"][e]
        if track == "longest":  # the most hits; the lowest number among equals; never noise
            counts = [int((ids == k).sum()) for k in range(3)]
            chosen = int(np.argmax(counts)) if max(counts) else None
        else:
            chosen = track
        expected = np.zeros((1, 9, 113), np.float32)
        keep = ids == chosen
        expected[0, events["tracker_layer"][e][keep], events["tracker_column"][e][keep]] = 1.0
        np.testing.assert_array_equal(loaded.targets[e], expected, err_msg=f"event {e}")
    assert (loaded.targets <= loaded.images["top"]).all()  # a track's hits are among the event's


def test_multi_hot_product_of_two_branches(one_file, events):
    target = {"multi_hot": ["calo_row", "calo_column"], "size": [15, 22]}
    loaded = load_root(data_cfg(one_file, target=target, loss="bce_with_logits"))
    assert loaded.targets.shape == (40, 330) and loaded.target_names[23] == "calo_row_1_calo_column_1"
    for e in range(40):
        cells = np.zeros((15, 22), np.float32)
        cells[events["calo_row"][e], events["calo_column"][e]] = 1.0
        np.testing.assert_array_equal(loaded.targets[e].reshape(15, 22), cells)


# --- files and chunks ------------------------------------------------------------------------------


def test_glob_of_files_concatenates_in_sorted_order(tmp_path):
    parts = [simulate(n, seed) for n, seed in ((7, 1), (12, 2), (5, 3))]
    for i, part in enumerate(parts):
        write_root(tmp_path / f"run_{i}.root", part)
    loaded = load_root(data_cfg(tmp_path / "run_*.root"))
    assert len(loaded) == 24
    expected = np.concatenate([reference_view(p, "tracker_layer", "tracker_column", (9, 113)) for p in parts])
    np.testing.assert_array_equal(loaded.images["top"], expected)
    np.testing.assert_array_equal(loaded.targets, np.concatenate([p["n_tracks"] for p in parts]) - 1)


@pytest.mark.parametrize("step_size", [1, 3, "1 kB"])
def test_chunked_reading_gives_the_same_sets(one_file, step_size):
    views = {"top": TOP, "side": {**SIDE, "mode": "counts", "select": {"tracker_side": 1}}}
    target = {"multi_hot": "calo_column", "size": 22}
    whole = load_root(data_cfg(one_file, views=views, target=target, loss="bce", step_size=1000))
    chunked = load_root(data_cfg(one_file, views=views, target=target, loss="bce", step_size=step_size))
    for name in views:
        np.testing.assert_array_equal(whole.images[name], chunked.images[name])
    np.testing.assert_array_equal(whole.targets, chunked.targets)


def test_files_per_split(tmp_path):
    write_root(tmp_path / "train.root", simulate(10, 1))
    write_root(tmp_path / "val.root", simulate(4, 2))
    cfg = load_config({"data": {"source": "root", "files": {"train": str(tmp_path / "train.root"),
                                                            "val": str(tmp_path / "val.root")},
                                "views": {"top": TOP}, "target": CLASSES}}).data
    loaded = load_root(cfg)
    assert {k: len(v) for k, v in loaded.items()} == {"train": 10, "val": 4}
    described = describe_root(cfg, "multiclass")
    assert set(described.stand_in) == {"train", "val"}


def test_describe_from_metadata(one_file):
    cfg = data_cfg(one_file, views={"top": TOP, "side": SIDE})
    described = describe_root(cfg, "multiclass")
    assert described.pool_size == 40
    assert described.stand_in.images["side"].shape == (2, 1, 30, 113)
    assert described.stand_in.targets.tolist() == [0, 3]


# --- errors ----------------------------------------------------------------------------------------


def test_missing_file_and_glob(tmp_path):
    with pytest.raises(DataError, match=r"data.path: data file '.*nowhere.root' not found"):
        load_root(data_cfg(tmp_path / "nowhere.root"))
    with pytest.raises(DataError, match=r"data.path: no file matches '.*run_\*.root'"):
        load_root(data_cfg(tmp_path / "run_*.root"))


def test_not_a_root_file(tmp_path):
    path = tmp_path / "events.root"
    path.write_text("not root\n")
    with pytest.raises(DataError, match=r"data file '.*events.root' is not a ROOT file \(it does not start with "):
        load_root(data_cfg(path))
    path.write_bytes(b"root" + bytes(20))  # the signature, then nothing readable
    with pytest.raises(DataError, match=r"data file '.*events.root' is not a readable ROOT file \(\w+: [^\n]*\)$"):
        load_root(data_cfg(path))


def test_missing_tree_names_the_closest(one_file):
    with pytest.raises(DataError) as err:
        load_root(data_cfg(one_file, tree="hit_tre"))
    message = str(err.value)
    assert str(one_file) in message and "no tree 'hit_tre' (data.tree)" in message
    assert "did you mean 'hit_tree'" in message


def test_missing_branch_names_file_tree_and_closest(one_file):
    views = {"top": {**TOP, "cols": "tracker_colum"}}
    with pytest.raises(DataError) as err:
        describe_root(data_cfg(one_file, views=views), "multiclass")
    message = str(err.value)
    assert f"data file '{one_file}', tree 'hit_tree': no branch 'tracker_colum' (data.views.top.cols)" in message
    assert "did you mean 'tracker_column'" in message


def test_jagged_branches_of_unequal_lengths(tmp_path):
    events = simulate(5)
    events["tracker_column"][3] = np.append(events["tracker_column"][3], 7).astype(np.int32)
    path = write_root(tmp_path / "events.root", events)
    with pytest.raises(DataError) as err:
        load_root(data_cfg(path))
    message = str(err.value)
    assert f"data file '{path}', tree 'hit_tree': branches 'tracker_layer' and 'tracker_column'" in message
    assert "in entry 3" in message and "data.views.top" in message


def test_index_outside_the_shape(tmp_path):
    events = simulate(5)
    events["tracker_layer"][2] = np.array([0, 9], np.int32)
    events["tracker_column"][2] = np.array([1, 2], np.int32)
    events["tracker_side"][2] = np.array([0, 0], np.int32)
    events["tracker_z"][2] = np.array([0.0, 0.0])
    path = write_root(tmp_path / "events.root", events)
    with pytest.raises(DataError) as err:
        load_root(data_cfg(path))
    assert str(err.value) == (f"data file '{path}', tree 'hit_tree', branch 'tracker_layer' (data.views.top.rows): "
                              "value 9 in entry 2 is outside the 9 cells 0..8 of the view's shape")


def test_float_branch_as_cells_asks_for_a_range(one_file):
    with pytest.raises(DataError, match=r"branch 'tracker_z' \(data.views.side.rows\): holds float64 values, not "
                                        r"cell indices; give \{branch: tracker_z, range: \[low, high\]\}"):
        load_root(data_cfg(one_file, views={"side": {**SIDE, "rows": "tracker_z"}}))


def test_value_not_in_classes(one_file, events):
    with pytest.raises(DataError) as err:
        load_root(data_cfg(one_file, target={"branch": "n_tracks", "classes": [1, 2, 3]}))
    first = int(np.flatnonzero(events["n_tracks"] == 4)[0])
    assert str(err.value) == (f"data file '{one_file}', tree 'hit_tree', branch 'n_tracks' (data.target.branch): "
                              f"value 4 in entry {first} is not in data.target.classes [1, 2, 3]")


def test_multi_hot_index_outside_the_size(one_file):
    with pytest.raises(DataError, match=r"branch 'calo_column' \(data.target.multi_hot\): value \d+ in entry \d+ "
                                        r"is outside 0..9 \(data.target.size 10\)"):
        load_root(data_cfg(one_file, target={"multi_hot": "calo_column", "size": 10}, loss="bce"))


def test_scalar_branch_in_a_view(one_file):
    with pytest.raises(DataError, match=r"branch 'n_tracks' \(data.views.top\): holds one value per event"):
        load_root(data_cfg(one_file, views={"top": {**TOP, "cols": "n_tracks"}}))


@pytest.mark.parametrize("data, expected", [
    ({"target": {"branch": "n_tracks"}}, "- data.target.branch needs classes"),
    ({"target": {"multi_hot": "calo_column", "size": [15, 22]}},
     "- data.target.size: found [15, 22]; expected 1 size ≥ 1 (one per multi_hot branch)"),
    ({"views": {"top": {**TOP, "rows": {"branch": "tracker_z", "range": [5, 1]}}}},
     "- data.views.top.rows.range: found [5.0, 1.0]; expected [low, high] with low < high"),
    ({"views": {"top": {**TOP, "colums": "tracker_column"}}},
     "- data.views.top.colums: unknown key; did you mean 'cols'?"),
    ({"target": {"branch": "n_tracks", "classes": [1, 2], "multi_hot": "calo_column"}},
     "- data.target: expected {branch: NAME, classes: [...]} (class labels), {multi_hot: NAME, size: K} "
     "(multi-hot vectors) or {mask: NAME, view: VIEW} (one track's hits), only one of them"),
    ({"target": {"mask": "tracker_track"}}, "data.target.mask needs view: the data.views name"),
    ({"target": {"mask": "tracker_track", "view": "tpo"}}, "data.target.view: no view 'tpo'; did you mean 'top'?"),
    ({"target": {"branch": "n_tracks", "classes": [1, 2], "track": 0}}, "data.target.view and track go with mask"),
    ({"step_size": "lots"}, "data.step_size: found 'lots'; expected a number of events or a memory size"),
    ({"files": {"train": "a.root"}}, "give data.path (one pool, split by data.split) or data.files"),
])
def test_config_rules(tmp_path, data, expected):
    section = {"source": "root", "path": str(tmp_path / "a.root"), "views": {"top": TOP}, "target": CLASSES, **data}
    with pytest.raises(ConfigError) as err:
        load_config({"data": section})
    assert expected in str(err.value)


def test_resolved_config_keeps_the_short_axis_form(one_file):
    cfg = load_config({"data": {"source": "root", "path": str(one_file), "views": {"top": TOP, "side": SIDE},
                                "target": CLASSES}})
    dumped = cfg.model_dump(mode="json")["data"]["views"]
    assert dumped["top"]["rows"] == "tracker_layer"
    assert dumped["side"]["rows"] == {"branch": "tracker_z", "range": [-1500.0, 1500.0]}
    assert load_config(cfg.model_dump(mode="json")) == cfg


# --- the command line and training -----------------------------------------------------------------


def _config_file(tmp_path, path, **data):
    config = small_config(tmp_path / "runs")
    config["data"] = {"source": "root", "path": str(path), "views": {"top": TOP}, "target": CLASSES, **data}
    config["model"] = {"cnn": {"n_init_filters": 4}, "top": {"units": [16, 4]}}
    config["train"] = {**config["train"], "metrics": ["accuracy"]}
    file = tmp_path / "exp.yaml"
    file.write_text(yaml.safe_dump(config))
    return file, config


def test_validate_good_and_bad(tmp_path, one_file, capsys):
    from deepscope.cli import main

    good, _ = _config_file(tmp_path, one_file)
    assert main(["validate", str(good)]) == 0
    assert "is a valid deepscope config" in capsys.readouterr().out
    bad, _ = _config_file(tmp_path, one_file, tree="hits_tree")
    assert main(["validate", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "no tree 'hits_tree' (data.tree)" in err and "did you mean 'hit_tree'" in err


@pytest.mark.slow
def test_train_on_one_view(tmp_path):
    import deepscope

    path = write_root(tmp_path / "events.root", simulate(120, 5))
    _, config = _config_file(tmp_path, path)
    result = deepscope.train(config)
    assert result.epochs == 1 and (result.run_dir / "metrics.csv").exists()
