"""``gan``: a generator that maps an event's image to an image (one track's hits) and a discriminator on
(event, image) pairs, trained adversarially (the ``adversarial`` task family; SuperNEMO's GAN clustering)."""

from __future__ import annotations

from typing import Annotated, Literal, Union

from pydantic import Field, PositiveInt

from deepscope.config.common import StrictModel
from deepscope.config.nets.cae import CAEParams
from deepscope.config.nets.unet import UNetParams

__all__ = ["DiscriminatorConfig", "GANParams"]

Generator = Annotated[Union[UNetParams, CAEParams], Field(discriminator="architecture")]


class DiscriminatorConfig(StrictModel):
    """A DCGAN-style critic of (event, image) pairs: stride-2 convolutions (kernel 3) with LeakyReLU(0.2),
    global average pooling, one logit (real pair or generated)."""

    block_sizes: list[PositiveInt] = Field(default_factory=lambda: [16, 32, 64], min_length=1,
                                           description="channels of each stride-2 convolution")
    normalization: Literal["batch", "instance", "none"] = Field(
        "none", description="after every convolution but the first")
    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="before the logit")


class GANParams(StrictModel):
    """The generator is a convolutional autoencoder: ``unet`` (with ``skip_connections`` true or false) or
    ``cae`` (a dense latent, no skips), with the data's image as input and the target image as output. The
    discriminator judges (event, image) pairs: the true image, or the generator's."""

    architecture: Literal["gan"] = "gan"
    generator: Generator = Field(default_factory=UNetParams,
                                 description="the image-to-image net: {architecture: unet, ...} or {architecture: "
                                             "cae, ...} with their keys")
    discriminator: DiscriminatorConfig = Field(default_factory=DiscriminatorConfig)
    mask_to_hits: bool = Field(
        True, description="the output can mark only cells where the event has a hit (> 0 in the unstandardized "
                          "image): a track's hits are among the event's")
    adversarial_weight: float = Field(1.0, ge=0.0, description="weight of the generator's adversarial loss")
    reconstruction_weight: float = Field(
        100.0, ge=0.0, description="weight of train.loss (the generated image against the true one; pix2pix: 100)")
    discriminator_lr: float | None = Field(None, gt=0.0, description="the discriminator's lr; null: train.lr")
