"""Figures a run leaves in ``figures/``: learning curves, confusion matrix, regression plots, weights."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

__all__ = ["confusion_matrix_figure", "dense_figure", "misclassified_figure", "roc_figure", "roc_points", "learning_curves", "parameters_figure", "lr_finder_figures", "lr_schedule_figure", "regression_figure",
           "resolution_figure", "weight_histogram", "weight_histograms_figure"]


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


def _read_lr_log(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    with Path(path).open(newline="") as f:
        rows = list(csv.DictReader(f))
    steps = np.array([float(r["step"]) for r in rows])
    lrs = np.array([float(r["lr"]) for r in rows])
    momentum = np.array([float(r["momentum"]) for r in rows]) if rows and "momentum" in rows[0] else None
    return steps, lrs, momentum


def lr_schedule_figure(source: Path | list[tuple[int, float]], out: Path) -> Path | None:
    """The learning rate (and a cycled momentum) at every optimizer step.

    Args:
        source: the run's ``lr.csv`` (step, lr[, momentum]) or ``(step, lr)`` pairs.
        out: the PNG to write.
    """
    if isinstance(source, (str, Path)):
        if not Path(source).exists():
            return None
        steps, lrs, momentum = _read_lr_log(Path(source))
    else:
        steps = np.array([h[0] for h in source], dtype=float)
        lrs, momentum = np.array([h[1] for h in source], dtype=float), None
    if not len(steps):
        return None
    # a decay over decades (plateau, step, OneCycle's anneal) gets a second, logarithmic panel; the
    # rise of a warm-up before the peak does not count
    after_peak = lrs[int(np.argmax(lrs)):]
    positive = after_peak[after_peak > 0]
    decades = len(positive) > 0 and positive.max() / positive.min() > 30
    plt = _plt()
    fig, axes = plt.subplots(1, 2 if decades else 1, figsize=(11 if decades else 6, 3.6), squeeze=False)
    for ax, log_scale in zip(axes[0], (False, True)):
        ax.plot(steps, lrs, "-", color="tab:blue", lw=1.5)
        if log_scale:
            ax.set_yscale("log")
        else:
            ax.ticklabel_format(axis="y", style="sci", scilimits=(-2, 3))
        ax.set_xlabel("optimizer step")
        ax.set_ylabel("learning rate", color="tab:blue" if momentum is not None and not log_scale else "black")
        ax.set_title("learning rate per step" + (" (log scale)" if log_scale else ""))
        ax.grid(alpha=0.3)
    if momentum is not None:
        twin = axes[0][0].twinx()
        twin.plot(steps, momentum, "-", color="tab:orange", lw=1.0)
        twin.set_ylabel("momentum", color="tab:orange")
    return _save(fig, out)


def lr_finder_figures(lr: np.ndarray, loss: np.ndarray, smoothed: np.ndarray, scale: str,
                      suggested_range: tuple[float, float] | None, suggested_lr: float | None,
                      out_loss: Path, out_lr: Path) -> tuple[Path, Path]:
    """The LR finder's loss against lr (suggested range shaded) and its lr against step.

    Args:
        lr, loss, smoothed: (N,) per scan step; non-finite values are left out.
        scale: ``log`` draws the lr axis logarithmic.
        suggested_range, suggested_lr: drawn when given.
    """
    plt = _plt()
    lr, loss, smoothed = (np.asarray(a, float) for a in (lr, loss, smoothed))
    finite = np.isfinite(loss)
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    if suggested_range is not None:
        ax.axvspan(*suggested_range, color="tab:green", alpha=0.15,
                   label=f"suggested range [{suggested_range[0]:.2g}, {suggested_range[1]:.2g}]")
    ax.plot(lr[finite], loss[finite], "-", color="tab:blue", alpha=0.35, lw=1.0, label="loss")
    ok = np.isfinite(smoothed)
    ax.plot(lr[ok], smoothed[ok], "-", color="tab:blue", lw=2.0, label="smoothed loss")
    if suggested_lr is not None:
        ax.axvline(suggested_lr, color="tab:green", ls="--", lw=1.2, label=f"suggested lr {suggested_lr:.2g}")
    if scale == "log":
        ax.set_xscale("log")
    else:
        ax.ticklabel_format(axis="x", style="sci", scilimits=(-2, 3))
    if finite.any():
        # keep the divergence from squashing the interesting part: up to a bit above the start
        shown = smoothed[ok] if ok.any() else loss[finite]
        top = max(float(np.max(shown)), float(loss[finite][0]))
        bottom = float(np.min(loss[finite]))
        pad = 0.08 * (top - bottom if top > bottom else abs(top) or 1.0)
        ax.set_ylim(bottom - pad, top + pad)
    ax.set_xlabel("learning rate")
    ax.set_ylabel("training loss")
    ax.set_title(f"LR finder: loss vs learning rate ({scale} scan, {len(lr)} steps)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    _save(fig, out_loss)

    fig, ax = plt.subplots(figsize=(5.5, 3.4))
    ax.plot(np.arange(len(lr)), lr, "-", color="tab:blue")
    if scale == "log":
        ax.set_yscale("log")
    else:
        ax.ticklabel_format(axis="y", style="sci", scilimits=(-2, 3))
    ax.set_xlabel("step of the scan")
    ax.set_ylabel("learning rate")
    ax.set_title("LR finder: learning rate per step")
    ax.grid(alpha=0.3)
    _save(fig, out_lr)
    return out_loss, out_lr


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


def roc_points(probs: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """The ROC curve of scores for a binary target, one point per distinct score, and its area.

    Args:
        probs: (N,) or (N, 1) scores, higher meaning class 1.
        target: (N,) or (N, 1) labels; >= 0.5 counts as class 1.

    Returns:
        ``(fpr, tpr, auc)``: false and true positive rates from (0, 0) to (1, 1), and the trapezoid
        area under them (tied scores give one diagonal step: the AUC counts ties as one half);
        ``auc`` is NaN when one class is missing.
    """
    p = np.asarray(probs, np.float64).reshape(-1)
    positive = np.asarray(target, np.float64).reshape(-1) >= 0.5
    order = np.argsort(-p, kind="stable")
    p, positive = p[order], positive[order]
    last = np.r_[np.flatnonzero(np.diff(p)), len(p) - 1]  # the last sample of each distinct score
    tp = np.r_[0, np.cumsum(positive)[last]].astype(np.float64)
    fp = np.r_[0, np.cumsum(~positive)[last]].astype(np.float64)
    n_pos, n_neg = tp[-1], fp[-1]
    if n_pos == 0 or n_neg == 0:
        return fp / max(n_neg, 1), tp / max(n_pos, 1), float("nan")
    fpr, tpr = fp / n_neg, tp / n_pos
    return fpr, tpr, float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))


def roc_figure(probs: np.ndarray, target: np.ndarray, out: Path, title: str = "") -> Path:
    """ROC curve of a binary classifier with its AUC in the legend, beside the chance diagonal."""
    fpr, tpr, area = roc_points(probs, target)
    labels = np.asarray(target).reshape(-1) >= 0.5
    plt = _plt()
    fig, ax = plt.subplots(figsize=(4.6, 4.4))
    ax.plot(fpr, tpr, color="tab:blue", lw=1.8, label=f"model (AUC {area:.3f})")
    ax.plot([0, 1], [0, 1], color="grey", ls="--", lw=1, label="chance (AUC 0.500)")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.005)
    ax.set_aspect("equal")
    ax.set_xlabel("false positive rate (class 0 called 1)")
    ax.set_ylabel("true positive rate (class 1 found)")
    ax.set_title(f"{title} ROC ({int(labels.sum())} of {labels.size} samples in class 1)".strip())
    ax.legend(loc="lower right")
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


def weight_histogram(values: np.ndarray, bins: int = 40) -> tuple[np.ndarray, np.ndarray, int]:
    """Histogram of a weight tensor's finite values, as ``numpy.histogram`` counts them.

    Args:
        values: any shape; flattened.
        bins: number of equal-width bins between the smallest and largest finite value.

    Returns:
        ``(counts, edges, nonfinite)``: ``counts`` (bins,), ``edges`` (bins + 1,), and how many
        values are NaN or inf (left out of the counts).
    """
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    finite = np.isfinite(v)
    counts, edges = np.histogram(v[finite], bins=bins)
    return counts, edges, int(v.size - finite.sum())


def weight_histograms_figure(weights: dict[str, np.ndarray], out: Path, title: str = "", max_panels: int = 24,
                             bins: int = 40) -> Path | None:
    """One histogram per weight tensor, titled with its name, shape, mean and std.

    Weight tensors are those with two or more dims (dense and conv kernels); biases and other 1-D
    parameters (normalization scales and shifts) are left out unless there is nothing else. Past
    ``max_panels`` tensors, the largest are drawn, in the model's order.

    Args:
        weights: name → values, in the model's order (a ``state_dict`` as NumPy arrays).
        out: the PNG to write.
        title: first part of the figure title, e.g. ``"weights after epoch 5"``.
    """
    shown, head = _weight_panels(weights, max_panels)
    if not shown:
        return None
    plt = _plt()
    ncols = min(4, len(shown))
    nrows = -(-len(shown) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.4 * ncols, 2.5 * nrows + 0.5), squeeze=False)
    for ax, (name, values) in zip(axes.flat, shown.items()):
        counts, edges, nonfinite = weight_histogram(values, bins)
        v = np.asarray(values, dtype=np.float64)
        v = v[np.isfinite(v)]
        ax.stairs(counts, edges, fill=True, alpha=0.8)
        shape = "×".join(str(n) for n in np.shape(values))
        stats = f"({shape})  mean {v.mean():.3g}  std {v.std():.3g}" if v.size else f"({shape})"
        if nonfinite:
            stats += f"  {nonfinite} NaN/inf"
        ax.set_title(f"{name}\n{stats}", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(shown):]:
        ax.set_visible(False)
    fig.suptitle(f"{title}: {head}" if title else head, fontsize=10)
    return _save(fig, out)


def _weight_panels(weights: dict[str, np.ndarray], max_panels: int) -> tuple[dict[str, np.ndarray], str]:
    """The tensors to draw, in the model's order, and a title part that says what was left out."""
    shown = {k: v for k, v in weights.items() if np.ndim(v) >= 2} or {k: v for k, v in weights.items() if np.size(v)}
    total = len(shown)
    if total > max_panels:
        largest = set(sorted(shown, key=lambda k: np.size(shown[k]), reverse=True)[:max_panels])
        shown = {k: v for k, v in shown.items() if k in largest}
    what = "weight tensors" if any(np.ndim(v) >= 2 for v in shown.values()) else "parameters"
    head = f"{len(shown)} of {total} {what} (the {max_panels} largest)" if total > len(shown) else f"{total} {what}"
    if what == "weight tensors" and any(np.ndim(v) < 2 for v in weights.values()):
        head += "; biases and other 1-D parameters not shown"
    return shown, head


