"""The ``supervised`` family: one net, one (possibly weighted-sum) loss on targets.

Covers regression, binary, multi-class and multi-label classification (a sigmoid per label, a
threshold per label, BCE) and dense targets (images or cubes with the input's spatial size:
deconvolution, segmentation). DeepCalo's experiments are of this family.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from deepscope.components import LOSSES, METRICS
from deepscope.errors import ConfigError
from deepscope.tasks.base import TaskFamily

__all__ = ["SupervisedFamily", "DENSE_DEFAULT_METRICS"]

DENSE_DEFAULT_METRICS = ["psnr", "ssim"]


def _loss_meta(cfg: Any) -> dict[str, Any]:
    return LOSSES.entry(cfg.train.loss_name).meta


def _dense_loss(cfg: Any) -> str | None:
    """The first loss term that needs image targets (ssim), if any."""
    return next((c.class_name for c, _ in cfg.train.loss_terms if LOSSES.entry(c.class_name).meta.get("dense")), None)


def _expects_dense(cfg: Any) -> bool:
    """Whether the config says the targets are images: a dense loss, a deconvolver, or a source that pairs
    images (fits_dirs deconvolution)."""
    return (_dense_loss(cfg) is not None or getattr(cfg.model, "dmode", None) == "deconvolver"
            or getattr(cfg.data, "mode", None) == "deconvolution")


class SupervisedFamily(TaskFamily):
    """Targets given per sample; the loss compares the net's output with them."""

    name = "supervised"

    @classmethod
    def claims(cls, cfg: Any) -> bool:
        return all("task" in LOSSES.entry(c.class_name).meta for c, _ in cfg.train.loss_terms)

    def check_config(self, cfg: Any) -> list[str]:
        problems = []
        kind = _loss_meta(cfg)["task"]
        dmode = getattr(cfg.model, "dmode", None)
        if dmode == "classifier" and kind == "regression":
            problems.append(f"model.dmode 'classifier' contradicts train.loss '{cfg.train.loss_label}', a regression "
                            "loss: use a classification loss (cross_entropy, bce_with_logits) or dmode regressor")
        if dmode == "regressor" and kind != "regression":
            problems.append(f"model.dmode 'regressor' contradicts train.loss '{cfg.train.loss_label}', a {kind} "
                            "classification loss: use dmode classifier, or a regression loss")
        if dmode == "deconvolver" and kind == "multiclass":
            # image targets of 0/1 masks (segmentation, a sigmoid per pixel and channel) are binary
            problems.append(f"model.dmode 'deconvolver' contradicts train.loss '{cfg.train.loss_label}', a multi-class "
                            "loss: image outputs take a regression loss, or a binary one (bce_with_logits) for 0/1 masks")
        dense_loss = _dense_loss(cfg)
        if dense_loss and dmode in ("regressor", "classifier"):
            problems.append(f"train.loss '{dense_loss}' compares images but model.dmode is '{dmode}', whose output "
                            "is one value per target column: use dmode deconvolver")
        problems += _softmax_multi_hot_config(cfg)
        thresholds = cfg.train.thresholds
        if kind != "binary" and (not isinstance(thresholds, float) or thresholds != 0.5):
            problems.append(f"train.thresholds applies to binary and multi-label outputs but train.loss "
                            f"'{cfg.train.loss_label}' is a {kind} loss: remove train.thresholds")
        return problems

    def default_metrics(self, cfg: Any) -> list[str]:
        regression = _loss_meta(cfg)["task"] == "regression"
        return list(DENSE_DEFAULT_METRICS) if regression and _expects_dense(cfg) else []

    def check_data(self, cfg: Any, spec: Any) -> None:
        problems = []
        if not spec.dense:
            what = f"per-sample shape {spec.target_shape}" if spec.target_shape else "one value per sample"
            dense_loss = _dense_loss(cfg)
            if dense_loss:
                problems.append(f"train.loss '{dense_loss}' compares images but the targets have {what}: it needs "
                                "targets with the inputs' spatial size (C, *spatial)")
            dense_metrics = [m for m in cfg.train.metrics if METRICS.entry(m).meta.get("dense")]
            if dense_metrics:
                problems.append(f"train.metrics: {', '.join(dense_metrics)} compare images but the targets have "
                                f"{what}")
        else:
            per_column = [m for m in cfg.train.metrics if METRICS.entry(m).meta.get("per_column")]
            if per_column:
                problems.append(f"train.metrics: {', '.join(per_column)} are per target column, but the targets are "
                                f"images of shape {spec.target_shape}: use psnr, ssim, mse or mae")
        problems += _softmax_multi_hot_data(cfg, spec)
        thresholds = cfg.train.thresholds
        if isinstance(thresholds, (list, dict)) and _loss_meta(cfg)["task"] == "binary":
            names = spec.column_names()
            if isinstance(thresholds, list) and len(thresholds) != len(names):
                problems.append(f"train.thresholds has {len(thresholds)} entries but the targets have "
                                f"{len(names)} labels ({', '.join(names)})")
            if isinstance(thresholds, dict):
                from deepscope.errors import did_you_mean

                for label in thresholds:
                    if label not in names:
                        problems.append(f"train.thresholds: no label '{label}'{did_you_mean(label, names)} "
                                        f"(labels: {', '.join(names)})")
        if problems:
            raise ConfigError(problems=problems) if len(problems) > 1 else ConfigError(problems[0])

    def outputs(self, cfg: Any, spec: Any, standardizer: Any) -> Any:
        from deepscope.training.task import Task

        return Task(cfg.train.loss_name, spec, list(cfg.train.metrics), standardizer.target_stats,
                    thresholds=_thresholds(cfg.train.thresholds, spec))

    def loss(self, cfg: Any, outputs: Any = None) -> Any:
        from deepscope.losses import make_loss, make_weighted_loss

        terms = cfg.train.loss_terms
        if not isinstance(cfg.train.loss, list):
            return make_loss(terms[0][0])
        return make_weighted_loss(terms)

    def system(self, cfg: Any, net: Any, outputs: Any, loss: Any, **options: Any) -> Any:
        from deepscope.training.system import SupervisedSystem

        return SupervisedSystem(net, loss, outputs, cfg.train.optimizer, cfg.train.lr, **options)

    def figures(self, cfg: Any, outputs: Any, result: dict[str, Any], figures: Path, split: str,
                inputs: dict[str, Any] | None = None, read: Any = None) -> None:
        from deepscope.evaluation import plots

        spec = outputs.spec
        if outputs.is_classification and not spec.dense and read is not None:
            _misclassified_gallery(result, read, figures / f"misclassified_{split}.png", split)
        if outputs.kind == "multiclass":
            plots.confusion_matrix_figure(result["predictions"], result["targets"],
                                          figures / f"confusion_matrix_{split}.png", title=split)
        elif outputs.kind == "binary" and spec.output_size == 1 and not spec.dense:
            # one logit (or sigmoid output) per sample: the classes at the threshold, and every threshold
            target = result["targets"].reshape(-1)
            plots.confusion_matrix_figure(result["predictions"].reshape(-1), (target >= 0.5).astype(int),
                                          figures / f"confusion_matrix_{split}.png", title=split)
            plots.roc_figure(result["probabilities"], target, figures / f"roc_{split}.png", title=split)
        elif outputs.kind == "regression" and spec.dense:
            if inputs is not None:
                plots.dense_figure(inputs, result["predictions"], result["targets"],
                                   figures / f"prediction_{split}.png", title=split)
        elif outputs.kind == "regression" and spec.output_size > 1:
            plots.parameters_figure(result["predictions"], result["targets"], spec.column_names(),
                                    figures / f"parameters_{split}.png", title=split)
        elif outputs.kind == "regression":
            plots.regression_figure(result["predictions"], result["targets"], figures / f"regression_{split}.png",
                                    title=split)
            plots.resolution_figure(result["predictions"], result["targets"], figures / f"resolution_{split}.png",
                                    title=split)


