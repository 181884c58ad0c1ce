"""Figures of image registration (atlalign): image pairs, deformation grids and Jacobian maps.

Inputs are numpy arrays in the registration convention (:mod:`deepscope.registration.ops`): images
(N, 1, H, W) and displacement fields (N, 2, H, W) in pixels, channel 0 = Δx along the columns,
channel 1 = Δy along the rows, backward warp ``registered(p) = moving(p + Δ(p))``. 3D inputs
(N, 1, D, H, W) and (N, 3, D, H, W) are drawn as their middle slice along the first spatial axis (D),
the in-plane components Δx, Δy of the field; Jacobians and fold fractions are computed on the whole
volume. At most :data:`MAX_SAMPLES` samples (rows) are drawn. Each figure is written atomically
(a temporary file in the same folder, then a rename) and its path returned.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

from deepscope.evaluation.plots import _plt

__all__ = ["MAX_SAMPLES", "deformation_grid_figure", "jacobian_figure", "pairs_figure"]

MAX_SAMPLES = 4
_FOLD_COLOUR = (0.0, 0.85, 0.0, 1.0)  # folded pixels: green, apart from the red/blue of the det J map


def _save(fig, out: Path) -> Path:
    """Write a figure as a PNG through a temporary file and a rename (never half-written), then free it."""
    import matplotlib.pyplot as plt

    out = Path(out)
    if fig.get_layout_engine() is None:
        fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            fig.savefig(f, format="png", dpi=110)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    finally:
        plt.close(fig)
    return out


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _images(images: np.ndarray, what: str) -> np.ndarray:
    """(N, 1, H, W) or (N, 1, D, H, W) -> (N, H, W) float, the middle slice of a volume."""
    arr = np.asarray(images)
    if arr.ndim not in (4, 5) or arr.shape[1] != 1:
        raise ValueError(f"{what}: expected images (N, 1, H, W) or (N, 1, D, H, W); found shape {arr.shape}")
    arr = arr[:, 0]
    if arr.ndim == 4:
        arr = arr[:, arr.shape[1] // 2]
    return arr.astype(np.float64)


def _fields(fields: np.ndarray, what: str) -> np.ndarray:
    """(N, 2, H, W) or (N, 3, D, H, W) -> (N, 2, H, W): Δx, Δy of the middle slice of a volume."""
    arr = np.asarray(fields)
    nd = arr.ndim - 2
    if nd not in (2, 3) or arr.shape[1] != nd:
        raise ValueError(f"{what}: expected fields (N, 2, H, W) or (N, 3, D, H, W) with channel 0 = Δx; "
                         f"found shape {arr.shape}")
    if nd == 3:
        arr = arr[:, :2, arr.shape[2] // 2]
    return arr.astype(np.float64)


def _same_samples(first: np.ndarray, **others: np.ndarray | None) -> None:
    for name, arr in others.items():
        if arr is not None and arr.shape[0] != first.shape[0]:
            raise ValueError(f"{name}: {arr.shape[0]} samples where the first input has {first.shape[0]}")


def _range(*images: np.ndarray) -> tuple[float, float]:
    """A shared display range of images: the 0.5-99.5 percentiles."""
    values = np.concatenate([np.ravel(i) for i in images])
    values = values[np.isfinite(values)]
    if values.size == 0:
        return 0.0, 1.0
    lo, hi = np.percentile(values, [0.5, 99.5])
    return (float(lo), float(hi)) if hi > lo else (float(lo), float(lo) + 1.0)


def _suptitle(fig, title: str) -> None:
    if title:
        fig.suptitle(title)


def pairs_figure(reference: np.ndarray, moving: np.ndarray, registered: np.ndarray, out: Path, title: str = "",
                 truth: np.ndarray | None = None) -> Path:
    """Registered pairs, one row per sample (at most 4).

    Columns: the reference, the moving image, the registered (warped moving) image, ``truth`` (the moving
    image warped by the true field) when given, |registered − reference|, and a red/green overlay of the
    reference (red) and the registered image (green): where they agree the overlay is yellow.

    Args:
        reference, moving, registered: (N, 1, H, W) or (N, 1, D, H, W) images.
        out: the PNG to write.
        title: the figure's title.
        truth: the moving images registered with the true field, same shape, or None.

    Returns:
        ``out``.

    Raises:
        ValueError: an input of the wrong shape or sample count.
    """
    ref, mov, reg = _images(reference, "reference"), _images(moving, "moving"), _images(registered, "registered")
    tru = None if truth is None else _images(truth, "truth")
    _same_samples(ref, moving=mov, registered=reg, truth=tru)
    for name, arr in (("moving", mov), ("registered", reg), ("truth", tru)):
        if arr is not None and arr.shape != ref.shape:
            raise ValueError(f"{name}: image size {arr.shape[1:]} does not match the reference's {ref.shape[1:]}")
    n = min(len(ref), MAX_SAMPLES)
    names = ["reference", "moving", "registered"] + (["true registration"] if tru is not None else []) + \
        ["|registered − reference|", "overlay: reference red,\nregistered green"]
    plt = _plt()
    h, w = ref.shape[1:]
    panel = 2.6
    fig, axes = plt.subplots(n, len(names), figsize=(panel * len(names), panel * h / w * n + 0.6 + 0.3 * bool(title)),
                             squeeze=False)
    for i in range(n):
        lo, hi = _range(ref[i], mov[i])
        shown = [ref[i], mov[i], reg[i]] + ([tru[i]] if tru is not None else [])
        for ax, img in zip(axes[i], shown):
            ax.imshow(img, cmap="gray", vmin=lo, vmax=hi, interpolation="nearest")
        diff = np.abs(reg[i] - ref[i])
        col = len(shown)
        top = float(np.nanmax(diff))
        # a thin rim of large errors (an image edge moved by a pixel) would hide the rest: the 99th percentile
        shown_top = float(np.nanpercentile(diff, 99))
        if shown_top <= 0:
            shown_top = top if top > 0 else 1.0  # identical images: an all-black panel on a nominal scale
        im = axes[i][col].imshow(diff, cmap="magma", vmin=0.0, vmax=shown_top, interpolation="nearest")
        fig.colorbar(im, ax=axes[i][col], fraction=0.046, pad=0.02, extend="max" if top > shown_top else "neither")
        axes[i][col].set_xlabel(f"mean {np.nanmean(diff):.3g}, max {top:.3g}", fontsize=8)
        rgb = np.zeros((h, w, 3))
        rgb[..., 0] = np.clip((ref[i] - lo) / (hi - lo), 0, 1)
        rgb[..., 1] = np.clip((reg[i] - lo) / (hi - lo), 0, 1)
        axes[i][col + 1].imshow(rgb, interpolation="nearest")
        axes[i][0].set_ylabel(f"sample {i}")
    for ax, name in zip(axes[0], names):
        ax.set_title(name, fontsize=9)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    _suptitle(fig, title)
    return _save(fig, out)


def _draw_grid(ax, field: np.ndarray, step: int, colour: str) -> None:
    """The lines of p + Δ(p) through every ``step``-th row and column of a (2, H, W) field, in pixel
    coordinates: where in the moving image each point of a regular grid of the output is read from."""
    h, w = field.shape[1:]
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    px, py = xs + field[0], ys + field[1]
    rows = list(range(0, h, step)) + ([h - 1] if (h - 1) % step else [])
    cols = list(range(0, w, step)) + ([w - 1] if (w - 1) % step else [])
    for r in rows:
        ax.plot(px[r], py[r], "-", color=colour, lw=0.7)
    for c in cols:
        ax.plot(px[:, c], py[:, c], "-", color=colour, lw=0.7)


def deformation_grid_figure(fields: np.ndarray, out: Path, title: str = "", truth: np.ndarray | None = None,
                            step: int = 8, moving: np.ndarray | None = None) -> Path:
    """Predicted deformations as warped grids, one row per sample (at most 4), beside the true ones.

    The grid drawn is p + Δ(p) for p on every ``step``-th row and column: the points of the moving
    image that the backward warp brings onto a regular grid. Over the moving image (``moving``) it
    shows which part of the moving image lands where.

    Args:
        fields: predicted fields (N, 2, H, W) (channel 0 = Δx) or (N, 3, D, H, W), in pixels.
        out: the PNG to write.
        title: the figure's title.
        truth: the true fields, same shape, drawn in a second column with the mean end-point error
            |Δ − Δtrue| in the first column's title; or None.
        step: pixels between grid lines.
        moving: (N, 1, H, W) or (N, 1, D, H, W) moving images drawn under the grids, or None.

    Returns:
        ``out``.

    Raises:
        ValueError: an input of the wrong shape or sample count, or ``step`` < 1.
    """
    if int(step) < 1:
        raise ValueError(f"step: expected a positive number of pixels; found {step}")
    step = int(step)
    pred = _fields(fields, "fields")
    true = None if truth is None else _fields(truth, "truth")
    back = None if moving is None else _images(moving, "moving")
    _same_samples(pred, truth=true, moving=back)
    for name, arr in (("truth", true), ("moving", back)):
        if arr is not None and arr.shape[-2:] != pred.shape[-2:]:
            raise ValueError(f"{name}: size {arr.shape[-2:]} does not match the fields' {pred.shape[-2:]}")
    n = min(len(pred), MAX_SAMPLES)
    columns = [("predicted", pred, "tab:orange")] + ([("true", true, "tab:cyan")] if true is not None else [])
    h, w = pred.shape[-2:]
    plt = _plt()
    panel = 4.0
    size = (panel * len(columns), panel * h / w * n + 0.5 + 0.3 * bool(title))
    fig, axes = plt.subplots(n, len(columns), figsize=size, squeeze=False)
    for i in range(n):
        for ax, (name, flds, colour) in zip(axes[i], columns):
            if back is not None:
                lo, hi = _range(back[i])
                ax.imshow(back[i], cmap="gray", vmin=lo, vmax=hi, interpolation="nearest")
            else:
                ax.set_facecolor("black")
            _draw_grid(ax, flds[i], step, colour)
            magnitude = np.hypot(flds[i][0], flds[i][1])
            text = f"sample {i}, {name}: max |Δ| {magnitude.max():.1f} px"
            if name == "predicted" and true is not None:
                text += f", mean |Δ − Δtrue| {np.hypot(*(pred[i] - true[i])).mean():.2f} px"
            ax.set_title(text, fontsize=8)
            ax.set_xlim(-0.5, w - 0.5)
            ax.set_ylim(h - 0.5, -0.5)  # rows down, as the images
            ax.set_aspect("equal")
            ax.set_xticks([])
            ax.set_yticks([])
    _suptitle(fig, title)
    return _save(fig, out)


def _determinants(fields: np.ndarray) -> tuple[np.ndarray, np.ndarray, int | None]:
    """det J (N, H, W) (a volume's middle slice), the fold fraction (N,) over the whole field, and the
    index of the slice drawn (None in 2D)."""
    import torch

    from deepscope.registration import ops

    arr = np.asarray(fields)
    nd = arr.ndim - 2
    if nd not in (2, 3) or arr.shape[1] != nd:
        raise ValueError(f"fields: expected (N, 2, H, W) or (N, 3, D, H, W) with channel 0 = Δx; "
                         f"found shape {arr.shape}")
    tensor = torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float64))
    det = ops.jacobian_determinant(tensor).numpy()
    folds = (det <= 0).reshape(len(det), -1).mean(1)  # the same count as ops.fold_fraction, in float64
    if nd == 3:
        middle = det.shape[1] // 2
        return det[:, middle], folds, middle
    return det, folds, None


def jacobian_figure(fields: np.ndarray, out: Path, title: str = "") -> Path:
    """det J of each field (at most 4 panels) on a diverging colormap centred at 1 (no change of area),
    folded pixels (det J ≤ 0) painted green, the fold fraction in each panel's title.

    Args:
        fields: (N, 2, H, W) (channel 0 = Δx) or (N, 3, D, H, W), in pixels; for a volume the middle
            slice is drawn and the fold fraction is over the whole volume.
        out: the PNG to write.
        title: the figure's title.

    Returns:
        ``out``.

    Raises:
        ValueError: fields of the wrong shape.
    """
    det, folds, middle = _determinants(fields)
    where, drawn = ("", "") if middle is None else (" of the volume", f"slice {middle}: ")
    n = min(len(det), MAX_SAMPLES)
    h, w = det.shape[1:]
    plt = _plt()
    panel = 3.6
    fig, axes = plt.subplots(1, n, figsize=(panel * n + 0.8, panel * h / w + 0.7 + 0.3 * bool(title)), squeeze=False)
    # the range of the bulk of the pixels: a few extreme ones at a fold's edge would wash out the rest
    span = max(float(np.nanpercentile(np.abs(det[:n] - 1.0), 99.5)), 0.05)
    image = None
    for i, ax in enumerate(axes[0]):
        image = ax.imshow(det[i], cmap="RdBu_r", vmin=1.0 - span, vmax=1.0 + span, interpolation="nearest")
        folded = det[i] <= 0
        if folded.any():
            overlay = np.zeros((h, w, 4))
            overlay[folded] = _FOLD_COLOUR
            ax.imshow(overlay, interpolation="nearest")
        ax.set_title(f"sample {i}: fold fraction {folds[i]:.4%}{where}\n"
                     f"{drawn}det J in [{det[i].min():.2f}, {det[i].max():.2f}]", fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    cbar = fig.colorbar(image, ax=list(axes[0]), fraction=0.046 / max(n, 1) * 2, pad=0.02, extend="both")
    cbar.set_label("det J (green: ≤ 0, folded)")
    _suptitle(fig, title)
    fig.set_layout_engine("constrained")
    return _save(fig, out)
