"""What a ``track_detector`` run is judged against, on the same held-out events (docs/root-data.md).

Calorimeter columns (``target: {multi_hot: calo_column}``)
    ``all_zeros`` (no column hit), ``always_1`` (every column hit) and ``geometric``: what a physicist
    reads off the event display. Each run of hit cells in the outermost tracker layer starts a track
    segment, followed inwards layer by layer (the nearest run to where the segment points); a straight
    line through the segment's run centres is extrapolated to the calorimeter face with the
    simulator's geometry (cell pitch, calorimeter gap, block width), and the block column it falls in
    is predicted, widened by ``widen`` columns each side. Only the hits are used, never the true
    tracks. The two settings, the layers in the line fit and the widening, are the ones of best F1
    on (at most 4096 events of) the training split.
Track counts (``target: {branch: n_tracks}``)
    ``majority`` (the training split's most common count) and ``hit_count``: a logistic regression on
    the event's number of hit cells in the layer x column view(s) (every view without one), fitted on
    the training split.

One track's hits (``target: {mask: tracker_track, view: ...}``, clustering)
    ``all_hits`` (every hit of the event's view: efficiency 1, purity the track's share of the hits) and
    ``largest_cluster``: the largest 8-connected group of hit cells (scipy.ndimage.label), the cheap
    clustering a track finder starts from. Nothing is fitted.

Scores are named ``baseline_<who>_<metric>`` with the model's metric names: ``f1`` (the mean of the
per-column F1, as the model's ``f1``), ``exact_match`` and ``hamming_loss``; ``accuracy`` for counts.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["calo_columns_from_hits", "fit_geometric", "layer_column_views", "tracker_baselines"]

DEPTHS = (2, 3, 4, 5, 6)       # layers in the line fit tried on the training split
WIDENINGS = (0, 1)             # columns added each side of the predicted one, tried likewise
_WINDOW = 4                    # columns a track may move from the outermost layer to the next (75 deg: 3.7)
_TOLERANCE = 2.0               # columns a run's centre may miss the line's prediction, past its half-width
_MAX_TRAIN = 4096              # training events the settings are chosen on (a fixed random subset beyond)
_CHUNK = 4096                  # events read at once


def _runs(row: np.ndarray) -> list[np.ndarray]:
    """The runs of hit cells of one layer (C,) -> column indices of each run; one missing cell inside a
    run (inefficiency) does not split it."""
    cols = np.flatnonzero(row)
    if not len(cols):
        return []
    return np.split(cols, np.flatnonzero(np.diff(cols) > 2) + 1)


def _line(xs: list[float], ys: list[float]) -> tuple[float, float]:
    """Slope and offset of the least-squares line y = slope * x + offset (two points or more)."""
    x, y = np.asarray(xs), np.asarray(ys)
    dx = x - x.mean()
    slope = float(dx @ (y - y.mean()) / (dx @ dx))
    return slope, float(y.mean() - slope * x.mean())


def _segment(runs: list[list[np.ndarray]], start: np.ndarray, depth: int) -> tuple[list[float], list[float]]:
    """(layer centres, run centres) of the track segment starting at ``start`` in the outermost layer,
    followed inwards through at most ``depth`` layers; in cell units from the tracker's inner edge and
    its first column. The first k points do not depend on ``depth`` (>= k)."""
    last = len(runs) - 1
    xs, ys = [last + 0.5], [float(start.mean()) + 0.5]
    for layer in range(last - 1, max(last - depth, -1), -1):
        if len(xs) == 1:  # no direction yet: any run within reach of the start
            guess = ys[0]
            near = [r for r in runs[layer] if r[-1] >= start[0] - _WINDOW and r[0] <= start[-1] + _WINDOW]
        else:
            slope, offset = _line(xs, ys)
            guess = slope * (layer + 0.5) + offset
            near = [r for r in runs[layer] if abs(r.mean() + 0.5 - guess) <= _TOLERANCE + (r[-1] - r[0]) / 2]
        if not near:
            break
        best = min(near, key=lambda r: abs(r.mean() + 0.5 - guess))
        xs.append(layer + 0.5)
        ys.append(float(best.mean()) + 0.5)
    return xs, ys


def _track_ends(top: np.ndarray, opts: Any, depths: tuple[int, ...]) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Where each track segment of ``top`` (N, L, C) meets the calorimeter face, per depth of the line
    fit: depth -> (event, y) with y in tracker columns from the tracker's edge. Segments of one hit
    (noise) are dropped."""
    face = opts.n_layers + opts.calo_gap / opts.cell_size  # in cells from layer 0's inner edge
    found: dict[int, tuple[list[int], list[float]]] = {d: ([], []) for d in depths}
    for i, hits in enumerate(top):
        if not hits[-1].any():
            continue
        runs = [_runs(row) for row in hits]
        for start in runs[-1]:
            xs, ys = _segment(runs, start, max(depths))
            for depth in depths:
                if min(len(xs), depth) < 2:
                    continue
                slope, offset = _line(xs[:depth], ys[:depth])
                found[depth][0].append(i)
                found[depth][1].append(slope * face + offset)
    return {d: (np.asarray(e, np.int64), np.asarray(y, np.float64)) for d, (e, y) in found.items()}


