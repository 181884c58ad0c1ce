"""The registration figures: files written, 2D and 3D inputs, and what they print checked against the ops."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from deepscope.evaluation import registration_plots as rp
from deepscope.registration import ops

PNG = b"\x89PNG\r\n\x1a\n"


def _images(n: int, spatial: tuple[int, ...], seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(size=(n, 1, *spatial)).astype(np.float32)


def _fields(n: int, spatial: tuple[int, ...], amplitude: float = 2.0, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    coarse = torch.from_numpy(rng.normal(size=(n, len(spatial), *[3] * len(spatial))))
    mode = "bilinear" if len(spatial) == 2 else "trilinear"
    field = torch.nn.functional.interpolate(coarse, size=spatial, mode=mode, align_corners=True)
    return (field * amplitude / field.abs().max()).numpy()


def _is_png(path) -> bool:
    data = path.read_bytes()
    return len(data) > 1000 and data.startswith(PNG)


@pytest.fixture(autouse=True)
def _capture_titles(monkeypatch):
    """Keep the last figure's axes titles (the figure is closed once saved)."""
    seen: dict[str, list[str]] = {"titles": [], "suptitle": []}
    original = rp._save

    def save(fig, out):
        seen["titles"] = [ax.get_title() for ax in fig.axes]
        seen["xlabels"] = [ax.get_xlabel() for ax in fig.axes]
        seen["suptitle"] = [fig._suptitle.get_text()] if fig._suptitle is not None else []
        seen["n_axes"] = len(fig.axes)
        return original(fig, out)

    monkeypatch.setattr(rp, "_save", save)
    return seen