def parameters_figure(pred: np.ndarray, target: np.ndarray, names: list[str], out: Path, title: str = "") -> Path:
    """Predicted vs true, one panel per target column (regressed source parameters), with the
    fraction of samples within 10% of the true value in each panel's title."""
    p = np.asarray(pred, float).reshape(len(pred), -1)
    t = np.asarray(target, float).reshape(len(target), -1)
    plt = _plt()
    k = p.shape[1]
    fig, axes = plt.subplots(1, k, figsize=(3.6 * k, 3.6), squeeze=False)
    for i, ax in enumerate(axes[0]):
        lo, hi = np.percentile(np.r_[p[:, i], t[:, i]], [0.5, 99.5])
        ax.scatter(t[:, i], p[:, i], s=8, alpha=0.6)
        ax.plot([lo, hi], [lo, hi], "r--", lw=1)
        within = np.mean(np.abs(p[:, i] - t[:, i]) <= 0.1 * np.abs(t[:, i]))
        name = names[i] if i < len(names) else str(i)
        ax.set_title(f"{name}: {100 * within:.0f}% within 10%")
        ax.set_xlabel(f"true {name}")
        ax.set_ylabel(f"predicted {name}")
    if title:
        fig.suptitle(title)
    return _save(fig, out)


def dense_figure(inputs: dict[str, np.ndarray], pred: np.ndarray, target: np.ndarray, out: Path,
                 title: str = "", max_rows: int = 3) -> Path:
    """Input / prediction / target / residual images of the first samples and, for cubes, the spectra
    through each sample's brightest target pixel (input, prediction and target along the first axis).

    2D images (C, H, W) are drawn as they are; cubes (C, D, H, W) at the slice of the brightest target
    pixel. The first channel of each is drawn; the colour scale is the target's.
    """
    image = np.asarray(next(iter(inputs.values())), float)
    pred, target = np.asarray(pred, float), np.asarray(target, float)
    rows = min(max_rows, len(pred), len(image))
    cube = target.ndim == 5
    plt = _plt()
    cols = 5 if cube else 4
    fig, axes = plt.subplots(rows, cols, figsize=(3.1 * cols, 3.0 * rows), squeeze=False)
    for r in range(rows):
        t, p, x = target[r, 0], pred[r, 0], image[r, 0]
        peak = np.unravel_index(int(np.argmax(t)), t.shape)
        if cube:
            z = peak[0]
            panels = [(x[z], "input"), (p[z], "prediction"), (t[z], "target"), (p[z] - t[z], "residual")]
        else:
            panels = [(x, "input"), (p, "prediction"), (t, "target"), (p - t, "residual")]
        vmin, vmax = float(t.min()), float(t.max()) if t.max() > t.min() else float(t.min()) + 1.0
        for c, (img, name) in enumerate(panels):
            ax = axes[r, c]
            if name == "residual":
                span = float(np.abs(img).max()) or 1.0
                shown = ax.imshow(img, origin="lower", cmap="RdBu_r", vmin=-span, vmax=span)
            elif name == "input":
                shown = ax.imshow(img, origin="lower", cmap="viridis")
            else:
                shown = ax.imshow(img, origin="lower", cmap="viridis", vmin=vmin, vmax=vmax)
            fig.colorbar(shown, ax=ax, fraction=0.046, pad=0.04)
            where = f" (channel {peak[0]})" if cube else ""
            ax.set_title(f"{name}{where}", fontsize=9)
            ax.set_xticks([])
            ax.set_yticks([])
        if cube:
            ax = axes[r, 4]
            _, y, xx = peak
            ax.plot(t[:, y, xx], "k-", label="target")
            ax.plot(p[:, y, xx], "r--", label="prediction")
            ax.set_xlabel("channel")
            ax.set_ylabel("target units", fontsize=8)
            ax.set_title(f"spectrum at (y, x) = ({y}, {xx})", fontsize=9)
            # the input is in its own units (a dirty cube in Jy/beam, perhaps scaled): a second axis
            twin = ax.twinx()
            twin.plot(x[:, y, xx], color="0.6", lw=1, label="input (right axis)")
            twin.tick_params(labelsize=7, colors="0.4")
            lines = ax.get_lines() + twin.get_lines()
            ax.legend(lines, [line.get_label() for line in lines], fontsize=7)
    if title:
        fig.suptitle(title)
    return _save(fig, out)