def _columns(events: np.ndarray, ends: np.ndarray, n: int, opts: Any, widen: int) -> np.ndarray:
    """(n, calo_columns) 0/1: the block column each end falls in (ends outside the wall hit nothing, as
    tracks leaving the tracker's side do), widened by ``widen`` columns each side."""
    out = np.zeros((n, opts.calo_columns), np.int64)
    inside = (ends >= 0) & (ends < opts.n_columns)
    column = np.floor(ends[inside] * opts.calo_columns / opts.n_columns).astype(np.int64)
    for shift in range(-widen, widen + 1):
        out[events[inside], np.clip(column + shift, 0, opts.calo_columns - 1)] = 1
    return out


def calo_columns_from_hits(top: np.ndarray, opts: Any, depth: int = 5, widen: int = 0) -> np.ndarray:
    """The geometric prediction of the calorimeter columns hit.

    Args:
        top: (N, n_layers, n_columns) hits (> 0) of the layer x column view; the two tracker sides may
            share one image (the columns are the same along y).
        opts: the simulator's :class:`~deepscope.data.simulators.tracker.TrackerOptions` (its geometry).
        depth: the most layers, from the outermost inwards, that a segment's line is fitted through.
        widen: columns added each side of every predicted column.

    Returns:
        (N, calo_columns) int64 0/1.
    """
    top = np.asarray(top) > 0
    return _columns(*_track_ends(top, opts, (depth,))[depth], len(top), opts, widen)


def _macro_f1(pred: np.ndarray, target: np.ndarray, weights: np.ndarray | None = None) -> float:
    from deepscope.metrics import f1

    return float(np.nanmean(f1(pred, target, weights)))


def fit_geometric(tops: list[np.ndarray], targets: np.ndarray, opts: Any) -> tuple[int, int]:
    """The (depth, widen) of :func:`calo_columns_from_hits` with the best mean per-column F1 on these
    (training) events; ties go to the fewer layers and the narrower prediction.

    Args:
        tops: the layer x column hits of the events, (N, L, C) each: one image of both sides, or one
            per side (their predictions are joined).
        targets: (N, calo_columns) 0/1.
        opts: the simulator's geometry, as :func:`calo_columns_from_hits`.
    """
    tops = [np.asarray(top) > 0 for top in tops]
    best, chosen = -1.0, (DEPTHS[0], WIDENINGS[0])
    ends = [_track_ends(top, opts, DEPTHS) for top in tops]
    for depth in DEPTHS:
        for widen in WIDENINGS:
            pred = np.maximum.reduce([_columns(*e[depth], len(targets), opts, widen) for e in ends])
            value = _macro_f1(pred, targets)
            if value > best + 1e-12:
                best, chosen = value, (depth, widen)
    return chosen


def layer_column_views(data_cfg: Any, opts: Any) -> list[str]:
    """The views that hold the tracker hits as layers x columns: those of side 0 and side 1 when both are
    configured (``select: {tracker_side: s}``), else one view of both sides; empty when there is none.
    Views selecting on anything but the side (such as the true track) are never used."""
    whole, sides = [], {}
    for name, view in data_cfg.views.items():
        if (view.rows.branch, view.cols.branch) != ("tracker_layer", "tracker_column") or \
                view.rows.range is not None or view.cols.range is not None or \
                tuple(view.shape) != (opts.n_layers, opts.n_columns) or set(view.select) - {"tracker_side"}:
            continue
        if view.select:
            sides.setdefault(int(view.select["tracker_side"]), name)
        else:
            whole.append(name)
    if {0, 1} <= set(sides):
        return [sides[0], sides[1]]
    return whole[:1]


