"""``capsnet``: a capsule network with dynamic routing by agreement (Sabour, Frosst & Hinton 2017).

Capsules are vectors whose length says how likely an entity is present and whose direction describes
it. :func:`squash` keeps a vector's direction and maps its length into [0, 1):
``v = |s|^2 / (1 + |s|^2) * s / |s|``. Each primary capsule ``i`` predicts every class capsule ``j``
through its own matrix, ``u_hat_{j|i} = W_ij u_i``; :func:`route` then lets the predictions that agree
decide: coupling ``c_ij = softmax_j(b_ij)``, ``s_j = sum_i c_ij u_hat_{j|i}``, ``v_j = squash(s_j)``,
``b_ij += u_hat_{j|i} . v_j``, three times. The network's output is the class capsules' lengths,
trained with the margin loss (:func:`deepscope.losses.margin`).

The paper's reconstruction decoder (optional, ``decoder.use``) is a regularizer: it needs the true label,
which the forward pass never sees, so the net keeps the class capsules and image of its last forward and
the training system adds :meth:`CapsNet.auxiliary_loss` (given the targets) to the loss.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from deepscope.config.nets.capsnet import CapsNetParams
from deepscope.data.spec import InputSpec
from deepscope.errors import ConfigError

__all__ = ["CapsNet", "build_capsnet", "class_mask", "route", "squash"]


def squash(s: torch.Tensor, dim: int = -1, eps: float = 1e-20) -> torch.Tensor:
    """``|s|^2 / (1 + |s|^2) * s / |s|`` along ``dim``; ``eps`` under the root keeps a zero vector (and
    its gradient) finite without changing any vector longer than about 1e-9."""
    n2 = (s * s).sum(dim, keepdim=True)
    return n2 / (1.0 + n2) * s / torch.sqrt(n2 + eps)


def route(u_hat: torch.Tensor, iterations: int) -> torch.Tensor:
    """Routing by agreement: predictions ``u_hat`` (B, N_in, N_out, D) -> class capsules (B, N_out, D)."""
    b = torch.zeros(u_hat.shape[:3], dtype=u_hat.dtype, device=u_hat.device)
    for r in range(iterations):
        c = torch.softmax(b, dim=2)  # each input capsule shares itself among the output capsules
        v = squash((c.unsqueeze(-1) * u_hat).sum(1))
        if r < iterations - 1:
            b = b + (u_hat * v.unsqueeze(1)).sum(-1)
    return v


def class_mask(capsules: torch.Tensor, target: torch.Tensor | None = None) -> torch.Tensor:
    """Which class capsules the decoder sees: (B, classes) of 0/1.

    Args:
        capsules: class capsules (B, classes, D).
        target: integer labels (B,) or one-hot (B, classes) (a multi-hot row keeps every class present);
            ``None`` picks each sample's longest capsule.

    Returns:
        The mask (B, classes) in the capsules' dtype.
    """
    if target is None:
        target = capsules.norm(dim=-1).argmax(-1)
    if target.ndim == 1:
        target = F.one_hot(target.long(), capsules.shape[1])
    return target.to(capsules.dtype)


class _Decoder(nn.Module):
    """Masked class capsules (B, classes * D) -> dense layers with ReLU -> a sigmoid (B, out_features)."""

    def __init__(self, in_features: int, units: list[int], out_features: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for width in units:
            layers += [nn.Linear(in_features, width), nn.ReLU()]
            in_features = width
        self.layers = nn.Sequential(*layers, nn.Linear(in_features, out_features), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class CapsNet(nn.Module):
    """Conv + ReLU -> primary capsules -> routed class capsules; ``forward(images) -> (B, classes)`` lengths.

    With ``cfg.decoder.use`` the net also has the paper's reconstruction decoder: each forward keeps its
    class capsules and image, and :meth:`auxiliary_loss` / :meth:`reconstruct` decode them.
    """

    def __init__(self, spec: InputSpec, cfg: CapsNetParams) -> None:
        super().__init__()
        if len(spec.images) != 1:
            raise ConfigError(f"model.architecture capsnet takes one image; the data has {len(spec.images)} "
                              f"({', '.join(spec.images)}); train one capsnet per view, or combine views with "
                              "another architecture")
        (name, image), = spec.images.items()
        if len(image.spatial) != 2:
            raise ConfigError(f"model.architecture capsnet takes 2D images; '{name}' is {tuple(image.spatial)}")
        if spec.dense or spec.target_kind != "label" and len(spec.target_shape) != 1:
            raise ConfigError("model.architecture capsnet outputs one capsule length per class; the targets must be "
                              f"class labels or one value per class (found per-sample shape {spec.target_shape})")
        h, w = image.spatial
        ph = (h - cfg.conv_kernel + 1 - cfg.primary_kernel) // cfg.primary_stride + 1
        pw = (w - cfg.conv_kernel + 1 - cfg.primary_kernel) // cfg.primary_stride + 1
        if min(ph, pw) < 1:
            need = cfg.conv_kernel + cfg.primary_kernel - 1
            raise ConfigError(f"model: image '{name}' of {h}x{w} is too small for capsnet's conv_kernel "
                              f"{cfg.conv_kernel} and primary_kernel {cfg.primary_kernel} (each side needs at least "
                              f"{need} pixels); lower them")
        self.image_name, self.cfg = name, cfg
        self.conv = nn.Sequential(nn.Conv2d(image.channels, cfg.conv_channels, cfg.conv_kernel), nn.ReLU())
        self.primary = nn.Conv2d(cfg.conv_channels, cfg.primary_types * cfg.primary_dim, cfg.primary_kernel,
                                 stride=cfg.primary_stride)
        n_in, n_out = cfg.primary_types * ph * pw, spec.output_size
        self.weight = nn.Parameter(0.01 * torch.randn(n_in, n_out, cfg.class_dim, cfg.primary_dim))
        self.decoder = (_Decoder(n_out * cfg.class_dim, cfg.decoder.units, image.channels * h * w)
                        if cfg.decoder.use else None)
        self.uses_auxiliary_loss = self.decoder is not None  # the training system adds it only then
        self._last: tuple[torch.Tensor, torch.Tensor] | None = None  # (capsules, image) of the last forward

    def capsules(self, x: torch.Tensor) -> torch.Tensor:
        """The class capsules (B, classes, class_dim) of images (B, C, H, W)."""
        p = self.primary(self.conv(x))  # (B, types * dim, H', W')
        b, _, ph, pw = p.shape
        u = p.reshape(b, self.cfg.primary_types, self.cfg.primary_dim, ph, pw).permute(0, 1, 3, 4, 2)
        u = squash(u.reshape(b, -1, self.cfg.primary_dim))  # (B, N_in, D_in)
        u_hat = torch.einsum("ijkl,bil->bijk", self.weight, u)  # (B, N_in, N_out, D_out)
        return route(u_hat, self.cfg.routing_iterations)

    def forward(self, images: dict[str, torch.Tensor], scalars: torch.Tensor | None = None,
                tracks: torch.Tensor | None = None) -> torch.Tensor:
        x = images[self.image_name]  # (B, C, H, W)
        v = self.capsules(x)  # (B, classes, class_dim)
        if self.decoder is not None:
            self._last = (v, x)
        return v.norm(dim=-1)

    def reconstruct(self, target: torch.Tensor | None = None) -> torch.Tensor:
        """The decoder's image from the class capsules of the last forward.

        Args:
            target: the class(es) to decode: integer labels (B,) or one-hot (B, classes); ``None``: each
                sample's longest capsule.

        Returns:
            The reconstruction (B, C, H, W), in (0, 1), shaped like the last forward's image.

        Raises:
            RuntimeError: the net has no decoder, or has not run forward yet.
        """
        if self.decoder is None:
            raise RuntimeError("this capsnet has no decoder; build it with decoder.use: true")
        if self._last is None:
            raise RuntimeError("capsnet.reconstruct decodes the class capsules of the last forward; call the net first")
        v, x = self._last
        masked = v * class_mask(v, target).unsqueeze(-1)  # (B, classes, class_dim), zero but the chosen ones
        return self.decoder(masked.flatten(1)).reshape(x.shape)

    def auxiliary_loss(self, target: torch.Tensor) -> torch.Tensor:
        """The reconstruction loss of the last forward, to add to the training loss.

        ``decoder.weight`` times the per-sample sum of squared errors between the reconstruction and the
        image, averaged over the batch. In training mode the decoder sees the true class's capsule, in
        eval mode the longest one (the paper's masking). Without a decoder: a zero.

        Args:
            target: integer labels (B,) or one-hot (B, classes).

        Returns:
            A scalar.
        """
        if self.decoder is None:
            return self.weight.new_zeros(())
        recon = self.reconstruct(target if self.training else None)  # (B, C, H, W)
        dtype = torch.promote_types(recon.dtype, torch.float32)  # sums of C*H*W terms: not in half precision
        squared = (recon.to(dtype) - self._last[1].to(dtype)) ** 2
        return self.cfg.decoder.weight * squared.flatten(1).sum(1).mean()


def build_capsnet(spec: InputSpec, cfg: CapsNetParams) -> CapsNet:
    """The capsule network for the data in ``spec``."""
    return CapsNet(spec, cfg)