@pytest.mark.parametrize("spatial", [(24, 34), (5, 20, 26)], ids=["2d", "3d"])
def test_pairs_figure(tmp_path, spatial, _capture_titles):
    ref, mov, reg = _images(3, spatial, 0), _images(3, spatial, 1), _images(3, spatial, 2)
    out = rp.pairs_figure(ref, mov, reg, tmp_path / "sub" / "pairs.png", title="pairs", truth=_images(3, spatial, 3))
    assert out == tmp_path / "sub" / "pairs.png" and _is_png(out)
    titles = [t for t in _capture_titles["titles"] if t]
    assert titles[:4] == ["reference", "moving", "registered", "true registration"]
    assert _capture_titles["suptitle"] == ["pairs"]
    # the difference panels' labels hold the mean |registered - reference| of the shown slice
    means = [float(m) for m in re.findall(r"mean ([0-9.e+-]+),", " ".join(_capture_titles["xlabels"]))]
    sl = (slice(None), 0) + ((spatial[0] // 2,) if len(spatial) == 3 else ())
    expected = np.abs(reg[sl] - ref[sl]).reshape(3, -1).mean(1)
    np.testing.assert_allclose(means, expected, rtol=1e-2)
    assert not list(tmp_path.glob("sub/.*.tmp")), "no temporary file left behind"


def test_pairs_figure_at_most_four_rows_and_no_truth(tmp_path, _capture_titles):
    spatial = (16, 20)
    ims = [_images(7, spatial, s) for s in range(3)]
    out = rp.pairs_figure(*ims, tmp_path / "pairs.png")
    assert _is_png(out)
    # 4 rows x 5 columns, plus one colorbar per row
    assert _capture_titles["n_axes"] == 4 * 5 + 4
    assert "true registration" not in _capture_titles["titles"]


@pytest.mark.parametrize("spatial", [(24, 34), (5, 20, 26)], ids=["2d", "3d"])
def test_deformation_grid_figure(tmp_path, spatial, _capture_titles):
    pred, true = _fields(2, spatial, seed=1), _fields(2, spatial, seed=2)
    out = rp.deformation_grid_figure(pred, tmp_path / "grid.png", title="grid", truth=true, step=4,
                                     moving=_images(2, spatial))
    assert _is_png(out)
    titles = _capture_titles["titles"]
    assert len(titles) == 4 and "true" in titles[1]
    sl = (slice(None), slice(0, 2)) + ((spatial[0] // 2,) if len(spatial) == 3 else ())
    for i in range(2):
        epe = float(re.search(r"mean \|Δ − Δtrue\| ([0-9.]+) px", titles[2 * i]).group(1))
        expected = np.hypot(*(pred[sl][i] - true[sl][i])).mean()
        assert epe == pytest.approx(expected, abs=0.006)
        top = float(re.search(r"max \|Δ\| ([0-9.]+) px", titles[2 * i]).group(1))
        assert top == pytest.approx(np.hypot(*pred[sl][i]).max(), abs=0.06)


def test_deformation_grid_lines_follow_the_field(tmp_path):
    """A uniform shift moves every drawn grid line by the shift."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    field = np.zeros((2, 17, 25))
    field[0], field[1] = 1.5, -2.0
    fig, ax = plt.subplots()
    rp._draw_grid(ax, field, 8, "k")
    lines = ax.get_lines()
    assert len(lines) == 3 + 4  # rows 0, 8, 16; columns 0, 8, 16, 24
    np.testing.assert_allclose(lines[1].get_ydata(), 8 - 2.0)
    np.testing.assert_allclose(lines[1].get_xdata(), np.arange(25) + 1.5)
    np.testing.assert_allclose(lines[3].get_xdata(), 0 + 1.5)
    plt.close(fig)
    rp.deformation_grid_figure(field[None], tmp_path / "plain.png")  # no background, no truth
    assert _is_png(tmp_path / "plain.png")


def _folding_field(n: int, h: int, w: int) -> np.ndarray:
    field = np.zeros((n, 2, h, w))
    for i in range(n):
        field[i, 0, : 2 * i] = -2.0 * np.arange(w)  # 2i folded rows: det J = -1 there
    return field


@pytest.mark.parametrize("nd", [2, 3])
def test_jacobian_figure_fold_fraction_in_titles(tmp_path, nd, _capture_titles):
    h, w = 20, 24
    field = _folding_field(3, h, w)
    if nd == 3:  # the same fold in every slice, plus a zero Δz
        field = np.concatenate([np.repeat(field[:, :, None], 6, 2), np.zeros((3, 1, 6, h, w))], 1)
    out = rp.jacobian_figure(field, tmp_path / "jac.png", title="det J")
    assert _is_png(out)
    expected = ops.fold_fraction(torch.from_numpy(field)).numpy()
    np.testing.assert_allclose(expected, [0.0, 2 / h, 4 / h])
    titles = [t for t in _capture_titles["titles"] if t.startswith("sample")]
    assert len(titles) == 3
    printed = [float(re.search(r"fold fraction ([0-9.]+)%", t).group(1)) / 100 for t in titles]
    np.testing.assert_allclose(printed, expected, atol=5e-7)


def test_jacobian_figure_3d_counts_the_whole_volume(tmp_path, _capture_titles):
    field = np.zeros((1, 3, 4, 10, 12))
    field[0, 0, 0] = -2.0 * np.arange(12)  # only the first slice folds; the middle one (index 2) does not
    rp.jacobian_figure(field, tmp_path / "jac3d.png")
    title = next(t for t in _capture_titles["titles"] if t.startswith("sample"))
    assert float(re.search(r"fold fraction ([0-9.]+)%", title).group(1)) / 100 == pytest.approx(
        float(ops.fold_fraction(torch.from_numpy(field))[0]), abs=5e-7)
    assert "of the volume\nslice 2: det J in [1.00, 1.00]" in title  # the drawn middle slice


@pytest.mark.parametrize("call, message", [
    (lambda p: rp.pairs_figure(np.zeros((2, 3, 8, 8)), np.zeros((2, 1, 8, 8)), np.zeros((2, 1, 8, 8)), p),
     r"reference: expected images \(N, 1, H, W\)"),
    (lambda p: rp.pairs_figure(np.zeros((2, 1, 8, 8)), np.zeros((3, 1, 8, 8)), np.zeros((2, 1, 8, 8)), p),
     "moving: 3 samples where the first input has 2"),
    (lambda p: rp.pairs_figure(np.zeros((2, 1, 8, 8)), np.zeros((2, 1, 8, 9)), np.zeros((2, 1, 8, 8)), p),
     "moving: image size"),
    (lambda p: rp.deformation_grid_figure(np.zeros((2, 3, 8, 8)), p), r"fields: expected fields \(N, 2, H, W\)"),
    (lambda p: rp.deformation_grid_figure(np.zeros((2, 2, 8, 8)), p, step=0), "step: expected a positive"),
    (lambda p: rp.deformation_grid_figure(np.zeros((2, 2, 8, 8)), p, truth=np.zeros((2, 2, 8, 9))), "truth: size"),
    (lambda p: rp.jacobian_figure(np.zeros((2, 2, 8)), p), r"fields: expected \(N, 2, H, W\)"),
], ids=["pairs-channels", "pairs-samples", "pairs-size", "grid-channels", "grid-step", "grid-truth", "jacobian"])
def test_bad_inputs_raise(tmp_path, call, message):
    with pytest.raises(ValueError, match=message):
        call(tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()