def _read(store: Any, positions: np.ndarray, views: list[str]) -> tuple[list[np.ndarray], np.ndarray]:
    """The views' hits (N, L, C) each and the targets of ``positions``, a chunk at a time."""
    images: list[list[np.ndarray]] = [[] for _ in views]
    targets = []
    for start in range(0, len(positions), _CHUNK):
        batch = store.read(positions[start:start + _CHUNK])
        for parts, name in zip(images, views):
            parts.append(np.asarray(batch["images"][name])[:, 0] > 0)
        targets.append(np.asarray(batch["targets"]))
    return [np.concatenate(parts) for parts in images], np.concatenate(targets)


def _predict(images: list[np.ndarray], opts: Any, depth: int, widen: int) -> np.ndarray:
    return np.maximum.reduce([calo_columns_from_hits(top, opts, depth, widen) for top in images])


def _multi_label_scores(who: str, pred: np.ndarray, target: np.ndarray, weights: np.ndarray | None
                        ) -> dict[str, float]:
    from deepscope.metrics import exact_match, hamming_loss

    return {f"baseline_{who}_f1": _macro_f1(pred, target, weights),
            f"baseline_{who}_exact_match": exact_match(pred, target, weights),
            f"baseline_{who}_hamming_loss": hamming_loss(pred, target, weights)}


def _train_positions(indices: dict[str, np.ndarray]) -> np.ndarray:
    train = np.asarray(indices["train"])
    if len(train) > _MAX_TRAIN:
        train = np.sort(np.random.default_rng(0).choice(train, _MAX_TRAIN, replace=False))
    return train


def _calo_baselines(data_cfg: Any, stores: dict[str, Any], indices: dict[str, np.ndarray], split: str,
                    result: dict[str, np.ndarray]) -> tuple[dict[str, float], list[str]]:
    from deepscope.data.tracker_source import tracker_options

    targets = np.asarray(result["targets"])
    weights = result.get("sample_weights")
    scores = {**_multi_label_scores("all_zeros", np.zeros(targets.shape, np.int64), targets, weights),
              **_multi_label_scores("always_1", np.ones(targets.shape, np.int64), targets, weights)}
    model = _multi_label_scores("model", np.asarray(result["predictions"]), targets, weights)
    opts = tracker_options(data_cfg)
    views = layer_column_views(data_cfg, opts)
    geometric = data_cfg.target.multi_hot == "calo_column" and targets.shape[1] == opts.calo_columns
    note = ""
    if geometric and not views:
        note = " | geometric: no layer x column view of the tracker hits (rows tracker_layer, cols tracker_column)"
    elif geometric:
        train_images, train_targets = _read(stores["train"], _train_positions(indices), views)
        depth, widen = fit_geometric(train_images, train_targets, opts)
        images, _ = _read(stores[split], np.asarray(result["index"]), views)
        scores.update(_multi_label_scores("geometric", _predict(images, opts, depth, widen), targets, weights))
        note = (f" | geometric (line through the outermost {depth} layers' hits to the calorimeter face"
                f"{f', +-{widen} column' if widen else ''}; chosen on train) "
                + _summary(scores, "geometric"))
    line = (f"calorimeter columns: model {_summary(model, 'model')}{note} | all zeros {_summary(scores, 'all_zeros')}"
            f" | always 1 {_summary(scores, 'always_1')}")
    return scores, [line]


def _summary(scores: dict[str, float], who: str) -> str:
    return (f"F1 {scores[f'baseline_{who}_f1']:.3f}, exact {scores[f'baseline_{who}_exact_match']:.3f}, "
            f"Hamming {scores[f'baseline_{who}_hamming_loss']:.4f}")


