"""The Lightning system of the ``adversarial`` family: a generator and a discriminator, two optimizers.

Each training batch makes two steps, by manual optimization:

1. the discriminator: BCE of its logits on (event, true image) pairs against 1 and on (event,
   generated image) pairs against 0, the generated image detached; the mean of the two;
2. the generator: ``adversarial_weight`` × BCE of the discriminator's logits on its pairs against 1
   (it tries to pass for real) plus ``reconstruction_weight`` × ``train.loss`` (the generated image
   against the true one, per sample, sample weights applied).

Validation, the metrics, the epoch lines and the checkpoints (both nets and both optimizers' states,
so a run resumes mid-training) are the supervised system's: the net's forward is the generator, and
``val_loss`` is the reconstruction loss.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from deepscope.config.common import Component
from deepscope.optim.optimizers import make_optimizer
from deepscope.training.system import SupervisedSystem, model_inputs
from deepscope.training.task import Task

__all__ = ["AdversarialSystem"]


class AdversarialSystem(SupervisedSystem):
    """Trains a :class:`~deepscope.models.nets.gan.GANNet` (``net.generator``, ``net.discriminator``).

    Args:
        adversarial_weight: weight of the generator's adversarial loss.
        reconstruction_weight: weight of ``loss`` (generated image vs true image).
        discriminator_lr: the discriminator's learning rate; ``None``: the generator's (``lr``).
        Other arguments as :class:`SupervisedSystem` (``schedule`` is not supported: the config checks
        refuse one).
    """

    def __init__(self, net: nn.Module, loss: Any, task: Task, optimizer: Component, lr: float | None = None, *,
                 adversarial_weight: float = 1.0, reconstruction_weight: float = 100.0,
                 discriminator_lr: float | None = None, **options: Any) -> None:
        super().__init__(net, loss, task, optimizer, lr, **options)
        self.automatic_optimization = False
        self.adversarial_weight, self.reconstruction_weight = adversarial_weight, reconstruction_weight
        self.discriminator_lr = discriminator_lr

    def configure_optimizers(self) -> Any:
        generator = make_optimizer(self.optimizer_spec, self.net.generator.parameters(), self.lr)
        discriminator = make_optimizer(self.optimizer_spec, self.net.discriminator.parameters(),
                                       self.discriminator_lr or self.lr)
        return [generator, discriminator]

    def _current_lr(self) -> float:
        return float(self.optimizers()[0].param_groups[0]["lr"])

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        opt_g, opt_d = self.optimizers()
        images = model_inputs(batch)["images"]
        target = batch["targets"]
        logits = self(batch)
        fake = torch.sigmoid(logits)

        real_score = self.net.discriminate(images, target)
        fake_score = self.net.discriminate(images, fake.detach())
        d_loss = 0.5 * (F.binary_cross_entropy_with_logits(real_score, torch.ones_like(real_score))
                        + F.binary_cross_entropy_with_logits(fake_score, torch.zeros_like(fake_score)))
        opt_d.zero_grad()
        self.manual_backward(d_loss)
        opt_d.step()

        fooled = self.net.discriminate(images, fake)
        adversarial = F.binary_cross_entropy_with_logits(fooled, torch.ones_like(fooled))
        per_sample = self.loss_fn(logits, target)
        weights = batch.get("sample_weights")
        reconstruction = (per_sample.mean() if weights is None
                          else (per_sample * weights).sum() / weights.sum().clamp_min(1e-12))
        g_loss = self.adversarial_weight * adversarial + self.reconstruction_weight * reconstruction
        opt_g.zero_grad()
        self.manual_backward(g_loss)
        opt_g.step()

        bs = int(target.shape[0])
        self.log("train_d_loss", d_loss.detach(), on_step=False, on_epoch=True, batch_size=bs)
        self.log("train_g_adversarial", adversarial.detach(), on_step=False, on_epoch=True, batch_size=bs)
        if self._step_loss_is_read():
            self.log("train_loss_step", reconstruction.detach(), on_step=True, on_epoch=False, batch_size=bs,
                     prog_bar=True)
        # the epoch's train_loss and metrics: the reconstruction, as for the validation split
        scores = torch.from_numpy(self.task.sample_scores(logits.detach().float().cpu().numpy(),
                                                          target.detach().cpu().numpy()))
        self._outputs.setdefault("train", []).append((
            scores, None, per_sample.detach().float(), None if weights is None else weights.detach(),
            None if "index" not in batch else batch["index"].detach()))
        return g_loss
