"""``cae``: a convolutional autoencoder in 2D or 3D, with a head per ``dmode``.

Encoder: the U-Net's levels (``depths[i]`` conv-norm-act layers of ``block_sizes[i]`` channels,
halving the size between levels). The deepest map is flattened into a dense latent of
``latent_size`` units. ``deconvolver``: the latent is expanded back to the deepest map's shape and
decoded level by level (transposed conv, interpolation to the level's exact size, ``depths[i]``
conv-norm-act layers, no skip connections), then a 1x1 conv and ``final_activation``.
``regressor`` / ``classifier``: the latent → dropout → dense(``hidden_size``) → dropout → dense(K).

Our own rather than MONAI's ``AutoEncoder`` / ``VarAutoEncoder``: those need sizes divisible by
their strides and take MONAI's activation/normalization names.
"""

from __future__ import annotations

from deepscope.config.nets.cae import CAEParams
from deepscope.data.spec import InputSpec
from deepscope.models.nets.convnet import ConvNet, make_head, resolve_shape
from deepscope.models.nets.unet import level_encoder

__all__ = ["build_cae"]


def build_cae(spec: InputSpec, cfg: CAEParams, *, task: str | None = None) -> ConvNet:
    """A convolutional autoencoder for the data in ``spec``.

    Args:
        spec: the data's shapes.
        cfg: the ``model`` section (``architecture: cae``).
        task: the loss's task, a hint for ``dmode`` when it is left out.

    Returns:
        A :class:`ConvNet`: (B, out_channels, *S) for ``deconvolver``, else (B, K) from the latent.
        The dense latent ties the net to the input size it was built for.

    Raises:
        ConfigError: the config contradicts the data, or the images are too small for the levels.
    """
    shape = resolve_shape(spec, cfg, task)
    encoder = level_encoder(shape, cfg)
    head = make_head(shape, cfg, encoder, decoder_depths=list(cfg.depths[:-1]), skip_connections=False,
                     latent_size=cfg.latent_size, latent_in_head=True)
    return ConvNet(image_names=shape.image_names, dmode=shape.dmode, encoder=encoder, head=head)
