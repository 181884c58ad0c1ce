"""``deepfocus``: DeepFocus's net, 2D or 3D: a ResNet encoder, a dense latent, a skip-connected decoder.

Encoder: the stem (conv k7 s2 + norm + activation, max pool k3 s2) and ResNet stages, as in
:mod:`deepscope.models.nets.resnet`. ``deconvolver``: the deepest map goes through a dense latent
of ``latent_size`` units and back, then a decoder of transposed convolutions, interpolation to each
encoder map's exact size, skip concatenation (``skip_connections``) and one conv-norm-act per level,
and finally a 1x1 convolution and ``final_activation``. ``regressor`` / ``classifier``: global
average pool, dropout, dense(``hidden_size``), dropout, dense(K).
"""

from __future__ import annotations

from deepscope.config.nets.deepfocus import DeepFocusParams
from deepscope.data.spec import InputSpec
from deepscope.models.nets.convnet import ConvNet, make_head, resolve_shape
from deepscope.models.nets.resnet import check_resnet_size, resnet_encoder

__all__ = ["build_deepfocus"]


def build_deepfocus(spec: InputSpec, cfg: DeepFocusParams, *, task: str | None = None) -> ConvNet:
    """DeepFocus's net for the data in ``spec``.

    Args:
        spec: the data's shapes.
        cfg: the ``model`` section (``architecture: deepfocus``).
        task: the loss's task, a hint for ``dmode`` when it is left out.

    Returns:
        A :class:`ConvNet`: (B, out_channels, *S) for ``deconvolver``, else (B, K). The dense latent
        ties a deconvolver to the input size it was built for.

    Raises:
        ConfigError: the config contradicts the data, or the images are too small for the stages.
    """
    shape = resolve_shape(spec, cfg, task)
    encoder = resnet_encoder(shape, cfg)
    check_resnet_size(shape, cfg, encoder)
    head = make_head(shape, cfg, encoder, skip_connections=cfg.skip_connections, latent_size=cfg.latent_size)
    return ConvNet(image_names=shape.image_names, dmode=shape.dmode, encoder=encoder, head=head)
