"""The ROC curve figure of binary runs: its points and area against scikit-learn."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score, roc_curve

from deepscope.evaluation import plots


def _legend(monkeypatch, draw):
    """The legend texts of the figure ``draw()`` makes (the figure is captured before it is saved)."""
    captured = {}
    save = plots._save

    def keep(fig, out):
        captured["legend"] = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
        return save(fig, out)

    monkeypatch.setattr(plots, "_save", keep)
    draw()
    return captured["legend"]


@pytest.mark.parametrize("ties", [False, True], ids=["distinct", "tied"])
def test_roc_points_match_sklearn(ties):
    rng = np.random.default_rng(3)
    target = rng.integers(0, 2, 400)
    scores = rng.normal(target * 0.7, 1.0)
    if ties:
        scores = np.round(scores, 1)  # many equal scores: one diagonal step each
    fpr, tpr, area = plots.roc_points(scores[:, None], target.astype(np.float32)[:, None])
    ref_fpr, ref_tpr, _ = roc_curve(target, scores, drop_intermediate=False)
    np.testing.assert_allclose(fpr, ref_fpr)
    np.testing.assert_allclose(tpr, ref_tpr)
    assert area == pytest.approx(roc_auc_score(target, scores), abs=1e-12)


def test_one_class_has_no_area():
    assert np.isnan(plots.roc_points(np.linspace(0, 1, 10), np.ones(10))[2])


def test_roc_figure_shows_the_auc_and_the_chance_diagonal(tmp_path, monkeypatch):
    rng = np.random.default_rng(4)
    target = rng.integers(0, 2, 300)
    probs = 1 / (1 + np.exp(-rng.normal(1.2 * (target - 0.5), 1.0)))
    out = tmp_path / "roc.png"
    legend = _legend(monkeypatch, lambda: plots.roc_figure(probs, target, out, title="test"))
    assert out.stat().st_size > 10_000
    assert legend == [f"model (AUC {roc_auc_score(target, probs):.3f})", "chance (AUC 0.500)"]