def _softmax_multi_hot_config(cfg: Any) -> list[str]:
    """A loss with one softmax over the labels (``softmax_multi_hot``) takes raw logits of label columns."""
    if _loss_meta(cfg)["output"] != "softmax_logits":
        return []
    problems, loss = [], cfg.train.loss_label
    top = getattr(cfg.model, "top", None)
    act = top.final_activation.class_name if top is not None and top.final_activation else None
    if act in ("softmax", "sigmoid"):
        problems.append(f"model.top.final_activation '{act}' contradicts train.loss '{loss}', which expects "
                        "logits and applies the softmax over the labels itself: set final_activation: null")
    if getattr(cfg.model, "dmode", None) == "deconvolver":
        problems.append(f"model.dmode 'deconvolver' contradicts train.loss '{loss}', which needs one logit per "
                        "label: use dmode classifier, or bce_with_logits for 0/1 masks")
    return problems


def _softmax_multi_hot_data(cfg: Any, spec: Any) -> list[str]:
    """``softmax_multi_hot`` needs K >= 2 label columns, and a threshold for every label: the 0.5 a
    mapping gives the labels it leaves out would call at most one label of a softmax."""
    if _loss_meta(cfg)["output"] != "softmax_logits":
        return []
    loss = cfg.train.loss_label
    if spec.dense or len(spec.target_shape) != 1 or spec.target_shape[0] < 2:
        what = (f"images of shape {spec.target_shape}" if spec.dense else
                f"per-sample shape {spec.target_shape}" if spec.target_shape else "one value per sample")
        return [f"train.loss '{loss}' spreads one softmax over the labels and needs multi-hot targets (N, K) "
                f"with K >= 2 labels; found {what}: for one yes/no per sample use bce_with_logits"]
    thresholds = cfg.train.thresholds
    if isinstance(thresholds, dict):
        missing = [name for name in spec.column_names() if name not in thresholds]
        if missing:
            return [f"train.thresholds: with train.loss '{loss}' a mapping must name every label; missing: "
                    f"{', '.join(missing)} (a softmax over {spec.target_shape[0]} labels rarely passes the 0.5 "
                    f"they would get; give them, or use one value, a list or auto)"]
    return []


