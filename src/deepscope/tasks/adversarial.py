"""The ``adversarial`` family: a generator of images trained against a discriminator (``model: gan``).

SuperNEMO's GAN track clustering: the generator maps an event's hit image to the image of one track's
hits; the discriminator judges (event, image) pairs. What the net's output means, its predictions and
its metrics are those of an image-to-image net with 0/1 targets (the supervised :class:`Task` with a
binary loss); what differs is the training system (two optimizers, manual optimization), the checks
and the figures (event / generated / true clusters).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from deepscope.components import LOSSES
from deepscope.tasks.base import TaskFamily

__all__ = ["AdversarialFamily", "CLUSTER_METRICS"]

CLUSTER_METRICS = ["hit_efficiency", "hit_purity"]
FIGURE_EVENTS = 6  # events drawn in clusters_<split>.png


class AdversarialFamily(TaskFamily):
    """A generator and a discriminator; ``train.loss`` is the generator's reconstruction loss."""

    name = "adversarial"
    priority = 1  # its reconstruction loss alone would be claimed by supervised

    @classmethod
    def claims(cls, cfg: Any) -> bool:
        return getattr(cfg.model, "architecture", None) == "gan"

    def check_config(self, cfg: Any) -> list[str]:
        problems = []
        if cfg.model.architecture != "gan":
            problems.append(f"task: adversarial trains model.architecture gan (a generator and a discriminator), "
                            f"not '{cfg.model.architecture}'")
            return problems
        t = cfg.train
        if isinstance(t.loss, list):
            problems.append("train.loss: the adversarial family takes one reconstruction loss (e.g. "
                            "bce_with_logits), not a weighted sum; weigh it with model.reconstruction_weight")
        elif LOSSES.entry(t.loss_name).meta.get("output") != "logits" or \
                LOSSES.entry(t.loss_name).meta.get("task") != "binary":
            problems.append(f"train.loss '{t.loss_label}': the generator gives logits of 0/1 images (hits of one "
                            "track); use bce_with_logits")
        for key, value, allowed in (("train.lr_schedule", t.lr_schedule, None), ("train.warmup", t.warmup, None),
                                    ("train.gradient_clip_val", t.gradient_clip_val, None),
                                    ("train.accumulate_grad_batches", t.accumulate_grad_batches, 1)):
            if value != allowed:
                problems.append(f"{key}: not supported by the adversarial family (two optimizers stepped by hand "
                                f"each batch); remove it")
        if t.lr_finder.use:
            problems.append("train.lr_finder: not supported by the adversarial family (two optimizers); set "
                            "train.lr (and model.discriminator_lr)")
        if cfg.model.mask_to_hits and cfg.data.standardize.images != "none":
            problems.append(f"model.mask_to_hits keeps the output to cells with a hit (> 0), which needs the images "
                            f"unstandardized: set data.standardize.images: none (it is "
                            f"'{cfg.data.standardize.images}'), or mask_to_hits: false")
        return problems

    def default_metrics(self, cfg: Any) -> list[str]:
        return list(CLUSTER_METRICS)

    def check_data(self, cfg: Any, spec: Any) -> None:
        from deepscope.tasks.supervised import SupervisedFamily

        SupervisedFamily().check_data(cfg, spec)  # image metrics need image targets, one threshold, ...

    def outputs(self, cfg: Any, spec: Any, standardizer: Any) -> Any:
        from deepscope.tasks.supervised import SupervisedFamily

        return SupervisedFamily().outputs(cfg, spec, standardizer)

    def loss(self, cfg: Any, outputs: Any = None) -> Any:
        from deepscope.losses import make_loss

        return make_loss(cfg.train.loss_terms[0][0])

    def system(self, cfg: Any, net: Any, outputs: Any, loss: Any, **options: Any) -> Any:
        from deepscope.training.adversarial import AdversarialSystem

        options.pop("schedule", None)  # refused by check_config; the experiment passes None
        m = cfg.model
        return AdversarialSystem(net, loss, outputs, cfg.train.optimizer, cfg.train.lr,
                                 adversarial_weight=m.adversarial_weight,
                                 reconstruction_weight=m.reconstruction_weight,
                                 discriminator_lr=m.discriminator_lr, **options)

    def figures(self, cfg: Any, outputs: Any, result: dict[str, Any], figures: Path, split: str,
                inputs: dict[str, Any] | None = None, read: Any = None) -> None:
        import numpy as np

        from deepscope.evaluation import plots

        if read is None:
            return
        targets = np.asarray(result["targets"])
        # the first events with a track in the view (an empty one shows nothing)
        shown = np.flatnonzero(targets.reshape(len(targets), -1).any(1))[:FIGURE_EVENTS]
        if not len(shown):
            return
        (name, events), = read(shown).items()
        plots.clusters_figure(events, np.asarray(result["predictions"])[shown], targets[shown],
                              figures / f"clusters_{split}.png", title=f"{split}: {name}")
