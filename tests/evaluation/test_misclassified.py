"""The gallery of misclassified events: which samples it picks, and the figure it writes."""

from __future__ import annotations

import numpy as np

from deepscope.evaluation.plots import misclassified_figure
from deepscope.tasks import supervised


def _capture(monkeypatch):
    seen = {}

    def fake(images, truth, pred, out, title=""):
        seen.update(images=images, truth=truth, pred=pred, title=title)

    monkeypatch.setattr("deepscope.evaluation.plots.misclassified_figure", fake)
    return seen


def test_the_first_misclassified_classes_are_read_and_drawn(monkeypatch, tmp_path):
    seen = _capture(monkeypatch)
    pred = np.array([0, 1, 2, 2, 1, 0, 3, 3, 1, 0, 2, 2])
    target = np.array([0, 2, 2, 1, 1, 3, 3, 0, 0, 1, 1, 0])
    asked = []

    def read(positions):
        asked.append(np.asarray(positions))
        return {"top": np.zeros((len(positions), 1, 9, 113))}

    supervised._misclassified_gallery({"predictions": pred, "targets": target}, read, tmp_path / "m.png", "test")
    wrong = np.flatnonzero(pred != target)
    np.testing.assert_array_equal(asked[0], wrong[:supervised.GALLERY_SIZE])
    np.testing.assert_array_equal(seen["truth"], target[wrong[:8]])
    np.testing.assert_array_equal(seen["pred"], pred[wrong[:8]])
    assert seen["title"] == f"test: {len(wrong)} of 12 misclassified"


def test_multi_label_samples_with_any_wrong_label_and_nothing_when_all_right(monkeypatch, tmp_path):
    seen = _capture(monkeypatch)
    target = np.array([[1, 0], [0, 1], [1, 1], [0, 0]], np.float32)
    pred = np.array([[1, 0], [1, 1], [1, 1], [0, 1]])
    supervised._misclassified_gallery({"predictions": pred, "targets": target},
                                      lambda pos: {"v": np.zeros((len(pos), 1, 4, 4))}, tmp_path / "m.png", "val")
    np.testing.assert_array_equal(seen["pred"], pred[[1, 3]])
    seen.clear()
    supervised._misclassified_gallery({"predictions": pred[[0, 2]], "targets": target[[0, 2]]},
                                      lambda pos: {}, tmp_path / "n.png", "val")
    assert not seen and not (tmp_path / "n.png").exists()


def test_the_figure_has_a_row_per_sample_and_a_column_per_view(tmp_path):
    images = {"top": np.random.rand(3, 1, 9, 113), "side": np.random.rand(3, 1, 30, 113),
              "volume": np.random.rand(3, 1, 4, 5, 6)}
    out = misclassified_figure(images, np.array([0, 1, 2]), np.array([1, 2, 0]), tmp_path / "g.png", "t")
    import matplotlib.image as mpimg

    assert out.exists() and mpimg.imread(out).shape[0] > 300
