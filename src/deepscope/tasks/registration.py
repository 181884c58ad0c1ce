"""The ``registration`` family: a net that aligns a moving image to a reference (atlalign).

Pairs come in as two images, ``reference`` and ``moving``; the net (``registration_global``,
``registration_local`` or ``registration_merged``) outputs the registered image, the forward field
and, with ``compute_inv``, the inverse field (:mod:`deepscope.registration.task`). Each output has its
own loss (``train.loss: {registered: ncc_9, field: vdclip2, inverse: vdclip2}``) and weight
(``train.loss_weights``), as atlalign's ``losses`` / ``losses_weights``; the metrics are the
registration metrics (vector distance, folds, inverse residual, image similarity, Dice of warped
labels), scored beside the identity field (the registration source's baselines).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from deepscope.components import LOSSES
from deepscope.errors import ConfigError, did_you_mean
from deepscope.tasks.base import TaskFamily

__all__ = ["RegistrationFamily", "DEFAULT_METRICS", "ARCHITECTURES"]

ARCHITECTURES = ("registration_global", "registration_local", "registration_merged")
DEFAULT_METRICS = ["vector_distance", "vector_distance_p90", "fold_fraction", "registered_psnr", "registered_ssim",
                   "registered_ncc", "mutual_information", "dice", "iou"]
LABEL_METRICS = ("dice", "iou")
#: metrics cheap enough to score on every training batch (train_<metric>); the others (percentiles, SSIM,
#: mutual information, label overlaps) cost more than the step itself and are scored on validation only
CHEAP_METRICS = ("vector_distance", "fold_fraction", "inverse_residual", "registered_psnr", "registered_ncc")
FIGURE_SAMPLES = 4


def _inverse(cfg: Any) -> bool:
    return bool(getattr(cfg.model, "compute_inv", False))


class RegistrationFamily(TaskFamily):
    """Registered image + displacement field (+ inverse) from (reference, moving) pairs."""

    name = "registration"
    priority = 1  # its losses are regression losses that supervised would claim too
    output_losses = True
    metrics_task = "registration"

    @classmethod
    def claims(cls, cfg: Any) -> bool:
        return getattr(cfg.model, "architecture", None) in ARCHITECTURES

    def check_config(self, cfg: Any) -> list[str]:
        problems = []
        if cfg.model.architecture not in ARCHITECTURES:
            return [f"task: registration trains model.architecture {', '.join(ARCHITECTURES)}, not "
                    f"'{cfg.model.architecture}'"]
        t = cfg.train
        outputs = ["registered", "field"] + (["inverse"] if _inverse(cfg) else [])
        if not isinstance(t.loss, dict):
            problems.append(f"train.loss: the registration family takes a loss per output, e.g. {{registered: ncc_9, "
                            f"field: vdclip2}} (outputs: {', '.join(outputs)}); found '{t.loss_label}'")
        else:
            for output, terms in t.output_losses.items():
                if output not in outputs:
                    why = (" (the inverse field needs model.compute_inv: true)" if output == "inverse" else "")
                    problems.append(f"train.loss.{output}: the model has no output '{output}'"
                                    f"{did_you_mean(output, outputs)}{why} (outputs: {', '.join(outputs)})")
                    continue
                for spec, _ in terms:
                    missing = [k for k in LOSSES.entry(spec.class_name).meta.get("required_config", ())
                               if k not in spec.config]
                    if missing:
                        problems.append(f"train.loss.{output}: '{spec.class_name}' needs config.{missing[0]} "
                                        f"(e.g. {{class_name: {spec.class_name}, config: {{{missing[0]}: "
                                        f"runs/my-feature-net}}}}: a deepscope run folder whose net gives the "
                                        f"features; nothing is downloaded)")
                    kind = LOSSES.entry(spec.class_name).meta.get("registration")
                    if output == "registered" and kind == "field":
                        problems.append(f"train.loss.{output}: '{spec.class_name}' compares displacement fields; "
                                        f"the registered image takes an image loss (ncc_9, mse, ssim, perceptual, ...)")
                    elif LOSSES.entry(spec.class_name).meta.get("task") != "regression":
                        problems.append(f"train.loss.{output}: '{spec.class_name}' is a classification loss; "
                                        "registration outputs take image or field losses")
        standardize = cfg.data.standardize
        if standardize.images != "none":
            problems.append(f"data.standardize.images: registration compares the warped moving image with the "
                            f"reference in the data's own intensities; set it to none (found '{standardize.images}')")
        if standardize.targets:
            problems.append("data.standardize.targets: the fields are in pixels and the registered target is an "
                            "image; set it to false")
        for key in ("monitor", "early_stopping.monitor"):
            value = t.monitor if key == "monitor" else t.early_stopping.monitor
            if value and value.startswith("train_") and value[len("train_"):] not in ("loss", *CHEAP_METRICS):
                problems.append(f"train.{key}: '{value}' is scored on the validation split only (training batches "
                                f"log {', '.join('train_' + m for m in CHEAP_METRICS)}); monitor "
                                f"val_{value[len('train_'):]}")
        if t.thresholds != 0.5:
            problems.append("train.thresholds: registration outputs are images and fields; remove it")
        return problems

    def default_metrics(self, cfg: Any) -> list[str]:
        return DEFAULT_METRICS + (["inverse_residual"] if _inverse(cfg) else [])

    def check_data(self, cfg: Any, spec: Any) -> None:
        from deepscope.registration.task import field_names

        problems = []
        if set(spec.images) != {"reference", "moving"}:
            problems.append(f"data: registration takes two images named reference and moving; the data has "
                            f"{', '.join(spec.images) or 'none'} (use data.source registration_hdf5 or "
                            f"registration_demo)")
        names = tuple(spec.target_names)
        nd = spec.spatial_dims
        if not spec.dense or "registered" not in names or not all(n in names for n in field_names(nd)):
            problems.append(f"data: registration targets are images named registered, {', '.join(field_names(nd))} "
                            f"(...); the data's targets are {', '.join(names) or f'of shape {spec.target_shape}'}")
        has_inverse = all(n in names for n in field_names(nd, "inv_"))
        for spec_, _ in cfg.train.output_losses.get("inverse", []):
            if LOSSES.entry(spec_.class_name).meta.get("uses_target", True) and not has_inverse:
                problems.append(f"train.loss.inverse: '{spec_.class_name}' compares the inverse field with the true "
                                "one, but the data has none: set data.inverse: true (the file needs inv_deltas_xy), "
                                "or use a loss that reads no target (grad, jacobian)")
        explicit = [m for m in cfg.train.metrics if m in LABEL_METRICS]
        if explicit and "reference_labels" not in names and cfg.train.metrics != self.default_metrics(cfg):
            problems.append(f"train.metrics: {', '.join(explicit)} compare warped structure labels, but the data has "
                            "none: give data.annotation (a label volume like the reference)")
        if problems:
            raise ConfigError(problems=problems) if len(problems) > 1 else ConfigError(problems[0])

    def outputs(self, cfg: Any, spec: Any, standardizer: Any) -> Any:
        from deepscope.registration.task import Layout, RegistrationOutputs

        metrics = list(cfg.train.metrics)
        if "reference_labels" not in spec.target_names:
            metrics = [m for m in metrics if m not in LABEL_METRICS]  # default metrics the data cannot give
        if not _inverse(cfg):
            metrics = [m for m in metrics if m != "inverse_residual"]
        return RegistrationOutputs(spec, Layout.of(spec, _inverse(cfg)), metrics)

    def loss(self, cfg: Any, outputs: Any = None) -> Any:
        from deepscope.registration.task import RegistrationLoss

        if outputs is None:
            raise ValueError("the registration loss reads the outputs' layout: call loss(cfg, outputs)")
        return RegistrationLoss(outputs.layout, cfg.train.output_losses, cfg.train.output_weights)

    def system(self, cfg: Any, net: Any, outputs: Any, loss: Any, **options: Any) -> Any:
        from deepscope.training.system import SupervisedSystem

        return SupervisedSystem(net, loss, outputs, cfg.train.optimizer, cfg.train.lr, **options)

    def figures(self, cfg: Any, outputs: Any, result: dict[str, Any], figures: Path, split: str,
                inputs: dict[str, Any] | None = None, read: Any = None) -> None:
        import numpy as np

        from deepscope.evaluation import registration_plots as plots

        if inputs is None or not len(result["index"]):
            return
        n = min(FIGURE_SAMPLES, len(result["index"]))
        layout = outputs.layout
        pred = layout.outputs(np.asarray(result["predictions"][:n]))
        truth = layout.targets(np.asarray(result["targets"][:n]))
        reference, moving = inputs["reference"][:n], inputs["moving"][:n]
        plots.pairs_figure(reference, moving, pred["registered"], figures / f"registration_{split}.png",
                           title=split)
        plots.deformation_grid_figure(pred["field"], figures / f"deformation_{split}.png", title=split,
                                      truth=truth.get("field"))
        plots.jacobian_figure(pred["field"], figures / f"jacobian_{split}.png", title=split)
