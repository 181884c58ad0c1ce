"""Registration metrics against independent numpy / scipy / scikit-learn references, 2D and 3D."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.ndimage import map_coordinates
from sklearn.metrics import mutual_info_score

from deepscope import metrics_torch
from deepscope.components import METRICS
from deepscope.registration import metrics as M

SPATIAL = {2: (12, 13), 3: (6, 7, 8)}


def _pair(nd: int, b: int = 2, seed: int = 0) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    s = SPATIAL[nd]
    reference = torch.rand(b, 1, *s, generator=g)
    registered = (0.7 * reference + 0.3 * torch.rand(b, 1, *s, generator=g)).clamp(0, 1)
    field = 1.5 * torch.randn(b, nd, *s, generator=g)
    true = field + 0.8 * torch.randn(b, nd, *s, generator=g)
    inverse = -field + 0.1 * torch.randn(b, nd, *s, generator=g)
    # labels: blocks of 4 structures, so structures overlap partly after the warp
    coords = torch.meshgrid(*[torch.arange(n) for n in s], indexing="ij")
    blocks = sum((c // 3) % 2 * (2 ** i) for i, c in enumerate(coords[-2:]))  # values 0..3
    labels = blocks.float().expand(b, 1, *s).clone()
    moving = labels.roll(1, dims=-1)
    moving[1] = torch.where(moving[1] == 3, torch.full_like(moving[1], 7.0), moving[1])  # a label only in moving
    # nearest warps must not hit ties: integer shifts plus at most ±0.3 px
    warp_field = torch.round(field) + 0.6 * (torch.rand(b, nd, *s, generator=g) - 0.5)
    out = {"registered": registered, "field": warp_field, "inverse": inverse}
    target = {"registered": reference, "field": true, "reference_labels": labels, "moving_labels": moving}
    return out, target


def _distance(out, target) -> np.ndarray:
    d = out["field"].numpy().astype(np.float64) - target["field"].numpy()
    return np.sqrt((d ** 2).sum(1)).reshape(len(d), -1)


def _sample_numpy(values: np.ndarray, field: np.ndarray, order: int, mode: str) -> np.ndarray:
    """values (C, *S) read at p + field(p) (field (nd, *S), x first) with scipy."""
    nd = field.shape[0]
    grid = np.meshgrid(*[np.arange(n) for n in values.shape[1:]], indexing="ij")
    coords = np.stack([grid[a] + field[nd - 1 - a] for a in range(nd)])  # array order
    return np.stack([map_coordinates(v, coords, order=order, mode=mode, cval=0.0) for v in values])


@pytest.mark.parametrize("nd", [2, 3])
def test_vector_distance_and_percentiles_match_numpy(nd):
    out, target = _pair(nd)
    d = _distance(out, target)
    np.testing.assert_allclose(M.vector_distance(out, target).numpy(), d.mean(1), rtol=1e-5)
    for q in (50, 90, 99):
        got = getattr(M, f"vector_distance_p{q}")(out, target).numpy()
        np.testing.assert_allclose(got, np.percentile(d, q, axis=1), rtol=1e-5)


@pytest.mark.parametrize("nd", [2, 3])
def test_fold_fraction_matches_np_gradient(nd):
    out, target = _pair(nd)
    f = out["field"].numpy().astype(np.float64)
    expected = []
    for s in f:
        jac = np.zeros((*s.shape[1:], nd, nd))
        for i in range(nd):
            grads = np.gradient(s[i], axis=tuple(range(nd)))
            for j in range(nd):
                jac[..., i, j] = grads[nd - 1 - j] + (i == j)
        expected.append((np.linalg.det(jac) <= 0).mean())
    assert min(expected) > 0
    np.testing.assert_allclose(M.fold_fraction(out, target).numpy(), expected, rtol=1e-6)


@pytest.mark.parametrize("nd", [2, 3])
def test_inverse_residual_matches_scipy(nd):
    out, target = _pair(nd)
    expected = []
    for fwd, inv in zip(out["field"].numpy().astype(np.float64), out["inverse"].numpy().astype(np.float64)):
        moved = _sample_numpy(fwd, inv, order=1, mode="nearest")  # edge values outside, as sample_field
        expected.append(np.sqrt(((inv + moved) ** 2).sum(0)).mean())
    np.testing.assert_allclose(M.inverse_residual(out, target).numpy(), expected, rtol=1e-4)


@pytest.mark.parametrize("nd", [2, 3])
def test_image_metrics(nd):
    out, target = _pair(nd)
    x = out["registered"].numpy().astype(np.float64).reshape(2, -1)
    y = target["registered"].numpy().astype(np.float64).reshape(2, -1)
    np.testing.assert_allclose(M.ncc(out, target).numpy(), [np.corrcoef(a, b)[0, 1] for a, b in zip(x, y)],
                               rtol=1e-4)
    peak = y.max(1) - y.min(1)
    np.testing.assert_allclose(M.psnr(out, target).numpy(), 10 * np.log10(peak ** 2 / ((x - y) ** 2).mean(1)),
                               rtol=1e-4)
    torch.testing.assert_close(M.ssim(out, target), metrics_torch.ssim(out["registered"], target["registered"]))
    same = {"registered": target["registered"]}
    torch.testing.assert_close(M.ssim(same, target), torch.ones(2))
    torch.testing.assert_close(M.ncc(same, target), torch.ones(2))


@pytest.mark.parametrize("nd", [2, 3])
def test_mutual_information_matches_sklearn(nd):
    out, target = _pair(nd)
    out["registered"][0, 0, 0] = 1.0  # the top edge falls in the last bin
    expected = []
    for a, b in zip(out["registered"].numpy(), target["registered"].numpy()):
        bins_a = np.clip(np.floor(a.ravel() * 32), 0, 31).astype(int)
        bins_b = np.clip(np.floor(b.ravel() * 32), 0, 31).astype(int)
        expected.append(mutual_info_score(bins_a, bins_b))
    np.testing.assert_allclose(M.mutual_information(out, target).numpy(), expected, rtol=1e-4)


def _overlap_numpy(out, target, kind: str) -> list[float]:
    result = []
    for field, moving, reference in zip(out["field"].numpy().astype(np.float64),
                                        target["moving_labels"].numpy(), target["reference_labels"].numpy()):
        moved = _sample_numpy(moving, field, order=0, mode="grid-constant")[0]
        reference = reference[0]
        scores = []
        for label in sorted((set(np.unique(moved)) | set(np.unique(reference))) - {0.0}):
            a, b = moved == label, reference == label
            inter = np.logical_and(a, b).sum()
            scores.append(2 * inter / (a.sum() + b.sum()) if kind == "dice" else inter / np.logical_or(a, b).sum())
        result.append(float(np.mean(scores)) if scores else math.nan)
    return result


@pytest.mark.parametrize("nd", [2, 3])
@pytest.mark.parametrize("kind", ["dice", "iou"])
def test_overlap_matches_numpy_sets(kind, nd):
    out, target = _pair(nd)
    expected = _overlap_numpy(out, target, kind)
    assert 0 < min(expected) and max(expected) < 1
    np.testing.assert_allclose(getattr(M, kind)(out, target).numpy(), expected, rtol=1e-6)
    identity = {"field": torch.zeros_like(out["field"])}
    same = dict(target, moving_labels=target["reference_labels"])
    torch.testing.assert_close(getattr(M, kind)(identity, same), torch.ones(2))
    empty = dict(target, moving_labels=torch.zeros_like(target["moving_labels"]),
                 reference_labels=torch.zeros_like(target["reference_labels"]))
    assert torch.isnan(getattr(M, kind)(out, empty)).all()


NAMES = [n for n in METRICS.names() if METRICS.entry(n).meta["task"] == "registration"]


@pytest.mark.parametrize("name", NAMES)
def test_missing_inputs_give_nan(name):
    fn = METRICS.get(name)
    out, target = _pair(2)
    keys = {"vector": ("field",), "fold": ("field",), "inverse": ("inverse",), "dice": ("moving_labels",),
            "iou": ("reference_labels",)}
    drop = next((v for k, v in keys.items() if name.startswith(k)), ("registered",))
    value = fn({k: v for k, v in out.items() if k not in drop}, {k: v for k, v in target.items() if k not in drop})
    assert value.shape == (2,) and torch.isnan(value).all()
    assert torch.isfinite(fn(out, target)).all()


@pytest.mark.parametrize("nd", [2, 3])
@pytest.mark.parametrize("name", NAMES)
def test_perfect_registration_scores_best(name, nd):
    fn, higher_is_better = METRICS.get(name), METRICS.entry(name).meta.get("maximize", False)
    out, target = _pair(nd)
    if name in ("fold_fraction", "inverse_residual"):  # properties of the prediction alone
        smooth = torch.full_like(out["field"], 0.5)
        perfect = {"field": smooth, "inverse": -smooth}
    else:
        perfect = {"registered": target["registered"], "field": target["field"]}
        target = dict(target, moving_labels=target["reference_labels"])
        perfect["field"] = torch.zeros_like(out["field"]) if name in ("dice", "iou") else target["field"]
    best, worse = fn(perfect, target), fn(out, target)
    assert best.shape == worse.shape == (2,)
    assert ((best > worse) if higher_is_better else (best < worse)).all()
