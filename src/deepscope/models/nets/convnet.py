"""Shared parts of the DeepFocus family (ResNet, DenseNet, VGG, U-Net, CAE, DeepFocus), 2D and 3D.

Every net of the family is ``ConvNet(encoder, head)``:

- the images are concatenated on channels: (B, C_in, *S);
- an :class:`Encoder` returns its feature maps from shallow to deep, each with a known channel
  count and total stride (a map of stride s has size ``ceil(S / s)``: every downsampling here is
  'same'-padded, so odd sizes shrink to ``ceil(n / 2)`` and nothing is cropped);
- the head is one of DeepFocus's modes (``dmode``): a :class:`Decoder` (``deconvolver``, image →
  image of the input's exact size, any ``out_channels``) or a :class:`VectorHead` (``regressor`` /
  ``classifier``, → (B, K)).

``resolve_shape`` reads what the net is built for from the data (:class:`InputSpec`) and checks
the config's ``dmode``, ``spatial_dims``, ``in_channels`` and ``out_channels`` against it.

The layers come from the dimension factory (:mod:`deepscope.models.layers`). The blocks are our own
rather than MONAI's (MONAI's take its own activation/normalization names and fix the kernel at 3;
importing MONAI also costs about 3 s, which ``validate`` would pay for every net it builds), but keep
MONAI's layer names where a MONAI block exists, so their state dicts load into each other (the tests
check that against MONAI's ResNet and DenseNet).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from deepscope.config.common import Component
from deepscope.config.nets.common import ConvNetParams
from deepscope.data.spec import InputSpec
from deepscope.errors import ConfigError
from deepscope.models.layers import as_tuple, layer_class, make_activation, make_normalization

__all__ = [
    "ConvNet",
    "ConvNormAct",
    "ConvOptions",
    "Decoder",
    "DenseLatent",
    "Encoder",
    "NetShape",
    "UpStep",
    "VectorHead",
    "check_downsampling",
    "feature_size",
    "make_head",
    "net_options",
    "resize",
    "resolve_shape",
]

logger = logging.getLogger(__name__)

DMODES = ("deconvolver", "regressor", "classifier")
# the interpolation that resizes decoder maps to the skip's exact size, per spatial dims
_LINEAR = {1: "linear", 2: "bilinear", 3: "trilinear"}


# --- what the net is built for ---------------------------------------------------------------------


@dataclass(frozen=True)
class NetShape:
    """What a net of the family is built for, from the data and checked against the config.

    Attributes:
        dmode: ``deconvolver``, ``regressor`` or ``classifier``.
        spatial: the images' spatial size (H, W) or (D, H, W).
        in_channels: channels of all images together.
        out_channels: channels of the output image (deconvolver), or K outputs.
        image_names: the images, in channel-concatenation order.
        kernel_size: the convolutions' kernel, one entry per spatial dim.
    """

    dmode: str
    spatial: tuple[int, ...]
    in_channels: int
    out_channels: int
    image_names: tuple[str, ...]
    kernel_size: tuple[int, ...]

    @property
    def spatial_dims(self) -> int:
        return len(self.spatial)


def _size(spatial: Sequence[int]) -> str:
    return "x".join(map(str, spatial))


def _targets(spec: InputSpec) -> str:
    if spec.target_kind == "label":
        return f"integer labels of {spec.n_classes or 1} class(es)"
    return f"per-sample shape {tuple(spec.target_shape)}" if spec.target_shape else "one value per sample"


def _inferred_dmode(spec: InputSpec, task: str | None) -> str:
    if spec.dense:
        return "deconvolver"
    if spec.target_kind == "label" or spec.n_classes is not None or task in ("binary", "multiclass"):
        return "classifier"
    return "regressor"


def _dmode(spec: InputSpec, cfg: ConvNetParams, task: str | None) -> str:
    """``cfg.dmode`` when given (checked against the targets), else inferred from them."""
    inferred = _inferred_dmode(spec, task)
    dims = spec.spatial_dims
    if cfg.dmode is None:
        shape = tuple(spec.target_shape)
        if spec.target_kind == "value" and len(shape) == dims + 1 and not spec.dense:
            raise ConfigError(
                f"model.dmode: the targets look like images, per-sample shape {shape}, but of size "
                f"{_size(shape[1:])}, not the input's {_size(spec.spatial)}; a deconvolver returns the input's size: "
                "resample the targets to it, or set dmode: regressor to predict their flattened values")
        return inferred
    if cfg.dmode == "deconvolver" and not spec.dense:
        raise ConfigError(
            f"model.dmode: deconvolver returns images of the input's size (C, {_size(spec.spatial)}) but the targets "
            f"have {_targets(spec)}; set dmode: {inferred} (or leave it out), or give targets of shape "
            f"(C, {_size(spec.spatial)})")
    if cfg.dmode != "deconvolver" and spec.dense:
        raise ConfigError(
            f"model.dmode: {cfg.dmode} returns {spec.output_size} value(s) per sample, but the targets are images of "
            f"per-sample shape {tuple(spec.target_shape)}; set dmode: deconvolver, or leave it out")
    return cfg.dmode


def resolve_shape(spec: InputSpec, cfg: ConvNetParams, task: str | None = None) -> NetShape:
    """What the net is built for: ``dmode``, spatial size, channels in and out, kernel.

    ``dmode`` left out is ``deconvolver`` for image targets of the input's size, ``classifier`` for
    class labels (or one-hot targets, or a classification ``task``), else ``regressor``.

    Args:
        spec: the data's shapes.
        cfg: the net's params (any of the family).
        task: the loss's task (``regression``, ``binary``, ``multiclass``), a hint for ``dmode``.

    Raises:
        ConfigError: no images, images of different sizes, images that are not 2D or 3D, or a given
            ``dmode`` / ``spatial_dims`` / ``in_channels`` / ``out_channels`` / ``kernel_size`` that
            contradicts the data.
    """
    arch = cfg.architecture  # type: ignore[attr-defined]
    if not spec.images:
        raise ConfigError(f"model.architecture: '{arch}' convolves images but the data has none; use "
                          "architecture: combined for scalars or tracks only")
    sizes = {name: image.spatial for name, image in spec.images.items()}
    listing = ", ".join(f"'{n}': {_size(s)}" for n, s in sizes.items())
    if len(set(sizes.values())) > 1:
        raise ConfigError(f"model: the images differ in size ({listing}); '{arch}' concatenates them on channels, "
                          "so give images of one size (or use architecture: combined with upsampling)")
    spatial = tuple(spec.spatial)
    dims = len(spatial)
    if dims not in (2, 3):
        raise ConfigError(f"model.spatial_dims: the images are {dims}D ({listing}); '{arch}' takes 2D images "
                          "(C, H, W) or 3D cubes (C, D, H, W)")
    if cfg.spatial_dims is not None and cfg.spatial_dims != dims:
        raise ConfigError(f"model.spatial_dims is {cfg.spatial_dims} but the images are {dims}D ({listing}); "
                          f"set spatial_dims: {dims}, or leave it out")
    if cfg.in_channels is not None and cfg.in_channels != spec.in_channels:
        channels = ", ".join(f"'{n}': {image.channels}" for n, image in spec.images.items())
        raise ConfigError(f"model.in_channels is {cfg.in_channels} but the images have {spec.in_channels} channel(s) "
                          f"together ({channels}); set in_channels: {spec.in_channels}, or leave it out")
    dmode = _dmode(spec, cfg, task)
    out = int(spec.target_shape[0]) if dmode == "deconvolver" else spec.output_size
    if cfg.out_channels is not None and cfg.out_channels != out:
        what = "channel(s) per target image" if dmode == "deconvolver" else "output(s) per sample"
        raise ConfigError(f"model.out_channels is {cfg.out_channels} but the targets ({_targets(spec)}) need {out} "
                          f"{what}; set out_channels: {out}, or leave it out")
    kernel = as_tuple(cfg.kernel_size, dims, path="model.kernel_size")
    unused = [k for k in ("scalars", "tracks") if getattr(spec, k)]
    if unused:
        logger.warning("model.architecture '%s' uses the images only; the data's %s are not used", arch,
                       " and ".join(unused))
    return NetShape(dmode, spatial, spec.in_channels, out, tuple(spec.images), kernel)


def feature_size(spatial: Sequence[int], stride: int) -> tuple[int, ...]:
    """Spatial size of a feature map of total ``stride``: ceil(size / stride) per dim."""
    return tuple(math.ceil(s / stride) for s in spatial)


def check_downsampling(shape: NetShape, strides: Sequence[int], what: str, remedy: str) -> None:
    """Every downsampling step must see at least 2 pixels per dim (a stride over one pixel does nothing).

    Args:
        shape: what the net is built for.
        strides: total stride of each encoder feature map, shallow to deep.
        what: the downsampling layers, in the user's words ("the stem and 3 stride-2 stages").
        remedy: what to change, after "use fewer stages".

    Raises:
        ConfigError: ``model.depths: …`` with the smallest input size the net needs.
    """
    steps, previous = [], 1
    for stride in strides:
        if stride != previous:
            steps.append(stride // previous)
            previous = stride
    if not steps:
        return
    needed = math.prod(steps[:-1]) + 1  # the last step must still see >= 2 pixels
    if min(shape.spatial) < needed:
        factors = " x ".join(map(str, steps))
        raise ConfigError(f"model.depths: {what} downsample the input {len(steps)} time(s) (by {factors}), so every "
                          f"spatial dim needs at least {needed} pixels, but the images are {_size(shape.spatial)}; "
                          f"use fewer stages (shorter depths and block_sizes){remedy}")


# --- layers ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ConvOptions:
    """How the convolutions of one net are made: dims, kernel, activation and normalization specs."""

    spatial_dims: int
    kernel_size: tuple[int, ...]
    activation: Component | None
    normalization: Component | None

    def conv(self, in_channels: int, out_channels: int, kernel_size: int | Sequence[int] | None = None,
             stride: int = 1, bias: bool | None = None) -> nn.Module:
        """A 'same'-padded convolution (odd kernels): output size ceil(size / stride).

        The bias is dropped when a normalization follows (``bias=None``), as it would cancel.
        """
        kernel = self.kernel_size if kernel_size is None else as_tuple(kernel_size, self.spatial_dims)
        bias = self.normalization is None if bias is None else bias
        padding = tuple((k - 1) // 2 for k in kernel)  # 'same' for odd kernels
        return layer_class("conv", self.spatial_dims)(in_channels, out_channels, kernel, stride,
                                                      padding=padding, bias=bias)

    def transposed(self, in_channels: int, out_channels: int, factor: int) -> nn.Module:
        """Upsampling by ``factor`` (kernel = stride = factor): size × factor exactly."""
        return layer_class("conv_transpose", self.spatial_dims)(in_channels, out_channels, factor, factor)

    def max_pool(self, kernel_size: int, stride: int) -> nn.Module:
        """Max pooling to ceil(size / stride), like the convolutions, so odd sizes lose nothing.

        An odd kernel is padded by (k - 1) // 2; a kernel equal to the stride uses ``ceil_mode``.
        """
        return layer_class("maxpool", self.spatial_dims)(kernel_size, stride, **_pool_padding(kernel_size, stride))

    def avg_pool(self, kernel_size: int, stride: int) -> nn.Module:
        """Average pooling to ceil(size / stride) (see :meth:`max_pool`); padding is not averaged in."""
        return layer_class("avgpool", self.spatial_dims)(kernel_size, stride, count_include_pad=False,
                                                         **_pool_padding(kernel_size, stride))

    def norm(self, channels: int) -> nn.Module:
        """The normalization over ``channels`` (identity when there is none)."""
        return make_normalization(self.normalization, channels, self.spatial_dims, "model.normalization")

    def act(self, channels: int | None = None) -> nn.Module:
        """A fresh activation (per-channel parameters, e.g. PReLU's, get ``channels``)."""
        return make_activation(self.activation, channels, "model.activation")


def _pool_padding(kernel_size: int, stride: int) -> dict[str, Any]:
    # floor((n + 2p - k) / s) + 1 is ceil(n / s) for p = (k - 1) / 2 (odd k); ceil_mode gives it for k = s
    if kernel_size % 2:
        return {"padding": (kernel_size - 1) // 2}
    if kernel_size == stride:
        return {"padding": 0, "ceil_mode": True}
    raise ValueError(f"pooling kernel {kernel_size} with stride {stride}: give an odd kernel or kernel = stride")


class ConvNormAct(nn.Sequential):
    """conv ('same' padding) → normalization → activation: (B, C_in, *S) -> (B, C_out, *ceil(S / stride)).

    Our own rather than MONAI's ``Convolution``: its ADN takes MONAI's activation names, ours come
    from the config's "str or config dict" specs (Keras defaults, PReLU per channel, gauss, …).
    """

    def __init__(self, opts: ConvOptions, in_channels: int, out_channels: int, stride: int = 1,
                 kernel_size: int | Sequence[int] | None = None) -> None:
        super().__init__()
        self.conv = opts.conv(in_channels, out_channels, kernel_size, stride)
        self.norm = opts.norm(out_channels)
        self.act = opts.act(out_channels)


def resize(x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """(B, C, *S) -> (B, C, *size) by (bi/tri)linear interpolation; unchanged when already that size."""
    size = tuple(int(s) for s in size)
    if tuple(x.shape[2:]) == size:
        return x
    return F.interpolate(x, size=size, mode=_LINEAR[x.dim() - 2], align_corners=False)


# --- encoder ---------------------------------------------------------------------------------------


class Encoder(nn.Module):
    """Base of the family's encoders: ``forward(x)`` returns feature maps from shallow to deep.

    Attributes:
        channels: channels of each feature map.
        strides: total stride of each feature map (non-decreasing); its size is ceil(S / stride).
    """

    channels: list[int]
    strides: list[int]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:  # (B, C_in, *S) -> [(B, C_i, *S_i)]
        raise NotImplementedError


# --- heads -----------------------------------------------------------------------------------------


class DenseLatent(nn.Module):
    """A dense latent over a feature map of fixed size.

    ``encode``: (B, C, *S) → flatten → dropout → dense(latent_size) → activation → (B, latent_size);
    ``decode``: → dense(C·∏S) → activation → (B, C, *S). The size S is fixed when built, so the
    net takes inputs of the size it was built for only.

    Args:
        channels, spatial: the feature map's channels and size.
        latent_size: units of the latent.
        activation: after each dense layer.
        dropout: before the encoding dense layer.
        decodes: build the decoding layer too (not needed when only the latent is read).
    """

    def __init__(self, channels: int, spatial: Sequence[int], latent_size: int, *, activation: Component | None,
                 dropout: float = 0.0, decodes: bool = True) -> None:
        super().__init__()
        self.channels, self.spatial, self.latent_size = int(channels), tuple(spatial), int(latent_size)
        width = self.channels * math.prod(self.spatial)
        self.dropout = nn.Dropout(dropout)
        self.compress = nn.Linear(width, latent_size)
        self.act_in = make_activation(activation, latent_size, "model.activation")
        self.expand = nn.Linear(latent_size, width) if decodes else None
        self.act_out = make_activation(activation, width, "model.activation") if decodes else None

    def extra_repr(self) -> str:
        return f"channels={self.channels}, spatial={self.spatial}, latent_size={self.latent_size}"

    def encode(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, *S) -> (B, latent)
        if tuple(x.shape[1:]) != (self.channels, *self.spatial):
            raise ValueError(f"the dense latent was built for feature maps of {self.channels} x {_size(self.spatial)} "
                             f"but got {tuple(x.shape[1:])}: the net takes inputs of the size it was built for")
        return self.act_in(self.compress(self.dropout(x.flatten(1))))

    def decode(self, z: torch.Tensor) -> torch.Tensor:  # (B, latent) -> (B, C, *S)
        if self.expand is None or self.act_out is None:
            raise RuntimeError("this latent was built without its decoding layer (decodes=False)")
        return self.act_out(self.expand(z)).view(z.shape[0], self.channels, *self.spatial)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, *S) -> (B, C, *S)
        return self.decode(self.encode(x))


class VectorHead(nn.Module):
    """The regressor/classifier head: deepest map → global average (or a dense latent) → dropout →
    dense(hidden_size) → activation → dropout → dense(K) → final activation.

    Args:
        in_features: channels of the deepest map (or the latent's units).
        hidden_size: units of the hidden dense layer.
        out_features: K, values or logits.
        activation, final_activation: specs (``None``: identity).
        dropout: rate before each dense layer.
        latent: read the deepest map through this latent's ``encode`` instead of pooling it.
    """

    def __init__(self, in_features: int, hidden_size: int, out_features: int, *, activation: Component | None,
                 final_activation: Component | None, dropout: float = 0.0, latent: DenseLatent | None = None) -> None:
        super().__init__()
        self.latent = latent
        self.dropout = nn.Dropout(dropout)
        self.hidden = nn.Linear(in_features, hidden_size)
        self.act = make_activation(activation, hidden_size, "model.activation")
        self.output = nn.Linear(hidden_size, out_features)
        self.final_activation = make_activation(final_activation, out_features, "model.final_activation")

    def forward(self, features: list[torch.Tensor], size: Sequence[int]) -> torch.Tensor:  # -> (B, K)
        x = features[-1]  # (B, C, *S_L)
        x = self.latent.encode(x) if self.latent is not None else x.flatten(2).mean(-1)  # (B, C) or (B, latent)
        x = self.act(self.hidden(self.dropout(x)))
        return self.final_activation(self.output(self.dropout(x)))


class UpStep(nn.Module):
    """One decoder level: transposed conv by ``factor`` → resize to the exact target size → concatenate
    the skip (if any) → ``depth`` conv-norm-act.

    The transposed convolution gives size × factor; the resize then matches the encoder map of that
    level exactly, which is ceil(n / stride) and so one smaller for odd sizes.
    """

    def __init__(self, opts: ConvOptions, in_channels: int, out_channels: int, factor: int, skip_channels: int = 0,
                 depth: int = 1) -> None:
        super().__init__()
        self.up = opts.transposed(in_channels, out_channels, factor)
        self.convs = nn.Sequential(*(ConvNormAct(opts, out_channels + (skip_channels if i == 0 else 0), out_channels)
                                     for i in range(depth)))

    def forward(self, x: torch.Tensor, size: Sequence[int], skip: torch.Tensor | None = None) -> torch.Tensor:
        x = resize(self.up(x), size)  # (B, C_out, *size)
        if skip is not None:
            x = torch.cat([x, skip], 1)
        return self.convs(x)


class Decoder(nn.Module):
    """The deconvolver head: from the deepest map back to the input's exact size, ``out_channels`` deep.

    Level i (deepest first) upsamples to the size of encoder map i and makes ``channels[i]``
    channels, concatenating map i first when ``skip_connections``; when the shallowest map is
    itself downsampled, a last step returns to the input's size. A 1x1 convolution then gives
    ``out_channels``, and ``final_activation`` follows.

    Args:
        opts: how convolutions are made.
        channels, strides: the encoder's (see :class:`Encoder`).
        out_channels: channels of the output image.
        depths: conv-norm-act layers per level, one per encoder map except the deepest.
        skip_connections: concatenate the encoder maps into the decoder.
        final_activation: after the output convolution (``None``: identity).
        latent: a dense latent applied to the deepest map first.
    """

    def __init__(self, opts: ConvOptions, channels: Sequence[int], strides: Sequence[int], out_channels: int, *,
                 depths: Sequence[int], skip_connections: bool, final_activation: Component | None,
                 latent: DenseLatent | None = None) -> None:
        super().__init__()
        if len(depths) != len(channels) - 1:
            raise ValueError(f"Decoder: {len(depths)} depths for {len(channels)} encoder maps; give one per map "
                             "except the deepest")
        self.skip_connections = bool(skip_connections)
        self.latent = latent
        self.steps = nn.ModuleList()
        previous = channels[-1]
        for i in reversed(range(len(channels) - 1)):
            self.steps.append(UpStep(opts, previous, channels[i], strides[i + 1] // strides[i],
                                     channels[i] if skip_connections else 0, depths[i]))
            previous = channels[i]
        self.last = UpStep(opts, previous, previous, strides[0]) if strides[0] > 1 else None
        self.output = opts.conv(previous, out_channels, kernel_size=1, bias=True)
        self.final_activation = make_activation(final_activation, out_channels, "model.final_activation")

    def forward(self, features: list[torch.Tensor], size: Sequence[int]) -> torch.Tensor:  # -> (B, out, *size)
        x = features[-1]
        if self.latent is not None:
            x = self.latent(x)
        for step, skip in zip(self.steps, reversed(features[:-1])):
            x = step(x, skip.shape[2:], skip if self.skip_connections else None)
        if self.last is not None:
            x = self.last(x, size)
        return self.final_activation(self.output(x))


def make_head(shape: NetShape, cfg: ConvNetParams, encoder: Encoder, *, decoder_depths: Sequence[int] | None = None,
              skip_connections: bool = False, latent_size: int | None = None, latent_in_head: bool = False
              ) -> nn.Module:
    """The head for ``shape.dmode``: a :class:`Decoder` or a :class:`VectorHead`.

    Args:
        shape: what the net is built for.
        cfg: the net's params (activation, normalization, final_activation, dropout, hidden_size).
        encoder: the encoder whose maps the head reads.
        decoder_depths: conv-norm-act layers per decoder level (default one each).
        skip_connections: concatenate encoder maps into the decoder.
        latent_size: put a dense latent of this many units after the encoder (deconvolver).
        latent_in_head: the regressor/classifier reads that latent instead of a global average.
    """
    opts = net_options(shape, cfg)
    bottom = feature_size(shape.spatial, encoder.strides[-1])
    if shape.dmode == "deconvolver":
        latent = None
        if latent_size is not None:
            latent = DenseLatent(encoder.channels[-1], bottom, latent_size, activation=cfg.activation,
                                 dropout=cfg.dropout)
        depths = list(decoder_depths) if decoder_depths is not None else [1] * (len(encoder.channels) - 1)
        return Decoder(opts, encoder.channels, encoder.strides, shape.out_channels, depths=depths,
                       skip_connections=skip_connections, final_activation=cfg.final_activation, latent=latent)
    latent = None
    if latent_size is not None and latent_in_head:
        latent = DenseLatent(encoder.channels[-1], bottom, latent_size, activation=cfg.activation,
                             dropout=cfg.dropout, decodes=False)
    return VectorHead(latent_size if latent is not None else encoder.channels[-1], cfg.hidden_size,
                      shape.out_channels, activation=cfg.activation, final_activation=cfg.final_activation,
                      dropout=cfg.dropout, latent=latent)


# --- the net ---------------------------------------------------------------------------------------


class ConvNet(nn.Module):
    """A net of the family: images concatenated on channels → encoder → head.

    Args:
        image_names: the images, in channel-concatenation order (they share one spatial size).
        dmode: ``deconvolver``, ``regressor`` or ``classifier`` (what ``head`` is).
        encoder: returns the feature maps.
        head: :class:`Decoder` (→ (B, out_channels, *S)) or :class:`VectorHead` (→ (B, K)).
    """

    def __init__(self, *, image_names: Sequence[str], dmode: str, encoder: Encoder, head: nn.Module) -> None:
        super().__init__()
        if dmode not in DMODES:
            raise ValueError(f"dmode {dmode!r}; available: {', '.join(DMODES)}")
        self.image_names, self.dmode = list(image_names), dmode
        self.encoder, self.head = encoder, head

    def extra_repr(self) -> str:
        return f"dmode={self.dmode!r}, images={self.image_names}"

    def forward(self, images: dict[str, torch.Tensor], scalars: torch.Tensor | None = None,
                tracks: torch.Tensor | None = None) -> torch.Tensor:
        """Images (B, C, *S) by name -> (B, out_channels, *S) (deconvolver) or (B, K).

        ``scalars`` and ``tracks`` are accepted for the common model signature and not used.
        """
        missing = [n for n in self.image_names if n not in images]
        if missing:
            raise KeyError(f"images {missing} missing from the input (given: {sorted(images)})")
        parts = [images[n] for n in self.image_names]
        x = torch.cat(parts, 1) if len(parts) > 1 else parts[0]  # (B, C_in, *S)
        return self.head(self.encoder(x), tuple(x.shape[2:]))


def net_options(shape: NetShape, cfg: Any) -> ConvOptions:
    """The :class:`ConvOptions` of a net from its params."""
    return ConvOptions(shape.spatial_dims, shape.kernel_size, cfg.activation, cfg.normalization)
