"""Figures a run leaves in ``figures/``: learning curves, confusion matrix, regression plots."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

__all__ = ["confusion_matrix_figure", "learning_curves", "lr_schedule_figure", "regression_figure",
           "resolution_figure"]


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, out: Path) -> Path:
    """Write a figure (folders created) and free it."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def learning_curves(metrics_csv: Path, out: Path) -> Path | None:
    """Loss and every metric per epoch, train vs val, one panel each."""
    if not Path(metrics_csv).exists():
        return None
    with Path(metrics_csv).open(newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return None
    names = sorted({k.split("_", 1)[1] for k in rows[0] if k.startswith(("train_", "val_"))},
                   key=lambda n: (n != "loss", n))
    plt = _plt()
    fig, axes = plt.subplots(1, len(names), figsize=(4.2 * len(names), 3.4), squeeze=False)
    epochs = np.array([float(r["epoch"]) + 1 for r in rows])
    for ax, name in zip(axes[0], names):
        for stage, style in (("train", "-"), ("val", "--")):
            key = f"{stage}_{name}"
            values = np.array([float(r[key]) if r.get(key) not in (None, "") else np.nan for r in rows])
            if np.isfinite(values).any():
                ax.plot(epochs, values, style, marker="o", ms=3, label=stage)
        ax.set_xlabel("epoch")
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.set_title(name)
        if name == "loss" and np.nanmin([float(r.get("train_loss") or np.nan) for r in rows]) > 0:
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
        ax.legend()
    return _save(fig, out)


def lr_schedule_figure(history: list[tuple[int, float]], out: Path) -> Path | None:
    """The learning rate used at every optimizer step (``(step, lr)`` pairs)."""
    if not history:
        return None
    steps = np.array([h[0] for h in history], dtype=float)
    lrs = np.array([h[1] for h in history], dtype=float)
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.5, 3.4))
    ax.plot(steps, lrs, "-")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("learning rate")
    ax.set_title("learning-rate schedule")
    ax.grid(alpha=0.3)
    return _save(fig, out)


def confusion_matrix_figure(pred: np.ndarray, target: np.ndarray, out: Path, title: str = "") -> Path:
    """Row-normalised confusion matrix with counts, true class on the rows."""
    labels = target.argmax(-1) if target.ndim > 1 else target.astype(int)
    n = int(max(labels.max(), pred.max())) + 1
    cm = np.zeros((n, n), dtype=int)
    np.add.at(cm, (labels, pred.astype(int)), 1)
    frac = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    plt = _plt()
    size = max(4.0, 0.45 * n + 2)
    fig, ax = plt.subplots(figsize=(size, size * 0.9))
    im = ax.imshow(frac, cmap="Blues", vmin=0, vmax=1)
    for i in range(n):
        for j in range(n):
            if cm[i, j]:
                ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=8,
                        color="white" if frac[i, j] > 0.5 else "black")
    ax.set_xticks(range(n))
    ax.set_yticks(range(n))
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    acc = np.trace(cm) / max(cm.sum(), 1)
    ax.set_title(f"{title} accuracy {acc:.3f} ({cm.sum()} samples)".strip())
    fig.colorbar(im, ax=ax, fraction=0.046, label="fraction of true class")
    return _save(fig, out)


def regression_figure(pred: np.ndarray, target: np.ndarray, out: Path, title: str = "") -> Path:
    """Predicted vs true (2D histogram with the diagonal) and the residual distribution."""
    p, t = np.asarray(pred, float).reshape(-1), np.asarray(target, float).reshape(-1)
    plt = _plt()
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.8))
    lo, hi = np.percentile(np.r_[p, t], [0.5, 99.5])
    if len(p) > 500:
        a.hist2d(t, p, bins=60, range=[[lo, hi], [lo, hi]], cmap="viridis", cmin=1)
    else:
        a.scatter(t, p, s=8, alpha=0.6)
    a.plot([lo, hi], [lo, hi], "r--", lw=1)
    a.set_xlabel("true")
    a.set_ylabel("predicted")
    a.set_title(f"{title} predicted vs true".strip())
    resid = p - t
    spread = np.ptp(resid) > 1e-9 * max(1.0, float(np.abs(resid).max()))
    b.hist(resid, bins=60 if spread else 1, color="tab:blue", alpha=0.8)  # (near) constant: one bar
    b.axvline(0, color="r", ls="--", lw=1)
    b.set_xlabel("predicted − true")
    b.set_title(f"residuals: mean {resid.mean():.3g}, std {resid.std():.3g}")
    return _save(fig, out)


def resolution_figure(pred: np.ndarray, target: np.ndarray, out: Path, title: str = "",
                      baseline: np.ndarray | None = None, bins: int = 8) -> Path | None:
    """Relative resolution IQR / (1.349 · median) of pred/target and its median, in bins of the target.

    The quantity energy-regression users quote (DeepCalo's calorimeter use case). Drawn only for
    one positive target per sample; ``baseline`` (e.g. the accordion energy) is drawn beside it.
    """
    from deepscope.metrics import resolution

    p, t = np.asarray(pred, float).reshape(len(pred), -1), np.asarray(target, float).reshape(len(target), -1)
    if p.shape[1] != 1 or t.shape[1] != 1 or len(t) < 4 * bins or not (t > 0).all():
        return None
    p, t = p[:, 0], t[:, 0]
    edges = np.unique(np.quantile(t, np.linspace(0, 1, bins + 1)))
    centers = 0.5 * (edges[:-1] + edges[1:])
    series = {"model": p} if baseline is None else {"model": p, "baseline": np.asarray(baseline, float).reshape(-1)}
    plt = _plt()
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.6))
    for label, values in series.items():
        res, med = [], []
        for lo, hi in zip(edges[:-1], edges[1:]):
            sel = (t >= lo) & (t <= hi)
            res.append(resolution(values[sel], t[sel]))
            med.append(float(np.median(values[sel] / t[sel])))
        a.plot(centers, res, marker="o", label=f"{label} (all: {resolution(values, t):.4f})")
        b.plot(centers, med, marker="o", label=label)
    a.set_xlabel("target")
    a.set_ylabel("IQR / (1.349 · median) of pred/target")
    a.set_title(f"{title} resolution".strip())
    b.axhline(1.0, color="k", lw=0.8, ls="--")
    b.set_xlabel("target")
    b.set_ylabel("median pred/target")
    b.set_title(f"{title} scale".strip())
    for ax in (a, b):
        ax.grid(alpha=0.3)
        ax.legend()
    return _save(fig, out)