GALLERY_SIZE = 8  # misclassified samples drawn per split


def _misclassified_gallery(result: dict[str, Any], read: Any, out: Path, split: str) -> None:
    """The first misclassified samples of a split, their views side by side (the seed's plot_confusion.py)."""
    from deepscope.evaluation import plots

    pred, target = np.asarray(result["predictions"]), np.asarray(result["targets"])
    if pred.ndim == 1 and target.ndim > 1 and target.shape[-1] > 1:
        target = target.argmax(-1)  # one-hot targets of a multi-class output
    if pred.ndim == 1:
        truth = target.reshape(len(target)).round().astype(np.int64)
        wrong = np.flatnonzero(pred != truth)
    else:
        truth = (target.reshape(len(target), -1) >= 0.5).astype(np.int64)
        wrong = np.flatnonzero((pred.reshape(len(pred), -1) != truth).any(1))
    if not len(wrong):
        return
    shown = wrong[:GALLERY_SIZE]
    plots.misclassified_figure(read(shown), truth[shown], pred[shown], out,
                               title=f"{split}: {len(wrong)} of {len(pred)} misclassified")


def _thresholds(value: Any, spec: Any) -> Any:
    """``train.thresholds`` as one float or a list per label (a mapping fills the rest with 0.5)."""
    if isinstance(value, dict):
        return [float(value.get(name, 0.5)) for name in spec.column_names()]
    return 0.5 if value == "auto" else value  # auto: chosen on the validation split once trained