def _count_baselines(data_cfg: Any, stores: dict[str, Any], indices: dict[str, np.ndarray], split: str,
                     result: dict[str, np.ndarray]) -> tuple[dict[str, float], list[str]]:
    from sklearn.linear_model import LogisticRegression

    from deepscope.data.tracker_source import tracker_options

    views = layer_column_views(data_cfg, tracker_options(data_cfg)) or list(data_cfg.views)

    def hit_counts(store: Any, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        counts, labels = [], []
        for start in range(0, len(positions), _CHUNK):
            batch = store.read(positions[start:start + _CHUNK])
            images = [np.asarray(batch["images"][name]) for name in views]
            counts.append(sum((image.reshape(len(image), -1) > 0).sum(1) for image in images))
            labels.append(np.asarray(batch["targets"]).reshape(-1))
        return np.concatenate(counts).astype(np.float64)[:, None], np.concatenate(labels).astype(np.int64)

    x_train, y_train = hit_counts(stores["train"], _train_positions(indices))
    y = np.asarray(result["targets"]).reshape(-1).astype(np.int64)
    majority = int(np.bincount(y_train).argmax())
    scores = {"baseline_majority_accuracy": float(np.mean(y == majority))}
    if len(np.unique(y_train)) > 1:
        x, _ = hit_counts(stores[split], np.asarray(result["index"]))
        scale = max(float(x_train.std()), 1.0)
        fit = LogisticRegression().fit(x_train / scale, y_train)
        scores["baseline_hit_count_accuracy"] = float(np.mean(fit.predict(x / scale) == y))
    model = float(np.mean(np.asarray(result["predictions"]).reshape(-1) == y))
    line = f"accuracy: model {model:.3f} | majority class {scores['baseline_majority_accuracy']:.3f}"
    if "baseline_hit_count_accuracy" in scores:
        line += f" | logistic regression on the hit count {scores['baseline_hit_count_accuracy']:.3f}"
    return scores, [line]


def tracker_baselines(data_cfg: Any, task: Any, stores: dict[str, Any], indices: dict[str, np.ndarray], split: str,
                      result: dict[str, np.ndarray]) -> tuple[dict[str, float], list[str]]:
    """The baselines of a ``track_detector`` run's predicted ``split`` and the lines that report them.

    Returns:
        ``(scores, report lines)``: for multi-hot targets ``baseline_{all_zeros,always_1,geometric}_{f1,
        exact_match,hamming_loss}`` (geometric only for ``calo_column`` targets with a layer x column
        view); for class labels ``baseline_majority_accuracy`` and ``baseline_hit_count_accuracy``.
        Empty without a training split or for other tasks.
    """
    targets = np.asarray(result["targets"])
    if not task.is_classification or "train" not in stores or not len(indices.get("train", ())) \
            or "predictions" not in result:
        return {}, []
    if getattr(data_cfg.target, "mask", None) is not None and targets.ndim == 4:
        return _cluster_baselines(data_cfg, stores, split, result)
    if data_cfg.target.multi_hot is not None and targets.ndim == 2:
        return _calo_baselines(data_cfg, stores, indices, split, result)
    if data_cfg.target.branch is not None and targets.size == len(targets):
        return _count_baselines(data_cfg, stores, indices, split, result)
    return {}, []


def largest_cluster(hits: np.ndarray) -> np.ndarray:
    """Per event, the largest 8-connected group of hit cells of (N, 1, H, W) images (ties: the group met
    first in row-major order), as 0/1 images of the same shape."""
    from scipy import ndimage

    out = np.zeros(hits.shape, np.float32)
    structure = np.ones((3, 3), bool)
    for i, image in enumerate(np.asarray(hits)[:, 0] > 0):
        labels, n = ndimage.label(image, structure=structure)
        if n:
            sizes = np.bincount(labels.ravel())[1:]
            out[i, 0] = labels == 1 + int(np.argmax(sizes))
    return out


def _cluster_baselines(data_cfg: Any, stores: dict[str, Any], split: str,
                       result: dict[str, np.ndarray]) -> tuple[dict[str, float], list[str]]:
    from deepscope.metrics import hit_efficiency, hit_purity

    targets = np.asarray(result["targets"])
    positions = np.asarray(result["index"])
    view = data_cfg.target.view
    events = np.concatenate([np.asarray(stores[split].read(positions[i:i + _CHUNK])["images"][view])
                             for i in range(0, len(positions), _CHUNK)])
    hits = (events.sum(1, keepdims=True) > 0).astype(np.float32)
    weights = result.get("sample_weights")
    scores: dict[str, float] = {}
    candidates = {"model": np.asarray(result["predictions"]), "all_hits": hits, "largest_cluster": largest_cluster(hits)}
    parts = []
    for who, pred in candidates.items():
        eff, pur = hit_efficiency(pred, targets, weights), hit_purity(pred, targets, weights)
        if who != "model":
            scores[f"baseline_{who}_hit_efficiency"], scores[f"baseline_{who}_hit_purity"] = eff, pur
        parts.append(f"{who.replace('_', ' ')} {eff:.3f} / {pur:.3f}")
    return scores, ["one track's hits, efficiency / purity: " + " | ".join(parts)]