def _label_text(value: np.ndarray) -> str:
    value = np.asarray(value)
    if value.ndim == 0:
        return str(int(value))
    on = np.flatnonzero(value)
    return "{" + ", ".join(map(str, on.tolist())) + "}" if len(on) else "{}"


def misclassified_figure(images: dict[str, np.ndarray], truth: np.ndarray, pred: np.ndarray, out: Path,
                         title: str = "") -> Path:
    """A gallery of misclassified samples: a row per sample, its views (images, first channel; the
    middle slice of a volume) side by side, titled with the true and the predicted class (or the set
    of labels that are on, for multi-label outputs)."""
    plt = _plt()
    names = list(images)
    rows, cols = len(truth), max(1, len(names))
    widths = [max(1.0, min(6.0, images[n].shape[-1] / max(images[n].shape[-2], 1) * 1.6)) for n in names] or [2.0]
    fig, axes = plt.subplots(rows, cols, figsize=(sum(widths) + 1.0, 1.7 * rows + 0.6), squeeze=False,
                             gridspec_kw={"width_ratios": widths})
    for i in range(rows):
        for j, name in enumerate(names):
            img = np.asarray(images[name][i, 0])
            while img.ndim > 2:  # a volume: its middle slice
                img = img[img.shape[0] // 2]
            ax = axes[i, j]
            ax.imshow(img, cmap="viridis", aspect="auto", interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(name, fontsize=9)
        axes[i, 0].set_ylabel(f"true {_label_text(truth[i])}\npred {_label_text(pred[i])}", fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, out)


def clusters_figure(events: np.ndarray, predicted: np.ndarray, true: np.ndarray, out: Path, title: str = "") -> Path:
    """Clustering: a row per event, its hits (grey) with the true track's hits (left) and the predicted
    ones (right) marked; in the right panel hits found are green, missed red, wrongly taken orange.

    Args:
        events: (N, C, H, W) event images (any non-zero cell is a hit).
        predicted: (N, 1, H, W) 0/1 predicted cluster.
        true: (N, 1, H, W) 0/1 true cluster.
    """
    plt = _plt()
    n = len(events)
    h, w = events.shape[-2:]
    width = max(2.0, min(7.0, w / max(h, 1) * 1.6))
    fig, axes = plt.subplots(n, 2, figsize=(2 * width + 1.0, 1.6 * n + 0.8), squeeze=False)
    for i in range(n):
        hit = np.asarray(events[i]).reshape(-1, h, w).sum(0) > 0
        t = np.asarray(true[i]).reshape(h, w) >= 0.5
        p = np.asarray(predicted[i]).reshape(h, w) >= 0.5
        base = np.ones((h, w, 3))
        base[hit] = (0.75, 0.75, 0.75)
        left = base.copy()
        left[t] = (0.12, 0.35, 0.8)
        right = base.copy()
        right[t & p] = (0.1, 0.65, 0.2)
        right[t & ~p] = (0.85, 0.15, 0.15)
        right[p & ~t] = (1.0, 0.6, 0.0)
        eff = f"{(t & p).sum() / t.sum():.2f}" if t.any() else "-"
        pur = f"{(t & p).sum() / p.sum():.2f}" if p.any() else "-"
        truth = f"event; true track ({int(t.sum())} hits)" if t.any() else "event; no track in this view"
        for ax, img, label in ((axes[i, 0], left, truth),
                               (axes[i, 1], right, f"generated ({int(p.sum())} hits): efficiency {eff}, purity {pur}")):
            ax.imshow(img, aspect="auto", interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(label, fontsize=8)
    fig.suptitle(title + "\ngrey: hits; blue: the true track; green found, red missed, orange wrongly taken",
                 fontsize=9)
    fig.tight_layout()
    return _save(fig, out)
