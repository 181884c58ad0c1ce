"""Run figures: learning curves, confusion matrix, regression and resolution plots are written."""

from __future__ import annotations

import numpy as np
import pytest

from deepscope.evaluation import plots


def test_resolution_figure_for_positive_targets(tmp_path):
    rng = np.random.default_rng(0)
    t = rng.uniform(10, 250, 2000)
    p = t * (1 + rng.normal(0, 0.05, t.size))
    out = plots.resolution_figure(p, t, tmp_path / "res.png", baseline=t * 1.1)
    assert out is not None and out.stat().st_size > 10_000


def test_resolution_figure_is_skipped_where_a_ratio_means_nothing(tmp_path):
    t = np.linspace(-1, 1, 500)
    assert plots.resolution_figure(t, t, tmp_path / "a.png") is None  # non-positive targets
    assert plots.resolution_figure(np.ones((500, 2)), np.ones((500, 2)), tmp_path / "b.png") is None  # 2 outputs
    assert not list(tmp_path.iterdir())


def test_confusion_matrix_and_regression_figures(tmp_path):
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 4, 300)
    assert plots.confusion_matrix_figure(labels, labels, tmp_path / "cm.png").exists()
    y = rng.normal(size=300)
    assert plots.regression_figure(y + 0.1, y, tmp_path / "reg.png").exists()


@pytest.mark.parametrize("values", [
    np.random.default_rng(2).normal(size=(16, 3, 3, 3)),  # a conv kernel
    np.full((4, 5), 0.25),  # a constant tensor
    np.array([[1.0, np.nan], [np.inf, -2.0]]),  # non-finite values are counted apart
], ids=["kernel", "constant", "nonfinite"])
def test_weight_histogram_counts_as_numpy(values):
    counts, edges, nonfinite = plots.weight_histogram(values, bins=20)
    finite = values[np.isfinite(values)]
    want_counts, want_edges = np.histogram(finite, bins=20)
    np.testing.assert_array_equal(counts, want_counts)
    np.testing.assert_array_equal(edges, want_edges)
    assert nonfinite == values.size - finite.size
    assert counts.sum() == finite.size


def test_weight_histograms_figure_draws_the_largest_weight_tensors(tmp_path):
    rng = np.random.default_rng(3)
    weights = {f"layer{i}.weight": rng.normal(size=(4, i + 1)) for i in range(30)}
    weights["layer0.bias"] = np.zeros(4)
    shown, head = plots._weight_panels(weights, max_panels=6)
    assert list(shown) == [f"layer{i}.weight" for i in range(24, 30)]  # the largest, in model order
    assert head == "6 of 30 weight tensors (the 6 largest); biases and other 1-D parameters not shown"
    assert plots.weight_histograms_figure(weights, tmp_path / "w.png", title="epoch 1", max_panels=6).exists()
    assert plots.weight_histograms_figure({"b": np.zeros(3)}, tmp_path / "b.png").exists()  # only 1-D: drawn
    assert plots.weight_histograms_figure({}, tmp_path / "none.png") is None


@pytest.mark.parametrize("spatial", [(6, 12, 12), (12, 12)])
def test_dense_figure_draws_cubes_and_images(tmp_path, spatial):
    rng = np.random.default_rng(0)
    target = np.zeros((4, 1, *spatial))
    target[(slice(None), 0, *(s // 2 for s in spatial))] = 1.0  # a bright pixel in each sample
    pred = target + rng.normal(0, 0.01, target.shape)
    inputs = {"cube": target + rng.normal(0, 0.1, target.shape)}
    out = plots.dense_figure(inputs, pred, target, tmp_path / "dense.png", title="test")
    assert out.stat().st_size > 10_000
    # an all-zero target (an empty sky) is drawn too
    plots.dense_figure(inputs, pred, np.zeros_like(target), tmp_path / "empty.png")
    assert (tmp_path / "empty.png").is_file()


def test_parameters_figure_has_a_panel_per_column(tmp_path):
    rng = np.random.default_rng(0)
    t = rng.uniform(1, 2, (50, 2))
    out = plots.parameters_figure(t * 1.05, t, ["flux", "fwhm_x"], tmp_path / "p.png", title="test")
    assert out.stat().st_size > 10_000
