"""The track_detector source's baselines: the geometric extrapolation of the outermost tracker hits to the
calorimeter wall, beside all-zeros / always-1 (calorimeter columns) and majority / hit-count (track counts)."""

from __future__ import annotations

import importlib
from types import SimpleNamespace

import numpy as np
import pytest

from deepscope.components import SOURCES
from deepscope.config.io import load_config
from deepscope.data.prepare import prepare_data
from deepscope.data.simulators.tracker import TrackerOptions
from deepscope.data.tracker_baselines import calo_columns_from_hits, layer_column_views, tracker_baselines

OPTS = TrackerOptions()  # 9 layers x 113 columns, 22 calorimeter columns of 113/22 = 5.14 tracker columns


def _event(*tracks: dict[int, int]) -> np.ndarray:
    """(9, 113) hits: each track a {layer: column} of single hit cells."""
    hits = np.zeros((OPTS.n_layers, OPTS.n_columns), np.float32)
    for track in tracks:
        for layer, column in track.items():
            hits[layer, column] = 1
    return hits


def test_outermost_hits_extrapolate_to_the_expected_calorimeter_columns():
    straight = {layer: 50 for layer in range(4, 9)}           # y = 50.5 columns -> block 50.5 * 22 / 113 = 9.8
    slanted = {layer: 3 * layer + 4 for layer in range(4, 9)}  # 28 at layer 8, 3 columns per layer outwards:
    # y = 3 x + 3 at the face x = 9 + 30/44 cells -> 32.05 -> block 6.24 (the last hit alone says 28.5 -> 5)
    leaving = {layer: 25 - 3 * layer for layer in range(4, 9)}  # y = -2.05 at the face: off the wall, no block
    noise = {8: 100}                                            # a lone hit in the outer layer: no track
    edge = {layer: 110 for layer in range(6, 9)}                # 110.5 -> block 21.5
    top = np.stack([_event(straight), _event(slanted), _event(leaving, noise), _event(straight, edge)])
    pred = calo_columns_from_hits(top, OPTS, depth=5)
    assert pred.shape == (4, 22)
    assert [np.flatnonzero(row).tolist() for row in pred] == [[9], [6], [], [9, 21]]
    wide = calo_columns_from_hits(top, OPTS, depth=5, widen=1)
    assert [np.flatnonzero(row).tolist() for row in wide] == [[8, 9, 10], [5, 6, 7], [], [8, 9, 10, 20, 21]]


def test_only_layer_column_views_of_the_hits_are_used():
    cfg = SimpleNamespace(views={
        "top": SimpleNamespace(rows=SimpleNamespace(branch="tracker_layer", range=None),
                               cols=SimpleNamespace(branch="tracker_column", range=None), shape=(9, 113), select={}),
        "truth": SimpleNamespace(rows=SimpleNamespace(branch="tracker_layer", range=None),
                                 cols=SimpleNamespace(branch="tracker_column", range=None), shape=(9, 113),
                                 select={"tracker_track": 0}),
        "side": SimpleNamespace(rows=SimpleNamespace(branch="tracker_z", range=(-1500.0, 1500.0)),
                                cols=SimpleNamespace(branch="tracker_column", range=None), shape=(30, 113), select={}),
    })
    assert layer_column_views(cfg, OPTS) == ["top"]
    top = vars(cfg.views["top"])
    cfg.views = {**cfg.views, **{f"top_{s}": SimpleNamespace(**{**top, "select": {"tracker_side": s}}) for s in (1, 0)}}
    assert layer_column_views(cfg, OPTS) == ["top_0", "top_1"]


def _prepared(path, target):
    cfg = load_config({
        "data": {"source": "track_detector", "path": str(path), "n_events": 300, "target": target,
                 "split": {"val": 0.2, "test": 0.2}},
        "model": {"architecture": "multiview", "top": {"units": [4, 4]}},
        "train": {"loss": "bce_with_logits" if "multi_hot" in target else "cross_entropy"},
    })
    return cfg, prepare_data(cfg)


def _run(cfg, prepared, split="test"):
    idx = prepared.indices[split]
    targets = prepared.stores[split].read(idx)["targets"]
    result = {"index": idx, "targets": targets, "predictions": np.zeros_like(targets, dtype=np.int64)}
    module, _, attr = SOURCES.entry("track_detector").meta["baselines"].partition(":")
    baselines = getattr(importlib.import_module(module), attr)
    assert baselines is tracker_baselines
    return baselines(cfg.data, SimpleNamespace(is_classification=True), prepared.stores, prepared.indices, split,
                     result)


@pytest.fixture(scope="module")
def events_file(tmp_path_factory):
    return tmp_path_factory.mktemp("tracker") / "ev.root"


def test_geometric_baseline_is_far_above_always_1_on_simulated_events(events_file):
    cfg, prepared = _prepared(events_file, {"multi_hot": "calo_column", "size": 22})
    scores, lines = _run(cfg, prepared)
    assert {f"baseline_{who}_{m}" for who in ("all_zeros", "always_1", "geometric")
            for m in ("f1", "exact_match", "hamming_loss")} == set(scores)
    assert scores["baseline_geometric_f1"] > scores["baseline_always_1_f1"] + 0.4
    assert scores["baseline_geometric_f1"] > 0.7
    assert scores["baseline_geometric_exact_match"] > scores["baseline_all_zeros_exact_match"] + 0.3
    assert scores["baseline_geometric_hamming_loss"] < scores["baseline_all_zeros_hamming_loss"]
    assert len(lines) == 1 and "geometric" in lines[0] and "always 1" in lines[0]


def test_track_counts_get_majority_and_hit_count_baselines(events_file):
    cfg, prepared = _prepared(events_file, {"branch": "n_tracks", "classes": [1, 2, 3, 4]})
    scores, lines = _run(cfg, prepared)
    assert set(scores) == {"baseline_majority_accuracy", "baseline_hit_count_accuracy"}
    assert scores["baseline_hit_count_accuracy"] > scores["baseline_majority_accuracy"]
    assert "majority class" in lines[0]


def test_largest_cluster_keeps_the_biggest_8_connected_group():
    from deepscope.data.tracker_baselines import largest_cluster

    hits = np.zeros((3, 1, 5, 8), np.float32)
    hits[0, 0, [0, 1, 2, 3], [0, 1, 2, 3]] = 1  # a diagonal track: 8-connected, 4 hits
    hits[0, 0, [0, 0, 1], [6, 7, 7]] = 1        # 3 hits elsewhere
    hits[1, 0, 2, [1, 5]] = 1                   # two single hits: the first in row-major order wins
    out = largest_cluster(hits)
    expected = np.zeros_like(hits)
    expected[0, 0, [0, 1, 2, 3], [0, 1, 2, 3]] = 1
    expected[1, 0, 2, 1] = 1
    np.testing.assert_array_equal(out, expected)  # the empty event stays empty
