"""The track_detector source: simulated events written once as a ROOT file and read by the root source."""

from __future__ import annotations

import numpy as np
import pytest

from deepscope.config.io import load_config
from deepscope.data.prepare import describe_data, prepare_data
from deepscope.data.root import load_root
from deepscope.data.tracker_source import describe_track_detector, load_track_detector
from deepscope.errors import ConfigError, DataError


def _cfg(path, **data):
    return load_config({
        "data": {"source": "track_detector", "path": str(path), "n_events": 60, **data},
        "model": {"architecture": "multiview", "cnn": {"n_init_filters": 2}, "top": {"units": [4, 4]}},
        "train": {"loss": "cross_entropy"},
    })


def test_default_views_and_labels_match_the_file_read_as_any_root_file(tmp_path):
    cfg = _cfg(tmp_path / "ev.root")
    loaded = load_track_detector(cfg.data)
    assert {k: v.shape[1:] for k, v in loaded.images.items()} == {"top": (1, 9, 113), "side": (1, 30, 113),
                                                                  "front": (1, 30, 9)}
    again = load_root(cfg.data)  # the file as the root source reads it
    for name in loaded.images:
        np.testing.assert_array_equal(loaded.images[name], again.images[name])
    import uproot

    with uproot.open(tmp_path / "ev.root") as f:
        n_tracks = f["hit_tree"]["n_tracks"].array(library="np")
        layers = f["hit_tree"]["tracker_layer"].array(library="np")
    np.testing.assert_array_equal(loaded.targets, n_tracks - 1)
    assert loaded.images["top"].reshape(60, -1).sum(1).tolist() == [float(len(set_)) for set_ in (
        {(int(a), int(b)) for a, b in zip(lay, col)} for lay, col in zip(
            layers, uproot.open(tmp_path / "ev.root")["hit_tree"]["tracker_column"].array(library="np")))]


def test_the_file_is_written_once_and_other_settings_are_refused(tmp_path):
    path = tmp_path / "ev.root"
    load_track_detector(_cfg(path).data)
    stamp = path.stat().st_mtime_ns
    load_track_detector(_cfg(path).data)
    assert path.stat().st_mtime_ns == stamp
    with pytest.raises(DataError, match=r"holds events simulated with other settings .*n_events 60 \(now 80\)"):
        load_track_detector(_cfg(path, n_events=80).data)
    assert path.stat().st_mtime_ns == stamp


def test_a_bad_simulator_option_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="data.options: .*noise_mena.*did you mean 'noise_mean'"):
        load_track_detector(_cfg(tmp_path / "ev.root", options={"noise_mena": 2}).data)
    assert not (tmp_path / "ev.root").exists()


def test_validate_describes_the_views_without_simulating(tmp_path):
    cfg = _cfg(tmp_path / "ev.root")
    spec = describe_data(cfg)
    assert {k: tuple(v.spatial) for k, v in spec.images.items()} == {"top": (9, 113), "side": (30, 113),
                                                                     "front": (30, 9)}
    assert spec.n_classes == 4 and not (tmp_path / "ev.root").exists()
    assert describe_track_detector(_cfg(tmp_path / "ev.root", target={"multi_hot": "calo_column",
                                                                       "size": 22}).data, "binary") is None


def test_calorimeter_columns_as_multi_hot_targets(tmp_path):
    cfg = _cfg(tmp_path / "ev.root", target={"multi_hot": "calo_column", "size": 22})
    prepared = prepare_data(load_config({**cfg.model_dump(mode="json"), "train": {"loss": "bce_with_logits"},
                                         "model": {"architecture": "multiview", "top": {"units": [4, 22]}}}))
    targets = prepared.stores["train"].targets
    assert targets.shape[1] == 22 and set(np.unique(targets)) <= {0.0, 1.0}
