"""Run figures: learning curves, confusion matrix, regression and resolution plots are written."""

from __future__ import annotations

import numpy as np

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
