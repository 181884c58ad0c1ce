"""The track_detector simulator: geometry against an independent straight-line computation, rates
against their settings, and the ROOT file (round trip, settings check)."""

from __future__ import annotations

import math
import os

import awkward as ak
import numpy as np
import pytest

from deepscope.data.simulators.tracker import (FIELDS, SETTINGS_KEY, TrackerOptions, check_tracker_file,
                                               ensure_tracker_file, settings, simulate_events, write_root)
from deepscope.errors import DataError

# one straight track, every crossed cell fires, exact z: what the line computation predicts
CLEAN = dict(track_probabilities=(1.0,), inefficiency=0.0, noise_mean=0.0, max_curvature=0.0, z_resolution=0.0)


def _as_lists(events) -> dict:
    return {name: ak.to_list(events[name]) for name in FIELDS}


def test_same_seed_same_events_and_events_do_not_depend_on_n():
    a, b = simulate_events(40, 3), simulate_events(40, 3)
    assert _as_lists(a) == _as_lists(b)
    assert _as_lists(simulate_events(15, 3)) == _as_lists(a[:15])
    assert ak.to_list(simulate_events(40, 4).tracker_z) != ak.to_list(a.tracker_z)


def _line_cells(o: TrackerOptions, vy: float, vz: float, d: np.ndarray) -> tuple[dict, bool, tuple[int, int]]:
    """Per layer the y interval a straight line from (0, vy, vz) along d (|x| direction d[0] > 0) spans in
    that layer (cut where it leaves the tracker), whether it reaches the calorimeter, and its block."""
    w, length = o.n_columns * o.cell_size, o.half_length
    # |x| where the line leaves the tracker's y or z span
    exits = [math.inf]
    if d[1] != 0:
        exits.append((math.copysign(w / 2, d[1]) - vy) / d[1] * d[0])
    if d[2] != 0:
        exits.append((math.copysign(length, d[2]) - vz) / d[2] * d[0])
    x_end = min(exits)
    spans = {}
    for layer in range(o.n_layers):
        x0 = o.foil_gap + layer * o.cell_size
        x1 = min(x0 + o.cell_size, x_end)
        if x1 <= x0:
            break
        ys = [vy + x * d[1] / d[0] for x in (x0, x1)]
        spans[layer] = (min(ys), max(ys))
    calo_x = o.foil_gap + o.n_layers * o.cell_size + o.calo_gap
    reaches = x_end > calo_x
    y, z = vy + calo_x * d[1] / d[0], vz + calo_x * d[2] / d[0]
    block = (int((z + length) // (2 * length / o.calo_rows)), int((y + w / 2) // (w / o.calo_columns)))
    return spans, reaches, block


def test_hits_follow_a_straight_line_from_the_vertex():
    o = TrackerOptions(**CLEAN)
    events = simulate_events(300, 11, o)
    tol = 1.5  # mm: trajectory sampling (1 mm) and float32 storage
    checked_calo = 0
    for ev in ak.to_list(events):
        assert ev["n_tracks"] == 1 and ev["tracker_track"] == [0] * len(ev["tracker_track"])
        side = ev["track_side"][0]
        d = np.array([abs(ev["track_dx"][0]), ev["track_dy"][0], ev["track_dz"][0]])
        assert (ev["track_dx"][0] > 0) == (side == 1)
        assert set(ev["tracker_side"]) <= {side}
        spans, reaches, block = _line_cells(o, ev["vertex_y"], ev["vertex_z"], d)
        layers = sorted(set(ev["tracker_layer"]))
        assert layers == list(range(len(layers)))  # consecutive from the foil
        for layer, col, z in zip(ev["tracker_layer"], ev["tracker_column"], ev["tracker_z"]):
            lo, hi = spans[layer]
            w2 = o.n_columns * o.cell_size / 2
            assert (lo - tol + w2) // o.cell_size <= col <= (hi + tol + w2) // o.cell_size
            # z where the line passes nearest the wire inside the cell (s: x-y path from the vertex),
            # within the z travelled over one sampling step
            x0, y0 = o.foil_gap + layer * o.cell_size, -w2 + col * o.cell_size
            dxy = d[:2] / np.hypot(*d[:2])
            in_x = sorted(x / dxy[0] for x in (x0, x0 + o.cell_size))
            in_y = sorted((y - ev["vertex_y"]) / dxy[1] for y in (y0, y0 + o.cell_size)) if dxy[1] else in_x
            s = float((np.array([x0, y0]) + o.cell_size / 2 - [0.0, ev["vertex_y"]]) @ dxy)
            slope = abs(d[2]) / np.hypot(*d[:2])
            s_exit = (o.half_length - np.sign(d[2]) * ev["vertex_z"]) / slope if slope else math.inf
            s = min(max(s, in_x[0], in_y[0]), in_x[1], in_y[1], s_exit)  # the track ends at the wire's end
            assert abs(z - (ev["vertex_z"] + math.copysign(s * slope, d[2]))) <= 2 * slope + 0.5
        # every cell the line crosses well inside it fires
        for layer, (lo, hi) in spans.items():
            w2 = o.n_columns * o.cell_size / 2
            for col in range(int((lo + tol + w2) // o.cell_size), int((hi - tol + w2) // o.cell_size) + 1):
                assert (layer, col) in set(zip(ev["tracker_layer"], ev["tracker_column"]))
        calo_x = o.foil_gap + o.n_layers * o.cell_size + o.calo_gap
        y_face = ev["vertex_y"] + calo_x * d[1] / d[0]
        near_edge = min(abs(abs(y_face) - o.n_columns * o.cell_size / 2),
                        abs(abs(ev["vertex_z"] + calo_x * d[2] / d[0]) - o.half_length)) < 2
        if not near_edge:
            assert len(ev["calo_row"]) == int(reaches)
            if reaches:
                assert (ev["calo_row"][0], ev["calo_column"][0], ev["calo_side"][0]) == (*block, side)
                assert o.n_layers - 1 in ev["tracker_layer"]
                checked_calo += 1
    assert checked_calo > 50


def test_curved_tracks_cross_consecutive_layers_of_one_side():
    events = simulate_events(200, 5, TrackerOptions(**{**CLEAN, "max_curvature": 1e-3}))
    for ev in ak.to_list(events):
        layers = sorted(set(ev["tracker_layer"]))
        assert layers == list(range(len(layers))) and set(ev["tracker_side"]) <= {ev["track_side"][0]}


def test_inefficiency_rate_matches_the_setting():
    base = dict(noise_mean=0.0, track_probabilities=(0.0, 0.5, 0.5))
    full = simulate_events(600, 8, inefficiency=0.0, **base)
    lossy = simulate_events(600, 8, inefficiency=0.1, **base)
    # the same cells fire apart from the lost ones (draws do not depend on the setting)
    n_full = int(ak.sum(ak.num(full.tracker_layer)))
    n_lossy = int(ak.sum(ak.num(lossy.tracker_layer)))
    for f, l in zip(ak.to_list(full[:50]), ak.to_list(lossy[:50])):
        assert set(zip(l["tracker_side"], l["tracker_layer"], l["tracker_column"])) <= \
            set(zip(f["tracker_side"], f["tracker_layer"], f["tracker_column"]))
    lost = 1 - n_lossy / n_full
    assert abs(lost - 0.1) < 4 * math.sqrt(0.1 * 0.9 / n_full), (lost, n_full)


def test_noise_rate_matches_the_setting():
    events = simulate_events(1500, 9, noise_mean=3.0, inefficiency=0.0)
    noise = ak.to_numpy(ak.sum(events.tracker_track == -1, axis=1))
    assert abs(noise.mean() - 3.0) < 4 * math.sqrt(3.0 / len(noise))
    assert abs(noise.var() - 3.0) < 0.5  # Poisson: variance = mean
    # noise hits are spread over both sides and all layers
    z = ak.to_numpy(ak.flatten(events.tracker_z[events.tracker_track == -1]))
    assert abs(z.mean()) < 100 and z.min() >= -1500 and z.max() <= 1500


def test_track_multiplicity_follows_the_probabilities():
    probs = np.array([0.1, 0.2, 0.3, 0.4])
    events = simulate_events(2000, 21, track_probabilities=tuple(probs), noise_mean=0.0)
    counts = np.bincount(ak.to_numpy(events.n_tracks), minlength=5)[1:]
    expected = probs * len(events)
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    assert counts.sum() == 2000 and chi2 < 16.27  # 99.9 % quantile, 3 degrees of freedom
    assert ak.all(ak.num(events.track_side) == events.n_tracks)


def test_calorimeter_hits_are_in_range_and_one_per_reaching_track():
    o = TrackerOptions()
    events = simulate_events(500, 2, o)
    for name, size in (("calo_row", o.calo_rows), ("calo_column", o.calo_columns), ("calo_side", 2)):
        flat = ak.to_numpy(ak.flatten(events[name]))
        assert flat.min() >= 0 and flat.max() < size
    for ev in ak.to_list(events[:200]):
        assert len(set(ev["calo_track"])) == len(ev["calo_track"])
        for t, s in zip(ev["calo_track"], ev["calo_side"]):
            assert 0 <= t < ev["n_tracks"] and s == ev["track_side"][t]
    flat = {n: ak.to_numpy(ak.flatten(events[n])) for n in ("tracker_layer", "tracker_column", "tracker_side")}
    assert flat["tracker_layer"].max() < o.n_layers and flat["tracker_column"].max() < o.n_columns
    assert set(np.unique(flat["tracker_side"])) == {0, 1}
    assert 0.3 < ak.sum(ak.num(events.calo_row)) / ak.sum(events.n_tracks) < 1


def test_root_file_round_trips(tmp_path):
    import uproot

    events = simulate_events(50, 1)
    path = write_root(tmp_path / "hits.root", events, settings={"a": 1})
    assert sorted(os.listdir(tmp_path)) == ["hits.root"]  # no temporary file left
    with uproot.open(path) as f:
        tree = f["hit_tree"]
        assert set(tree.keys()) == set(FIELDS)
        assert all(tree.typenames()[n].startswith("std::vector<") for n in FIELDS if n.startswith(("tracker", "calo")))
        back = tree.arrays(library="ak")
        assert str(f[SETTINGS_KEY]) == '{"a": 1}'
    assert _as_lists(back) == _as_lists(events)
    for name, dtype in FIELDS.items():
        assert ak.flatten(back[name], axis=None).layout.dtype == np.dtype(dtype)


def test_ensure_writes_once_and_refuses_other_settings(tmp_path):
    path = tmp_path / "sim" / "hits.root"
    o = TrackerOptions(noise_mean=0.5)
    assert not check_tracker_file(path, 20, 0, o)
    ensure_tracker_file(path, 20, 0, o)
    stamp = path.stat().st_mtime_ns
    assert check_tracker_file(path, 20, 0, o)
    ensure_tracker_file(path, 20, 0, o)
    assert path.stat().st_mtime_ns == stamp
    with pytest.raises(DataError, match=r"hits\.root.*options\.noise_mean 0\.5 \(now 1\.0\).*delete it"):
        ensure_tracker_file(path, 20, 0, TrackerOptions())
    with pytest.raises(DataError, match=r"n_events 20 \(now 30\)"):
        check_tracker_file(path, 30, 0, o, key="data.simulate.path")
    assert settings(20, 0, o)["options"]["noise_mean"] == 0.5


def test_refuses_files_it_did_not_write(tmp_path):
    other = write_root(tmp_path / "other.root", simulate_events(3, 0))  # no settings
    with pytest.raises(DataError, match=f"'{other}' was not written by the track_detector simulator"):
        check_tracker_file(other, 3, 0, TrackerOptions())
    junk = tmp_path / "junk.root"
    junk.write_text("not ROOT")
    with pytest.raises(DataError, match="junk.root' is not a ROOT file"):
        check_tracker_file(junk, 3, 0, TrackerOptions())


@pytest.mark.parametrize("field, value, message", [
    ("track_probabilities", (0.5, 0.4), "summing to 1"),
    ("inefficiency", 1.5, "probability in"),
    ("max_angle_deg", 90.0, r"\[0, 90\)"),
    ("n_layers", 0, "integer >= 1"),
    ("vertex_margin", 3000.0, "less than half"),
])
def test_bad_options_are_refused(field, value, message):
    with pytest.raises(ValueError, match=f"{field}: found .*{message}"):
        TrackerOptions(**{field: value})


def test_unknown_option_names_the_closest():
    with pytest.raises(ValueError, match="unknown option 'noise_rate'; did you mean 'noise_mean'"):
        simulate_events(1, 0, noise_rate=1.0)


def test_no_events_write_an_empty_tree(tmp_path):
    import uproot

    path = write_root(tmp_path / "empty.root", simulate_events(0, 0))
    with uproot.open(path) as f:
        assert f["hit_tree"].num_entries == 0 and set(f["hit_tree"].keys()) == set(FIELDS)
